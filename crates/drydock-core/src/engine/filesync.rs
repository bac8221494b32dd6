//! BuildKit's file sync, sending side: the `moby.filesync.v1.FileSync`
//! `DiffCopy` service a build session offers so that BuildKit pulls the
//! build context (and the Dockerfile) from the client, as the Docker CLI
//! does with BuildKit (`remote=client-session`).
//!
//! The protocol is fsutil's `Send` (tonistiigi/fsutil, the version BuildKit
//! 0.8 uses): one `STAT` packet per entry in walk order (depth first, names
//! sorted bytewise, every parent before its children), then an empty `STAT`;
//! the receiver asks for file contents with `REQ` (the id is the index of
//! the file's `STAT` packet), gets them as `DATA` packets ending with an
//! empty one, and closes with `FIN`, which is answered with `FIN`.
//!
//! Written by hand because no crate implements the sending side; bollard
//! only has the messages. The packets are declared here again with `bytes`
//! instead of `string` for paths (the same wire format), because file names
//! are bytes on Linux and need not be UTF-8.
//!
//! What is sent: the request's exclude patterns (BuildKit's frontend reads
//! them from `.dockerignore`) are applied with the Docker CLI's rules
//! ([`super::dockerignore`]), so the image sees what `docker build` sends;
//! [`BuildContext::never_send`] paths are never read; extra files (the
//! `.drydock-trust` bundle) are added; an excluded folder entered for a
//! re-included file below it is sent with mode 0755, as the classic daemon
//! creates it. Owners are sent as 0, like the CLI's `resetUIDAndGID`.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::{Request, Response, Status, Streaming};

use super::context::{
    open_exact, parent_prefixes, BuildContext, ContextError, EntryKind, Include, Includes,
    WalkOptions, EXTRA_FILE_MODE, IMPLIED_DIR_MODE,
};
use super::dockerignore::DockerIgnore;

/// The gRPC method BuildKit calls.
pub(crate) const DIFF_COPY_METHOD: &str = "/moby.filesync.v1.FileSync/DiffCopy";

/// Bytes per `DATA` packet (fsutil's buffer size).
const DATA_CHUNK: usize = 32 * 1024;
/// Packets waiting to be sent at most.
const PACKET_QUEUE: usize = 16;

// Go's os.FileMode type bits.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// fsutil's `types.Stat`, with byte paths.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireStat {
    #[prost(bytes = "vec", tag = "1")]
    pub path: Vec<u8>,
    /// Go `os.FileMode` bits.
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "6")]
    pub mod_time: i64,
    #[prost(bytes = "vec", tag = "7")]
    pub linkname: Vec<u8>,
    #[prost(int64, tag = "8")]
    pub devmajor: i64,
    #[prost(int64, tag = "9")]
    pub devminor: i64,
}

/// fsutil's `types.Packet`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WirePacket {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub stat: Option<WireStat>,
    #[prost(uint32, tag = "3")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

const PACKET_STAT: i32 = 0;
const PACKET_REQ: i32 = 1;
const PACKET_DATA: i32 = 2;
const PACKET_FIN: i32 = 3;
const PACKET_ERR: i32 = 4;

impl WirePacket {
    fn of(kind: i32) -> Self {
        WirePacket {
            r#type: kind,
            stat: None,
            id: 0,
            data: Vec::new(),
        }
    }
}

/// What one synced directory (`dir-name`) serves.
#[derive(Debug, Clone)]
pub(crate) enum SyncDir {
    /// A build context, walked for each request.
    Context(Arc<BuildContext>),
    /// Files held in memory (name, content, permission bits), e.g. the
    /// Dockerfile as drydock sends it.
    Memory(Vec<(String, Arc<Vec<u8>>, u32)>),
}

/// Where a file's content comes from.
#[derive(Debug, Clone)]
enum Content {
    Disk(PathBuf),
    Memory(Arc<Vec<u8>>),
}

/// One entry to send.
#[derive(Debug, Clone)]
struct Item {
    stat: WireStat,
    content: Option<Content>,
}

/// The `FileSync` service of a session: named directories.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileSync {
    dirs: Arc<HashMap<String, SyncDir>>,
}

impl FileSync {
    /// A service offering `dirs` by name (`context`, `dockerfile`).
    pub fn new(dirs: HashMap<String, SyncDir>) -> Self {
        FileSync {
            dirs: Arc::new(dirs),
        }
    }
}

/// The request's options (gRPC metadata set by BuildKit's `FSSync`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    pub dir_name: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub follow: Vec<String>,
}

impl SyncRequest {
    fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Self {
        let all = |key: &str| -> Vec<String> {
            metadata
                .get_all(key)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect()
        };
        SyncRequest {
            dir_name: all("dir-name").into_iter().next().unwrap_or_default(),
            include: all("include-patterns"),
            exclude: all("exclude-patterns"),
            follow: all("followpaths"),
        }
    }
}

/// The entries of `dir` that `request` asks for, in send order (blocking).
fn items(dir: &SyncDir, request: &SyncRequest) -> Result<Vec<Item>, ContextError> {
    match dir {
        SyncDir::Memory(files) => {
            let includes = Includes::new(Path::new("/nonexistent"), &request.include, &[]);
            let mut files: Vec<_> = files
                .iter()
                .filter(|(name, _, _)| {
                    // Follow paths name files here: no symlinks to resolve.
                    let followed = request.follow.is_empty()
                        || request
                            .follow
                            .iter()
                            .any(|f| f.trim_start_matches('/') == name);
                    let included = includes
                        .as_ref()
                        .is_none_or(|i| i.decide(name) != Include::No);
                    followed && included
                })
                .collect();
            files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Ok(files
                .into_iter()
                .map(|(name, content, mode)| Item {
                    stat: WireStat {
                        path: name.as_bytes().to_vec(),
                        mode: *mode & 0o777,
                        size: content.len() as i64,
                        ..Default::default()
                    },
                    content: Some(Content::Memory(content.clone())),
                })
                .collect())
        }
        SyncDir::Context(context) => {
            let ignore = DockerIgnore::from_patterns(&request.exclude)?;
            let includes = Includes::new(&context.dir, &request.include, &request.follow);
            let decide = includes.as_ref().map(|i| move |rel: &str| i.decide(rel));
            let include: Option<&(dyn Fn(&str) -> Include + Sync)> = match &decide {
                Some(f) => Some(f),
                None => None,
            };
            let walked = context.walk(&WalkOptions {
                ignore: &ignore,
                include,
            })?;
            let mut out: Vec<Item> = Vec::with_capacity(walked.len());
            for w in walked {
                let e = w.entry;
                // `docker build` (classic) copies files as root and chowns
                // them, which clears setuid and setgid on everything but
                // folders; BuildKit would keep them. Send what docker build
                // ends up with.
                let mode = if e.kind == EntryKind::Dir {
                    e.mode
                } else {
                    e.mode & !0o6000
                };
                let special = [
                    (0o4000, GO_MODE_SETUID),
                    (0o2000, GO_MODE_SETGID),
                    (0o1000, GO_MODE_STICKY),
                ]
                .iter()
                .filter(|(unix, _)| mode & unix != 0)
                .fold(0, |bits, (_, go)| bits | go);
                let perm = mode & 0o777;
                let kind_bits = match e.kind {
                    EntryKind::Dir => GO_MODE_DIR,
                    EntryKind::Symlink => GO_MODE_SYMLINK,
                    EntryKind::Fifo => GO_MODE_NAMED_PIPE,
                    EntryKind::CharDevice => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
                    EntryKind::BlockDevice => GO_MODE_DEVICE,
                    EntryKind::File | EntryKind::HardLink => 0,
                };
                let (devmajor, devminor) = e.device.unwrap_or_default();
                let stat = WireStat {
                    path: e.rel_path.as_os_str().as_bytes().to_vec(),
                    mode: kind_bits | special | perm,
                    uid: 0,
                    gid: 0,
                    size: e.len as i64,
                    mod_time: e.mtime * 1_000_000_000 + i64::from(e.mtime_nanos),
                    linkname: e
                        .link_target
                        .as_ref()
                        .map(|l| l.as_os_str().as_bytes().to_vec())
                        .unwrap_or_default(),
                    devmajor: devmajor as i64,
                    devminor: devminor as i64,
                };
                let content = match e.kind {
                    EntryKind::File => Some(Content::Disk(context.dir.join(&e.rel_path))),
                    _ => None,
                };
                out.push(Item { stat, content });
            }
            add_extra_files(&mut out, &context.extra_files)?;
            Ok(out)
        }
    }
}

/// Adds the extra files (replacing walked entries of the same path) with
/// their missing parents, keeping walk order.
fn add_extra_files(items: &mut Vec<Item>, extra: &[(String, Vec<u8>)]) -> Result<(), ContextError> {
    if extra.is_empty() {
        return Ok(());
    }
    for (rel, content) in extra {
        let clean = super::context::clean_rel(rel)
            .ok_or_else(|| ContextError::InvalidExtraPath { path: rel.clone() })?;
        items.retain(|i| i.stat.path != clean.as_bytes());
        for parent in parent_prefixes(&clean) {
            if !items.iter().any(|i| i.stat.path == parent.as_bytes()) {
                items.push(Item {
                    stat: WireStat {
                        path: parent.as_bytes().to_vec(),
                        mode: GO_MODE_DIR | IMPLIED_DIR_MODE,
                        ..Default::default()
                    },
                    content: None,
                });
            }
        }
        items.push(Item {
            stat: WireStat {
                path: clean.into_bytes(),
                mode: EXTRA_FILE_MODE,
                size: content.len() as i64,
                ..Default::default()
            },
            content: Some(Content::Memory(Arc::new(content.clone()))),
        });
    }
    // Depth first with sorted names is the order of component lists.
    items.sort_by(|a, b| {
        a.stat
            .path
            .split(|c| *c == b'/')
            .cmp(b.stat.path.split(|c| *c == b'/'))
    });
    Ok(())
}

type PacketSender = mpsc::Sender<Result<WirePacket, Status>>;

/// Serves one `DiffCopy` call: sends the stats, answers requests.
async fn diff_copy(
    dir: SyncDir,
    request: SyncRequest,
    mut incoming: Streaming<WirePacket>,
    tx: PacketSender,
) {
    let files: Arc<Mutex<HashMap<u32, Content>>> = Arc::default();
    let walk = {
        let request = request.clone();
        tokio::task::spawn_blocking(move || items(&dir, &request))
    };
    let items = match walk.await {
        Ok(Ok(items)) => items,
        Ok(Err(e)) => {
            tracing::debug!(dir = %request.dir_name, error = %e, "file sync walk failed");
            let _ = tx.send(Ok(error_packet(&e.to_string()))).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(Ok(error_packet(&e.to_string()))).await;
            return;
        }
    };
    tracing::debug!(dir = %request.dir_name, entries = items.len(), "file sync");
    let stats = {
        let files = files.clone();
        let tx = tx.clone();
        async move {
            for (id, item) in items.into_iter().enumerate() {
                if let Some(content) = item.content {
                    files
                        .lock()
                        .expect("file sync ids")
                        .insert(id as u32, content);
                }
                let mut packet = WirePacket::of(PACKET_STAT);
                packet.stat = Some(item.stat);
                if tx.send(Ok(packet)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(WirePacket::of(PACKET_STAT))).await;
        }
    };
    // The receiver's packets are read as they come, whatever the files
    // being sent meanwhile: h2 closes a connection whose peer leaves many
    // small frames unread ("too many small DATA frames"). At most one
    // request per file, so the queue is bounded by the entries sent.
    let (queue_tx, mut queue) = mpsc::unbounded_channel::<Received>();
    let read = async move {
        while let Some(packet) = incoming.next().await {
            let received = match packet {
                Err(status) => {
                    tracing::debug!(%status, "file sync: receiver went away");
                    Received::Gone
                }
                Ok(p) if p.r#type == PACKET_REQ => Received::Request(p.id),
                Ok(p) if p.r#type == PACKET_FIN => Received::Fin,
                Ok(p) if p.r#type == PACKET_ERR => {
                    Received::Error(String::from_utf8_lossy(&p.data).into_owned())
                }
                Ok(_) => continue,
            };
            let last = !matches!(received, Received::Request(_));
            if queue_tx.send(received).is_err() || last {
                return;
            }
        }
        let _ = queue_tx.send(Received::Gone);
    };
    let requests = async {
        while let Some(received) = queue.recv().await {
            match received {
                Received::Request(id) => {
                    let content = files.lock().expect("file sync ids").remove(&id);
                    let Some(content) = content else {
                        let _ = tx
                            .send(Ok(error_packet(&format!("invalid file id {id}"))))
                            .await;
                        return;
                    };
                    if let Err(e) = send_file(id, content, &tx).await {
                        let _ = tx.send(Ok(error_packet(&e))).await;
                        return;
                    }
                }
                Received::Fin => {
                    let _ = tx.send(Ok(WirePacket::of(PACKET_FIN))).await;
                    return;
                }
                Received::Error(message) => {
                    tracing::warn!("build context transfer failed on the engine's side: {message}");
                    return;
                }
                Received::Gone => return,
            }
        }
    };
    // The requests end the exchange (FIN); stats may still be queued then
    // only if the receiver broke off.
    tokio::join!(stats, read, requests);
}

/// What the receiver sent.
enum Received {
    Request(u32),
    Fin,
    Error(String),
    Gone,
}

fn error_packet(message: &str) -> WirePacket {
    let mut packet = WirePacket::of(PACKET_ERR);
    packet.data = message.as_bytes().to_vec();
    packet
}

/// Sends one file's content as `DATA` packets and the closing empty one.
async fn send_file(id: u32, content: Content, tx: &PacketSender) -> Result<(), String> {
    match content {
        Content::Memory(bytes) => {
            for chunk in bytes.chunks(DATA_CHUNK) {
                let mut packet = WirePacket::of(PACKET_DATA);
                packet.id = id;
                packet.data = chunk.to_vec();
                tx.send(Ok(packet)).await.map_err(|e| e.to_string())?;
            }
        }
        Content::Disk(path) => {
            // Read on a blocking thread, a chunk at a time; the bounded
            // channel keeps memory small whatever the file size.
            let (chunks_tx, mut chunks_rx) = mpsc::channel::<Result<Vec<u8>, String>>(4);
            let reader = tokio::task::spawn_blocking(move || {
                let (mut reader, _) = match open_exact(&path) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                };
                let mut buf = vec![0u8; DATA_CHUNK];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if chunks_tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ =
                                chunks_tx.blocking_send(Err(format!("{}: {e}", path.display())));
                            return;
                        }
                    }
                }
            });
            while let Some(chunk) = chunks_rx.recv().await {
                let mut packet = WirePacket::of(PACKET_DATA);
                packet.id = id;
                packet.data = chunk?;
                tx.send(Ok(packet)).await.map_err(|e| e.to_string())?;
            }
            reader.await.map_err(|e| e.to_string())?;
        }
    }
    let mut end = WirePacket::of(PACKET_DATA);
    end.id = id;
    tx.send(Ok(end)).await.map_err(|e| e.to_string())
}

/// The streaming half of the `DiffCopy` method for tonic.
struct DiffCopy(FileSync);

impl tonic::server::StreamingService<WirePacket> for DiffCopy {
    type Response = WirePacket;
    type ResponseStream = ReceiverStream<Result<WirePacket, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WirePacket>>) -> Self::Future {
        let dirs = self.0.dirs.clone();
        Box::pin(async move {
            let sync = SyncRequest::from_metadata(request.metadata());
            let Some(dir) = dirs.get(&sync.dir_name).cloned() else {
                return Err(Status::not_found(format!(
                    "no access allowed to dir {:?}",
                    sync.dir_name
                )));
            };
            let (tx, rx) = mpsc::channel(PACKET_QUEUE);
            tokio::spawn(diff_copy(dir, sync, request.into_inner(), tx));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

impl<B> Service<http::Request<B>> for FileSync
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        if req.uri().path() == DIFF_COPY_METHOD {
            Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<WirePacket, WirePacket>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.streaming(DiffCopy(this), req).await)
            })
        } else {
            // TarStream and anything else: not offered (BuildKit only calls
            // what the session lists).
            Box::pin(
                async move { Ok(Status::unimplemented("only DiffCopy is offered").into_http()) },
            )
        }
    }
}

impl tonic::server::NamedService for FileSync {
    const NAME: &'static str = "moby.filesync.v1.FileSync";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// (path, Go mode, size, link name) of what would be sent.
    type Row = (String, u32, i64, String);

    fn rows(dir: &SyncDir, request: &SyncRequest) -> Vec<Row> {
        items(dir, request)
            .unwrap()
            .into_iter()
            .map(|i| {
                (
                    String::from_utf8_lossy(&i.stat.path).into_owned(),
                    i.stat.mode,
                    i.stat.size,
                    String::from_utf8_lossy(&i.stat.linkname).into_owned(),
                )
            })
            .collect()
    }

    fn write(root: &Path, rel: &str, content: &str, mode: u32) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn context() -> (tempfile::TempDir, BuildContext) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "Dockerfile", "FROM scratch\n", 0o644);
        write(
            root,
            ".dockerignore",
            "Dockerfile\n.dockerignore\nvendor\n!vendor/keep\n",
            0o644,
        );
        write(root, "app.sh", "#!/bin/sh\n", 0o4755);
        write(root, "vendor/keep", "k", 0o600);
        write(root, "vendor/drop", "d", 0o644);
        write(root, ".drydock/out.txt", "never", 0o644);
        fs::hard_link(root.join("app.sh"), root.join("b-link")).unwrap();
        symlink("app.sh", root.join("s-link")).unwrap();
        fs::set_permissions(root.join("vendor"), fs::Permissions::from_mode(0o700)).unwrap();
        let mut ctx = BuildContext::new(root, "Dockerfile");
        ctx.never_send.push(root.join(".drydock"));
        ctx.extra_files
            .push((".drydock-trust/ca.crt".to_string(), b"PEM".to_vec()));
        (tmp, ctx)
    }

    fn excludes() -> Vec<String> {
        ["Dockerfile", ".dockerignore", "vendor", "!vendor/keep"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_context_is_sent_in_walk_order_with_go_modes() {
        let (_tmp, ctx) = context();
        let dir = SyncDir::Context(Arc::new(ctx));
        let request = SyncRequest {
            dir_name: "context".into(),
            exclude: excludes(),
            ..Default::default()
        };
        let file = |p: &str, mode: u32, size: i64| (p.to_string(), mode, size, String::new());
        let want: Vec<Row> = vec![
            (
                ".drydock-trust".into(),
                GO_MODE_DIR | 0o755,
                0,
                String::new(),
            ),
            file(".drydock-trust/ca.crt", 0o644, 3),
            // Setuid cleared, as docker build's copy clears it.
            file("app.sh", 0o755, 10),
            // A hard link: the first name, no content of its own.
            ("b-link".into(), 0o755, 0, "app.sh".into()),
            ("s-link".into(), GO_MODE_SYMLINK | 0o777, 0, "app.sh".into()),
            // The excluded folder entered for `!vendor/keep`: 0755, as the
            // classic daemon creates it.
            ("vendor".into(), GO_MODE_DIR | 0o755, 0, String::new()),
            file("vendor/keep", 0o600, 1),
        ];
        assert_eq!(rows(&dir, &request), want);
    }

    #[test]
    fn follow_and_include_paths_narrow_what_is_sent() {
        let (tmp, ctx) = context();
        write(tmp.path(), "src/a/one", "1", 0o644);
        write(tmp.path(), "src/b/two", "2", 0o644);
        symlink("src/b", tmp.path().join("lnk")).unwrap();
        let dir = SyncDir::Context(Arc::new(ctx));
        let paths = |request: SyncRequest| -> Vec<String> {
            rows(&dir, &request)
                .into_iter()
                .map(|r| r.0)
                .filter(|p| !p.starts_with(".drydock-trust"))
                .collect()
        };
        // BuildKit's request for .dockerignore alone.
        let ignore_only = SyncRequest {
            follow: vec![".dockerignore".into()],
            ..Default::default()
        };
        assert_eq!(paths(ignore_only), [".dockerignore"]);
        // `COPY lnk/two /x` follows the symlink to its target.
        let followed = SyncRequest {
            follow: vec!["lnk/two".into()],
            exclude: excludes(),
            ..Default::default()
        };
        assert_eq!(paths(followed), ["lnk", "src", "src/b", "src/b/two"]);
        // Include patterns with a glob: a partial match includes the
        // folder (fsutil sends `src/b` too, empty: `src/*` matches it).
        let globbed = SyncRequest {
            include: vec!["src/*/one".into()],
            ..Default::default()
        };
        assert_eq!(paths(globbed), ["src", "src/a", "src/a/one", "src/b"]);
        // The root among the follow paths means everything.
        let all = SyncRequest {
            follow: vec![".".into(), "src".into()],
            exclude: excludes(),
            ..Default::default()
        };
        assert!(paths(all).contains(&"vendor/keep".to_string()));
    }

    #[test]
    fn memory_dirs_serve_the_files_asked_for() {
        let dir = SyncDir::Memory(vec![(
            "Dockerfile".into(),
            Arc::new(b"FROM scratch\n".to_vec()),
            0o644,
        )]);
        let asked = SyncRequest {
            follow: vec![
                "Dockerfile".into(),
                "Dockerfile.dockerignore".into(),
                "dockerfile".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            rows(&dir, &asked),
            [("Dockerfile".to_string(), 0o644, 13, String::new())]
        );
        let other = SyncRequest {
            follow: vec!["Other".into()],
            ..Default::default()
        };
        assert!(rows(&dir, &other).is_empty());
    }

    #[test]
    fn bad_exclude_patterns_are_errors() {
        let (_tmp, ctx) = context();
        let request = SyncRequest {
            exclude: vec!["[oops".into()],
            ..Default::default()
        };
        assert!(matches!(
            items(&SyncDir::Context(Arc::new(ctx)), &request),
            Err(ContextError::Pattern(_))
        ));
    }

    #[test]
    fn packets_round_trip_with_byte_paths() {
        use prost::Message;
        let packet = WirePacket {
            r#type: PACKET_STAT,
            stat: Some(WireStat {
                path: b"caf\xe9.txt".to_vec(),
                mode: 0o644,
                ..Default::default()
            }),
            id: 0,
            data: Vec::new(),
        };
        let bytes = packet.encode_to_vec();
        assert_eq!(WirePacket::decode(bytes.as_slice()).unwrap(), packet);
        // The same wire format as bollard's `fsutil.types.Packet`.
        let theirs = bollard_buildkit_proto::fsutil::types::Packet {
            r#type: 2,
            stat: None,
            id: 7,
            data: b"chunk".to_vec(),
        };
        let decoded = WirePacket::decode(theirs.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            (decoded.r#type, decoded.id, decoded.data),
            (PACKET_DATA, 7, b"chunk".to_vec())
        );
    }
}

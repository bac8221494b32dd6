//! The build context: the directory walk that honours `.dockerignore`, the
//! tar the classic builder receives (streamed with bounded memory), and a
//! content digest of exactly what is sent.
//!
//! The tar follows what the Docker CLI sends (`archive.TarWithOptions`):
//! entries in walk order (depth first, names sorted bytewise in each
//! directory), paths relative to the context root with `/` separators and no
//! root entry, directories as entries, symlinks as symlinks (never
//! followed), uid/gid 0 with empty user and group names, permission bits
//! (including setuid/setgid/sticky) and mtimes (whole seconds) preserved.
//! Excluded directories that the walker still enters for an exception are
//! not themselves sent, as with the CLI; the daemon creates them.
//!
//! Deviations from the CLI: sockets, FIFOs and device nodes are skipped
//! (logged), hard links are sent as separate regular files, file names must
//! be UTF-8 (otherwise [`ContextError::NonUtf8Path`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::dockerignore::{DockerIgnore, ParentMatches, PatternError, DOCKERIGNORE_FILE};

/// Size of the chunks [`BuildContext::stream`] yields.
pub const STREAM_CHUNK_SIZE: usize = 64 * 1024;
/// How many chunks may wait in the channel between the tar writer and the
/// consumer: memory held by a stream is about this times the chunk size.
pub const STREAM_CHANNEL_CHUNKS: usize = 8;

/// Mode of files from [`BuildContext::extra_files`].
const EXTRA_FILE_MODE: u32 = 0o644;
/// Mode of directories implied by extra files that the walk did not send.
const EXTRA_DIR_MODE: u32 = 0o755;

/// Building the context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Reading a file or directory of the context failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `.dockerignore` is unreadable or holds an invalid pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The Dockerfile does not exist.
    #[error("Dockerfile not found: {}", path.display())]
    DockerfileMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The Dockerfile path is absolute outside the context or leaves it.
    #[error("Dockerfile path {path:?} is not inside the context directory")]
    DockerfileOutsideContext {
        /// The path as given.
        path: String,
    },
    /// An extra file's path is empty, absolute or contains `..`.
    #[error("extra file path {path:?} must be relative and stay inside the context")]
    InvalidExtraPath {
        /// The path as given.
        path: String,
    },
    /// A file name in the context is not valid UTF-8.
    #[error("file name is not valid UTF-8: {}", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
    /// Writing the tar failed (for a stream: the consumer went away).
    #[error("writing the context tar: {0}")]
    Write(#[source] io::Error),
}

impl ContextError {
    fn io(path: &Path, source: io::Error) -> Self {
        ContextError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<ContextError> for io::Error {
    fn from(err: ContextError) -> io::Error {
        let kind = match &err {
            ContextError::Io { source, .. } | ContextError::Write(source) => source.kind(),
            ContextError::DockerfileMissing { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

/// What a context entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (sent as a link, never followed).
    Symlink,
}

impl EntryKind {
    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'F',
            EntryKind::Dir => b'D',
            EntryKind::Symlink => b'L',
        }
    }
}

/// One walked entry that will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context root, `/`-separated.
    pub rel_path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Size in bytes when walked (0 for directories and symlinks).
    pub len: u64,
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch (sent in the tar, not part
    /// of the digest).
    pub mtime: i64,
    /// The link target, for symlinks.
    pub link_target: Option<PathBuf>,
}

/// A directory to send as a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// The context root.
    pub dir: PathBuf,
    /// The Dockerfile, relative to `dir` (always sent, even if excluded).
    pub dockerfile: String,
    /// Files injected into the context (path relative to the root, content),
    /// e.g. `.drydock-trust/ca.crt`. They are sent after the walked entries
    /// (mode 0644, mtime 0) and replace walked files with the same path;
    /// missing parent directories are sent as directories (mode 0755).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

impl BuildContext {
    /// A context for `dir` with the Dockerfile at `dockerfile` (relative to
    /// `dir`) and no extra files.
    pub fn new(dir: impl Into<PathBuf>, dockerfile: impl Into<String>) -> Self {
        BuildContext {
            dir: dir.into(),
            dockerfile: dockerfile.into(),
            extra_files: Vec::new(),
        }
    }

    /// The walked entries that will be sent, in tar order: `.dockerignore`
    /// honoured, the Dockerfile and `.dockerignore` always included, entries
    /// replaced by an extra file left out (extra files are not listed).
    pub fn files(&self) -> Result<Vec<ContextEntry>, ContextError> {
        let dockerfile = self.dockerfile_rel()?;
        let df_path = self.dir.join(&dockerfile);
        match fs::symlink_metadata(&df_path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContextError::DockerfileMissing { path: df_path })
            }
            Err(e) => return Err(ContextError::io(&df_path, e)),
        }
        let extras = self.extra_paths()?;
        let mut ignore = DockerIgnore::load(&self.dir)?;
        ignore.keep(DOCKERIGNORE_FILE);
        ignore.keep(&dockerfile);
        let mut out = Vec::new();
        walk(&self.dir, "", None, &ignore, &mut out)?;
        out.retain(|e| !extras.contains(e.rel_path.as_str()));
        Ok(out)
    }

    /// Hex SHA-256 of everything the build depends on: for each sent entry
    /// its path, kind, mode, symlink target and file content (streamed, not
    /// held in memory); the extra files; the Dockerfile path; the build args
    /// and target. Mtimes, owners and excluded files do not count, so the
    /// digest is stable across checkouts and machines.
    pub fn digest(
        &self,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
    ) -> Result<String, ContextError> {
        let entries = self.files()?;
        let mut h = Sha256::new();
        field(&mut h, b"drydock-build-context-v1");
        field(&mut h, self.dockerfile_rel()?.as_bytes());
        h.update((entries.len() as u64).to_le_bytes());
        let mut buf = vec![0u8; STREAM_CHUNK_SIZE];
        for entry in &entries {
            h.update([entry.kind.tag()]);
            field(&mut h, entry.rel_path.as_bytes());
            h.update(entry.mode.to_le_bytes());
            match entry.kind {
                EntryKind::Dir => {}
                EntryKind::Symlink => {
                    let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
                    field(&mut h, target.as_os_str().as_encoded_bytes());
                }
                EntryKind::File => {
                    let path = self.dir.join(&entry.rel_path);
                    let (mut reader, _) = open_exact(&path)?;
                    let mut content = Sha256::new();
                    let mut len = 0u64;
                    loop {
                        let n = reader
                            .read(&mut buf)
                            .map_err(|e| ContextError::io(&path, e))?;
                        if n == 0 {
                            break;
                        }
                        content.update(&buf[..n]);
                        len += n as u64;
                    }
                    h.update(len.to_le_bytes());
                    h.update(content.finalize());
                }
            }
        }
        h.update((self.extra_files.len() as u64).to_le_bytes());
        for (path, content) in &self.extra_files {
            field(&mut h, path.as_bytes());
            field(&mut h, content);
        }
        h.update((build_args.len() as u64).to_le_bytes());
        for (key, value) in build_args {
            field(&mut h, key.as_bytes());
            field(&mut h, value.as_bytes());
        }
        match target {
            None => h.update([0]),
            Some(t) => {
                h.update([1]);
                field(&mut h, t.as_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Writes the context tar to `w` (blocking): the walked entries of
    /// [`files`](Self::files), then the extra files. File contents are
    /// copied in small buffers, so memory does not grow with the context.
    pub fn write_tar<W: Write>(&self, w: W) -> Result<(), ContextError> {
        let entries = self.files()?;
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for entry in &entries {
            let path = self.dir.join(&entry.rel_path);
            let mut header = base_header(entry.mode, entry.mtime);
            match entry.kind {
                EntryKind::Dir => {
                    dirs.insert(&entry.rel_path);
                    header.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut header, &entry.rel_path, io::empty())
                        .map_err(ContextError::Write)?;
                }
                EntryKind::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
                    tar.append_link(&mut header, &entry.rel_path, target)
                        .map_err(ContextError::Write)?;
                }
                EntryKind::File => {
                    // Size, mode and mtime from the opened file, so the
                    // header matches the bytes we read.
                    let (reader, meta) = open_exact(&path)?;
                    let mut header = base_header(meta.mode() & 0o7777, meta.mtime());
                    header.set_size(meta.len());
                    let mut reader = ErrorSlot::new(reader);
                    let result = tar.append_data(&mut header, &entry.rel_path, &mut reader);
                    if let Some(e) = reader.error.take() {
                        return Err(ContextError::io(&path, e));
                    }
                    result.map_err(ContextError::Write)?;
                }
            }
        }
        let mut implied: BTreeSet<String> = BTreeSet::new();
        for (rel, content) in &self.extra_files {
            let rel = clean_rel(rel)
                .ok_or_else(|| ContextError::InvalidExtraPath { path: rel.clone() })?;
            let mut parent = String::new();
            for part in rel
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |p| p.1)
            {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                if !dirs.contains(parent.as_str()) && implied.insert(parent.clone()) {
                    let mut header = base_header(EXTRA_DIR_MODE, 0);
                    header.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut header, &parent, io::empty())
                        .map_err(ContextError::Write)?;
                }
            }
            let mut header = base_header(EXTRA_FILE_MODE, 0);
            header.set_size(content.len() as u64);
            tar.append_data(&mut header, &rel, content.as_slice())
                .map_err(ContextError::Write)?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(ContextError::Write)
    }

    /// Streams the context tar in chunks of [`STREAM_CHUNK_SIZE`], for a
    /// request body (`body_try_stream`).
    ///
    /// A blocking task ([`tokio::task::spawn_blocking`], started on first
    /// poll) writes the tar into a channel of [`STREAM_CHANNEL_CHUNKS`]
    /// chunks, so memory stays bounded whatever the context size. Any error
    /// (unreadable file, invalid pattern, missing Dockerfile) arrives as the
    /// last item, an `Err`. Dropping the stream stops the writer at its next
    /// chunk.
    pub fn stream(&self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        self.stream_inner(None)
    }

    /// [`stream`](Self::stream), reporting on `done` how the writer ended.
    fn stream_inner(
        &self,
        done: Option<std::sync::mpsc::Sender<Result<(), String>>>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let ctx = self.clone();
        futures::stream::once(async move {
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(STREAM_CHANNEL_CHUNKS);
            tokio::task::spawn_blocking(move || {
                let mut writer = ChannelWriter {
                    tx: tx.clone(),
                    buf: BytesMut::with_capacity(STREAM_CHUNK_SIZE),
                };
                let outcome = match ctx.write_tar(&mut writer) {
                    Ok(()) => Ok(()),
                    // The consumer dropped the stream: nobody to tell.
                    Err(ContextError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                        Err(e.to_string())
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "build context stream failed");
                        let msg = err.to_string();
                        let _ = tx.blocking_send(Err(err.into()));
                        Err(msg)
                    }
                };
                if let Some(done) = done {
                    let _ = done.send(outcome);
                }
            });
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
        })
        .flatten()
    }

    /// The Dockerfile path, cleaned and relative to the root.
    fn dockerfile_rel(&self) -> Result<String, ContextError> {
        let outside = || ContextError::DockerfileOutsideContext {
            path: self.dockerfile.clone(),
        };
        let path = Path::new(&self.dockerfile);
        let rel = if path.is_absolute() {
            path.strip_prefix(&self.dir).map_err(|_| outside())?
        } else {
            path
        };
        let rel = rel.to_str().ok_or_else(outside)?;
        clean_rel(rel).ok_or_else(outside)
    }

    /// The cleaned paths of the extra files (validated).
    fn extra_paths(&self) -> Result<BTreeSet<String>, ContextError> {
        self.extra_files
            .iter()
            .map(|(p, _)| {
                clean_rel(p).ok_or_else(|| ContextError::InvalidExtraPath { path: p.clone() })
            })
            .collect()
    }
}

/// `path` as a clean `/`-separated relative path, or `None` if it is empty,
/// absolute or leaves the root.
fn clean_rel(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Feeds a length-prefixed field to the hasher, so fields cannot run into
/// each other.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A tar header with the CLI's ownership: uid/gid 0, no user or group names.
fn base_header(mode: u32, mtime: i64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_mtime(mtime.max(0) as u64);
    header.set_uid(0);
    header.set_gid(0);
    // Names are empty in a fresh header; these cannot fail.
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    header.set_size(0);
    header
}

/// Walks `dir` (whose path relative to the root is `prefix`), appending the
/// entries to send, depth first with names sorted bytewise (moby's walk).
fn walk(
    dir: &Path,
    prefix: &str,
    parent: Option<&ParentMatches>,
    ignore: &DockerIgnore,
    out: &mut Vec<ContextEntry>,
) -> Result<(), ContextError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ContextError::io(dir, e))? {
        names.push(entry.map_err(|e| ContextError::io(dir, e))?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ContextError::NonUtf8Path { path });
        };
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(|e| ContextError::io(&path, e))?;
        let (excluded, info) = ignore.matches(&rel, parent);
        let ft = meta.file_type();
        if excluded {
            if ft.is_dir() && ignore.descend_into_excluded(&rel) {
                walk(&path, &rel, Some(&info), ignore, out)?;
            }
            continue;
        }
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else {
            tracing::warn!(path = %path.display(), "skipping special file in build context");
            continue;
        };
        let link_target = if kind == EntryKind::Symlink {
            Some(fs::read_link(&path).map_err(|e| ContextError::io(&path, e))?)
        } else {
            None
        };
        out.push(ContextEntry {
            rel_path: rel.clone(),
            kind,
            len: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mode: meta.permissions().mode() & 0o7777,
            mtime: meta.mtime(),
            link_target,
        });
        if kind == EntryKind::Dir {
            walk(&path, &rel, Some(&info), ignore, out)?;
        }
    }
    Ok(())
}

/// Opens a file for sending: a reader yielding exactly its length at open
/// time (an error if it shrinks meanwhile), and its metadata.
fn open_exact(path: &Path) -> Result<(ExactReader<File>, fs::Metadata), ContextError> {
    let file = File::open(path).map_err(|e| ContextError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ContextError::io(path, e))?;
    let reader = ExactReader {
        inner: file,
        remaining: meta.len(),
    };
    Ok((reader, meta))
}

/// Reads exactly `remaining` bytes: stops there, fails on an early end.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(self.remaining.try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while the context was being read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Remembers a read error, to tell a source file's errors from the tar
/// writer's.
struct ErrorSlot<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R> ErrorSlot<R> {
    fn new(inner: R) -> Self {
        ErrorSlot { inner, error: None }
    }
}

impl<R: Read> Read for ErrorSlot<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.error = Some(e);
            copy
        })
    }
}

/// A blocking writer that sends full chunks down a bounded channel.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(STREAM_CHUNK_SIZE);
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "build context stream dropped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(STREAM_CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= STREAM_CHUNK_SIZE {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const IGNORE: &str = "\
# comment: build outputs and secrets
*.log
build
secret
!secret/keep.txt
.dockerignore
";

    fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A context exercising every rule; the Dockerfile is in an excluded
    /// directory and `.dockerignore` excludes itself.
    fn fixture() -> (tempfile::TempDir, BuildContext) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, ".dockerignore", IGNORE.as_bytes(), 0o644);
        write(root, "build/Dockerfile", b"FROM scratch\n", 0o644);
        write(root, "build/out.bin", b"excluded", 0o644);
        write(root, "app.log", b"excluded: rooted *.log", 0o644);
        write(root, "src/app.log", b"sent: *.log is rooted", 0o644);
        write(root, "src/main.rs", b"fn main() {}\n", 0o644);
        write(root, "src/run.sh", b"#!/bin/sh\n", 0o755);
        write(root, "src/deep/nested.txt", b"nested", 0o600);
        write(root, "secret/key.pem", b"excluded", 0o600);
        write(root, "secret/keep.txt", b"re-included", 0o644);
        fs::set_permissions(root.join("src"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("src", root.join("link")).unwrap();
        symlink("main.rs", root.join("src/file-link")).unwrap();
        let mut ctx = BuildContext::new(root, "build/Dockerfile");
        ctx.extra_files
            .push((".drydock-trust/ca.crt".into(), b"CA".to_vec()));
        (tmp, ctx)
    }

    /// (path, type, mode, link target, content) of each tar entry, in order.
    type TarRow = (String, tar::EntryType, u32, Option<String>, Vec<u8>);

    fn read_tar(bytes: &[u8]) -> Vec<TarRow> {
        let mut archive = tar::Archive::new(bytes);
        let mut rows = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username().unwrap(), Some(""));
            assert_eq!(h.groupname().unwrap(), Some(""));
            let path = entry.path().unwrap().to_str().unwrap().to_string();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_str().unwrap().to_string());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            rows.push((path, h.entry_type(), h.mode().unwrap(), link, content));
        }
        rows
    }

    fn tar_bytes(ctx: &BuildContext) -> Vec<u8> {
        let mut out = Vec::new();
        ctx.write_tar(&mut out).unwrap();
        out
    }

    #[test]
    fn tar_has_exactly_the_sent_entries() {
        use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
        let (_tmp, ctx) = fixture();
        let rows = read_tar(&tar_bytes(&ctx));
        let file = |p: &str, mode, c: &[u8]| (p.to_string(), F, mode, None, c.to_vec());
        let dir = |p: &str, mode| (p.to_string(), D, mode, None, Vec::new());
        let link = |p: &str, t: &str| (p.to_string(), L, 0o777, Some(t.to_string()), Vec::new());
        let want: Vec<TarRow> = vec![
            // `.dockerignore` and the Dockerfile are sent although excluded;
            // the excluded `build` directory itself is not.
            file(".dockerignore", 0o644, IGNORE.as_bytes()),
            file("build/Dockerfile", 0o644, b"FROM scratch\n"),
            // A symlink to a directory stays a symlink (no `link/...`).
            link("link", "src"),
            // Re-included below an excluded directory.
            file("secret/keep.txt", 0o644, b"re-included"),
            dir("src", 0o750),
            file("src/app.log", 0o644, b"sent: *.log is rooted"),
            dir("src/deep", 0o755),
            file("src/deep/nested.txt", 0o600, b"nested"),
            link("src/file-link", "main.rs"),
            file("src/main.rs", 0o644, b"fn main() {}\n"),
            file("src/run.sh", 0o755, b"#!/bin/sh\n"),
            // Extra files come last, with their implied parent directory.
            dir(".drydock-trust", 0o755),
            file(".drydock-trust/ca.crt", 0o644, b"CA"),
        ];
        let src_deep_mode = fs::metadata(ctx.dir.join("src/deep"))
            .unwrap()
            .permissions()
            .mode();
        let want: Vec<TarRow> = want
            .into_iter()
            .map(|mut row| {
                if row.0 == "src/deep" {
                    row.2 = src_deep_mode & 0o7777; // depends on the umask
                }
                row
            })
            .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn files_lists_walked_entries_and_mtime_is_kept() {
        let (_tmp, ctx) = fixture();
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        File::options()
            .write(true)
            .open(ctx.dir.join("src/main.rs"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let files = ctx.files().unwrap();
        let main = files.iter().find(|e| e.rel_path == "src/main.rs").unwrap();
        assert_eq!(
            (main.kind, main.len, main.mtime),
            (EntryKind::File, 13, 1_600_000_000)
        );
        assert!(files
            .iter()
            .all(|e| !e.rel_path.starts_with(".drydock-trust")));
        let bytes = tar_bytes(&ctx);
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap() == Path::new("src/main.rs"))
            .unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1_600_000_000);
    }

    #[test]
    fn walker_agrees_with_is_excluded() {
        let (_tmp, ctx) = fixture();
        let sent: BTreeSet<String> = ctx
            .files()
            .unwrap()
            .into_iter()
            .map(|e| e.rel_path)
            .collect();
        let mut ignore = DockerIgnore::load(&ctx.dir).unwrap();
        ignore.keep(DOCKERIGNORE_FILE);
        ignore.keep(&ctx.dockerfile);
        let all = [
            ".dockerignore",
            "app.log",
            "build",
            "build/Dockerfile",
            "build/out.bin",
            "link",
            "secret",
            "secret/keep.txt",
            "secret/key.pem",
            "src",
            "src/app.log",
            "src/deep",
            "src/deep/nested.txt",
            "src/file-link",
            "src/main.rs",
            "src/run.sh",
        ];
        for path in all {
            assert_eq!(sent.contains(path), !ignore.is_excluded(path), "{path}");
        }
    }

    #[test]
    fn exact_reader_stops_at_length_and_fails_short() {
        // (content, declared length, expected)
        type Want = Result<&'static [u8], io::ErrorKind>;
        let cases: [(&[u8], u64, Want); 3] = [
            (b"abc", 3, Ok(b"abc")),
            (b"abcdef", 3, Ok(b"abc")),
            (b"ab", 3, Err(io::ErrorKind::UnexpectedEof)),
        ];
        for (content, remaining, want) in cases {
            let mut reader = ExactReader {
                inner: content,
                remaining,
            };
            let mut out = Vec::new();
            let got = reader
                .read_to_end(&mut out)
                .map(|_| out.as_slice())
                .map_err(|e| e.kind());
            assert_eq!(got, want, "{content:?}");
        }
    }

    #[test]
    fn extra_files_replace_walked_files() {
        let (_tmp, mut ctx) = fixture();
        ctx.extra_files
            .push(("./src/main.rs".into(), b"injected".to_vec()));
        assert!(ctx
            .files()
            .unwrap()
            .iter()
            .all(|e| e.rel_path != "src/main.rs"));
        let rows = read_tar(&tar_bytes(&ctx));
        let mains: Vec<_> = rows.iter().filter(|r| r.0 == "src/main.rs").collect();
        assert_eq!(mains.len(), 1);
        assert_eq!(mains[0].4, b"injected");
        assert_eq!(rows.last().unwrap().0, "src/main.rs");
        // `src` was walked, so no implied directory is added for it.
        assert_eq!(rows.iter().filter(|r| r.0 == "src").count(), 1);
    }

    #[test]
    fn errors() {
        let (_tmp, ctx) = fixture();
        type Check = fn(&ContextError) -> bool;
        let cases: Vec<(&str, BuildContext, Check)> = vec![
            (
                "missing Dockerfile",
                BuildContext::new(&ctx.dir, "nope/Dockerfile"),
                |e| matches!(e, ContextError::DockerfileMissing { .. }),
            ),
            (
                "Dockerfile outside",
                BuildContext::new(&ctx.dir, "../Dockerfile"),
                |e| matches!(e, ContextError::DockerfileOutsideContext { .. }),
            ),
            (
                "bad extra path",
                BuildContext {
                    extra_files: vec![("../x".into(), vec![])],
                    ..ctx.clone()
                },
                |e| matches!(e, ContextError::InvalidExtraPath { .. }),
            ),
        ];
        for (name, ctx, check) in cases {
            let err = ctx.files().unwrap_err();
            assert!(check(&err), "{name}: {err:?}");
            let err = ctx.write_tar(io::sink()).unwrap_err();
            assert!(check(&err), "{name}: {err:?}");
        }
        fs::write(ctx.dir.join(".dockerignore"), "ok\n[oops\n").unwrap();
        let err = ctx.files().unwrap_err();
        assert!(matches!(err, ContextError::Pattern(_)), "{err:?}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn digest_tracks_sent_content_only() {
        let args = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let digest = |ctx: &BuildContext| ctx.digest(&args, Some("final")).unwrap();
        let (_tmp, base_ctx) = fixture();
        let base = digest(&base_ctx);
        assert_eq!(base.len(), 64);
        assert_eq!(digest(&base_ctx), base, "stable on the same tree");

        type Mutation = fn(&mut BuildContext);
        let cases: &[(&str, Mutation, bool)] = &[
            ("a fresh copy elsewhere", |_| {}, false),
            (
                "mtime of a sent file",
                |c| {
                    let f = File::options()
                        .write(true)
                        .open(c.dir.join("src/main.rs"))
                        .unwrap();
                    f.set_modified(std::time::UNIX_EPOCH).unwrap();
                },
                false,
            ),
            (
                "excluded file",
                |c| fs::write(c.dir.join("app.log"), "x").unwrap(),
                false,
            ),
            (
                "excluded dir",
                |c| fs::write(c.dir.join("build/new"), "x").unwrap(),
                false,
            ),
            (
                "sent file",
                |c| fs::write(c.dir.join("src/main.rs"), "fn x(){}").unwrap(),
                true,
            ),
            (
                "re-included file",
                |c| fs::write(c.dir.join("secret/keep.txt"), "y").unwrap(),
                true,
            ),
            (
                "Dockerfile",
                |c| fs::write(c.dir.join("build/Dockerfile"), "FROM x").unwrap(),
                true,
            ),
            (
                "new sent file",
                |c| fs::write(c.dir.join("src/new"), "").unwrap(),
                true,
            ),
            (
                "mode",
                |c| {
                    let p = c.dir.join("src/run.sh");
                    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap()
                },
                true,
            ),
            (
                "symlink target",
                |c| {
                    fs::remove_file(c.dir.join("link")).unwrap();
                    symlink("secret", c.dir.join("link")).unwrap();
                },
                true,
            ),
            (
                "extra file",
                |c| c.extra_files[0].1 = b"other CA".to_vec(),
                true,
            ),
        ];
        for (name, mutate, changes) in cases {
            let (_tmp, mut ctx) = fixture();
            mutate(&mut ctx);
            assert_eq!(digest(&ctx) != base, *changes, "{name}");
        }

        let other_args = BTreeMap::from([("A".to_string(), "2".to_string())]);
        assert_ne!(base_ctx.digest(&other_args, Some("final")).unwrap(), base);
        assert_ne!(
            base_ctx.digest(&BTreeMap::new(), Some("final")).unwrap(),
            base
        );
        assert_ne!(base_ctx.digest(&args, Some("test")).unwrap(), base);
        assert_ne!(base_ctx.digest(&args, None).unwrap(), base);
    }

    /// A writer that counts and hashes what it is given.
    #[derive(Default)]
    struct Sink {
        len: u64,
        hash: Sha256,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.len += buf.len() as u64;
            self.hash.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn large_context(size: u64) -> (tempfile::TempDir, BuildContext) {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "Dockerfile",
            b"FROM scratch\nCOPY big /\n",
            0o644,
        );
        // Sparse: no disk space or write time, but read back in full.
        File::create(tmp.path().join("big"))
            .unwrap()
            .set_len(size)
            .unwrap();
        let ctx = BuildContext::new(tmp.path(), "Dockerfile");
        (tmp, ctx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_delivers_the_tar_in_many_chunks() {
        const SIZE: u64 = 64 << 20;
        let (_tmp, ctx) = large_context(SIZE);
        let mut expected = Sink::default();
        ctx.write_tar(&mut expected).unwrap();
        // Two 512-byte headers, the Dockerfile's data block, the end marker.
        assert_eq!(expected.len, SIZE + 512 + 512 + 512 + 1024);

        let mut stream = Box::pin(ctx.stream());
        let mut got = Sink::default();
        let mut chunks = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= STREAM_CHUNK_SIZE);
            got.write_all(&chunk).unwrap();
            chunks += 1;
        }
        assert_eq!(got.len, expected.len);
        assert_eq!(got.hash.finalize(), expected.hash.finalize());
        assert!(
            chunks >= (SIZE as usize) / STREAM_CHUNK_SIZE,
            "{chunks} chunks"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_stream_stops_the_writer() {
        let (_tmp, ctx) = large_context(256 << 20);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut stream = Box::pin(ctx.stream_inner(Some(done_tx)));
        stream.next().await.unwrap().unwrap();
        drop(stream);
        let outcome = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("the writer should end once the stream is dropped");
        let err = outcome.unwrap_err();
        assert!(err.contains("dropped"), "{err}");
    }

    #[tokio::test]
    async fn stream_errors_arrive_as_items() {
        let (_tmp, ctx) = fixture();
        fs::write(ctx.dir.join(".dockerignore"), "[oops\n").unwrap();
        let items: Vec<_> = ctx.stream().collect().await;
        assert_eq!(items.len(), 1);
        let err = items.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("line 1"), "{err}");

        let missing = BuildContext::new(&ctx.dir, "Nope");
        let items: Vec<_> = missing.stream().collect().await;
        assert_eq!(
            items.last().unwrap().as_ref().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    /// Peak RSS while streaming a 1 GiB context: run alone with
    /// `cargo test -p drydock-core --lib -- --ignored --nocapture peak_rss`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "reads 1 GiB; run by hand"]
    async fn peak_rss_streaming_one_gib() {
        fn vm_hwm_kib() -> u64 {
            let status = fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let (_tmp, ctx) = large_context(1 << 30);
        let before = vm_hwm_kib();
        let mut stream = Box::pin(ctx.stream());
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len() as u64;
        }
        let after = vm_hwm_kib();
        println!("streamed {total} bytes; peak RSS {before} KiB before, {after} KiB after");
        assert!(total > 1 << 30);
        assert!(
            after < before + 64 * 1024,
            "peak RSS grew by {} KiB",
            after - before
        );
    }
}

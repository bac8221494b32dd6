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
//! not themselves sent, as with the CLI; the daemon creates them (mode 0755).
//!
//! File names are bytes on Linux and are sent as they are, whether or not
//! they are UTF-8 (`.dockerignore` patterns are matched against the name
//! read as UTF-8 with invalid bytes replaced, as Go's regular expressions
//! read them). A file that a later name hard-links to is sent once; the
//! other names are hard-link entries pointing at the first, as the CLI does.
//! Named pipes and device nodes are sent as such; sockets are skipped (the
//! CLI's tar writer refuses them and goes on). Excluded files are never
//! opened: only their names and `lstat` are looked at.
//!
//! [`BuildContext::never_send`] lists folders and files that are never read,
//! sent nor digested whatever `.dockerignore` says (drydock's own output).

use super::dockerignore::clean;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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
pub(crate) const EXTRA_FILE_MODE: u32 = 0o644;
/// Mode of directories the daemon creates for entries whose parent was not
/// sent (extra files, files re-included below an excluded directory).
pub(crate) const IMPLIED_DIR_MODE: u32 = 0o755;

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
    /// The Dockerfile lies in a folder of [`BuildContext::never_send`].
    #[error(
        "Dockerfile {} lies in {}, which drydock never sends (its own output)",
        path.display(),
        folder.display()
    )]
    DockerfileNeverSent {
        /// The Dockerfile.
        path: PathBuf,
        /// The never-sent folder (or file) holding it.
        folder: PathBuf,
    },
    /// An extra file's path is empty, absolute or contains `..`.
    #[error("extra file path {path:?} must be relative and stay inside the context")]
    InvalidExtraPath {
        /// The path as given.
        path: String,
    },
    /// Writing the tar failed (for a stream: the consumer went away).
    #[error("writing the context tar: {0}")]
    Write(#[source] io::Error),
}

impl ContextError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
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
    /// Another name of a file sent earlier ([`ContextEntry::link_target`]
    /// names it): a tar hard link, as the Docker CLI sends it.
    HardLink,
    /// A named pipe (FIFO).
    Fifo,
    /// A character device node ([`ContextEntry::device`]).
    CharDevice,
    /// A block device node ([`ContextEntry::device`]).
    BlockDevice,
}

impl EntryKind {
    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'F',
            EntryKind::Dir => b'D',
            EntryKind::Symlink => b'L',
            EntryKind::HardLink => b'H',
            EntryKind::Fifo => b'P',
            EntryKind::CharDevice => b'C',
            EntryKind::BlockDevice => b'B',
        }
    }
}

/// One walked entry that will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context root, `/`-separated, with the bytes of
    /// the names on disk (not necessarily UTF-8).
    pub rel_path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes when walked (0 for everything but regular files).
    pub len: u64,
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch (sent, not part of the
    /// digest).
    pub mtime: i64,
    /// The nanoseconds of the modification time (0..1e9).
    pub mtime_nanos: u32,
    /// For symlinks the link target as stored; for hard links the
    /// `rel_path` of the entry sent first for the same file.
    pub link_target: Option<PathBuf>,
    /// (major, minor) of device nodes.
    pub device: Option<(u64, u64)>,
}

impl ContextEntry {
    /// [`rel_path`](Self::rel_path) as text, invalid UTF-8 replaced by
    /// U+FFFD (what `.dockerignore` patterns are matched against).
    pub fn rel_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.rel_path.as_os_str().as_bytes())
    }
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
    /// Absolute paths of folders or files that are never read, sent nor
    /// digested, whatever `.dockerignore` says: drydock's own output, such as
    /// `<repo>/.drydock/` or a results folder that lies inside the context.
    /// Paths outside the context have no effect; symlinks in these paths and
    /// in [`dir`](Self::dir) are resolved before comparing. A Dockerfile in
    /// one of them is an error ([`ContextError::DockerfileNeverSent`]).
    pub never_send: Vec<PathBuf>,
}

/// An entry the walk produced, with how it is sent.
#[derive(Debug, Clone)]
pub(crate) struct Walked {
    pub entry: ContextEntry,
    /// An excluded directory walked only for entries re-included below it:
    /// not in the tar (the daemon creates it with mode 0755), but sent as a
    /// mode 0755 directory where every parent must be listed (BuildKit's
    /// file sync).
    pub parent_only: bool,
}

/// What an include filter says of a path (fsutil's include patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Include {
    /// Not included; for a directory, nothing below it either.
    No,
    /// Included as a parent of an included path: look at its children.
    Parent,
    /// Included with everything below it.
    All,
}

/// Options of a walk.
pub(crate) struct WalkOptions<'a> {
    /// The `.dockerignore` matcher.
    pub ignore: &'a DockerIgnore,
    /// Decides which paths are included at all (`None`: all).
    pub include: Option<&'a (dyn Fn(&str) -> Include + Sync)>,
}

impl BuildContext {
    /// A context for `dir` with the Dockerfile at `dockerfile` (relative to
    /// `dir`), no extra files and nothing never-sent.
    pub fn new(dir: impl Into<PathBuf>, dockerfile: impl Into<String>) -> Self {
        BuildContext {
            dir: dir.into(),
            dockerfile: dockerfile.into(),
            extra_files: Vec::new(),
            never_send: Vec::new(),
        }
    }

    /// The walked entries that will be sent, in tar order: `.dockerignore`
    /// honoured, the Dockerfile and `.dockerignore` always included, entries
    /// replaced by an extra file left out (extra files are not listed), the
    /// [`never_send`](Self::never_send) paths left out.
    pub fn files(&self) -> Result<Vec<ContextEntry>, ContextError> {
        let dockerfile = self.checked_dockerfile()?;
        let extras = self.extra_paths()?;
        let mut ignore = DockerIgnore::load(&self.dir)?;
        ignore.keep(DOCKERIGNORE_FILE);
        ignore.keep(&dockerfile);
        let walked = self.walk(&WalkOptions {
            ignore: &ignore,
            include: None,
        })?;
        Ok(walked
            .into_iter()
            .filter(|w| !w.parent_only)
            .map(|w| w.entry)
            .filter(|e| e.rel_path.to_str().is_none_or(|p| !extras.contains(p)))
            .collect())
    }

    /// Walks the context with `options`, skipping [`never_send`](Self::never_send).
    pub(crate) fn walk(&self, options: &WalkOptions<'_>) -> Result<Vec<Walked>, ContextError> {
        let mut walker = Walker {
            never: self.never_send_resolved(),
            options,
            seen: HashMap::new(),
            out: Vec::new(),
        };
        let root_abs = resolve(&self.dir);
        walker.dir(&self.dir, &root_abs, Path::new(""), None, false)?;
        Ok(walker.out)
    }

    /// The Dockerfile path relative to the root, checked to exist and not
    /// to lie in a never-sent folder.
    pub(crate) fn checked_dockerfile(&self) -> Result<String, ContextError> {
        let dockerfile = self.dockerfile_rel()?;
        let df_path = self.dir.join(&dockerfile);
        match fs::symlink_metadata(&df_path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContextError::DockerfileMissing { path: df_path })
            }
            Err(e) => return Err(ContextError::io(&df_path, e)),
        }
        let abs = resolve(&self.dir).join(&dockerfile);
        if let Some(folder) = self
            .never_send_resolved()
            .into_iter()
            .find(|n| abs.starts_with(n))
        {
            return Err(ContextError::DockerfileNeverSent {
                path: df_path,
                folder,
            });
        }
        Ok(dockerfile)
    }

    /// [`never_send`](Self::never_send), resolved like the root.
    fn never_send_resolved(&self) -> Vec<PathBuf> {
        self.never_send.iter().map(|p| resolve(p)).collect()
    }

    /// Hex SHA-256 of everything the build depends on: for each sent entry
    /// its path (bytes), kind, mode, link target, device numbers and file
    /// content (streamed, not held in memory); the extra files; the
    /// Dockerfile path; the build args and target. Mtimes, owners, excluded
    /// and never-sent files do not count, so the digest is stable across
    /// checkouts and machines.
    pub fn digest(
        &self,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
    ) -> Result<String, ContextError> {
        self.digest_reading(build_args, target, None)
    }

    /// [`digest`](Self::digest) of only what the build reads: with
    /// `reads` (context sources as `COPY`/`ADD`/bind mounts write them, see
    /// `engine::dockerfile`), the entries none of them reads are left out —
    /// the Dockerfile and `.dockerignore` always count — so that a change
    /// in a file the target never copies does not make it another build,
    /// as docker's layer cache would not run it again either. `None`: every
    /// entry (the build copies the whole context, or what it reads is not
    /// known for sure).
    ///
    /// # Errors
    /// As [`digest`](Self::digest).
    pub fn digest_reading(
        &self,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
        reads: Option<&[String]>,
    ) -> Result<String, ContextError> {
        let mut entries = self.files()?;
        let dockerfile = self.dockerfile_rel()?;
        let mut h = Sha256::new();
        field(&mut h, b"drydock-build-context-v2");
        field(&mut h, dockerfile.as_bytes());
        if let Some(reads) = reads {
            entries.retain(|e| {
                let rel = e.rel_path.to_string_lossy();
                rel == dockerfile
                    || rel == DOCKERIGNORE_FILE
                    || super::dockerfile::source_reads(reads, &rel)
            });
            field(&mut h, b"reads");
            h.update((reads.len() as u64).to_le_bytes());
            for source in reads {
                field(&mut h, source.as_bytes());
            }
        }
        self.hash_entries(&mut h, &entries)?;
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

    /// Hex SHA-256 of a folder's content as a build context rooted at
    /// [`dir`](Self::dir) would send it, without a Dockerfile: the
    /// `.dockerignore` in `dir` honoured (as `docker build <dir>` does),
    /// [`never_send`](Self::never_send) left out, each entry hashed as
    /// [`digest`](Self::digest) hashes it (path, kind, mode, link target,
    /// device numbers, content; not mtimes nor owners). Used for the
    /// repository folders a step mounts or copies in ([`crate::reuse`]).
    ///
    /// # Errors
    /// When a file or folder cannot be read, or `.dockerignore` is invalid.
    pub fn tree_digest(&self) -> Result<String, ContextError> {
        let mut ignore = DockerIgnore::load(&self.dir)?;
        ignore.keep(DOCKERIGNORE_FILE);
        let entries: Vec<ContextEntry> = self
            .walk(&WalkOptions {
                ignore: &ignore,
                include: None,
            })?
            .into_iter()
            .filter(|w| !w.parent_only)
            .map(|w| w.entry)
            .collect();
        let mut h = Sha256::new();
        field(&mut h, b"drydock-tree-v1");
        self.hash_entries(&mut h, &entries)?;
        Ok(hex::encode(h.finalize()))
    }

    /// Feeds the count of `entries` and each entry (see [`digest`](Self::digest)) to `h`.
    fn hash_entries(&self, h: &mut Sha256, entries: &[ContextEntry]) -> Result<(), ContextError> {
        h.update((entries.len() as u64).to_le_bytes());
        let mut buf = vec![0u8; STREAM_CHUNK_SIZE];
        for entry in entries {
            h.update([entry.kind.tag()]);
            field(h, entry.rel_path.as_os_str().as_bytes());
            h.update(entry.mode.to_le_bytes());
            match entry.kind {
                EntryKind::Dir | EntryKind::Fifo => {}
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    let (major, minor) = entry.device.unwrap_or_default();
                    h.update(major.to_le_bytes());
                    h.update(minor.to_le_bytes());
                }
                EntryKind::Symlink | EntryKind::HardLink => {
                    let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
                    field(h, target.as_os_str().as_bytes());
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
        Ok(())
    }

    /// Writes the context tar to `w` (blocking): the walked entries of
    /// [`files`](Self::files), then the extra files. File contents are
    /// copied in small buffers, so memory does not grow with the context.
    pub fn write_tar<W: Write>(&self, w: W) -> Result<(), ContextError> {
        let entries = self.files()?;
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        let mut dirs: BTreeSet<&OsStr> = BTreeSet::new();
        for entry in &entries {
            let path = self.dir.join(&entry.rel_path);
            let mut header = base_header(entry.mode, entry.mtime);
            let link = entry.link_target.as_deref().unwrap_or(Path::new(""));
            match entry.kind {
                EntryKind::Dir => {
                    dirs.insert(entry.rel_path.as_os_str());
                    header.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut header, &entry.rel_path, io::empty())
                        .map_err(ContextError::Write)?;
                }
                EntryKind::Symlink | EntryKind::HardLink => {
                    header.set_entry_type(if entry.kind == EntryKind::Symlink {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    tar.append_link(&mut header, &entry.rel_path, link)
                        .map_err(ContextError::Write)?;
                }
                EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                    header.set_entry_type(match entry.kind {
                        EntryKind::Fifo => tar::EntryType::Fifo,
                        EntryKind::CharDevice => tar::EntryType::Char,
                        _ => tar::EntryType::Block,
                    });
                    if let Some((major, minor)) = entry.device {
                        header
                            .set_device_major(major as u32)
                            .and_then(|()| header.set_device_minor(minor as u32))
                            .map_err(ContextError::Write)?;
                    }
                    tar.append_data(&mut header, &entry.rel_path, io::empty())
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
            for parent in parent_prefixes(&rel) {
                if !dirs.contains(OsStr::new(parent)) && implied.insert(parent.to_string()) {
                    let mut header = base_header(IMPLIED_DIR_MODE, 0);
                    header.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut header, parent, io::empty())
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
pub(crate) fn clean_rel(path: &str) -> Option<String> {
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

/// The parent directories of a clean relative path, shortest first
/// (`a`, `a/b` for `a/b/c`).
pub(crate) fn parent_prefixes(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// `path` made absolute, with symlinks resolved when it exists (else
/// lexically), so never-sent paths and the root compare alike.
fn resolve(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// One walk of a context (moby's `TarWithOptions` walk): depth first, names
/// sorted bytewise in each directory.
struct Walker<'a, 'o> {
    never: Vec<PathBuf>,
    options: &'a WalkOptions<'o>,
    /// (device, inode) → the path first sent for a file with several links.
    seen: HashMap<(u64, u64), PathBuf>,
    out: Vec<Walked>,
}

impl Walker<'_, '_> {
    /// Walks `dir` (whose path relative to the root is `prefix`, and
    /// resolved absolute path is `abs`). `all_included`: an include filter
    /// already took everything below.
    fn dir(
        &mut self,
        dir: &Path,
        abs: &Path,
        prefix: &Path,
        parent: Option<&ParentMatches>,
        all_included: bool,
    ) -> Result<(), ContextError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| ContextError::io(dir, e))? {
            names.push(entry.map_err(|e| ContextError::io(dir, e))?.file_name());
        }
        // Bytewise, as Go sorts names.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let abs_path = abs.join(&name);
            if self.never.contains(&abs_path) {
                continue;
            }
            let rel_path = prefix.join(&name);
            let rel = String::from_utf8_lossy(rel_path.as_os_str().as_bytes()).into_owned();
            let meta = fs::symlink_metadata(&path).map_err(|e| ContextError::io(&path, e))?;
            let ft = meta.file_type();
            let mut below_all = all_included;
            if !all_included {
                if let Some(include) = self.options.include {
                    match include(&rel) {
                        Include::No => continue,
                        Include::Parent => {}
                        Include::All => below_all = true,
                    }
                }
            }
            let (excluded, info) = self.options.ignore.matches(&rel, parent);
            if excluded {
                if ft.is_dir() && self.options.ignore.descend_into_excluded(&rel) {
                    let at = self.out.len();
                    self.dir(&path, &abs_path, &rel_path, Some(&info), below_all)?;
                    if self.out.len() > at {
                        // Something below is sent: its parent must be known.
                        let entry = ContextEntry {
                            rel_path: rel_path.clone(),
                            kind: EntryKind::Dir,
                            len: 0,
                            mode: IMPLIED_DIR_MODE,
                            mtime: meta.mtime(),
                            mtime_nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
                            link_target: None,
                            device: None,
                        };
                        self.out.insert(
                            at,
                            Walked {
                                entry,
                                parent_only: true,
                            },
                        );
                    }
                }
                continue;
            }
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_file() {
                EntryKind::File
            } else if ft.is_fifo() {
                EntryKind::Fifo
            } else if ft.is_char_device() {
                EntryKind::CharDevice
            } else if ft.is_block_device() {
                EntryKind::BlockDevice
            } else {
                // Sockets: the CLI's tar writer refuses them and goes on.
                tracing::warn!(path = %path.display(), "skipping socket in build context");
                continue;
            };
            let mut entry = ContextEntry {
                rel_path: rel_path.clone(),
                kind,
                len: if kind == EntryKind::File {
                    meta.len()
                } else {
                    0
                },
                mode: meta.permissions().mode() & 0o7777,
                mtime: meta.mtime(),
                mtime_nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
                link_target: None,
                device: None,
            };
            match kind {
                EntryKind::Symlink => {
                    entry.link_target =
                        Some(fs::read_link(&path).map_err(|e| ContextError::io(&path, e))?);
                }
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    let rdev = meta.rdev();
                    entry.device = Some((libc::major(rdev) as u64, libc::minor(rdev) as u64));
                }
                _ => {}
            }
            if kind != EntryKind::Dir && meta.nlink() > 1 {
                match self.seen.get(&(meta.dev(), meta.ino())) {
                    Some(first) => {
                        entry.link_target = Some(first.clone());
                        entry.kind = EntryKind::HardLink;
                        entry.len = 0;
                    }
                    None => {
                        self.seen.insert((meta.dev(), meta.ino()), rel_path.clone());
                    }
                }
            }
            self.out.push(Walked {
                entry,
                parent_only: false,
            });
            if kind == EntryKind::Dir {
                self.dir(&path, &abs_path, &rel_path, Some(&info), below_all)?;
            }
        }
        Ok(())
    }
}

/// Which paths a BuildKit file-sync request asks for: fsutil's
/// `IncludePatterns` and `FollowPaths` (tonistiigi/fsutil `Walk` and
/// `FollowLinks`, the version BuildKit 0.8 uses). Written by hand because
/// only Go implements it; the receiver never filters, so sending more than
/// asked is harmless, sending less is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Includes {
    patterns: Vec<String>,
}

impl Includes {
    /// The filter for `include` patterns and `follow` paths relative to
    /// `root`, or `None` when everything is included (no patterns, or one of
    /// them is the root).
    pub fn new(root: &Path, include: &[String], follow: &[String]) -> Option<Includes> {
        if include.is_empty() && follow.is_empty() {
            return None;
        }
        let mut patterns: Vec<String> = include.iter().map(|p| clean(p)).collect();
        if !follow.is_empty() {
            let mut resolver = LinkResolver {
                root,
                resolved: BTreeSet::new(),
            };
            for path in follow {
                resolver.append(path, 0);
            }
            let targets: Vec<String> = resolver.resolved.into_iter().collect();
            match dedupe_paths(&targets) {
                Some(targets) => patterns.extend(targets),
                None => return None,
            }
            patterns = dedupe_paths(&patterns)?;
        }
        if patterns.iter().any(|p| p == ".") {
            return None;
        }
        Some(Includes { patterns })
    }

    /// fsutil's decision for `rel` (slash-separated, relative).
    pub fn decide(&self, rel: &str) -> Include {
        let mut matched = false;
        for pattern in &self.patterns {
            let (ok, partial) = match_prefix(pattern, rel);
            if ok {
                matched = true;
                if !partial {
                    return Include::All;
                }
            }
        }
        if matched {
            Include::Parent
        } else {
            Include::No
        }
    }
}

/// fsutil's `matchPrefix`: `pattern` cut to as many components as `name`
/// has (then a partial match), matched with `filepath.Match`.
fn match_prefix(pattern: &str, name: &str) -> (bool, bool) {
    let depth = name.matches('/').count();
    if pattern.matches('/').count() > depth {
        let cut = pattern
            .match_indices('/')
            .nth(depth)
            .map_or(pattern, |(i, _)| &pattern[..i]);
        (super::dockerignore::path_match(cut, name), true)
    } else {
        (super::dockerignore::path_match(pattern, name), false)
    }
}

/// fsutil's `dedupePaths` of a sorted list: paths below an earlier path
/// dropped; `None` when the root (`.`) is among them.
fn dedupe_paths(sorted: &[String]) -> Option<Vec<String>> {
    let mut sorted = sorted.to_vec();
    sorted.sort();
    let mut out: Vec<String> = Vec::new();
    for s in sorted {
        if s == "." {
            return None;
        }
        if out
            .last()
            .is_some_and(|last| s.starts_with(&format!("{last}/")))
        {
            continue;
        }
        out.push(s);
    }
    Some(out)
}

/// fsutil's `symlinkResolver`: follow paths resolved through the symlinks
/// of the context, so that a `COPY link/x` also sends what `link` points to.
struct LinkResolver<'a> {
    root: &'a Path,
    resolved: BTreeSet<String>,
}

/// Symlink chains longer than this are not followed further (a loop).
const MAX_LINK_DEPTH: usize = 64;

impl LinkResolver<'_> {
    fn append(&mut self, path: &str, depth: usize) {
        if depth > MAX_LINK_DEPTH {
            return;
        }
        // filepath.Join(".", p): cleaned, a leading `/` dropped.
        let mut rest = clean(path.trim_start_matches('/'));
        let mut current = ".".to_string();
        loop {
            let (first, tail) = match rest.split_once('/') {
                Some((first, tail)) => (first.to_string(), tail.to_string()),
                None => (rest.clone(), String::new()),
            };
            current = clean(&format!("{current}/{first}"));
            let targets = self.read_link(&current, true);
            rest = tail;
            if (rest.is_empty() || targets.is_some()) && self.resolved.contains(&current) {
                return;
            }
            if let Some(targets) = targets {
                self.resolved.insert(current);
                for target in targets {
                    let joined = clean(&format!("{target}/{rest}"));
                    self.append(&joined, depth + 1);
                }
                return;
            }
            if rest.is_empty() {
                self.resolved.insert(current);
                return;
            }
        }
    }

    /// The targets of `rel` if it is a symlink (for a last component with
    /// wildcards: of every matching symlink), as rooted slash paths.
    fn read_link(&self, rel: &str, wildcards: bool) -> Option<Vec<String>> {
        let (dir, base) = match rel.rsplit_once('/') {
            Some((dir, base)) => (dir, base),
            None => (".", rel),
        };
        if wildcards && has_wildcards(base) {
            let mut names: Vec<String> = fs::read_dir(self.root.join(dir))
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| String::from_utf8_lossy(e.file_name().as_bytes()).into_owned())
                .collect();
            names.sort();
            let mut out = Vec::new();
            for name in names {
                if super::dockerignore::path_match(base, &name) {
                    if let Some(targets) = self.read_link(&clean(&format!("{dir}/{name}")), false) {
                        out.extend(targets);
                    }
                }
            }
            return (!out.is_empty()).then_some(out);
        }
        let real = self.root.join(rel);
        let meta = fs::symlink_metadata(&real).ok()?;
        if !meta.file_type().is_symlink() {
            return None;
        }
        let link = fs::read_link(&real).ok()?;
        let link = clean(&String::from_utf8_lossy(link.as_os_str().as_bytes()));
        if link.starts_with('/') {
            Some(vec![link])
        } else {
            Some(vec![clean(&format!("/{dir}/{link}"))])
        }
    }
}

/// fsutil's `containsWildcards` (Unix): `*`, `?` or `[` not escaped.
fn has_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Opens a file for sending: a reader yielding exactly its length at open
/// time (an error if it shrinks meanwhile), and its metadata.
pub(crate) fn open_exact(path: &Path) -> Result<(ExactReader<File>, fs::Metadata), ContextError> {
    let file = File::open(path).map_err(|e| ContextError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ContextError::io(path, e))?;
    let reader = ExactReader {
        inner: file,
        remaining: meta.len(),
    };
    Ok((reader, meta))
}

/// Reads exactly `remaining` bytes: stops there, fails on an early end.
pub(crate) struct ExactReader<R> {
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
        let main = files
            .iter()
            .find(|e| e.rel_path == Path::new("src/main.rs"))
            .unwrap();
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
            .map(|e| e.rel_str().into_owned())
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
            .all(|e| e.rel_path != Path::new("src/main.rs")));
        let rows = read_tar(&tar_bytes(&ctx));
        let mains: Vec<_> = rows.iter().filter(|r| r.0 == "src/main.rs").collect();
        assert_eq!(mains.len(), 1);
        assert_eq!(mains[0].4, b"injected");
        assert_eq!(rows.last().unwrap().0, "src/main.rs");
        // `src` was walked, so no implied directory is added for it.
        assert_eq!(rows.iter().filter(|r| r.0 == "src").count(), 1);
    }

    #[test]
    fn never_send_paths_are_not_walked_sent_nor_digested() {
        let (tmp, ctx) = fixture();
        let root = tmp.path();
        write(root, ".drydock/results/run-1/log.txt", b"output", 0o644);
        write(root, "src/results.json", b"a file", 0o644);
        let digest_without = |ctx: &BuildContext| ctx.digest(&BTreeMap::new(), None).unwrap();
        let base = BuildContext {
            never_send: vec![root.join(".drydock"), root.join("src/results.json")],
            ..ctx.clone()
        };
        let sent: Vec<String> = base
            .files()
            .unwrap()
            .iter()
            .map(|e| e.rel_str().into_owned())
            .collect();
        assert!(
            sent.iter()
                .all(|p| !p.starts_with(".drydock") && p != "src/results.json"),
            "{sent:?}"
        );
        assert!(sent.contains(&"src/main.rs".to_string()));
        let rows = read_tar(&tar_bytes(&base));
        assert!(
            rows.iter().all(|r| !r.0.starts_with(".drydock/")),
            "{rows:?}"
        );
        // Changing never-sent content changes nothing; an unreadable
        // never-sent file is never opened (checked only when not root).
        let before = digest_without(&base);
        fs::write(root.join(".drydock/results/run-1/log.txt"), b"more").unwrap();
        fs::set_permissions(
            root.join("src/results.json"),
            fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        assert_eq!(digest_without(&base), before);
        // A relative path through a symlinked root resolves to the same folder.
        let link = tempfile::tempdir().unwrap();
        let linked_root = link.path().join("ctx");
        symlink(root, &linked_root).unwrap();
        let via_link = BuildContext {
            dir: linked_root.clone(),
            never_send: vec![root.join(".drydock"), root.join("src/results.json")],
            ..ctx.clone()
        };
        assert_eq!(via_link.files().unwrap(), base.files().unwrap());
        // Without never_send the folder would be sent.
        assert!(ctx
            .files()
            .unwrap()
            .iter()
            .any(|e| e.rel_str().starts_with(".drydock/results")));
        // A Dockerfile inside a never-sent folder is an error.
        let err = BuildContext {
            never_send: vec![root.join("build")],
            ..ctx.clone()
        }
        .files()
        .unwrap_err();
        assert!(
            matches!(err, ContextError::DockerfileNeverSent { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn byte_names_links_and_special_files_are_sent_as_the_cli_sends_them() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "Dockerfile", b"FROM scratch\n", 0o644);
        write(root, ".dockerignore", b"ignored-*\n", 0o644);
        let latin1 = OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(root.join(latin1), b"latin-1 name").unwrap();
        // An excluded file with a non-UTF-8 name that cannot even be read
        // (when not root): neither fails the walk.
        let ignored = root.join(OsStr::from_bytes(b"ignored-\xff"));
        fs::write(&ignored, b"never read").unwrap();
        fs::set_permissions(&ignored, fs::Permissions::from_mode(0o000)).unwrap();
        write(root, "a-first", b"shared", 0o640);
        fs::hard_link(root.join("a-first"), root.join("b-second")).unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let long = "d".repeat(120);
        write(root, &format!("{long}/f"), b"long path", 0o644);
        let ctx = BuildContext::new(root, "Dockerfile");

        let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes(&ctx)));
        let mut rows = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            rows.push((path, entry.header().entry_type(), link));
        }
        use tar::EntryType as T;
        let want: Vec<(Vec<u8>, T, Option<Vec<u8>>)> = vec![
            (b".dockerignore".to_vec(), T::Regular, None),
            (b"Dockerfile".to_vec(), T::Regular, None),
            (b"a-first".to_vec(), T::Regular, None),
            (b"b-second".to_vec(), T::Link, Some(b"a-first".to_vec())),
            (b"caf\xe9.txt".to_vec(), T::Regular, None),
            (long.as_bytes().to_vec(), T::Directory, None),
            (format!("{long}/f").into_bytes(), T::Regular, None),
            (b"pipe".to_vec(), T::Fifo, None),
        ];
        assert_eq!(rows, want);
        drop(socket);

        let files = ctx.files().unwrap();
        let second = files
            .iter()
            .find(|e| e.rel_path == Path::new("b-second"))
            .unwrap();
        assert_eq!(
            (second.kind, second.len, second.link_target.as_deref()),
            (EntryKind::HardLink, 0, Some(Path::new("a-first")))
        );
        let cafe = files
            .iter()
            .find(|e| e.rel_path.as_os_str() == latin1)
            .unwrap();
        assert_eq!(cafe.rel_str(), "caf\u{fffd}.txt");
        // The digest follows the name's bytes.
        let before = ctx.digest(&BTreeMap::new(), None).unwrap();
        fs::rename(
            root.join(latin1),
            root.join(OsStr::from_bytes(b"caf\xe8.txt")),
        )
        .unwrap();
        assert_ne!(ctx.digest(&BTreeMap::new(), None).unwrap(), before);
    }

    #[test]
    fn device_nodes_carry_their_numbers() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "device_nodes_carry_their_numbers: needs root to mknod; checked the FIFO case only"
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "Dockerfile", b"FROM scratch\n", 0o644);
        let node = std::ffi::CString::new(root.join("null").as_os_str().as_bytes()).unwrap();
        let dev = libc::makedev(1, 3);
        assert_eq!(
            unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, dev) },
            0
        );
        let ctx = BuildContext::new(root, "Dockerfile");
        let files = ctx.files().unwrap();
        let null = files
            .iter()
            .find(|e| e.rel_path == Path::new("null"))
            .unwrap();
        assert_eq!(
            (null.kind, null.device),
            (EntryKind::CharDevice, Some((1, 3)))
        );
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes(&ctx)));
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path_bytes().as_ref() == b"null")
            .unwrap();
        let h = entry.header();
        assert_eq!(h.entry_type(), tar::EntryType::Char);
        assert_eq!(
            (h.device_major().unwrap(), h.device_minor().unwrap()),
            (Some(1), Some(3))
        );
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

    /// With what the target reads known, a file it does not read changes
    /// nothing; a file it reads, the Dockerfile, `.dockerignore` or the
    /// list of sources itself make another digest.
    #[test]
    fn a_digest_of_what_the_build_reads_ignores_the_rest() {
        let args = BTreeMap::new();
        let reads = vec!["src/deep".to_string(), "src/*.sh".to_string()];
        let digest = |ctx: &BuildContext, reads: Option<&[String]>| {
            ctx.digest_reading(&args, None, reads).unwrap()
        };
        type Mutation = fn(&BuildContext);
        let cases: &[(&str, Mutation, bool)] = &[
            (
                "a file no source names",
                |c| fs::write(c.dir.join("src/main.rs"), "x").unwrap(),
                false,
            ),
            (
                "a file under a folder source",
                |c| fs::write(c.dir.join("src/deep/nested.txt"), "x").unwrap(),
                true,
            ),
            (
                "a file a glob source matches",
                |c| fs::write(c.dir.join("src/run.sh"), "x").unwrap(),
                true,
            ),
            (
                "a new file under a folder source",
                |c| fs::write(c.dir.join("src/deep/new"), "x").unwrap(),
                true,
            ),
            (
                "the Dockerfile",
                |c| {
                    fs::write(
                        c.dir.join("build/Dockerfile"),
                        "FROM scratch\nCOPY src/deep /d\n",
                    )
                    .unwrap()
                },
                true,
            ),
            (
                ".dockerignore",
                |c| fs::write(c.dir.join(".dockerignore"), "nothing\n").unwrap(),
                true,
            ),
        ];
        for (what, mutate, changes) in cases {
            let (_tmp, ctx) = fixture();
            let before = digest(&ctx, Some(&reads));
            let whole_before = digest(&ctx, None);
            mutate(&ctx);
            assert_eq!(digest(&ctx, Some(&reads)) != before, *changes, "{what}");
            assert_ne!(
                digest(&ctx, None),
                whole_before,
                "{what}: the whole context sees every change"
            );
        }
        let (_tmp, ctx) = fixture();
        assert_ne!(
            digest(&ctx, Some(&reads)),
            digest(&ctx, Some(&reads[..1])),
            "the sources are part of the digest"
        );
        assert_eq!(digest(&ctx, None), ctx.digest(&args, None).unwrap());
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

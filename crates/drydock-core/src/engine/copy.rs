//! Copies of host files into a created container (a step's `copy:`): a tar
//! streamed to the engine's archive endpoint, extracted before the
//! container starts, never written back.
//!
//! As `docker cp -a` does (`copyUIDGID`), the engine gives every extracted
//! entry the uid/gid of the container's configured user (the step's `user`,
//! else the image's `USER`), so a non-root step can write its copy. Symlinks
//! are copied as links (never followed), permission bits and mtimes are kept;
//! sockets, FIFOs and device nodes are skipped.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bollard::query_parameters::UploadToContainerOptions;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

use super::{Engine, EngineError};

const CHUNK: usize = 64 * 1024;

impl Engine {
    /// Copies the host file or folder `source` into the created (not yet
    /// started) container `id`, where it becomes `target` (an absolute,
    /// normalized path; missing parents are created by the engine). Folders
    /// named in `skip` (absolute host paths) are left out.
    pub async fn copy_into(
        &self,
        id: &str,
        source: &Path,
        target: &str,
        skip: &[PathBuf],
    ) -> Result<(), EngineError> {
        let failed = |message: String| EngineError::CopyIn {
            path: source.to_path_buf(),
            target: target.to_string(),
            message,
        };
        let prefix = target.trim_start_matches('/').trim_end_matches('/');
        if prefix.is_empty() {
            return Err(failed("the target must not be /".to_string()));
        }
        let stream = tar_stream(source.to_path_buf(), PathBuf::from(prefix), skip.to_vec());
        let options = UploadToContainerOptions {
            path: "/".to_string(),
            copy_uidgid: Some("1".to_string()),
            ..Default::default()
        };
        self.docker
            .upload_to_container(id, Some(options), bollard::body_try_stream(stream))
            .await
            .map_err(|e| match e {
                // The engine refused (no such user in the image, a file
                // where a folder is…): its message says why.
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    failed(message)
                }
                e => EngineError::api(format!("copy {} to {target}", source.display()), e),
            })
    }
}

/// The tar of `source` with entry names under `prefix`, written by a
/// blocking task into a bounded channel.
fn tar_stream(
    source: PathBuf,
    prefix: PathBuf,
    skip: Vec<PathBuf>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter {
            tx: tx.clone(),
            buf: BytesMut::with_capacity(CHUNK),
        };
        let result = (|| {
            let mut tar = tar::Builder::new(&mut writer);
            tar.follow_symlinks(false);
            append(&mut tar, &source, &prefix, &skip)?;
            tar.finish()?;
            drop(tar);
            writer.flush()
        })();
        if let Err(e) = result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    skip: &[PathBuf],
) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let file_type = meta.file_type();
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_uid(0);
    header.set_gid(0);
    if file_type.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        let link = fs::read_link(path)?;
        tar.append_link(&mut header, name, link)?;
    } else if file_type.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, name, io::empty())?;
        let mut children: Vec<_> = fs::read_dir(path)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let child_path = child.path();
            if skip.iter().any(|s| s == &child_path) {
                continue;
            }
            append(tar, &child_path, &name.join(child.file_name()), skip)?;
        }
    } else if file_type.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        tar.append_data(&mut header, name, file)?;
    } else {
        tracing::debug!("copy: skipping special file {}", path.display());
    }
    Ok(())
}

/// A `Write` that sends full chunks down a bounded channel (blocking).
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

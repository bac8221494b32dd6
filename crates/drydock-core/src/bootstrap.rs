//! Base images without a registry: a Debian root filesystem made with
//! mmdebstrap and imported through the Engine API, then the Dockerfiles listed
//! in `images/base/manifest.yml`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

use crate::engine::context::BuildContext;
use crate::engine::{BuildProgress, BuildRequest, Engine, EngineError};
use crate::trust::Trust;

/// Where the manifest lives, relative to the repository root.
pub const MANIFEST_PATH: &str = "images/base/manifest.yml";

/// The root filesystem image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsSpec {
    /// Image tag, e.g. `drydock/debian:bookworm`.
    pub tag: String,
    /// Debian suite.
    pub suite: String,
    /// Debian mirror URL.
    pub mirror: String,
    /// mmdebstrap variant (`minbase`).
    pub variant: String,
    /// Extra packages.
    #[serde(default)]
    pub include: Vec<String>,
    /// Further mmdebstrap arguments, one argv element each.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Dockerfile instructions applied at import.
    #[serde(default)]
    pub changes: Vec<String>,
}

/// A base image built from a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    /// Image tag, e.g. `drydock/python:3.11`.
    pub tag: String,
    /// Folder under `images/base/` holding its Dockerfile.
    pub context: String,
}

/// The base image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The imported root filesystem.
    pub rootfs: RootfsSpec,
    /// Images built on top, in dependency order.
    pub images: Vec<BaseImage>,
}

impl Manifest {
    /// Every tag the manifest produces.
    pub fn tags(&self) -> Vec<String> {
        std::iter::once(self.rootfs.tag.clone())
            .chain(self.images.iter().map(|i| i.tag.clone()))
            .collect()
    }
}

/// Why a bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Manifest path.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error("{path}:{line}:{column}: {message}")]
    Manifest {
        /// Manifest path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// mmdebstrap could not be started or failed.
    #[error("making the root filesystem for {tag} failed: {message}")]
    Rootfs {
        /// Image tag.
        tag: String,
        /// What happened (with mmdebstrap's last output lines).
        message: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Progress of a bootstrap, for reporters.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapEvent {
    /// The image exists and `force` is off.
    Skipped {
        /// Image tag.
        tag: String,
    },
    /// Work on an image started.
    Started {
        /// Image tag.
        tag: String,
    },
    /// A line of output.
    Output {
        /// Image tag.
        tag: String,
        /// The line.
        line: String,
    },
    /// The image is ready.
    Done {
        /// Image tag.
        tag: String,
        /// Image id.
        image_id: String,
        /// Seconds it took.
        seconds: f64,
    },
}

/// Reads and validates the manifest.
pub fn load_manifest(path: &Path) -> Result<Manifest, BootstrapError> {
    let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        BootstrapError::Manifest {
            path: path.to_path_buf(),
            line,
            column,
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    })
}

/// Tags of the manifest that are not in the engine.
pub async fn missing_images(
    engine: &Engine,
    manifest: &Manifest,
) -> Result<Vec<String>, EngineError> {
    let mut missing = Vec::new();
    for tag in manifest.tags() {
        if engine.image(&tag).await?.is_none() {
            missing.push(tag);
        }
    }
    Ok(missing)
}

/// Builds every base image of the manifest at `manifest_path`, skipping those
/// that exist unless `force`.
pub async fn bootstrap(
    engine: &Engine,
    manifest_path: &Path,
    force: bool,
    trust: &Trust,
    mut on_event: impl FnMut(BootstrapEvent) + Send,
) -> Result<(), BootstrapError> {
    let manifest = load_manifest(manifest_path)?;
    let base_dir = manifest_path.parent().unwrap_or(Path::new("."));

    let rootfs = &manifest.rootfs;
    if !force && engine.image(&rootfs.tag).await?.is_some() {
        on_event(BootstrapEvent::Skipped {
            tag: rootfs.tag.clone(),
        });
    } else {
        let started = Instant::now();
        on_event(BootstrapEvent::Started {
            tag: rootfs.tag.clone(),
        });
        let image_id = import_rootfs(engine, rootfs, &mut on_event).await?;
        on_event(BootstrapEvent::Done {
            tag: rootfs.tag.clone(),
            image_id,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    for image in &manifest.images {
        if !force && engine.image(&image.tag).await?.is_some() {
            on_event(BootstrapEvent::Skipped {
                tag: image.tag.clone(),
            });
            continue;
        }
        let started = Instant::now();
        on_event(BootstrapEvent::Started {
            tag: image.tag.clone(),
        });
        let request = BuildRequest {
            context: BuildContext {
                dir: base_dir.join(&image.context),
                dockerfile: "Dockerfile".to_string(),
                extra_files: Vec::new(),
                never_send: Vec::new(),
            },
            target: None,
            args: Default::default(),
            transient_args: trust.env.clone(),
            labels: [("drydock.base".to_string(), "true".to_string())].into(),
            tag: Some(image.tag.clone()),
            no_cache: force,
            ca_bundle: None,
            secrets: Default::default(),
        };
        let tag = image.tag.clone();
        let built = engine
            .build(&request, |p| {
                let line = match p {
                    BuildProgress::Step(l) | BuildProgress::Output(l) => l,
                };
                on_event(BootstrapEvent::Output {
                    tag: tag.clone(),
                    line,
                });
            })
            .await?;
        on_event(BootstrapEvent::Done {
            tag: image.tag.clone(),
            image_id: built.image_id,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(())
}

/// The mmdebstrap argv for a root filesystem written to stdout.
pub fn mmdebstrap_args(spec: &RootfsSpec) -> Vec<String> {
    let mut args = vec![format!("--variant={}", spec.variant), "--quiet".to_string()];
    if !spec.include.is_empty() {
        args.push(format!("--include={}", spec.include.join(",")));
    }
    args.extend(spec.extra_args.iter().cloned());
    args.extend([spec.suite.clone(), "-".to_string(), spec.mirror.clone()]);
    args
}

async fn import_rootfs(
    engine: &Engine,
    spec: &RootfsSpec,
    on_event: &mut (impl FnMut(BootstrapEvent) + Send),
) -> Result<String, BootstrapError> {
    let rootfs_error = |message: String| BootstrapError::Rootfs {
        tag: spec.tag.clone(),
        message,
    };
    let mut child = tokio::process::Command::new("mmdebstrap")
        .args(mmdebstrap_args(spec))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            rootfs_error(format!(
                "cannot run mmdebstrap: {e}\n  hint: install it (Debian: apt-get install -y mmdebstrap)"
            ))
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    let stderr_task = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = line_tx.send(line);
        }
    });
    // Import under a temporary tag: a failed or truncated rootfs must never
    // replace a good image under the real tag.
    let (repo, tag) = crate::engine::split_tag(&spec.tag);
    let staging_tag = format!("{tag}-bootstrap-{}", std::process::id());
    let import = engine.import_rootfs(
        tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024),
        repo,
        &staging_tag,
        &spec.changes,
    );
    tokio::pin!(import);
    let mut tail: Vec<String> = Vec::new();
    let imported = loop {
        tokio::select! {
            result = &mut import => break result,
            Some(line) = line_rx.recv() => {
                tail.push(line.clone());
                if tail.len() > 20 { tail.remove(0); }
                on_event(BootstrapEvent::Output { tag: spec.tag.clone(), line });
            }
        }
    };
    let status = child
        .wait()
        .await
        .map_err(|e| rootfs_error(e.to_string()))?;
    let _ = stderr_task.await;
    while let Ok(line) = line_rx.try_recv() {
        tail.push(line);
    }
    let staging = format!("{repo}:{staging_tag}");
    if !status.success() {
        // A truncated tar may have been imported under the staging tag: drop it;
        // the real tag still points at the previous, good image.
        let _ = engine.remove_image(&staging, true).await;
        return Err(rootfs_error(format!(
            "mmdebstrap exited with {status}:\n{}",
            tail.join("\n")
        )));
    }
    let image_id = imported?;
    engine.tag_image(&image_id, repo, tag).await?;
    engine.remove_image(&staging, false).await?;
    Ok(image_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_manifest_parses_and_orders_the_rootfs_first() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(MANIFEST_PATH);
        let manifest = load_manifest(&path).unwrap();
        let tags = manifest.tags();
        assert_eq!(tags[0], manifest.rootfs.tag);
        assert!(tags.iter().any(|t| t.starts_with("drydock/python:")));
        assert!(tags.iter().any(|t| t.starts_with("drydock/postgres:")));
        let args = mmdebstrap_args(&manifest.rootfs);
        assert_eq!(
            &args[args.len() - 2..],
            &["-".to_string(), manifest.rootfs.mirror.clone()]
        );
    }

    #[test]
    fn manifest_errors_name_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.yml");
        std::fs::write(&path, "rootfs:\n  tag: x\n  sute: bookworm\nimages: []\n").unwrap();
        let err = load_manifest(&path).unwrap_err().to_string();
        assert!(
            err.contains("manifest.yml:3:3: rootfs: unknown field `sute`"),
            "{err}"
        );
    }
}

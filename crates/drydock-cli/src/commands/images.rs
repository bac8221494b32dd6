//! `drydock images bootstrap`.

use std::path::{Path, PathBuf};

use drydock_core::bootstrap::{self, BootstrapEvent, MANIFEST_PATH};
use drydock_core::engine::Engine;
use drydock_core::trust::Trust;

use crate::error::CliError;

/// Subcommands of `drydock images`.
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Build every base image from Debian packages (no registry needed).
    Bootstrap {
        /// Rebuild images that already exist.
        #[arg(long)]
        force: bool,
        /// The base image manifest (default: images/base/manifest.yml in the repository).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
    },
}

/// Runs an `images` subcommand.
pub async fn run(command: ImagesCommand) -> Result<u8, CliError> {
    match command {
        ImagesCommand::Bootstrap { force, manifest } => {
            let manifest = match manifest {
                Some(path) => path,
                None => find_manifest()?,
            };
            let engine = Engine::connect().await?;
            run_bootstrap(&engine, &manifest, force, &Trust::from_env(), false).await?;
            Ok(0)
        }
    }
}

fn find_manifest() -> Result<PathBuf, CliError> {
    let cwd = std::env::current_dir().map_err(|e| CliError::infra(e.to_string()))?;
    cwd.ancestors()
        .map(|dir| dir.join(MANIFEST_PATH))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CliError::invalid(format!(
                "no {MANIFEST_PATH} in this folder or its parents; pass --manifest"
            ))
        })
}

/// Builds the base images that are missing (used by `drydock run --bootstrap`).
pub async fn bootstrap_missing(
    engine: &Engine,
    repo_root: &Path,
    trust: &Trust,
    quiet: bool,
) -> Result<(), CliError> {
    let manifest = repo_root.join(MANIFEST_PATH);
    run_bootstrap(engine, &manifest, false, trust, quiet).await
}

async fn run_bootstrap(
    engine: &Engine,
    manifest: &Path,
    force: bool,
    trust: &Trust,
    quiet: bool,
) -> Result<(), CliError> {
    let term = console::Term::stderr();
    let spinner = (!quiet && term.is_term()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let result = bootstrap::bootstrap(engine, manifest, force, trust, |event| {
        let text = match event {
            BootstrapEvent::Skipped { tag } => Some(format!("  - {tag} exists (--force rebuilds)")),
            BootstrapEvent::Started { tag } => Some(format!("  … {tag}")),
            BootstrapEvent::Done { tag, seconds, .. } => {
                Some(format!("  ✔ {tag} in {seconds:.1}s"))
            }
            BootstrapEvent::Output { tag, line } => {
                if let Some(bar) = &spinner {
                    bar.set_message(format!(
                        "{tag}: {}",
                        line.chars().take(100).collect::<String>()
                    ));
                }
                None
            }
        };
        if let (Some(text), false) = (text, quiet) {
            match &spinner {
                Some(bar) => bar.println(text),
                None => errln!("{text}"),
            }
        }
    })
    .await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    result.map_err(|e| match e {
        bootstrap::BootstrapError::Manifest { .. } | bootstrap::BootstrapError::Read { .. } => {
            CliError::invalid(e.to_string())
        }
        other => CliError::infra(format!("bootstrap: {other}")),
    })
}

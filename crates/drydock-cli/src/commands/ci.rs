//! `drydock ci export <provider>`: a hosted CI provider's configuration file
//! that runs a pipeline (the text comes from [`crate::hosted`]).

use std::path::{Component, Path, PathBuf};

use drydock_core::pipeline;

use crate::error::CliError;
use crate::hosted::{self, ExportOptions, HostedSecret, Install, Provider};
use drydock_core::pipeline::SecretSource;

/// Subcommands of `drydock ci`.
#[derive(Debug, clap::Subcommand)]
pub enum CiCommand {
    /// Write the configuration file of a hosted CI provider (GitHub Actions,
    /// GitLab CI, CircleCI, Travis CI, Jenkins) that installs drydock and runs
    /// a pipeline, publishing its JUnit report and results folder.
    ///
    /// Exit codes: 0 written (or, with --check, up to date); 1 with --check,
    /// the file is missing or differs from what would be written; 2 invalid
    /// options or pipeline; 3 the file cannot be read or written.
    Export(ExportArgs),
}

/// Arguments of `drydock ci export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The provider.
    #[arg(value_enum)]
    pub provider: Provider,
    /// The pipeline file to run (inside the repository).
    #[arg(long, value_name = "FILE")]
    pub pipeline: PathBuf,
    /// A branch whose pushes, and pull/merge requests into which, run the
    /// pipeline (repeatable; the first is the release branch).
    ///
    /// Default: the repository's current branch (else `main`); the
    /// generated file names the branches it was written for, so `--check`
    /// gives the same answer on the hosted machine's detached checkout.
    #[arg(long = "branch", value_name = "BRANCH")]
    pub branches: Vec<String>,
    /// Release to this channel on pushes to the first branch only (other
    /// builds run with --no-release); default: the pipeline's `release:` as
    /// written, on every build.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Install drydock with `cargo install --locked --git URL drydock-cli`.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "install_url",
        conflicts_with = "install_url"
    )]
    pub install_git: Option<String>,
    /// With --install-git: the commit, tag or branch to install (`--rev`).
    #[arg(long, value_name = "REV", requires = "install_git")]
    pub install_rev: Option<String>,
    /// Install drydock by downloading this prebuilt linux/x86_64 binary.
    #[arg(long, value_name = "URL")]
    pub install_url: Option<String>,
    /// Where to write the file (default: the provider's path in the
    /// repository, e.g. .github/workflows/drydock.yml); `-` for stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write nothing: exit 1 when the file is missing or differs from what
    /// would be written (a CI step that keeps the committed file in sync).
    #[arg(long)]
    pub check: bool,
}

/// Runs a `ci` subcommand.
pub async fn run(command: CiCommand) -> Result<u8, CliError> {
    match command {
        CiCommand::Export(args) => export(args).await,
    }
}

/// `path` relative to `root`, `/`-separated, when it is inside it.
fn relative_to(root: &Path, path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let rel = abs.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

async fn export(args: ExportArgs) -> Result<u8, CliError> {
    if !args.pipeline.is_file() {
        return Err(CliError::invalid(format!(
            "--pipeline {}: no such file",
            args.pipeline.display()
        )));
    }
    let repo_root = pipeline::find_repo_root(&args.pipeline);
    // The file must be a pipeline drydock accepts here, as the hosted job
    // will load it.
    let git = super::run::git_info(&repo_root).await;
    // Its secrets need not be at hand here: the hosted job gets them from
    // the provider's secret store.
    let loaded = super::run::load_pipeline_without_secrets(&args.pipeline, "export", &git)?;
    let pipeline = relative_to(&repo_root, &args.pipeline).ok_or_else(|| {
        CliError::invalid(format!(
            "--pipeline {}: not inside the repository {}",
            args.pipeline.display(),
            repo_root.display()
        ))
    })?;
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if to_stdout && args.check {
        return Err(CliError::invalid(
            "--check compares a file: it cannot be used with --output -",
        ));
    }
    let (output, output_rel) = match &args.output {
        Some(path) if !to_stdout => {
            let rel = relative_to(&repo_root, path).ok_or_else(|| {
                CliError::invalid(format!(
                    "--output {}: not inside the repository {} (the generated job checks it from there)",
                    path.display(),
                    repo_root.display()
                ))
            })?;
            let default = rel == args.provider.default_path();
            (repo_root.join(&rel), (!default).then_some(rel))
        }
        _ => (repo_root.join(args.provider.default_path()), None),
    };
    let install = match (args.install_git, args.install_url) {
        (Some(url), _) => Install::Git {
            url,
            rev: args.install_rev,
        },
        (None, Some(url)) => Install::Binary { url },
        (None, None) => {
            return Err(CliError::invalid(
                "give --install-git URL or --install-url URL",
            ))
        }
    };
    let opts = ExportOptions {
        pipeline,
        branches: if args.branches.is_empty() {
            let (branch, why) = match &git.branch {
                Some(branch) => (branch.clone(), "the current branch"),
                None => ("main".to_string(), "no current branch"),
            };
            errln!("drydock: no --branch given: the file is written for `{branch}` ({why})");
            vec![branch]
        } else {
            args.branches
        },
        channel: args.channel,
        install,
        output: output_rel,
        secrets: loaded
            .secrets
            .iter()
            .map(|secret| match &secret.source {
                SecretSource::Env(var) => HostedSecret::Env {
                    name: secret.name.clone(),
                    var: var.clone(),
                },
                SecretSource::File(_) => HostedSecret::File {
                    name: secret.name.clone(),
                },
            })
            .collect(),
    };
    opts.validate()
        .map_err(|e| CliError::invalid(e.to_string()))?;
    let text = hosted::render(args.provider, &opts);

    if to_stdout {
        out!("{text}");
        return Ok(0);
    }
    if args.check {
        return check(&output, &text, &opts.command(args.provider));
    }
    write_atomically(&output, &text)?;
    outln!("wrote {}", output.display());
    Ok(0)
}

/// `--check`: 0 when `path` holds exactly `text`, else a diff and exit 1.
fn check(path: &Path, text: &str, command: &str) -> Result<u8, CliError> {
    let current = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            errln!("{} is missing; write it with:\n  {command}", path.display());
            return Ok(crate::error::EXIT_FAILED);
        }
        Err(e) => {
            return Err(CliError::infra(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if current == text.as_bytes() {
        outln!("{} is up to date", path.display());
        return Ok(0);
    }
    let current = String::from_utf8_lossy(&current);
    let diff = similar::TextDiff::from_lines(current.as_ref(), text);
    let name = path.display().to_string();
    let unified = diff
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("{name} (committed)"),
            &format!("{name} (generated)"),
        )
        .to_string();
    // Bounded: a file replaced wholesale shows its first lines only.
    const MAX_LINES: usize = 200;
    let lines: Vec<&str> = unified.lines().collect();
    for line in lines.iter().take(MAX_LINES) {
        errln!("{line}");
    }
    if lines.len() > MAX_LINES {
        errln!("… ({} more diff lines)", lines.len() - MAX_LINES);
    }
    errln!(
        "{} is stale: it differs from what drydock generates; write it again with:\n  {command}",
        path.display()
    );
    Ok(crate::error::EXIT_FAILED)
}

/// Writes `text` to `path` through a temporary file in the same folder and a
/// rename, so that an interrupted write never leaves half a file.
fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let cannot =
        |e: std::io::Error| CliError::infra(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.drydock-tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(cannot)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        cannot(e)
    })
}

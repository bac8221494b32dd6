//! `drydock run` and `drydock validate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drydock_core::engine::Engine;
use drydock_core::events::Event;
use drydock_core::pipeline::{self, Pipeline, PipelineError, Vars};
use drydock_core::plan::{self, ReleaseChoice};
use drydock_core::report::{self, ResultsWriter};
use drydock_core::run::{self, CancelReason, GitInfo, RunCancel, RunOptions};
use drydock_core::trust::Trust;

use crate::error::CliError;
use crate::report::{json::JsonReporter, terminal::TerminalReporter, Reporter};

/// Arguments of `drydock run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file (e.g. pipelines/flask-api.yml).
    pub pipeline: PathBuf,
    /// Write newline-delimited JSON events to stdout instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// Build missing base images (`drydock images bootstrap`) before running.
    #[arg(long)]
    pub bootstrap: bool,
    /// Folder for results (a sub-folder per run); default `.drydock/results/`
    /// in the repository (git-ignored, never sent in a build context).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Print every log line of every step as it arrives.
    #[arg(long)]
    pub logs: bool,
    /// CA bundle handed to builds and networked steps (default: $DRYDOCK_CA_BUNDLE, else $PIP_CERT).
    #[arg(long, value_name = "PEM")]
    pub ca_bundle: Option<PathBuf>,
    /// Use this run id instead of a fresh one (letters, digits, `_`, `.`, `-`).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Seconds a stopped container gets before it is killed.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stop_grace: u64,
    /// Run every step once: ignore the steps' `retry:`.
    #[arg(long)]
    pub no_retry: bool,
    /// Release to this channel instead of the one the pipeline's `release:`
    /// names (as the runner's `deploy:` does).
    #[arg(long, value_name = "CHANNEL", conflicts_with = "no_release")]
    pub channel: Option<String>,
    /// Do not release, whatever the pipeline's `release:` says (a pull
    /// request's build on hosted CI).
    #[arg(long)]
    pub no_release: bool,
}

/// Loads and validates a pipeline, with built-ins from git and the run id.
pub fn load_pipeline(path: &Path, run_id: &str, git: &GitInfo) -> Result<Pipeline, CliError> {
    let repo_root = pipeline::find_repo_root(path);
    let mut vars = Vars::from_process_env().with_builtin("DRYDOCK_RUN_ID", run_id);
    if let Some(sha) = &git.sha {
        vars = vars
            .with_builtin("DRYDOCK_GIT_SHA", sha.as_str())
            .with_builtin("DRYDOCK_GIT_SHORT_SHA", &sha[..sha.len().min(12)]);
    }
    if let Some(branch) = &git.branch {
        vars = vars.with_builtin("DRYDOCK_GIT_BRANCH", branch.as_str());
    }
    pipeline::load(path, &repo_root, &vars).map_err(|e| pipeline_error(path, &e))
}

/// Renders a pipeline error with the offending line and a caret.
pub(crate) fn pipeline_error(path: &Path, error: &PipelineError) -> CliError {
    let mut message = error.to_string();
    if let Some((line, col)) = error.location() {
        if let Some((text, col)) = excerpt(path, line, col) {
            message.push_str(&format!(
                "\n  {line:>4} | {text}\n       | {}^",
                " ".repeat(col.saturating_sub(1))
            ));
        }
    }
    if let PipelineError::Invalid { all, .. } = error {
        if all.len() > 1 {
            message.push_str(&format!(
                "\n  ({} more problems; fix this one first)",
                all.len() - 1
            ));
        }
    }
    CliError::invalid(message)
}

/// The line `line` of the file, cut to about 100 characters around column
/// `col` and with control characters shown as `?` (so that the excerpt
/// never drives the terminal), and the column in the excerpt. The file is
/// read as far as drydock reads YAML files, whatever it holds.
fn excerpt(path: &Path, line: usize, col: usize) -> Option<(String, usize)> {
    const WIDTH: usize = 100;
    let bytes = drydock_core::yaml::read_limited(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    // Line breaks as YAML counts them: LF, CRLF, CR.
    let chars: Vec<char> = text
        .replace("\r\n", "\n")
        .split(['\n', '\r'])
        .nth(line.checked_sub(1)?)?
        .chars()
        .collect();
    let start = col.saturating_sub(WIDTH / 2 + 1).min(chars.len());
    let end = (start + WIDTH).min(chars.len());
    let mut shown: String = chars[start..end]
        .iter()
        .map(|&c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect();
    let mut col = col - start;
    if start > 0 {
        shown.insert(0, '…');
        col += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    Some((shown, col))
}

/// The commit being run: sha and branch from git, when the folder is a repository.
pub async fn git_info(dir: &Path) -> GitInfo {
    async fn git(dir: &Path, args: &[&str]) -> Option<String> {
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    }
    GitInfo {
        sha: git(dir, &["rev-parse", "HEAD"]).await,
        branch: git(dir, &["rev-parse", "--abbrev-ref", "HEAD"])
            .await
            .filter(|b| b != "HEAD"),
    }
}

/// `drydock validate`.
pub async fn validate(path: &Path) -> Result<u8, CliError> {
    let git = git_info(&pipeline::find_repo_root(path)).await;
    let pipeline = load_pipeline(path, "validate", &git)?;
    println!(
        "{}: valid ({}, {}, {})",
        path.display(),
        count(pipeline.tiers.len(), "tier"),
        count(pipeline.builds.len(), "build"),
        count(pipeline.services.len(), "service")
    );
    Ok(0)
}

/// `3 tiers`, `1 tier`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Arguments of `drydock plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// CA bundle the plan hands to builds and networked steps (default: $DRYDOCK_CA_BUNDLE, else $PIP_CERT).
    #[arg(long, value_name = "PEM")]
    pub ca_bundle: Option<PathBuf>,
}

/// `drydock plan`: what a run of the pipeline would do, without an engine.
pub async fn plan(args: PlanArgs) -> Result<u8, CliError> {
    let git = git_info(&pipeline::find_repo_root(&args.pipeline)).await;
    let run_id = "plan".to_string();
    let pipeline = load_pipeline(&args.pipeline, &run_id, &git)?;
    let plan = plan::plan(
        &pipeline,
        &plan::PlanOptions {
            run_id,
            git,
            trust: trust_from(args.ca_bundle.as_ref())?,
            release: ReleaseChoice::AsWritten,
            no_retry: false,
        },
    );
    if args.json {
        let json = serde_json::to_string_pretty(&plan)
            .map_err(|e| CliError::infra(format!("cannot render the plan: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", plan::render(&plan));
    }
    Ok(0)
}

/// The run's trust settings: the environment's, with `--ca-bundle` first.
fn trust_from(ca_bundle: Option<&PathBuf>) -> Result<Trust, CliError> {
    let mut trust = Trust::from_env();
    if let Some(ca) = ca_bundle {
        trust.ca_bundle = Some(ca.clone());
    }
    if let Some(ca) = &trust.ca_bundle {
        if !ca.is_file() {
            return Err(CliError::invalid(format!(
                "CA bundle {} does not exist",
                ca.display()
            )));
        }
    }
    Ok(trust)
}

/// `drydock run`.
pub async fn run(args: RunArgs) -> Result<u8, CliError> {
    let run_id = match &args.run_id {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) =>
        {
            id.clone()
        }
        Some(id) => {
            return Err(CliError::invalid(format!(
                "invalid run id {id:?}: use up to 64 letters, digits, `_`, `.` or `-`"
            )))
        }
        None => run::new_run_id(),
    };
    let release = match (&args.channel, args.no_release) {
        (_, true) => ReleaseChoice::Off,
        (Some(channel), false) => {
            if !valid_channel(channel) {
                return Err(CliError::invalid(format!(
                    "--channel {channel:?}: expected an image tag [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 128 characters)"
                )));
            }
            ReleaseChoice::Channel(channel.clone())
        }
        (None, false) => ReleaseChoice::AsWritten,
    };
    let repo_root = pipeline::find_repo_root(&args.pipeline);
    let git = git_info(&repo_root).await;
    let pipeline = load_pipeline(&args.pipeline, &run_id, &git)?;
    let engine = Engine::connect().await?;

    // Best effort: leftovers of dead runs must never stop this run.
    match engine.reap_dead_runs().await {
        Ok(0) => {}
        Ok(reaped) if !args.json => {
            eprintln!("drydock: removed {reaped} leftovers of runs that died")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not remove leftovers of dead runs: {e}"),
    }
    let trust = trust_from(args.ca_bundle.as_ref())?;
    if args.bootstrap {
        super::images::bootstrap_missing(&engine, &repo_root, &trust, args.json).await?;
    }

    let results_root = match &args.results {
        Some(dir) => dir.clone(),
        None => report::default_results_root(&pipeline.repo_root).map_err(|e| {
            CliError::infra(format!(
                "cannot create the results folder in {}: {e}",
                pipeline.repo_root.display()
            ))
        })?,
    };
    let results_dir = results_root.join(&run_id);
    let mut results = ResultsWriter::create(&results_dir).map_err(|e| {
        CliError::infra(format!(
            "cannot create results folder {}: {e}",
            results_dir.display()
        ))
    })?;
    let mut reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonReporter::new())
    } else {
        Box::new(TerminalReporter::new(args.logs))
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
    // Reporters write files and terminals: keep them off the async runtime.
    let consumer = std::thread::spawn(move || {
        while let Some(event) = rx.blocking_recv() {
            // Nothing follows the end of the run: do not wait for a
            // sender that a task given up on still holds.
            let last = matches!(event, Event::RunFinished { .. });
            if let Err(e) = results.handle(&event) {
                tracing::warn!("results folder: {e}");
            }
            reporter.handle(&event);
            if last {
                break;
            }
        }
        reporter.finish();
    });

    let cancel = RunCancel::new();
    let signals = tokio::spawn(watch_signals(
        cancel.clone(),
        engine.clone(),
        run_id.clone(),
    ));
    let options = RunOptions {
        run_id: run_id.clone(),
        results_dir,
        trust,
        git: git.clone(),
        stop_grace: Duration::from_secs(args.stop_grace),
        release,
        no_retry: args.no_retry,
    };
    let runtime = Arc::new(engine.clone());
    let plan = plan::plan(&pipeline, &options.plan_options());
    let exec = options.exec_options();
    let task = tokio::spawn(async move { run::run_plan(&plan, runtime, exec, tx, cancel).await });
    let report = task.await;
    signals.abort();
    let _ = tokio::task::spawn_blocking(move || consumer.join()).await;

    let report = match report {
        Ok(report) => report,
        Err(panic) => {
            // The executor died: its teardown did not run, so sweep by label.
            let _ = engine.remove_run(&run_id).await;
            return Err(CliError::infra(format!(
                "internal error in run {run_id}: {panic}"
            )));
        }
    };
    if let Some(released) = &report.released {
        super::releases::record_release(released, &git, &run_id)?;
    }
    Ok(report.outcome.exit_code() as u8)
}

/// A release channel: an image tag, as the pipeline's `release.channel`
/// (`[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 characters).
fn valid_channel(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// First SIGINT/SIGTERM: cancel gracefully (running steps get the stop
/// grace; `when: always` steps still run). Second: stop now — the run skips
/// what is left, tears down in at most a second and writes `run_finished`;
/// whatever the engine does, the process exits 130 within 2 s.
async fn watch_signals(cancel: RunCancel, _engine: Engine, run_id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!("\ndrydock: interrupted; stopping containers (again to force)…");
    cancel.cancel(CancelReason::Signal);
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!("drydock: stopping now");
    cancel.cancel(CancelReason::SecondSignal);
    tokio::time::sleep(Duration::from_millis(1900)).await;
    eprintln!(
        "drydock: the run did not end in time; containers of run {run_id} may be left: `drydock gc` removes them"
    );
    std::process::exit(130);
}

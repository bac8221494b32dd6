//! `drydock run` and `drydock validate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drydock_core::engine::Engine;
use drydock_core::events::{Event, EventSink};
use drydock_core::pipeline::{self, Pipeline, PipelineError, Vars};
use drydock_core::plan::{self, ReleaseChoice};
use drydock_core::report;
use drydock_core::run::{self, CancelReason, GitInfo, RunCancel, RunOptions};
use drydock_core::session;
use drydock_core::trust::Trust;

use crate::error::CliError;
use crate::report::{
    json::JsonReporter,
    terminal::{TerminalOptions, TerminalReporter},
};

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
    /// Seconds a stopped container gets before it is killed (as `docker stop -t`).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stop_grace: u64,
    /// Run every step once: ignore the steps' `retry:`.
    #[arg(long)]
    pub no_retry: bool,
    /// Run every step: replay no stored result (`reuse:`), even for steps
    /// where nothing changed. Results are still stored for later runs.
    #[arg(long)]
    pub no_reuse: bool,
    /// Release to this channel instead of the one the pipeline's `release:`
    /// names (as the runner's `deploy:` does).
    #[arg(long, value_name = "CHANNEL", conflicts_with = "no_release")]
    pub channel: Option<String>,
    /// Do not release, whatever the pipeline's `release:` says (a pull
    /// request's build on hosted CI).
    #[arg(long)]
    pub no_release: bool,
    /// Put the time (RFC 3339, UTC, milliseconds) before every line of the terminal view.
    #[arg(long)]
    pub timestamps: bool,
    /// Without a terminal (CI logs): a "still running" line per running
    /// step this often (30s, 1m…; 0 turns it off).
    #[arg(
        long,
        value_name = "DURATION",
        env = "DRYDOCK_PROGRESS_INTERVAL",
        default_value = "30s",
        value_parser = parse_interval
    )]
    pub progress_interval: Duration,
}

/// `30s`, `1m`, `250ms`; `0` or `off` is zero (no progress lines).
fn parse_interval(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" | "off" => Ok(Duration::ZERO),
        other => pipeline::parse_duration(other),
    }
}

/// Loads and validates a pipeline, with built-ins from git and the run id.
pub fn load_pipeline(path: &Path, run_id: &str, git: &GitInfo) -> Result<Pipeline, CliError> {
    load_pipeline_with(path, run_id, git, Vars::from_process_env())
}

/// [`load_pipeline`] without needing the secrets' sources to be there (see
/// [`Vars::without_secret_sources`]): for `plan` and `ci export`.
pub fn load_pipeline_without_secrets(
    path: &Path,
    run_id: &str,
    git: &GitInfo,
) -> Result<Pipeline, CliError> {
    load_pipeline_with(
        path,
        run_id,
        git,
        Vars::from_process_env().without_secret_sources(),
    )
}

fn load_pipeline_with(
    path: &Path,
    run_id: &str,
    git: &GitInfo,
    vars: Vars,
) -> Result<Pipeline, CliError> {
    let repo_root = pipeline::find_repo_root(path);
    let mut vars = vars.with_builtin("DRYDOCK_RUN_ID", run_id);
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

/// An invalid pipeline as an error: every problem with its code frame for
/// people, and every problem located for tools.
pub(crate) fn pipeline_error(path: &Path, error: &PipelineError) -> CliError {
    use drydock_core::events::{FailureKind, Location, Problem, RunFailure};
    let (text, formatted) = crate::diagnostics::render_pipeline_error(path, error);
    let mut e = CliError::invalid(text);
    e.formatted = formatted;
    let problems: Vec<Problem> = error
        .diagnostics()
        .into_iter()
        .map(|d| Problem {
            location: Location {
                file: d.file,
                line: d.line as u64,
                col: d.col as u64,
            },
            message: d.message,
        })
        .collect();
    e.failure = Some(Box::new(RunFailure {
        kind: FailureKind::InvalidConfiguration,
        message: match error {
            PipelineError::Io { .. } => error.to_string(),
            _ => problems
                .first()
                .map(|p| {
                    format!(
                        "{}:{}:{}: {}",
                        p.location.file, p.location.line, p.location.col, p.message
                    )
                })
                .unwrap_or_else(|| error.to_string()),
        },
        location: problems.first().map(|p| p.location.clone()),
        problems,
    }));
    e
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

/// A working tree with changes that are not committed (modified, staged,
/// deleted or untracked files, outside drydock's results folders) is not
/// the commit: its sha becomes `<sha>-dirty` (as `git describe --dirty`
/// says it), so that a release is never tagged, recorded or found by
/// `rollback --to <sha>` as that commit. Says so on stderr.
async fn mark_dirty(mut git: GitInfo, repo_root: &Path, results: Option<&Path>) -> GitInfo {
    let Some(sha) = git.sha.clone() else {
        return git;
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(repo_root)
        .args([
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=normal",
            "--",
            ".",
        ])
        .arg(":(exclude).drydock");
    // Both resolved (symlinks, `..`) as far as they exist: the results
    // folder usually does not exist yet.
    let real = |path: &Path| -> Option<PathBuf> {
        let abs = std::path::absolute(path).ok()?;
        abs.ancestors().find_map(|existing| {
            let rest = abs.strip_prefix(existing).ok()?;
            Some(existing.canonicalize().ok()?.join(rest))
        })
    };
    if let Some(rel) = results
        .and_then(real)
        .zip(real(repo_root))
        .and_then(|(r, root)| r.strip_prefix(&root).ok().map(Path::to_path_buf))
        .filter(|r| !r.as_os_str().is_empty())
    {
        cmd.arg(format!(":(exclude){}", rel.display()));
    }
    let dirty = match cmd.output().await {
        Ok(out) if out.status.success() => !out.stdout.is_empty(),
        _ => false,
    };
    if dirty {
        errln!(
            "drydock: the working tree has changes that are not committed: this run counts as {}-dirty, not as the commit (a release is tagged and recorded so)",
            &sha[..sha.len().min(12)]
        );
        git.sha = Some(format!("{sha}-dirty"));
    }
    git
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
    let pipeline = load_pipeline_without_secrets(&args.pipeline, &run_id, &git)?;
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
        outln!("{json}");
    } else {
        out!("{}", plan::render(&plan));
    }
    Ok(0)
}

/// The run's trust settings: the environment's, with `--ca-bundle` first.
pub(crate) fn trust_from(ca_bundle: Option<&PathBuf>) -> Result<Trust, CliError> {
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

/// A run refused before it started (invalid input, unreachable engine…):
/// with `--json`, the event stream still says so. When the pipeline was
/// planned, every planned step is skipped and every tier finished (with the
/// reason), then `run_finished` carries the error (kind, message, location).
fn refused(json: bool, run_id: &str, planned: Option<&plan::Plan>, error: CliError) -> CliError {
    use drydock_core::events::{Outcome, Status, TestCounts};
    if !json {
        return error;
    }
    let failure = error.run_failure();
    let mut events = Vec::new();
    if let Some(planned) = planned {
        let tiers = run::tier_plans(planned);
        let reason = format!(
            "the run did not start: {}",
            failure.message.lines().next().unwrap_or_default()
        );
        events.push(Event::RunStarted {
            run_id: run_id.to_string(),
            pipeline: planned.pipeline.clone(),
            tiers: tiers.clone(),
            results_dir: String::new(),
            engine: String::new(),
        });
        for tier in tiers {
            for step in tier.steps {
                events.push(Event::StepSkipped {
                    tier: tier.name.clone(),
                    step,
                    reason: Some(reason.clone()),
                });
            }
            events.push(Event::TierFinished {
                tier: tier.name,
                status: Status::Skipped,
                duration_ms: 0,
                tests: TestCounts::default(),
            });
        }
    }
    events.push(Event::RunFinished {
        run_id: run_id.to_string(),
        outcome: match error.code {
            crate::error::EXIT_INVALID => Outcome::Invalid,
            130 => Outcome::Interrupted,
            crate::error::EXIT_FAILED => Outcome::Failed,
            _ => Outcome::Errored,
        },
        duration_ms: 0,
        error: Some(failure.message.clone()),
        removed: 0,
        cancel_reason: None,
        failure: Some(failure),
    });
    let mut reporter = JsonReporter::new(run_id);
    for event in &events {
        reporter.handle(event, chrono::Utc::now());
    }
    reporter.finish();
    error
}

/// A run id given with `--run-id`: up to 64 letters, digits, `_`, `.` or
/// `-` (a label value, an image tag and a folder name alike).
pub(crate) fn check_run_id(id: &str) -> Result<String, CliError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(id.to_string())
    } else {
        Err(CliError::usage(format!(
            "invalid run id {id:?}: use up to 64 letters, digits, `_`, `.` or `-`"
        )))
    }
}

/// `drydock run`.
pub async fn run(args: RunArgs) -> Result<u8, CliError> {
    let run_id = match &args.run_id {
        Some(id) => check_run_id(id).map_err(|e| refused(args.json, "", None, e))?,
        None => run::new_run_id(),
    };
    let release = match (&args.channel, args.no_release) {
        (_, true) => ReleaseChoice::Off,
        (Some(channel), false) => {
            if !drydock_core::pipeline::is_tag(channel) {
                return Err(refused(
                    args.json,
                    &run_id,
                    None,
                    CliError::usage(format!(
                        "--channel {channel:?}: expected an image tag [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 128 characters)"
                    )),
                ));
            }
            ReleaseChoice::Channel(channel.clone())
        }
        (None, false) => ReleaseChoice::AsWritten,
    };
    let repo_root = pipeline::find_repo_root(&args.pipeline);
    let git = mark_dirty(
        git_info(&repo_root).await,
        &repo_root,
        args.results.as_deref(),
    )
    .await;
    let pipeline = load_pipeline(&args.pipeline, &run_id, &git)
        .map_err(|e| refused(args.json, &run_id, None, e))?;
    let trust =
        trust_from(args.ca_bundle.as_ref()).map_err(|e| refused(args.json, &run_id, None, e))?;
    let mut options = RunOptions {
        run_id: run_id.clone(),
        results_dir: PathBuf::new(),
        trust,
        git: git.clone(),
        stop_grace: Duration::from_secs(args.stop_grace),
        release,
        no_retry: args.no_retry,
        ledger: drydock_core::release::Ledger::default_path(),
        release_fence: None,
        results_store: Some(drydock_core::reuse::store_dir(
            &drydock_core::cache::state_dir(),
        )),
        no_reuse: args.no_reuse,
    };
    let plan = plan::plan(&pipeline, &options.plan_options());
    let refuse = |e: CliError| refused(args.json, &run_id, Some(&plan), e);
    let engine = Engine::connect().await.map_err(|e| refuse(e.into()))?;

    // Best effort: leftovers of dead runs must never stop this run.
    match engine.reap_dead_runs().await {
        Ok(0) => {}
        Ok(reaped) if !args.json => errln!(
            "drydock: removed {} of runs that died",
            crate::report::plural(reaped as u64, "leftover")
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not remove leftovers of dead runs: {e}"),
    }
    if args.bootstrap {
        super::images::bootstrap_missing(&engine, &repo_root, &options.trust, args.json)
            .await
            .map_err(refuse)?;
    }

    let results_root = match &args.results {
        Some(dir) => dir.clone(),
        None => report::default_results_root(&pipeline.repo_root).map_err(|e| {
            refuse(CliError::infra(format!(
                "cannot create the results folder in {}: {e}",
                pipeline.repo_root.display()
            )))
        })?,
    };
    options.results_dir = results_root.join(&run_id);
    let reporter: Box<dyn EventSink> = if args.json {
        Box::new(JsonReporter::new(&run_id))
    } else {
        Box::new(TerminalReporter::new(TerminalOptions {
            show_logs: args.logs,
            timestamps: args.timestamps,
            progress_interval: Some(args.progress_interval),
        }))
    };

    let cancel = RunCancel::new();
    let ledger = options.ledger.clone();
    let signals = tokio::spawn(watch_signals(
        cancel.clone(),
        ledger.clone(),
        run_id.clone(),
    ));
    let asked_to_stop = cancel.clone();
    let ended = session::run_session(
        &plan,
        Arc::new(engine.clone()),
        options,
        cancel,
        vec![reporter],
    )
    .await;
    signals.abort();
    let report = match ended {
        Ok(ended) => {
            if ended.sink_failed {
                errln!("drydock: internal error: the reporter stopped early (the results folder may be incomplete)");
            }
            ended.report
        }
        Err(e @ session::SessionError::ResultsFolder { .. }) => {
            return Err(refuse(CliError::infra(e.to_string())))
        }
        Err(e) => {
            return Err(refused(
                args.json,
                &run_id,
                None,
                CliError::infra(e.to_string()),
            ))
        }
    };
    // The executor recorded the release (and moved the channel) itself. A
    // signal that came after it (say, during the teardown) changes nothing:
    // say so, since the terminal said a signal was received.
    if let (Some(released), Some(_)) = (
        &report.released,
        report.cancel_reason.or(asked_to_stop.reason()),
    ) {
        if report.outcome == drydock_core::events::Outcome::Passed {
            errln!(
                "drydock: the run had released {}:{} (ledger entry {}) when it was asked to stop: it passed",
                released.name, released.channel, released.entry.id
            );
        }
    }
    Ok(report.outcome.exit_code() as u8)
}

/// First SIGINT/SIGTERM: cancel gracefully (running steps get the stop
/// grace; `when: always` steps still run; a release not yet started does
/// not happen, one under way completes). Second: stop now — the run skips
/// what is left, tears down in at most a second and writes `run_finished`;
/// whatever the engine does, the process exits within 2 s: 130, or 0 when
/// the ledger (`ledger`) holds the run's release (it passed and released;
/// see `drydock_core::release`).
async fn watch_signals(cancel: RunCancel, ledger: PathBuf, run_id: String) {
    let Ok(mut signals) = drydock_core::run::StopSignals::install() else {
        return;
    };
    signals.next().await;
    errln!("\ndrydock: signal received: stopping the run (again to force)…");
    cancel.cancel(CancelReason::Signal);
    signals.next().await;
    errln!("drydock: stopping now");
    cancel.cancel(CancelReason::SecondSignal);
    tokio::time::sleep(Duration::from_millis(1900)).await;
    errln!(
        "drydock: the run did not end in time; containers of run {run_id} may be left: `drydock gc` removes them"
    );
    // A run whose release was recorded passed: say so with the exit code.
    // No release is recorded after this check (a move being recorded gets
    // 300 ms to land), so what the exit code says is final.
    let released = tokio::task::spawn_blocking(move || {
        drydock_core::release::stop_recording(Duration::from_millis(300));
        drydock_core::release::released_by_run(&ledger, &run_id)
    })
    .await
    .ok()
    .flatten();
    if let Some(entry) = released {
        errln!(
            "drydock: the run had released {}:{} (ledger entry {}): it passed",
            entry.name,
            entry.channel,
            entry.id
        );
        std::process::exit(0);
    }
    std::process::exit(130);
}

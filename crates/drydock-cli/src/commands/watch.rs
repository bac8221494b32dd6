//! `drydock watch`: one tier kept warm, its steps run again on every save
//! (see `drydock_core::watch` and docs/watch.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drydock_core::engine::Engine;
use drydock_core::pipeline;
use drydock_core::plan::{self, PlanOptions};
use drydock_core::run::{self, CancellationToken, ExecOptions};
use drydock_core::watch::{self, Report, Session, WatchError, WatchMap};

use crate::error::CliError;

/// Arguments of `drydock watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The pipeline file (e.g. pipelines/flask-api.yml).
    pub pipeline: PathBuf,
    /// The tier to keep warm. Default: the first tier with a test step (a
    /// step that collects a JUnit report), else the first tier with steps.
    #[arg(long, value_name = "TIER")]
    pub tier: Option<String>,
    /// Only these steps of the tier (repeatable; default: every step).
    #[arg(long = "step", value_name = "STEP")]
    pub steps: Vec<String>,
    /// CA bundle handed to builds and networked steps (default: $DRYDOCK_CA_BUNDLE, else $PIP_CERT).
    #[arg(long, value_name = "PEM")]
    pub ca_bundle: Option<PathBuf>,
    /// Use this run id instead of a fresh one (letters, digits, `_`, `.`, `-`):
    /// every object the session creates carries it (`drydock gc --run ID`).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

/// Exit code after Ctrl-C or SIGTERM (the session's normal end).
const EXIT_INTERRUPTED: u8 = 130;

/// How long the removal may take after a second signal.
const FORCED_TEARDOWN: Duration = Duration::from_secs(1);

/// `drydock watch PIPELINE [--tier T] [--step S]…`: runs until Ctrl-C or
/// SIGTERM (exit 130, everything removed); exit 2 for an invalid pipeline,
/// tier or step, 3 when the engine fails, 1 when a build the tier needs fails
/// at start.
pub async fn watch(args: WatchArgs) -> Result<u8, CliError> {
    let run_id = match &args.run_id {
        Some(id) => super::run::check_run_id(id)?,
        None => run::new_run_id(),
    };
    let repo_root = pipeline::find_repo_root(&args.pipeline);
    let git = super::run::git_info(&repo_root).await;
    let pipeline = super::run::load_pipeline(&args.pipeline, &run_id, &git)?;
    let trust = super::run::trust_from(args.ca_bundle.as_ref())?;
    let plan = plan::plan(
        &pipeline,
        &PlanOptions {
            run_id: run_id.clone(),
            git,
            trust,
            release: plan::ReleaseChoice::Off,
            no_retry: true,
        },
    );
    let tier = watch::choose_tier(&plan, args.tier.as_deref()).map_err(cli_error)?;
    let steps = watch::choose_steps(&plan, tier, &args.steps).map_err(cli_error)?;
    let engine = Engine::connect().await?;
    if let Err(e) = engine.reap_dead_runs().await {
        tracing::warn!("could not remove leftovers of dead runs: {e}");
    }
    let results_root =
        drydock_core::report::default_results_root(&pipeline.repo_root).map_err(|e| {
            CliError::infra(format!(
                "cannot create the results folder in {}: {e}",
                pipeline.repo_root.display()
            ))
        })?;
    let results_dir = results_root.join(&run_id);
    std::fs::create_dir_all(&results_dir)
        .map_err(|e| CliError::infra(format!("cannot create {}: {e}", results_dir.display())))?;
    let ignored = vec![results_root.clone()];
    let options = ExecOptions {
        results_dir,
        stop_grace: Duration::from_secs(1),
        ledger: drydock_core::release::Ledger::default_path(),
        release_fence: None,
        // The TDD loop runs what changed on every save: nothing is replayed.
        results_store: None,
        no_reuse: true,
    };

    let stop = CancellationToken::new();
    let runtime = Arc::new(engine.clone());
    let signals = tokio::spawn(watch_signals(stop.clone(), engine.clone(), plan.clone()));
    errln!(
        "drydock watch: run {run_id}, tier {}, {} (Ctrl-C to stop)",
        plan.tiers[tier].name,
        crate::report::plural(steps.len() as u64, "step")
    );
    let note = |line: String| errln!("  {line}");
    let started = tokio::select! {
        s = Session::start(plan.clone(), runtime.clone(), options, tier, steps, &note) => Some(s),
        _ = stop.cancelled() => None,
    };
    let mut session = match started {
        Some(Ok(session)) => session,
        Some(Err(e)) => {
            let removed = watch::remove_all(runtime.as_ref(), &plan).await;
            tracing::debug!("removed {removed} objects of the session");
            signals.abort();
            if let WatchError::Build { tail, .. } = &e {
                for line in tail {
                    errln!("    {line}");
                }
            }
            return Err(cli_error(e));
        }
        None => {
            watch::remove_all(runtime.as_ref(), &plan).await;
            errln!("drydock watch: stopped; everything it created is removed");
            return Ok(EXIT_INTERRUPTED);
        }
    };
    let map = WatchMap::new(
        session.plan(),
        session.steps(),
        session.builds(),
        ignored.clone(),
    );
    let watched = watch::watch_files(&map, watch::DEBOUNCE, ignored.clone());
    let (watcher, saves) = match watched {
        Ok(w) => w,
        Err(e) => {
            session.teardown().await;
            signals.abort();
            return Err(cli_error(e));
        }
    };
    let roots: Vec<String> = map
        .roots()
        .iter()
        .map(|(p, _)| relative(&plan.repo_root, p))
        .collect();
    if roots.is_empty() {
        errln!(
            "  watching nothing: the tier's steps mount no repository path and it builds nothing"
        );
    } else {
        errln!("  watching {}", roots.join(", "));
    }
    let repo_root = plan.repo_root.clone();
    let mut print = |report: Report| print_report(&repo_root, report);
    let looped = watch::watch(&mut session, map, ignored, saves, stop.clone(), &mut print).await;
    drop(watcher);
    let removed = session.teardown().await;
    signals.abort();
    errln!(
        "drydock watch: stopped; removed {} it created",
        crate::report::plural(removed as u64, "object")
    );
    match looped {
        Ok(()) => Ok(EXIT_INTERRUPTED),
        Err(e) => Err(cli_error(e)),
    }
}

fn cli_error(e: WatchError) -> CliError {
    match e {
        WatchError::Invalid(m) => CliError::invalid(m),
        WatchError::Infra(m) => CliError::infra(m),
        e @ WatchError::Build { .. } => CliError::failed(e.to_string()),
    }
}

fn relative(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(p) if p.as_os_str().is_empty() => ".".to_string(),
        Ok(p) => p.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// One report on the terminal: step lines on stdout (with the log tail of a
/// failure), the rest on stderr.
fn print_report(repo_root: &Path, report: Report) {
    match report {
        Report::Changed(paths) => {
            let first = paths
                .first()
                .map(|p| relative(repo_root, p))
                .unwrap_or_default();
            let more = if paths.len() > 1 {
                format!(" (+{})", paths.len() - 1)
            } else {
                String::new()
            };
            errln!("· saved {first}{more}");
        }
        Report::Rebuilding { build, .. } => {
            errln!("· the build {build} reads a saved file: rebuilding it");
        }
        Report::Rebuilt {
            build,
            changed,
            duration,
        } => {
            if changed {
                errln!(
                    "· rebuilt {build} in {:.1}s: its containers are new",
                    duration.as_secs_f64()
                );
            } else {
                errln!("· rebuilt {build}: image unchanged");
            }
        }
        Report::RebuildFailed { build, error, tail } => {
            errln!("✘ build {build}: {error} (the previous image stays)");
            for line in tail {
                errln!("    {line}");
            }
        }
        Report::Step(result) => {
            outln!("{}", watch::summary_line(&result));
            if !result.status.is_success() {
                for line in &result.tail {
                    outln!("    {line}");
                }
            }
        }
    }
}

/// First SIGINT/SIGTERM: stop the loop (the caller removes everything).
/// Second: remove what can be removed within [`FORCED_TEARDOWN`] and exit 130.
async fn watch_signals(stop: CancellationToken, engine: Engine, plan: plan::Plan) {
    let Ok(mut signals) = drydock_core::run::StopSignals::install() else {
        return;
    };
    signals.next().await;
    errln!("\ndrydock watch: stopping, removing what it created (again to force)…");
    stop.cancel();
    signals.next().await;
    errln!("drydock watch: stopping now");
    let removed = tokio::time::timeout(FORCED_TEARDOWN, watch::remove_all(&engine, &plan)).await;
    if removed.is_err() {
        errln!(
            "drydock watch: containers of run {} may be left: `drydock gc --run {}` removes them",
            plan.run_id,
            plan.run_id
        );
    }
    std::process::exit(EXIT_INTERRUPTED.into());
}

//! Executing runs: the dispatcher (a worker pool with a concurrency limit),
//! one run from checkout to teardown, and recovery at start-up.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use drydock_core::deploy::{self, Outcome as DeployOutcome, Which};
use drydock_core::events::{Event, Outcome};
use drydock_core::pipeline::{self, Vars};
use drydock_core::plan::ReleaseChoice;
use drydock_core::release::{self, ChannelRef, Ledger};
use drydock_core::report::ResultsWriter;
use drydock_core::run::{
    run_pipeline, CancelReason, CancellationToken, GitInfo, RunCancel, RunOptions,
};
use drydock_core::trust::Trust;

use crate::config::RepoConfig;
use crate::gate;
use crate::store::{
    DeploySummary, NewRun, Run, RunKind, RunState, RunSummary, StepSummary, TierSummary,
};
use crate::Shared;

/// The run's own log (`run.log` in its results folder): runner messages and
/// every step's output, prefixed `[tier/step]`, flushed line by line so the
/// API can stream it. At most [`MAX_RUN_LOG_BYTES`] of step output are
/// written (one line then says so; the full output is in the step's `.log`);
/// runner messages are always written.
#[derive(Clone)]
pub struct RunLog(Arc<Mutex<RunLogFile>>);

/// Most bytes of step output in a `run.log`.
pub const MAX_RUN_LOG_BYTES: u64 = 64 << 20;

struct RunLogFile {
    file: Option<std::fs::File>,
    output_bytes: u64,
    capped: bool,
}

impl RunLog {
    /// Opens (appending) `dir/run.log`.
    pub fn open(dir: &Path) -> RunLog {
        let _ = std::fs::create_dir_all(dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("run.log"))
            .ok();
        RunLog(Arc::new(Mutex::new(RunLogFile {
            file,
            output_bytes: 0,
            capped: false,
        })))
    }

    /// Appends one line.
    pub fn line(&self, text: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = log.file.as_mut() {
            let _ = f.write_all(text.as_bytes());
            let _ = f.write_all(b"\n");
        }
    }

    /// Appends a line of step output, within [`MAX_RUN_LOG_BYTES`].
    pub fn output(&self, text: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if log.capped {
            return;
        }
        log.output_bytes += text.len() as u64 + 1;
        if log.output_bytes > MAX_RUN_LOG_BYTES {
            log.capped = true;
            drop(log);
            self.note(&format!(
                "step output past {} MiB is not in run.log; each step's full log is in \
                 logs/<tier>/<step>.log (see summary.json)",
                MAX_RUN_LOG_BYTES >> 20
            ));
            return;
        }
        drop(log);
        self.line(text);
    }

    /// A runner message (`drydock: …`).
    pub fn note(&self, text: &str) {
        self.line(&format!("drydock: {text}"));
    }
}

/// At start-up: runs a previous runner left `running` become `interrupted`,
/// their containers and worktrees are removed, and (with
/// `requeue_interrupted`) each is queued again.
pub async fn recover(shared: &Arc<Shared>) {
    let interrupted = match shared
        .store
        .interrupt_running("interrupted: the runner stopped while this run was running")
    {
        Ok(runs) => runs,
        Err(e) => {
            tracing::error!("cannot recover interrupted runs: {e}");
            Vec::new()
        }
    };
    for run in &interrupted {
        match shared.engine.remove_run(&run.id).await {
            Ok(n) if n > 0 => {
                tracing::info!(run = %run.id, "removed {n} containers/networks of the interrupted run")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(run = %run.id, "cannot remove the interrupted run's containers: {e}")
            }
        }
        if let Some(mirror) = shared.mirrors.get(&run.repo) {
            mirror.remove_worktree(&shared.worktree_dir(&run.id)).await;
        }
        RunLog::open(&shared.results_dir(&run.id)).note("interrupted: the runner stopped");
        if !shared.config.requeue_interrupted {
            continue;
        }
        // A run found `running` at start-up is one the runner died during. If
        // it was itself the re-queue of such a run, the runner died twice on
        // this commit: something in it may be what kills the runner, and
        // re-queuing it again would make the runner crash-loop.
        if run.trigger.starts_with(RESTART_REQUEUE) {
            let reason = "interrupted again: the runner died twice while running this commit                           (it may be what stops the runner); not re-queued again. Re-run it                           through the API once the cause is known";
            let _ = shared.store.set_reason(&run.id, reason);
            RunLog::open(&shared.results_dir(&run.id)).note(reason);
            tracing::error!(run = %run.id, "{reason}");
            continue;
        }
        requeue_interrupted(shared, run, RESTART_WHY);
    }
    match shared.engine.reap_dead_runs().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftovers of dead runs"),
        Err(e) => tracing::warn!("cannot remove leftovers of dead runs: {e}"),
    }
    repair_channels(shared).await;
}

/// Re-points every channel tag a process left behind between recording a
/// move in the ledger and making it (`drydock_core::release::repair`).
async fn repair_channels(shared: &Shared) {
    match release::repair_all(&shared.engine, &Ledger::default_path()).await {
        Ok(found) => {
            for (channel, repaired) in found {
                match repaired {
                    Ok(r) => {
                        if let Some(message) = r.message() {
                            tracing::warn!(%channel, "{message}");
                        }
                    }
                    Err(e) => tracing::warn!(%channel, "cannot check the channel tag: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("cannot check the channel tags of the ledger: {e}"),
    }
}

/// Why a run found `running` at start-up is re-queued.
const RESTART_WHY: &str = "the runner restarted";
/// The trigger of such a re-queue (see [`requeue_interrupted`]).
const RESTART_REQUEUE: &str = "re-queued: the runner restarted";

fn requeue_interrupted(shared: &Shared, run: &Run, why: &str) {
    match shared.enqueue(NewRun {
        repo: run.repo.clone(),
        branch: run.branch.clone(),
        sha: run.sha.clone(),
        kind: run.kind,
        trigger: format!("re-queued: {why} while run {} was running", run.id),
        retry_of: Some(run.id.clone()),
    }) {
        Ok(again) => {
            let _ = shared.store.set_reason(
                &run.id,
                &format!("interrupted ({why}); re-queued as run {}", again.id),
            );
        }
        Err(e) => tracing::error!(run = %run.id, "cannot re-queue: {e}"),
    }
}

/// The dispatcher: takes queued runs in order while fewer than
/// `concurrency` run.
pub async fn dispatch(shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.concurrency));
    let mut workers = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shared.shutdown.cancelled() => break,
        };
        let run = loop {
            match shared.store.claim_next() {
                Ok(Some(run)) => break Some(run),
                Ok(None) => {}
                Err(e) => tracing::error!("cannot read the queue: {e}"),
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = shared.shutdown.cancelled() => break None,
            }
        };
        let Some(run) = run else { break };
        let shared = shared.clone();
        workers.spawn(async move {
            execute(&shared, run).await;
            drop(permit);
            shared.wake.notify_one();
        });
        while workers.try_join_next().is_some() {}
    }
    // Shutdown: running runs see their token cancelled; wait for their teardown.
    while workers.join_next().await.is_some() {}
}

/// What a run ended as.
pub(crate) struct EndingError {
    state: RunState,
    reason: Option<String>,
}

impl EndingError {
    pub(crate) fn new(state: RunState, reason: impl Into<String>) -> EndingError {
        EndingError {
            state,
            reason: Some(reason.into()),
        }
    }
}

/// Runs one claimed run to its end and records it.
pub async fn execute(shared: &Arc<Shared>, run: Run) {
    let cancel = shared.shutdown.child_token();
    shared
        .running
        .lock()
        .unwrap()
        .insert(run.id.clone(), cancel.clone());
    let log = RunLog::open(&shared.results_dir(&run.id));
    log.note(&format!(
        "run {} of {} branch {} at {} ({})",
        run.id, run.repo, run.branch, run.sha, run.trigger
    ));
    tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, "run started");
    let worktree = shared.worktree_dir(&run.id);
    let ending = match shared.config.repo(&run.repo) {
        Some(repo) => execute_in(shared, &run, repo, &worktree, &log, &cancel).await,
        None => EndingError::new(
            RunState::Errored,
            format!("repository {} is no longer configured", run.repo),
        ),
    };
    if let Some(mirror) = shared.mirrors.get(&run.repo) {
        let _lock = shared.repo_locks[&run.repo].lock().await;
        mirror.remove_worktree(&worktree).await;
    }
    shared.running.lock().unwrap().remove(&run.id);
    let asked = shared.cancel_requested.lock().unwrap().remove(&run.id);
    let summary = shared.live.lock().unwrap().remove(&run.id);
    let mut ending = ending;
    if asked && ending.state != RunState::Passed {
        ending = EndingError::new(RunState::Cancelled, "cancelled through the API");
    } else if shared.shutdown.is_cancelled() && !ending.state.is_finished_ok() {
        ending = EndingError::new(RunState::Interrupted, "interrupted: the runner stopped");
    }
    if let Some(reason) = &ending.reason {
        log.note(&format!("{}: {reason}", ending.state.as_str()));
    } else {
        log.note(ending.state.as_str());
    }
    tracing::info!(run = %run.id, state = ending.state.as_str(), reason = ending.reason.as_deref().unwrap_or(""), "run finished");
    if let Err(e) = shared.store.finish(
        &run.id,
        ending.state,
        ending.reason.as_deref(),
        summary.as_ref(),
    ) {
        tracing::error!(run = %run.id, "cannot record the end of the run: {e}");
    }
    if ending.state == RunState::Interrupted && shared.config.requeue_interrupted {
        requeue_interrupted(shared, &run, "the runner stopped");
    }
}

impl RunState {
    fn is_finished_ok(self) -> bool {
        matches!(self, RunState::Passed | RunState::Failed)
    }
}

async fn execute_in(
    shared: &Arc<Shared>,
    run: &Run,
    repo: &RepoConfig,
    worktree: &Path,
    log: &RunLog,
    cancel: &CancellationToken,
) -> EndingError {
    let mirror = &shared.mirrors[&repo.name];
    // 1. Fetch and check out the exact commit (a candidate: on top of central).
    let tested = {
        let _lock = shared.repo_locks[&repo.name].lock().await;
        log.note("fetching");
        if let Err(e) = mirror.fetch().await {
            return EndingError::new(
                RunState::Errored,
                format!("cannot fetch the repository: {e}"),
            );
        }
        if !mirror.has_commit(&run.sha).await {
            return EndingError::new(
                RunState::Errored,
                format!("commit {} is not in the repository", run.sha),
            );
        }
        match run.kind {
            RunKind::Branch => match mirror.add_worktree(worktree, &run.sha).await {
                Ok(()) => run.sha.clone(),
                Err(e) => {
                    return EndingError::new(RunState::Errored, format!("cannot check out: {e}"))
                }
            },
            RunKind::Candidate => {
                match gate::prepare(shared, repo, mirror, run, worktree, log).await {
                    Ok(tested) => tested,
                    Err(ending) => return ending,
                }
            }
        }
    };
    if cancel.is_cancelled() {
        return EndingError::new(RunState::Cancelled, "cancelled before it started");
    }

    // 2. Load and validate the pipeline of that commit.
    let vars = pipeline_vars(shared)
        .with_builtin("DRYDOCK_RUN_ID", run.id.as_str())
        .with_builtin("DRYDOCK_GIT_SHA", tested.as_str())
        .with_builtin("DRYDOCK_GIT_SHORT_SHA", &tested[..12])
        .with_builtin("DRYDOCK_GIT_BRANCH", run.branch.as_str());
    let pipeline = match load_pipeline(worktree, &repo.pipeline, &tested, &vars).await {
        Ok(p) => p,
        Err(reason) => return EndingError::new(RunState::Errored, reason),
    };
    // Deploy on green: only the central branch releases, to the configured channel.
    let deploys =
        run.kind == RunKind::Branch && run.branch == repo.central && repo.deploy.is_some();
    let release = match &repo.deploy {
        Some(deploy) if deploys => ReleaseChoice::Channel(deploy.channel.clone()),
        _ => ReleaseChoice::Off,
    };

    // 3. Run it.
    let results_dir = shared.results_dir(&run.id);
    let mut results = match ResultsWriter::create(&results_dir) {
        Ok(r) => r,
        Err(e) => {
            return EndingError::new(
                RunState::Errored,
                format!("cannot create the results folder: {e}"),
            )
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
    let consumer = {
        let shared = shared.clone();
        let id = run.id.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let mut live = Live::default();
            while let Some(event) = rx.blocking_recv() {
                // Nothing follows the end of the run: do not wait for a
                // sender that a task given up on still holds.
                let last = matches!(event, Event::RunFinished { .. });
                if let Err(e) = results.handle(&event) {
                    tracing::warn!("results folder: {e}");
                }
                if live.handle(&event, &log) {
                    shared
                        .live
                        .lock()
                        .unwrap()
                        .insert(id.clone(), live.summary.clone());
                }
                if last {
                    break;
                }
            }
            shared.live.lock().unwrap().insert(id, live.summary.clone());
        })
    };
    let options = RunOptions {
        run_id: run.id.clone(),
        results_dir,
        trust: Trust::from_env(),
        git: GitInfo {
            sha: Some(tested.clone()),
            branch: Some(run.branch.clone()),
        },
        stop_grace: shared.config.stop_grace,
        release,
        no_retry: false,
        ledger: Ledger::default_path(),
    };
    let runtime = Arc::new(shared.engine.clone());
    // The runner's token (shutdown, API cancel) becomes the run's reason.
    let run_cancel = RunCancel::new();
    let bridge = {
        let shared = shared.clone();
        let run_cancel = run_cancel.clone();
        let cancel = cancel.clone();
        let id = run.id.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            let asked = shared.cancel_requested.lock().unwrap().contains(&id);
            run_cancel.cancel(if asked {
                CancelReason::ApiCancel
            } else {
                CancelReason::Signal
            });
        })
    };
    let mut task = {
        let run_cancel = run_cancel.clone();
        tokio::spawn(async move { run_pipeline(&pipeline, runtime, options, tx, run_cancel).await })
    };
    let timeout = shared.config.run_timeout;
    let (report, timed_out) = tokio::select! {
        r = &mut task => (r, false),
        _ = tokio::time::sleep(timeout) => {
            log.note(&format!("timed out after {}; stopping", pipeline::format_duration(timeout)));
            run_cancel.cancel(CancelReason::Timeout);
            (task.await, true)
        }
    };
    bridge.abort();
    let _ = tokio::task::spawn_blocking(move || consumer.join()).await;
    let report = match report {
        Ok(r) => r,
        Err(panic) => {
            let _ = shared.engine.remove_run(&run.id).await;
            return EndingError::new(RunState::Errored, format!("internal error: {panic}"));
        }
    };
    // A run whose release was recorded passed, whatever stopped it after.
    if timed_out && report.released.is_none() {
        return EndingError::new(
            RunState::Failed,
            format!("timed out after {}", pipeline::format_duration(timeout)),
        );
    }
    // The executor recorded the release in the ledger and moved the channel.
    let recorded = report.released.as_ref().map(|released| {
        log.note(&format!(
            "released {}:{} (ledger entry {})",
            released.name, released.channel, released.entry.id
        ));
        released.entry.clone()
    });
    let mut ending = match report.outcome {
        Outcome::Passed => EndingError {
            state: RunState::Passed,
            reason: None,
        },
        Outcome::Failed => EndingError::new(
            RunState::Failed,
            report.error.unwrap_or_else(|| "a step failed".into()),
        ),
        Outcome::Errored => EndingError::new(
            RunState::Errored,
            report
                .error
                .unwrap_or_else(|| "infrastructure error".into()),
        ),
        Outcome::Interrupted => EndingError::new(RunState::Interrupted, "interrupted"),
    };
    // Deploy on green, after the release: the run stays `passed` whatever
    // the deploy does; its outcome is recorded beside it.
    if let (RunState::Passed, Some(_), Some(deploy), Some(config)) = (
        ending.state,
        recorded,
        repo.deploy.as_ref(),
        repo.deploy.as_ref().and_then(|d| d.config.as_deref()),
    ) {
        let summary =
            deploy_on_green(shared, run, &deploy.channel, config, worktree, &vars, log).await;
        ending.reason = Some(match summary.outcome.as_str() {
            "failed" => format!(
                "deploy to {} failed: {}",
                summary.channel,
                summary.reason.as_deref().unwrap_or("?")
            ),
            outcome => format!(
                "deployed to {}: {} at {}",
                summary.channel,
                if outcome == "live" {
                    "live"
                } else {
                    "already live"
                },
                summary.address.as_deref().unwrap_or("?")
            ),
        });
        shared
            .live
            .lock()
            .unwrap()
            .entry(run.id.clone())
            .or_default()
            .deploy = Some(summary);
    }
    // 4. A candidate lands (or not).
    if run.kind == RunKind::Candidate {
        if let Some(base) = shared
            .store
            .get(&run.id)
            .ok()
            .flatten()
            .and_then(|r| r.base_sha)
        {
            let outcome = if ending.state == RunState::Passed {
                gate::land(shared, repo, mirror, run, &base, &tested, log).await
            } else {
                format!("not landed: {} left at {}", repo.central, &base[..12])
            };
            let reason = match ending.reason {
                Some(r) => format!("{r}; {outcome}"),
                None => outcome,
            };
            return EndingError {
                state: ending.state,
                reason: Some(reason),
            };
        }
    }
    ending
}

/// Reads and validates the pipeline file `relative` of a worktree, off the
/// async runtime. Whatever the file holds, the answer is a located reason
/// (`pipelines/ci.yml:LINE:COL: …`), never a crash: the file comes from
/// anyone who can push, and parsing is bounded (see [`drydock_core::yaml`]).
pub async fn load_pipeline(
    worktree: &Path,
    relative: &str,
    tested: &str,
    vars: &Vars,
) -> Result<drydock_core::pipeline::Pipeline, String> {
    let path = worktree.join(relative);
    if !path.is_file() {
        return Err(format!("no pipeline file {relative} at commit {tested}"));
    }
    let (worktree, relative, vars) = (worktree.to_path_buf(), relative.to_string(), vars.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        let bytes = drydock_core::yaml::read_limited(&path)
            .map_err(|e| format!("cannot read {relative}: {e}"))?;
        pipeline::parse_bytes(&bytes, &relative, &worktree, &vars)
            .map_err(|e| format!("invalid pipeline: {e}"))
    })
    .await;
    match loaded {
        Ok(result) => result,
        Err(e) => Err(format!("internal error while reading the pipeline: {e}")),
    }
}

/// Environment for `${NAME}` in pipelines: the process environment minus
/// anything holding one of the runner's secrets.
fn pipeline_vars(shared: &Shared) -> Vars {
    let secrets: Vec<&str> = [&shared.config.webhook_secret, &shared.config.api_token]
        .into_iter()
        .flatten()
        .map(|s| s.expose())
        .collect();
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(_, v)| !secrets.iter().any(|s| v.contains(s)))
        .collect();
    Vars::new(env)
}

/// Runs the deploy of `channel` with the deploy config `config_file` of the
/// run's worktree: what the channel points to (the release just recorded,
/// unless something moved it since) goes live behind the channel's stable
/// address, through the same code as `drydock deploy`
/// ([`deploy::deploy_channel`]: channel lock, deploy, ledger record).
async fn deploy_on_green(
    shared: &Shared,
    run: &Run,
    channel: &str,
    config_file: &str,
    worktree: &Path,
    vars: &Vars,
    log: &RunLog,
) -> DeploySummary {
    let started = Instant::now();
    let mut summary = DeploySummary {
        channel: channel.to_string(),
        outcome: "failed".into(),
        reason: None,
        address: None,
        entry_id: None,
        container: None,
        duration_ms: 0,
    };
    log.note(&format!("deploying channel {channel} with {config_file}"));
    let result = async {
        let path = worktree.join(config_file);
        let bytes = drydock_core::yaml::read_limited(&path)
            .map_err(|e| format!("cannot read the deploy config {config_file}: {e}"))?;
        let config = deploy::config::parse_bytes(&bytes, config_file, channel, vars)
            .map_err(|e| format!("invalid deploy config: {e}"))?;
        summary.address = Some(format!("http://127.0.0.1:{}", config.app.publish));
        let cref = ChannelRef::new(&config.name, channel);
        if let Some(message) = release::repair(&shared.engine, &Ledger::default_path(), &cref)
            .await
            .map_err(|e| e.to_string())?
            .message()
        {
            log.note(&message);
        }
        let mut ledger = Ledger::open(&Ledger::default_path()).map_err(|e| e.to_string())?;
        let progress = |line: String| log.note(&format!("deploy {channel}: {line}"));
        let detail = format!("runner run {}", run.id);
        deploy::deploy_channel(
            &shared.engine,
            &mut ledger,
            &config,
            Which::Current,
            Some(&detail),
            &progress,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(deployed) => {
            log.note(&deployed.summary());
            summary.entry_id = Some(deployed.entry.id);
            let elsewhere = if deployed.entry.run_id.as_deref() == Some(run.id.as_str()) {
                String::new()
            } else {
                format!(
                    " (the channel pointed to {} when the deploy lock was taken, not to this run's release)",
                    deploy::describe_entry(&deployed.entry)
                )
            };
            match &deployed.outcome {
                DeployOutcome::Live { container, .. } => {
                    summary.outcome = "live".into();
                    summary.container = Some(container.clone());
                    summary.reason = Some(format!("{}{elsewhere}", deployed.summary()));
                }
                DeployOutcome::Unchanged { container } => {
                    summary.outcome = "unchanged".into();
                    summary.container = Some(container.clone());
                    summary.reason = Some(format!("{}{elsewhere}", deployed.summary()));
                }
                DeployOutcome::Failed {
                    container,
                    reason,
                    log_tail,
                } => {
                    for line in log_tail {
                        log.line(&format!("[deploy {channel}/{container}] {line}"));
                    }
                    summary.reason = Some(format!(
                        "{container} {reason}; the previous version keeps serving{elsewhere}"
                    ));
                }
            }
        }
        Err(e) => {
            log.note(&format!("deploy of channel {channel} failed: {e}"));
            summary.reason = Some(e);
        }
    }
    summary
}

/// Builds the live summary from events and writes step output to `run.log`.
#[derive(Default)]
struct Live {
    summary: RunSummary,
}

impl Live {
    /// Returns true when the summary changed.
    fn handle(&mut self, event: &Event, log: &RunLog) -> bool {
        match event {
            Event::RunStarted { pipeline, .. } => {
                self.summary.pipeline = pipeline.clone();
                log.note(&format!("pipeline {pipeline} started"));
                true
            }
            Event::Log {
                tier, step, line, ..
            } => {
                log.output(&format!("[{tier}/{step}] {line}"));
                false
            }
            Event::StepStarted { tier, step, .. } => {
                log.note(&format!("{tier}/{step} started"));
                false
            }
            Event::StepFinished {
                tier,
                step,
                status,
                duration_ms,
                error,
                tests,
                failed_tests,
                ..
            } => {
                log.note(&format!(
                    "{tier}/{step} {} in {duration_ms} ms",
                    status.word()
                ));
                self.summary.steps.push(StepSummary {
                    tier: tier.clone(),
                    step: step.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                    tests: *tests,
                    error: error.clone(),
                });
                self.summary
                    .failed_tests
                    .extend(failed_tests.iter().map(|t| format!("{tier}/{step}: {t}")));
                true
            }
            Event::StepSkipped { tier, step, reason } => {
                self.summary.steps.push(StepSummary {
                    tier: tier.clone(),
                    step: step.clone(),
                    status: drydock_core::events::Status::Skipped,
                    duration_ms: 0,
                    tests: None,
                    error: reason.clone(),
                });
                true
            }
            Event::TierFinished {
                tier,
                status,
                duration_ms,
                tests,
            } => {
                self.summary.tiers.push(TierSummary {
                    name: tier.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                    tests: *tests,
                });
                self.summary.tests.add(tests);
                true
            }
            Event::Released { tags, .. } => {
                self.summary.released = tags.clone();
                true
            }
            Event::Warning {
                tier,
                step,
                message,
            } => {
                log.note(&format!("warning: {tier}/{step}: {message}"));
                false
            }
            Event::ServiceFailed { service, error, .. } => {
                log.note(&format!("service {service} failed: {error}"));
                false
            }
            _ => false,
        }
    }
}

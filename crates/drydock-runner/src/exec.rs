//! Executing runs: the dispatcher (a worker pool with a concurrency limit
//! claiming runs from the store), one run from checkout to teardown under a
//! lease kept alive by heartbeats, the lease keeper (expired leases, the
//! runner's own heartbeat), and recovery at start-up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use drydock_core::deploy::{self, Outcome as DeployOutcome, Which};
use drydock_core::events::{Event, EventSink, Outcome, Timestamp};
use drydock_core::pipeline::{self, Vars};
use drydock_core::plan::ReleaseChoice;
use drydock_core::release::{self, ChannelRef, Ledger};
use drydock_core::report::SummaryBuilder;
use drydock_core::run::{CancelReason, GitInfo, RunOptions};
use drydock_core::session;
use drydock_core::trust::Trust;
use futures::future::BoxFuture;

use crate::attempt::{fence, EndingError, RunLog};
use crate::config::RepoConfig;
use crate::gate;
use crate::store::{
    engine_run_id, DeploySummary, Ending, Heartbeat, Lease, Run, RunKind, RunState, RunSummary,
};
use crate::{RunHandle, Shared};

/// At start-up: the leases a previous process of this runner left expire
/// now (it is dead: the state folder's lock says so, or its name was free),
/// so that its runs are reclaimed at once rather than when their lease runs
/// out; leftovers of dead drydock processes on this engine are reaped
/// (`Engine::reap_dead_runs`); worktrees left in the state folder are
/// removed.
pub async fn recover(shared: &Arc<Shared>) {
    let me = &shared.identity;
    match shared.store.expire_runner(&me.name, &me.owner).await {
        Ok(runs) => {
            if !runs.is_empty() {
                tracing::info!(
                    "{} run(s) a previous process of runner {} left running will be reclaimed",
                    runs.len(),
                    me.name
                );
            }
            // The dead process ran them on this engine: remove what they
            // left now, and again a little later (a container the engine
            // was still creating when the process died appears after it).
            for run in &runs {
                let id = engine_run_id(&run.id, run.attempt);
                let _ = shared.engine.remove_run(&id).await;
                sweep_later(shared, id);
            }
        }
        Err(e) => tracing::error!("cannot expire the runs a previous process left: {e}"),
    }
    keep_leases_once(shared).await;
    match shared.engine.reap_dead_runs().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftovers of dead runs"),
        Err(e) => {
            shared.metrics.engine_error("cleanup");
            tracing::warn!("cannot remove leftovers of dead runs: {e}")
        }
    }
    // Nothing runs yet: every worktree is a dead attempt's.
    let leftovers: Vec<_> = std::fs::read_dir(shared.config.state_dir.join("worktrees"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for dir in leftovers {
        for mirror in shared.mirrors.values() {
            mirror.remove_worktree(&dir).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
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

/// The lease keeper: every third of the lease, this runner's heartbeat in
/// the fleet, and runs whose lease expired (whoever ran them) queued again,
/// given up or interrupted ([`crate::store::Store::expire_leases`]).
pub async fn keep_leases(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.tick()) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        keep_leases_once(&shared).await;
    }
}

/// Removes the engine objects of a lost attempt (`engine_id`) again a
/// little later: twice a tick and twice a lease from now. A runner killed
/// while the engine was creating a container leaves one that appears after
/// it died, so after the first removal.
pub fn sweep_later(shared: &Shared, engine_id: String) {
    let now = Instant::now();
    let mut sweeps = shared.sweeps.lock().unwrap();
    sweeps.push((now + 2 * shared.tick(), engine_id.clone()));
    sweeps.push((now + 2 * shared.config.lease, engine_id));
}

async fn sweep_due(shared: &Shared) {
    let due: Vec<String> = {
        let mut sweeps = shared.sweeps.lock().unwrap();
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = sweeps.drain(..).partition(|(at, _)| *at <= now);
        *sweeps = later;
        due.into_iter().map(|(_, id)| id).collect()
    };
    for id in due {
        match shared.engine.remove_run(&id).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(engine_run = %id, "removed {n} late leftovers of a lost attempt")
            }
            Err(e) => {
                shared.metrics.engine_error("cleanup");
                tracing::warn!(engine_run = %id, "cannot remove leftovers of a lost attempt: {e}")
            }
        }
    }
}

async fn keep_leases_once(shared: &Arc<Shared>) {
    sweep_due(shared).await;
    let me = &shared.identity;
    match shared.store.touch_runner(&me.name, &me.owner).await {
        Ok(true) => {}
        Ok(false) => tracing::error!(
            "another process took the runner name {}: give each runner its own `name`",
            me.name
        ),
        Err(e) => tracing::warn!("cannot renew this runner's heartbeat: {e}"),
    }
    match shared.store.expire_leases(&shared.expiry_policy()).await {
        Ok(runs) => {
            for run in &runs {
                tracing::warn!(
                    run = %run.id,
                    state = run.state.as_str(),
                    "lease expired: {}",
                    run.reason.as_deref().unwrap_or("")
                );
            }
            if !runs.is_empty() {
                shared.wake.notify_one();
            }
        }
        Err(e) => tracing::warn!("cannot look for expired leases: {e}"),
    }
}

/// What runs one claimed run (the production one is [`execute`]; tests
/// give others).
pub type Executor = Arc<dyn Fn(Arc<Shared>, Run, Lease) -> BoxFuture<'static, ()> + Send + Sync>;

/// The executor that runs pipelines: [`execute`].
pub fn default_executor() -> Executor {
    Arc::new(|shared, run, lease| Box::pin(execute(shared, run, lease)))
}

/// The dispatcher: claims runs while fewer than `concurrency` run here
/// (woken by new work, or polling every third of the lease).
pub async fn dispatch(shared: Arc<Shared>) {
    dispatch_with(shared, default_executor()).await
}

/// [`dispatch`] with another executor. A run whose executor panics ends
/// `errored` (fenced by its lease) with the panic's message, its leftovers
/// are removed, and the queue goes on: a repository's next candidate is
/// not held back by it.
pub async fn dispatch_with(shared: Arc<Shared>, executor: Executor) {
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.concurrency));
    let claimer = shared.claimer();
    let mut workers = tokio::task::JoinSet::new();
    let mut failing = false;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shared.shutdown.cancelled() => break,
        };
        let claimed = loop {
            match shared.store.claim(&claimer).await {
                Ok(Some(claimed)) => {
                    failing = false;
                    break Some(claimed);
                }
                Ok(None) => failing = false,
                Err(e) if !failing => {
                    tracing::error!("cannot read the queue: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(shared.queue_poll()) => {}
                _ = shared.shutdown.cancelled() => break None,
            }
        };
        let Some((run, lease)) = claimed else { break };
        let shared = shared.clone();
        let executor = executor.clone();
        workers.spawn(async move {
            shared.post_status(&run, crate::forge::Moment::Started);
            let task = tokio::spawn(executor(shared.clone(), run.clone(), lease.clone()));
            if let Err(e) = task.await {
                if e.is_panic() {
                    let message = panic_message(e.into_panic());
                    ended_by_panic(&shared, &run, &lease, &message).await;
                }
            }
            report_end(&shared, &lease).await;
            drop(permit);
            shared.wake.notify_one();
        });
        while workers.try_join_next().is_some() {}
    }
    // Shutdown: running runs see their cancel; wait for their teardown.
    while workers.join_next().await.is_some() {}
}

/// After an attempt: when it recorded the run's end (the run is finished
/// and its latest attempt is this one), counts it in the metrics and posts
/// the final commit status. An attempt that lost its lease, or a run
/// released back to the queue, reports nothing.
async fn report_end(shared: &Arc<Shared>, lease: &Lease) {
    let run = match shared.store.get(&lease.run_id).await {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(run = %lease.run_id, "cannot read the run's end for metrics and forge status: {e}");
            return;
        }
    };
    if !run.state.is_finished() || run.attempt != lease.attempt {
        return;
    }
    let seconds = match (run.started_ms, run.finished_ms) {
        (Some(start), Some(end)) => (end - start).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    shared.metrics.run_finished(run.state, seconds);
    shared.post_status(&run, crate::forge::Moment::Finished);
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A run whose task panicked: recorded `errored` with the message (the
/// error is never dropped), its containers and worktree removed.
async fn ended_by_panic(shared: &Arc<Shared>, run: &Run, lease: &Lease, message: &str) {
    let reason = format!("internal error: the runner's task for this run panicked: {message}");
    tracing::error!(run = %run.id, "{reason}");
    shared.running.lock().unwrap().remove(&run.id);
    let summary = shared.live.lock().unwrap().remove(&run.id);
    let _ = shared
        .engine
        .remove_run(&engine_run_id(&run.id, lease.attempt))
        .await;
    if let Some(mirror) = shared.mirrors.get(&run.repo) {
        mirror
            .remove_worktree(&shared.worktree_dir(&engine_run_id(&run.id, lease.attempt)))
            .await;
    }
    RunLog::open(&shared.results_dir(&run.id)).note(&format!("errored: {reason}"));
    let ending = Ending {
        state: RunState::Errored,
        reason: Some(reason),
        summary,
    };
    match shared.store.finish(lease, &ending, None).await {
        Ok(f) if f.recorded => {}
        Ok(_) => {
            tracing::warn!(run = %run.id, "the panicked attempt had lost its lease; nothing recorded")
        }
        Err(e) => tracing::error!(run = %run.id, "cannot record the end of the run: {e}"),
    }
}

/// Aborts a task when dropped (also when the owner unwinds from a panic).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a run's handle from the runner's map when dropped.
struct Registered<'a> {
    shared: &'a Shared,
    id: String,
    /// This attempt's handle: a later attempt of the same run in this
    /// process (this one being stale) registers its own, which stays.
    handle: Arc<RunHandle>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut running = self
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if running
            .get(&self.id)
            .is_some_and(|h| Arc::ptr_eq(h, &self.handle))
        {
            running.remove(&self.id);
        }
    }
}

/// What the heartbeat found out.
#[derive(Default)]
struct LeaseState {
    /// The lease was lost (reclaimed, or the store unreachable for a whole
    /// lease): nothing of this attempt may be recorded, landed or deployed.
    lost: AtomicBool,
}

/// The heartbeat of one attempt: every third of the lease, extend it and
/// hand over the live progress. A cancel request seen becomes
/// `CancelReason::ApiCancel`; a lost lease (or a store unreachable for a
/// whole lease, after which another runner may have reclaimed the run)
/// stops the run at once.
async fn heartbeat(
    shared: Arc<Shared>,
    lease: Lease,
    handle: Arc<RunHandle>,
    state: Arc<LeaseState>,
) {
    let mut last_ok = Instant::now();
    loop {
        let progress = shared.live.lock().unwrap().get(&lease.run_id).cloned();
        match shared
            .store
            .heartbeat(&lease, shared.config.lease, progress.as_ref())
            .await
        {
            Ok(Heartbeat::Held { cancel_requested }) => {
                last_ok = Instant::now();
                if cancel_requested && !handle.was_asked() {
                    tracing::info!(run = %lease.run_id, "cancel requested through the API (seen at a heartbeat)");
                    handle.cancel_asked();
                }
            }
            Ok(Heartbeat::Lost) => {
                tracing::warn!(run = %lease.run_id, attempt = lease.attempt, "lease lost: the run was reclaimed; stopping this attempt");
                state.lost.store(true, Ordering::SeqCst);
                handle.cancel.cancel(CancelReason::Signal);
                return;
            }
            Err(e) => {
                tracing::warn!(run = %lease.run_id, "cannot renew the lease: {e}");
                if last_ok.elapsed() >= shared.config.lease {
                    tracing::error!(run = %lease.run_id, "the store was unreachable for a whole lease: another runner may have reclaimed the run; stopping this attempt");
                    state.lost.store(true, Ordering::SeqCst);
                    handle.cancel.cancel(CancelReason::Signal);
                    return;
                }
            }
        }
        tokio::time::sleep(shared.tick()).await;
    }
}

/// The [`fence`] as the executor's release checks it right before it
/// records a release: a stale attempt (its lease lost) releases nothing.
fn release_fence(shared: &Arc<Shared>, lease: &Lease) -> release::ReleaseFence {
    let (shared, lease) = (shared.clone(), lease.clone());
    release::ReleaseFence::new(move || {
        let (shared, lease) = (shared.clone(), lease.clone());
        Box::pin(async move { fence(&shared, &lease).await })
    })
}

/// Runs one claimed run to its end and records it, fenced by its lease.
pub async fn execute(shared: Arc<Shared>, run: Run, lease: Lease) {
    let shared = &shared;
    let handle = Arc::new(RunHandle::default());
    shared
        .running
        .lock()
        .unwrap()
        .insert(run.id.clone(), handle.clone());
    let _registered = Registered {
        shared,
        id: run.id.clone(),
        handle: handle.clone(),
    };
    let lease_state = Arc::new(LeaseState::default());
    let heartbeats = AbortOnDrop(tokio::spawn(heartbeat(
        shared.clone(),
        lease.clone(),
        handle.clone(),
        lease_state.clone(),
    )));
    // The runner stopping interrupts the run (CancelReason::Signal).
    let _stop = AbortOnDrop(tokio::spawn({
        let shutdown = shared.shutdown.clone();
        let handle = handle.clone();
        async move {
            shutdown.cancelled().await;
            handle.cancel.cancel(CancelReason::Signal);
        }
    }));
    let log = RunLog::open(&shared.results_dir(&run.id));
    log.note(&format!(
        "run {} of {} branch {} at {} ({}): attempt {} by runner {}",
        run.id, run.repo, run.branch, run.sha, run.trigger, lease.attempt, shared.identity.name
    ));
    tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, attempt = lease.attempt, "run started");
    // One worktree per attempt: a stale attempt of this run still ending in
    // this process removes its own worktree, never this one's.
    let worktree = shared.worktree_dir(&engine_run_id(&run.id, lease.attempt));
    if lease.attempt > 1 {
        // Earlier attempts may have left containers on this engine (when
        // their runner shared it) and worktrees in this state folder.
        for attempt in 1..lease.attempt {
            let id = engine_run_id(&run.id, attempt);
            let _ = shared.engine.remove_run(&id).await;
            if let Some(mirror) = shared.mirrors.get(&run.repo) {
                let _lock = shared.repo_locks[&run.repo].lock().await;
                mirror.remove_worktree(&shared.worktree_dir(&id)).await;
            }
            sweep_later(shared, id);
        }
    }
    let ending = match shared.config.repo(&run.repo) {
        Some(repo) => execute_in(shared, &run, &lease, repo, &worktree, &log, &handle).await,
        None => EndingError::new(
            RunState::Errored,
            format!("repository {} is no longer configured", run.repo),
        ),
    };
    if let Some(mirror) = shared.mirrors.get(&run.repo) {
        let _lock = shared.repo_locks[&run.repo].lock().await;
        mirror.remove_worktree(&worktree).await;
    }
    // From here on the run's end is recorded (fenced): no more renewals (a
    // heartbeat after the end would find the run no longer running).
    drop(heartbeats);
    let summary = shared.live.lock().unwrap().remove(&run.id);
    if lease_state.lost.load(Ordering::SeqCst) {
        log.note(&format!(
            "attempt {} lost its lease (the run was reclaimed, or the store was unreachable); its result is not recorded",
            lease.attempt
        ));
        tracing::warn!(run = %run.id, attempt = lease.attempt, "not recorded: the lease was lost");
        return;
    }
    let mut ending = ending;
    if handle.was_asked() && ending.state != RunState::Passed {
        ending = EndingError::new(RunState::Cancelled, "cancelled through the API");
    } else if shared.shutdown.is_cancelled() && !ending.state.is_finished_ok() {
        if shared.config.requeue_interrupted {
            let why = format!(
                "runner {} stopped during attempt {}; queued again",
                shared.identity.name, lease.attempt
            );
            log.note(&why);
            match shared.store.release(&lease, &why).await {
                Ok(true) => tracing::info!(run = %run.id, "released: back in the queue"),
                Ok(false) => tracing::warn!(run = %run.id, "not released: the lease was lost"),
                Err(e) => {
                    tracing::error!(run = %run.id, "cannot release the run (it will be reclaimed when its lease expires): {e}")
                }
            }
            return;
        }
        ending = EndingError::new(RunState::Interrupted, "interrupted: the runner stopped");
    }
    if let Some(reason) = &ending.reason {
        log.note(&format!("{}: {reason}", ending.state.as_str()));
    } else {
        log.note(ending.state.as_str());
    }
    let record = Ending {
        state: ending.state,
        reason: ending.reason.clone(),
        summary,
    };
    match shared.store.finish(&lease, &record, ending.then).await {
        Ok(finished) if finished.recorded => {
            tracing::info!(run = %run.id, state = ending.state.as_str(), attempt = lease.attempt, reason = ending.reason.as_deref().unwrap_or(""), "run finished");
            if let Some(again) = finished.queued {
                tracing::info!(run = %again.id, repo = %again.repo, branch = %again.branch, "queued ({})", again.trigger);
                shared.wake.notify_one();
            }
        }
        Ok(_) => {
            log.note("not recorded: the lease was lost meanwhile (the run was reclaimed)");
            tracing::warn!(run = %run.id, attempt = lease.attempt, "not recorded: the lease was lost");
        }
        Err(e) => tracing::error!(run = %run.id, "cannot record the end of the run: {e}"),
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
    lease: &Lease,
    repo: &RepoConfig,
    worktree: &Path,
    log: &RunLog,
    handle: &RunHandle,
) -> EndingError {
    let mirror = &shared.mirrors[&repo.name];
    // 1. Fetch and check out the exact commit (a candidate: on top of central).
    let (base, tested) = {
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
                Ok(()) => (None, run.sha.clone()),
                Err(e) => {
                    return EndingError::new(RunState::Errored, format!("cannot check out: {e}"))
                }
            },
            RunKind::Candidate => {
                match gate::prepare(shared, repo, mirror, run, lease, worktree, log).await {
                    Ok((base, tested)) => (Some(base), tested),
                    Err(ending) => return ending,
                }
            }
        }
    };
    if handle.cancel.is_cancelled() {
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
    let options = RunOptions {
        // Each attempt has its own engine id (labels, container names).
        run_id: engine_run_id(&run.id, lease.attempt),
        results_dir: shared.results_dir(&run.id),
        trust: Trust::from_env(),
        git: GitInfo {
            sha: Some(tested.clone()),
            branch: Some(run.branch.clone()),
        },
        stop_grace: shared.config.stop_grace,
        release,
        no_retry: false,
        ledger: Ledger::default_path(),
        release_fence: Some(release_fence(shared, lease)),
        // The runner tests each commit from scratch: no step result is
        // stored or replayed (see docs/runner.md).
        results_store: None,
        no_reuse: true,
    };
    let plan = drydock_core::plan::plan(&pipeline, &options.plan_options());
    let live = Live {
        summary: SummaryBuilder::new(),
        shared: shared.clone(),
        id: run.id.clone(),
        log: log.clone(),
    };
    // The run's cancel handle: the API (here, or at any runner through the
    // store) cancels with ApiCancel, the runner stopping or a lost lease
    // with Signal, the per-run deadline below with Timeout.
    let run_cancel = handle.cancel.clone();
    let session = session::run_session(
        &plan,
        Arc::new(shared.engine.clone()),
        options,
        run_cancel.clone(),
        vec![Box::new(live)],
    );
    tokio::pin!(session);
    let timeout = shared.config.run_timeout;
    let (ended, timed_out) = tokio::select! {
        r = &mut session => (r, false),
        _ = tokio::time::sleep(timeout) => {
            log.note(&format!("timed out after {}; stopping", pipeline::format_duration(timeout)));
            run_cancel.cancel(CancelReason::Timeout);
            (session.await, true)
        }
    };
    let report = match ended {
        Ok(ended) => ended.report,
        Err(e) => return EndingError::new(RunState::Errored, e.to_string()),
    };
    // A run whose release was recorded passed, whatever stopped it after.
    if timed_out && report.released.is_none() {
        return EndingError::new(
            RunState::Failed,
            format!("timed out after {}", pipeline::format_duration(timeout)),
        );
    }
    // The executor recorded the release in the ledger and moved the channel,
    // fenced by this attempt's lease (`release_fence` above): a stale
    // attempt records nothing.
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
            then: None,
        },
        Outcome::Failed => EndingError::new(
            RunState::Failed,
            report.error.unwrap_or_else(|| "a step failed".into()),
        ),
        Outcome::Errored => {
            // drydock-core's `errored`: the engine or the environment failed.
            shared.metrics.engine_error("run");
            EndingError::new(
                RunState::Errored,
                report
                    .error
                    .unwrap_or_else(|| "infrastructure error".into()),
            )
        }
        Outcome::Interrupted => EndingError::new(RunState::Interrupted, "interrupted"),
        // The executor never reports it (the runner validates before it runs).
        Outcome::Invalid => EndingError::new(
            RunState::Errored,
            report
                .error
                .unwrap_or_else(|| "invalid configuration".into()),
        ),
    };
    // Deploy on green, after the release: the run stays `passed` whatever
    // the deploy does; its outcome is recorded beside it.
    if let (RunState::Passed, Some(_), Some(deploy), Some(config)) = (
        ending.state,
        recorded,
        repo.deploy.as_ref(),
        repo.deploy.as_ref().and_then(|d| d.config.as_deref()),
    ) {
        if let Err(why) = fence(shared, lease).await {
            log.note(&format!("nothing is deployed: {why}"));
            ending.reason = Some(format!("deploy to {} skipped: {why}", deploy.channel));
            return ending;
        }
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
    if let (RunKind::Candidate, Some(base)) = (run.kind, base) {
        let (outcome, then) = if ending.state == RunState::Passed {
            gate::land(shared, repo, mirror, run, lease, &base, &tested, log).await
        } else {
            (
                format!("not landed: {} left at {}", repo.central, &base[..12]),
                None,
            )
        };
        let reason = match ending.reason {
            Some(r) => format!("{r}; {outcome}"),
            None => outcome,
        };
        return EndingError {
            state: ending.state,
            reason: Some(reason),
            then,
        };
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
/// anything holding one of the runner's secrets (webhook secret, API token,
/// the store's address, which may hold a password).
fn pipeline_vars(shared: &Shared) -> Vars {
    let store = match &shared.config.store {
        crate::config::StoreSpec::Postgres(url) => Some(url.clone()),
        crate::config::StoreSpec::Sqlite => None,
    };
    let secrets: Vec<&str> = [
        &shared.config.webhook_secret,
        &shared.config.api_token,
        &store,
    ]
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

/// The runner's event sink: the live summary the status page and the store
/// show (folded by core's [`SummaryBuilder`], as `summary.json` is), and the
/// run's notes and step output in `run.log`.
struct Live {
    summary: SummaryBuilder,
    shared: Arc<Shared>,
    /// The run (its store id, not the engine's run id).
    id: String,
    log: RunLog,
}

impl EventSink for Live {
    fn handle(&mut self, event: &Event, _at: Timestamp) {
        self.note(event);
        if self.summary.handle(event) {
            self.publish();
        }
    }

    fn finish(&mut self) {
        self.publish();
    }
}

impl Live {
    fn publish(&self) {
        self.shared
            .live
            .lock()
            .unwrap()
            .insert(self.id.clone(), RunSummary::from(self.summary.summary()));
    }

    /// Writes what people follow in `run.log`.
    fn note(&self, event: &Event) {
        let log = &self.log;
        match event {
            Event::RunStarted { pipeline, .. } => log.note(&format!("pipeline {pipeline} started")),
            Event::Log {
                tier, step, line, ..
            } => log.output(&format!("[{tier}/{step}] {line}")),
            Event::StepStarted { tier, step, .. } => log.note(&format!("{tier}/{step} started")),
            Event::StepFinished {
                tier,
                step,
                status,
                duration_ms,
                cause,
                ..
            } => {
                log.note(&format!(
                    "{tier}/{step} {} in {duration_ms} ms",
                    status.word()
                ));
                for line in cause {
                    log.note(&format!("{tier}/{step} cause: {line}"));
                }
            }
            Event::Warning {
                tier,
                step,
                message,
            } => log.note(&format!("warning: {tier}/{step}: {message}")),
            Event::ServiceFailed { service, error, .. } => {
                log.note(&format!("service {service} failed: {error}"))
            }
            _ => {}
        }
    }
}

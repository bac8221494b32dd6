//! The executor: carries out a [`Plan`] on a [`Runtime`] and emits
//! [`Event`]s.
//!
//! One run loop (`RunLoop`, private) owns the run's state: which builds are done
//! (and their images), which services are ready, which steps ended. Builds,
//! services and steps run as tasks that only report back to the loop over a
//! channel; no state is shared between tasks.
//!
//! Tiers run in order and the first failing tier stops the run (later tiers
//! are reported skipped). Inside a tier, its builds are reported first (they
//! were started ahead, in the order the plan needs them), then the tier
//! waits for its services, then its steps run concurrently. Services with an
//! image start when the run starts (overlapping the builds); services built
//! from a build start as soon as that build is done.
//!
//! Cancellation is explicit ([`RunCancel`]) and carries an ordered
//! [`CancelReason`]: a failed tier stops the builds ahead and skips later
//! tiers; a timeout, an API cancel or a signal also stop running steps
//! (each with the stop grace). The run ends with the strongest reason seen,
//! announced as [`Event::Cancelling`] and recorded in
//! [`Event::RunFinished`]. Whatever happens, the teardown removes every
//! container and network labelled with the run.

pub(crate) mod ahead;
pub(crate) mod builder;
mod cancel;
pub(crate) mod ready;
mod reuse;
pub(crate) mod service;
pub(crate) mod step;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

pub use crate::events::EventSender;
pub use crate::release::{push_release, Released};
pub use crate::runtime::Runtime;
pub use cancel::{CancelReason, RunCancel, StopSignals};

use crate::engine::ContainerSpec;
use crate::events::{Event, LogStream, Outcome, Status, StepKind, TestCounts, TierPlan};
use crate::pipeline::When;
use crate::plan::{
    BuildId, ContainerPlan, ImageRef, NetworkPlan, Plan, PlanOptions, ReleaseChoice, ServiceId,
    StepId,
};
use crate::trust::Trust;

/// Git facts about the commit being run (defined with the plan, which
/// tags releases with them).
pub use crate::plan::GitInfo;

/// How to run a pipeline: what planning needs ([`RunOptions::plan_options`])
/// and what execution needs ([`RunOptions::exec_options`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run id (see [`new_run_id`]).
    pub run_id: String,
    /// This run's results folder (collected files go under `artifacts/`).
    pub results_dir: PathBuf,
    /// CA bundle and proxies for builds and networked steps.
    pub trust: Trust,
    /// The commit being run.
    pub git: GitInfo,
    /// How long a stopped container gets before it is killed.
    pub stop_grace: Duration,
    /// Whether and where a green run releases.
    pub release: ReleaseChoice,
    /// Run every step once, whatever its `retry:` says.
    pub no_retry: bool,
    /// The release ledger file a green run's release is recorded in (e.g.
    /// [`Ledger::default_path`](crate::release::Ledger::default_path)).
    pub ledger: PathBuf,
    /// Checked right before the release is recorded (see
    /// [`ReleaseFence`](crate::release::ReleaseFence)); `None`: no check.
    pub release_fence: Option<crate::release::ReleaseFence>,
    /// Where step results are stored and looked up (see [`crate::reuse`];
    /// e.g. [`crate::reuse::store_dir`] of [`crate::cache::state_dir`]);
    /// `None`: no step result is stored nor reused.
    pub results_store: Option<PathBuf>,
    /// Run every step (`--no-reuse`): no stored result is replayed; results
    /// are still stored for later runs.
    pub no_reuse: bool,
}

impl RunOptions {
    /// The planning part.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            run_id: self.run_id.clone(),
            git: self.git.clone(),
            trust: self.trust.clone(),
            release: self.release.clone(),
            no_retry: self.no_retry,
        }
    }

    /// The execution part.
    pub fn exec_options(&self) -> ExecOptions {
        ExecOptions {
            results_dir: self.results_dir.clone(),
            stop_grace: self.stop_grace,
            ledger: self.ledger.clone(),
            release_fence: self.release_fence.clone(),
            results_store: self.results_store.clone(),
            no_reuse: self.no_reuse,
        }
    }
}

/// What executing a plan needs beyond the plan.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// This run's results folder (collected files go under `artifacts/`).
    pub results_dir: PathBuf,
    /// How long a stopped container gets before it is killed.
    pub stop_grace: Duration,
    /// The release ledger file (see [`RunOptions::ledger`]).
    pub ledger: PathBuf,
    /// See [`RunOptions::release_fence`].
    pub release_fence: Option<crate::release::ReleaseFence>,
    /// See [`RunOptions::results_store`].
    pub results_store: Option<PathBuf>,
    /// See [`RunOptions::no_reuse`].
    pub no_reuse: bool,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it did not pass, for people.
    pub error: Option<String>,
    /// What a green run released (recorded in the ledger; see
    /// [`crate::release::release`]). A run that released passed, whatever
    /// signal came after; the only exception is an `errored` run whose
    /// channel tag could not be moved after the release was recorded.
    pub released: Option<Released>,
    /// Why the run was cut short, if it was (the strongest reason seen).
    pub cancel_reason: Option<CancelReason>,
}

/// A fresh run id: `YYYYMMDD-HHMMSS-xxxx` (UTC, 4 random hex digits).
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    )
}

/// The tier plan announced in [`Event::RunStarted`].
pub fn tier_plans(plan: &Plan) -> Vec<TierPlan> {
    plan.tiers
        .iter()
        .map(|tier| TierPlan {
            name: tier.name.clone(),
            steps: plan.tier_step_names(tier.index),
        })
        .collect()
}

/// Runs `plan` on `runtime`, sending events to `events`, until done or
/// `cancel` fires. Never leaves containers or networks of the run behind.
/// Front ends run pipelines through [`crate::session::run_session`], which
/// calls this.
pub(crate) async fn run_plan<R: Runtime>(
    plan: &Plan,
    runtime: Arc<R>,
    options: ExecOptions,
    events: EventSender,
    cancel: RunCancel,
) -> RunReport {
    let started = Instant::now();
    // Secret values are read now, never kept in the plan; every event is
    // masked from here on.
    let (secrets, secret_error) =
        match crate::secrets::read_values(&plan.secrets, |v| std::env::var(v).ok()) {
            Ok(values) => (values, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
    let secret_files = match SecretFiles::write(&secrets) {
        Ok(files) => files,
        Err(e) => {
            return refuse(
                plan,
                events,
                started,
                format!("cannot prepare secret files: {e}"),
            )
            .await;
        }
    };
    let ctx = Arc::new(Ctx {
        runtime,
        plan: Arc::new(plan.clone()),
        options,
        events,
        cancel,
        masker: crate::secrets::Masker::new(&secrets),
        secrets,
        secret_files,
        caches: std::sync::OnceLock::new(),
        ahead: ahead::Ahead::default(),
    });
    ctx.emit(Event::RunStarted {
        run_id: plan.run_id.clone(),
        pipeline: plan.pipeline.clone(),
        tiers: tier_plans(plan),
        results_dir: ctx.options.results_dir.display().to_string(),
        engine: ctx.runtime.describe(),
    })
    .await;
    let mut run = RunLoop::new(ctx.clone());
    let executed = match secret_error {
        Some(e) => Err(e),
        None => run.execute().await,
    };
    let (mut outcome, mut error) = match executed {
        Ok(ended) => ended,
        Err(e) => {
            // Nothing ran: every planned tier and step still gets its end.
            run.skip_everything(&e).await;
            (Outcome::Errored, Some(e))
        }
    };
    // A release is all or nothing (see `crate::release`): a run that was
    // cancelled before it starts does not release; one whose release was
    // recorded passed, whatever signal comes after.
    let mut released = None;
    if outcome == Outcome::Passed && !run.cancelled() {
        match run.release().await {
            Ok(r) => released = r,
            Err(e) if e.is_cancelled() && run.cancelled() => {}
            Err(e) => {
                outcome = Outcome::Errored;
                error = Some(format!("release failed: {e}"));
                released = e.recorded().cloned();
            }
        }
    }
    let reason = run.reason();
    if released.is_none() && reason.is_some_and(CancelReason::stops_running_steps) {
        outcome = Outcome::Interrupted;
        if error.is_none() {
            error = Some("interrupted".to_string());
        }
    }
    let (removed, left) = run.teardown().await;
    if let Some(left) = left {
        error = Some(match error {
            Some(e) => format!("{e}; {left}"),
            None => left,
        });
    }
    ctx.emit(Event::RunFinished {
        run_id: plan.run_id.clone(),
        outcome,
        duration_ms: started.elapsed().as_millis() as u64,
        error: error.clone(),
        removed,
        cancel_reason: reason,
        failure: crate::events::RunFailure::of(outcome, error.as_deref()),
    })
    .await;
    RunReport {
        run_id: plan.run_id.clone(),
        outcome,
        error,
        released,
        cancel_reason: reason,
    }
}

/// A run refused before it started (its secrets could not be prepared):
/// `run_started` and `run_finished` only.
async fn refuse(plan: &Plan, events: EventSender, started: Instant, error: String) -> RunReport {
    let _ = events
        .send(Event::RunFinished {
            run_id: plan.run_id.clone(),
            outcome: Outcome::Errored,
            duration_ms: started.elapsed().as_millis() as u64,
            error: Some(error.clone()),
            removed: 0,
            cancel_reason: None,
            failure: crate::events::RunFailure::of(Outcome::Errored, Some(&error)),
        })
        .await;
    RunReport {
        run_id: plan.run_id.clone(),
        outcome: Outcome::Errored,
        error: Some(error),
        released: None,
        cancel_reason: None,
    }
}

/// Secrets exposed as files: written once per run into a private folder
/// (mode 0700, files 0444 so that any container user can read them),
/// bind-mounted read-only at `/run/secrets/<name>`, removed with the run.
pub(crate) struct SecretFiles {
    dir: Option<tempfile::TempDir>,
}

impl SecretFiles {
    fn write(secrets: &[crate::secrets::SecretValue]) -> std::io::Result<SecretFiles> {
        use std::os::unix::fs::PermissionsExt;
        let files: Vec<_> = secrets
            .iter()
            .filter(|s| s.expose == crate::pipeline::SecretExpose::File)
            .collect();
        if files.is_empty() {
            return Ok(SecretFiles { dir: None });
        }
        let dir = tempfile::Builder::new()
            .prefix("drydock-secrets-")
            .tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        for secret in files {
            let path = dir.path().join(&secret.name);
            std::fs::write(&path, &secret.value)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))?;
        }
        Ok(SecretFiles { dir: Some(dir) })
    }

    /// The host file of a file-exposed secret.
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join(name))
    }
}

/// Where a step gets a file-exposed secret.
pub const SECRETS_DIR: &str = "/run/secrets";

/// What every task of a run may read: nothing in it changes during the run.
pub(crate) struct Ctx<R: Runtime> {
    pub runtime: Arc<R>,
    pub plan: Arc<Plan>,
    pub options: ExecOptions,
    pub events: EventSender,
    pub cancel: RunCancel,
    /// Masks secret values in every event and collected file.
    pub masker: Option<crate::secrets::Masker>,
    /// The run's secret values.
    pub secrets: Vec<crate::secrets::SecretValue>,
    secret_files: SecretFiles,
    /// Cache path → the volume this run mounts there (set once, before any step).
    caches: std::sync::OnceLock<HashMap<String, String>>,
    /// The step containers started ahead of their turn (see [`ahead`]).
    pub ahead: ahead::Ahead,
}

impl<R: Runtime> Ctx<R> {
    /// The context of a run or watch session of `plan`: its secret values
    /// read (from the environment) and file-exposed ones written. `Err`
    /// says why the secrets cannot be prepared.
    pub(crate) fn prepare(
        plan: Plan,
        runtime: Arc<R>,
        options: ExecOptions,
        events: EventSender,
        cancel: RunCancel,
    ) -> Result<Ctx<R>, String> {
        let secrets = crate::secrets::read_values(&plan.secrets, |v| std::env::var(v).ok())
            .map_err(|e| e.to_string())?;
        let secret_files = SecretFiles::write(&secrets)
            .map_err(|e| format!("cannot prepare secret files: {e}"))?;
        Ok(Ctx {
            runtime,
            plan: Arc::new(plan),
            options,
            events,
            cancel,
            masker: crate::secrets::Masker::new(&secrets),
            secrets,
            secret_files,
            caches: std::sync::OnceLock::new(),
            ahead: ahead::Ahead::default(),
        })
    }

    /// Sets the cache volumes (cache path → volume), once, before any step.
    pub(crate) fn set_caches(&self, caches: HashMap<String, String>) {
        let _ = self.caches.set(caches);
    }

    pub async fn emit(&self, mut event: Event) {
        if let Some(masker) = &self.masker {
            event.for_each_text(&mut |text| {
                let masked = masker.mask(text);
                if masked != *text {
                    *text = masked;
                }
            });
        }
        // A reporter that went away must not stop the run.
        let _ = self.events.send(event).await;
    }

    /// The container spec of a step: its planned container plus the
    /// secrets it asked for (environment variables or files).
    pub fn step_spec(&self, step: &crate::plan::PlannedStep, image: String) -> ContainerSpec {
        let mut spec = self.container_spec(&step.container, image);
        for name in &step.secrets {
            let Some(secret) = self.secrets.iter().find(|s| &s.name == name) else {
                continue;
            };
            match secret.expose {
                crate::pipeline::SecretExpose::Env => {
                    spec.env.insert(
                        name.clone(),
                        String::from_utf8_lossy(&secret.value).into_owned(),
                    );
                }
                crate::pipeline::SecretExpose::File => {
                    if let Some(path) = self.secret_files.path(name) {
                        spec.binds.push(crate::engine::BindMount {
                            source: path,
                            target: format!("{SECRETS_DIR}/{name}"),
                            read_only: true,
                        });
                    }
                }
            }
        }
        if let Some(caches) = self.caches.get() {
            for path in &step.cache {
                if let Some(volume) = caches.get(path) {
                    spec.volumes.push((volume.clone(), path.clone()));
                }
            }
        }
        spec
    }

    /// The engine's container spec for a planned container whose image is `image`.
    pub fn container_spec(&self, c: &ContainerPlan, image: String) -> ContainerSpec {
        ContainerSpec {
            name: c.name.clone(),
            image,
            command: c.command.clone(),
            entrypoint: c.entrypoint.clone(),
            user: c.user.clone(),
            env: c.env.clone(),
            workdir: c.workdir.clone(),
            labels: self.plan.labels.with_role(&c.role),
            network: Some(match &c.network {
                NetworkPlan::Run { aliases } => (self.plan.network.clone(), aliases.clone()),
                NetworkPlan::Bridge => ("bridge".to_string(), Vec::new()),
                NetworkPlan::None => ("none".to_string(), Vec::new()),
            }),
            binds: c
                .binds
                .iter()
                .map(|b| crate::engine::BindMount {
                    source: b.source.clone(),
                    target: b.target.clone(),
                    read_only: b.read_only,
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Messages from the run's tasks to the loop.
pub(crate) enum Msg {
    /// A line of a build's output.
    BuildProgress(BuildId, String),
    /// A build ended (with its image id when it passed).
    BuildDone(BuildId, builder::BuildOutcome, Option<String>),
    /// A service is ready, or why it is not.
    Service(ServiceId, Result<(), String>),
    /// A step ended; the handles remove its containers in the background.
    Step(StepId, step::StepOutcome, Vec<JoinHandle<()>>),
    /// What the store holds for a step (looked up before it is launched).
    Verdict(StepId, Box<reuse::Verdict>),
    /// The engine has not answered pings for [`ENGINE_UNRESPONSIVE_AFTER`].
    EngineLost(String),
}

/// How often the run pings the engine.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// An engine that answers no ping for this long ends the run (`errored`).
pub const ENGINE_UNRESPONSIVE_AFTER: Duration = Duration::from_secs(20);
/// How long the teardown may take after a second signal or a lost engine.
pub const HURRIED_TEARDOWN: Duration = Duration::from_secs(1);

/// How many of a build's last output lines are searched for its cause.
const CAUSE_TAIL_LINES: usize = 200;

/// Most build output lines kept for a tier that has not reached the build yet.
const BUILD_BUFFER_LINES: usize = 20_000;

/// How long `when: always` steps may take, in all, once a run is cancelled.
pub const ALWAYS_GRACE: Duration = Duration::from_secs(120);

enum BuildState {
    /// Building or waiting; output kept until its tier reports it.
    Pending {
        buffer: VecDeque<String>,
        omitted: usize,
    },
    Done {
        outcome: builder::BuildOutcome,
        image: Option<String>,
    },
}

/// How a tier reports one of its builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    NotYet,
    Streaming,
    Done(Status),
    Skipped,
}

enum ServiceState {
    NotStarted,
    Starting,
    Ready,
    Failed(String),
}

#[derive(Clone, PartialEq)]
enum StepState {
    Waiting,
    Running,
    Done {
        status: Status,
        allowed: bool,
        tests: Option<TestCounts>,
    },
    Skipped,
}

struct TierProgress {
    started: Option<Instant>,
    open: bool,
    closed: bool,
    reports: Vec<Report>,
    /// Why its services are not ready, once known.
    service_error: Option<String>,
}

/// The single owner of a run's state.
struct RunLoop<R: Runtime> {
    ctx: Arc<Ctx<R>>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    builds: Vec<BuildState>,
    services: Vec<ServiceState>,
    steps: Vec<StepState>,
    tiers: Vec<TierProgress>,
    /// Which build's output goes out live (its tier is reporting it).
    streaming: Option<(BuildId, String)>,
    builder_stop: CancellationToken,
    service_tasks: Vec<JoinHandle<()>>,
    step_tasks: Vec<JoinHandle<()>>,
    removals: Vec<JoinHandle<()>>,
    /// The first failure: (outcome, message). Later on_success steps are skipped.
    failure: Option<(Outcome, String)>,
    /// Reasons raised by the loop itself (a failed tier).
    own_reason: Option<CancelReason>,
    /// The strongest reason announced so far.
    announced: Option<CancelReason>,
    /// When `when: always` steps must be done by, once the run is cancelled.
    always_deadline: Option<Instant>,
    /// The cache leases this run holds (released when the run ends).
    leases: Vec<crate::cache::CacheLease>,
    /// Why the engine is considered lost, once it is.
    engine_lost: Option<String>,
    /// The last lines of each build's output, for the cause of a failure.
    build_tails: Vec<VecDeque<String>>,
    /// The liveness watchdog.
    watchdog: Option<JoinHandle<()>>,
    /// Steps whose container was started ahead (each at most once).
    ahead_tried: Vec<bool>,
    /// Each step's stored result, looked up once its image is known (only
    /// when the run keeps results and was not told `--no-reuse`).
    verdicts: Vec<VerdictState>,
}

/// Where the store lookup of a step stands.
enum VerdictState {
    /// Not asked yet.
    Unknown,
    /// Being looked up.
    Pending,
    /// Known; taken when the step is launched.
    Known(Box<reuse::Verdict>),
    /// Taken by the launched step (or never asked: the run reuses nothing).
    Taken,
}

impl<R: Runtime> RunLoop<R> {
    fn new(ctx: Arc<Ctx<R>>) -> Self {
        let reuses = ctx.options.results_store.is_some() && !ctx.options.no_reuse;
        let (tx, rx) = mpsc::unbounded_channel();
        let plan = ctx.plan.clone();
        RunLoop {
            builder_stop: ctx.cancel.token().child_token(),
            ctx,
            tx,
            rx,
            builds: plan
                .builds
                .iter()
                .map(|_| BuildState::Pending {
                    buffer: VecDeque::new(),
                    omitted: 0,
                })
                .collect(),
            services: plan
                .services
                .iter()
                .map(|_| ServiceState::NotStarted)
                .collect(),
            steps: plan.steps.iter().map(|_| StepState::Waiting).collect(),
            tiers: plan
                .tiers
                .iter()
                .map(|t| TierProgress {
                    started: None,
                    open: false,
                    closed: false,
                    reports: t.builds.iter().map(|_| Report::NotYet).collect(),
                    service_error: None,
                })
                .collect(),
            streaming: None,
            service_tasks: Vec::new(),
            step_tasks: Vec::new(),
            removals: Vec::new(),
            failure: None,
            own_reason: None,
            announced: None,
            always_deadline: None,
            leases: Vec::new(),
            engine_lost: None,
            watchdog: None,
            build_tails: plan.builds.iter().map(|_| VecDeque::new()).collect(),
            ahead_tried: plan.steps.iter().map(|_| false).collect(),
            verdicts: plan
                .steps
                .iter()
                .map(|_| {
                    if reuses {
                        VerdictState::Unknown
                    } else {
                        VerdictState::Taken
                    }
                })
                .collect(),
        }
    }

    /// The strongest cancel reason so far (the loop's own or the caller's).
    fn reason(&self) -> Option<CancelReason> {
        self.own_reason.max(self.ctx.cancel.reason())
    }

    /// Whether running steps are being stopped (a signal, a timeout, an API cancel).
    fn cancelled(&self) -> bool {
        self.reason().is_some_and(CancelReason::stops_running_steps)
    }

    async fn announce_reason(&mut self) {
        let reason = self.reason();
        if reason > self.announced {
            self.announced = reason;
            // Nothing started ahead will run (`always` steps never start ahead).
            let unused = self.ctx.ahead.discard_all(&self.ctx.runtime);
            self.removals.extend(unused);
            if let Some(reason) = reason {
                if reason.stops_running_steps() && self.always_deadline.is_none() {
                    self.always_deadline = Some(Instant::now() + ALWAYS_GRACE);
                    self.builder_stop.cancel();
                }
                self.ctx.emit(Event::Cancelling { reason }).await;
            }
        }
    }

    /// Waits for one message (or a cancel, or the always-grace deadline) and applies it.
    async fn pump(&mut self) {
        let cancel = self.ctx.cancel.clone();
        let deadline = self.always_deadline;
        let ahead = self.ctx.clone();
        let msg = tokio::select! {
            msg = self.rx.recv() => msg,
            // A container started ahead was taken: room for another.
            _ = ahead.ahead.taken() => None,
            _ = cancel.changed(self.announced) => None,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        match msg {
            Some(msg) => self.handle(msg).await,
            None => self.announce_reason().await,
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::BuildProgress(id, line) => {
                let tail = &mut self.build_tails[id.0];
                if tail.len() == CAUSE_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                if let Some((streaming, tier)) = &self.streaming {
                    if *streaming == id {
                        let event = Event::Log {
                            tier: tier.clone(),
                            step: self.ctx.plan.build(id).step_name(),
                            stream: LogStream::Stdout,
                            line,
                        };
                        self.ctx.emit(event).await;
                        return;
                    }
                }
                if let BuildState::Pending { buffer, omitted } = &mut self.builds[id.0] {
                    if buffer.len() == BUILD_BUFFER_LINES {
                        buffer.pop_front();
                        *omitted += 1;
                    }
                    buffer.push_back(line);
                }
            }
            Msg::BuildDone(id, outcome, image) => {
                let passed = outcome.status.is_success();
                self.builds[id.0] = BuildState::Done { outcome, image };
                if passed {
                    let plan = self.ctx.plan.clone();
                    for service in &plan.services {
                        if service.container.image == ImageRef::Build(id) {
                            self.start_service(service.id);
                        }
                    }
                }
            }
            Msg::Service(id, result) => {
                self.services[id.0] = match result {
                    Ok(()) => ServiceState::Ready,
                    Err(e) => ServiceState::Failed(e),
                };
            }
            Msg::Verdict(id, verdict) => {
                self.verdicts[id.0] = VerdictState::Known(verdict);
            }
            Msg::EngineLost(why) => {
                if self.engine_lost.is_none() {
                    self.fail(Outcome::Errored, why.clone());
                    self.engine_lost = Some(why);
                }
            }
            Msg::Step(id, outcome, removals) => {
                self.removals.extend(removals);
                let step = self.ctx.plan.step(id);
                let allowed = step.allow_failure && !outcome.status.is_success();
                if !outcome.status.is_success() && !allowed && self.failure.is_none() {
                    let tier = &self.ctx.plan.tiers[step.tier].name;
                    let outcome_kind = match outcome.status {
                        Status::Errored => Outcome::Errored,
                        Status::Cancelled => Outcome::Interrupted,
                        _ => Outcome::Failed,
                    };
                    if outcome.status != Status::Cancelled {
                        self.fail(
                            outcome_kind,
                            format!(
                                "tier {tier} {}: step {} {}",
                                tier_word(outcome.status),
                                step.name,
                                outcome.status.word()
                            ),
                        );
                    }
                }
                self.steps[id.0] = StepState::Done {
                    status: outcome.status,
                    allowed,
                    tests: outcome.tests,
                };
            }
        }
    }

    /// Records the run's first failure: builds ahead stop, later
    /// `on_success` steps are skipped.
    fn fail(&mut self, outcome: Outcome, message: String) {
        if self.failure.is_none() {
            self.failure = Some((outcome, message));
        }
        self.builder_stop.cancel();
        self.own_reason = self.own_reason.max(Some(CancelReason::FailedTier));
        // The steps started ahead will be skipped: their containers go now.
        let unused = self.ctx.ahead.discard_all(&self.ctx.runtime);
        self.removals.extend(unused);
    }

    /// The image of a container: a reference as is, a build's image id once built.
    fn image_of(&self, image: ImageRef) -> Result<String, String> {
        match image {
            ImageRef::Reference(i) => Ok(self.ctx.plan.images[i].clone()),
            ImageRef::Build(b) => match &self.builds[b.0] {
                BuildState::Done {
                    image: Some(id), ..
                } => Ok(id.clone()),
                _ => Err(format!(
                    "build {} has not produced an image",
                    self.ctx.plan.build(b).name
                )),
            },
        }
    }

    fn start_service(&mut self, id: ServiceId) {
        if !matches!(self.services[id.0], ServiceState::NotStarted) {
            return;
        }
        let service = self.ctx.plan.service(id).clone();
        let image = match self.image_of(service.container.image) {
            Ok(image) => image,
            Err(e) => {
                self.services[id.0] = ServiceState::Failed(e);
                return;
            }
        };
        self.services[id.0] = ServiceState::Starting;
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        self.service_tasks.push(tokio::spawn(async move {
            let (result, follower) = service::start_and_probe(ctx, &service, image).await;
            let _ = tx.send(Msg::Service(service.id, result));
            // This task lives while the service's output streams; aborting
            // it (at teardown) stops the follower too.
            if let Some(follower) = follower {
                let _ = follower.await;
            }
        }));
    }

    /// Checks the images, creates the network, starts the services and the
    /// builder, then schedules tiers and steps until every tier is closed.
    /// `Err` is an infrastructure failure before anything ran.
    async fn execute(&mut self) -> Result<(Outcome, Option<String>), String> {
        self.check_images().await?;
        let plan = self.ctx.plan.clone();
        self.ctx
            .runtime
            .create_network(&plan.network, plan.labels.with_role("network"))
            .await
            .map_err(|e| e.to_string())?;
        self.lease_caches().await?;
        for service in &plan.services {
            if matches!(service.container.image, ImageRef::Reference(_)) {
                self.start_service(service.id);
            }
        }
        builder::start(self.ctx.clone(), self.tx.clone(), self.builder_stop.clone());
        self.watchdog = Some(self.start_watchdog());
        loop {
            self.announce_reason().await;
            // A lost engine or a second signal: stop waiting for anything.
            if let Some(why) = self.engine_lost.clone() {
                self.abandon(Status::Errored, &why).await;
                break;
            }
            if self.reason() == Some(CancelReason::SecondSignal) {
                self.abandon(Status::Cancelled, CancelReason::SecondSignal.describe())
                    .await;
                break;
            }
            while self.advance().await {}
            if self.tiers.iter().all(|t| t.closed) {
                break;
            }
            self.pump().await;
        }
        self.announce_reason().await;
        Ok(match self.failure.clone() {
            Some((outcome, message)) => (outcome, Some(message)),
            None if self.cancelled() => (Outcome::Interrupted, Some("interrupted".to_string())),
            None => (Outcome::Passed, None),
        })
    }

    /// Moves the run forward as far as the current state allows; true when
    /// something changed (call again).
    async fn advance(&mut self) -> bool {
        let plan = self.ctx.plan.clone();
        let mut changed = false;
        // The current tier: the first one not closed; it opens once every
        // earlier tier closed.
        let Some(current) = self.tiers.iter().position(|t| !t.closed) else {
            return false;
        };
        if !self.tiers[current].open {
            self.tiers[current].open = true;
            self.start_tier(current).await;
            changed = true;
        }
        if self.report_builds(current).await {
            changed = true;
        }
        let builds_reported = self.tiers[current]
            .reports
            .iter()
            .all(|r| matches!(r, Report::Done(_) | Report::Skipped));
        if builds_reported && self.check_services(current) {
            changed = true;
        }
        // Steps of every tier whose turn may have come.
        for step in &plan.steps {
            if self.steps[step.id.0] != StepState::Waiting {
                continue;
            }
            let decision = self.decide(step.id, current, builds_reported);
            match decision {
                Decision::Wait => {}
                Decision::LookUp => self.look_up(step),
                Decision::Run { deadline } => {
                    self.start_tier(step.tier).await;
                    self.spawn_step(step.id, deadline);
                    changed = true;
                }
                Decision::Skip(reason) => {
                    self.start_tier(step.tier).await;
                    self.steps[step.id.0] = StepState::Skipped;
                    self.removals
                        .extend(self.ctx.ahead.discard(&self.ctx.runtime, step.id));
                    self.ctx
                        .emit(Event::StepSkipped {
                            tier: plan.tiers[step.tier].name.clone(),
                            step: step.name.clone(),
                            reason: Some(reason),
                        })
                        .await;
                    changed = true;
                }
            }
        }
        // Close the current tier once everything in it is resolved.
        let resolved =
            |s: &StepId| matches!(self.steps[s.0], StepState::Done { .. } | StepState::Skipped);
        if builds_reported && plan.tiers[current].steps.iter().all(resolved) {
            self.close_tier(current).await;
            changed = true;
        }
        self.start_ahead(current);
        changed
    }

    /// Starts ahead the containers of the waiting steps of the current tier
    /// and the next one whose image is known, within [`ahead::MAX_AHEAD`]
    /// (see [`ahead`] for which steps and why). Nothing starts ahead once
    /// the run failed or is being cancelled.
    fn start_ahead(&mut self, current: usize) {
        if self.failure.is_some() || self.reason().is_some() {
            return;
        }
        let plan = self.ctx.plan.clone();
        for step in &plan.steps {
            if self.ctx.ahead.len() >= ahead::MAX_AHEAD {
                break;
            }
            let candidate = !self.ahead_tried[step.id.0]
                && self.steps[step.id.0] == StepState::Waiting
                && step.when == When::OnSuccess
                && (current..=current + 1).contains(&step.tier)
                && ahead::eligible(&plan, step);
            if !candidate {
                continue;
            }
            let Ok(image) = self.image_of(step.container.image) else {
                continue;
            };
            // A step whose stored result will be replayed needs no
            // container: look it up first.
            match &self.verdicts[step.id.0] {
                VerdictState::Unknown => {
                    self.look_up(step);
                    continue;
                }
                VerdictState::Pending => continue,
                VerdictState::Known(verdict) if verdict.replay.is_some() => continue,
                VerdictState::Known(_) | VerdictState::Taken => {}
            }
            self.ahead_tried[step.id.0] = true;
            self.ctx.ahead.spawn(
                self.ctx.clone(),
                step.clone(),
                image,
                self.ctx.cancel.token(),
            );
        }
    }

    /// Pings the engine every [`PING_INTERVAL`]; when no ping was answered
    /// for [`ENGINE_UNRESPONSIVE_AFTER`], tells the loop the engine is lost
    /// (streams such as a step's wait would otherwise hang for ever).
    fn start_watchdog(&self) -> JoinHandle<()> {
        let runtime = self.ctx.runtime.clone();
        let tx = self.tx.clone();
        let host = runtime.describe();
        tokio::spawn(async move {
            let mut last_answer = Instant::now();
            loop {
                tokio::time::sleep(PING_INTERVAL).await;
                match runtime.ping().await {
                    Ok(()) => last_answer = Instant::now(),
                    Err(e) if last_answer.elapsed() >= ENGINE_UNRESPONSIVE_AFTER => {
                        let _ = tx.send(Msg::EngineLost(format!(
                            "the Docker Engine ({host}) has not answered for {}s ({e}); the run stopped waiting for it",
                            last_answer.elapsed().as_secs()
                        )));
                        return;
                    }
                    Err(e) => tracing::warn!("the engine did not answer a ping: {e}"),
                }
            }
        })
    }

    /// Stops waiting: running steps end with `status` (their tasks are
    /// aborted), the build being reported too, waiting steps and unreported
    /// builds are skipped, and every tier finishes. Used when the engine is
    /// lost and after a second signal.
    async fn abandon(&mut self, status: Status, why: &str) {
        let plan = self.ctx.plan.clone();
        self.builder_stop.cancel();
        for task in self
            .step_tasks
            .drain(..)
            .chain(self.service_tasks.drain(..))
        {
            task.abort();
        }
        for tier in &plan.tiers {
            let progress = &self.tiers[tier.index];
            if progress.closed {
                continue;
            }
            let reports = progress.reports.clone();
            for (i, build) in tier.builds.iter().enumerate() {
                let step = plan.build(*build).step_name();
                let event = match reports[i] {
                    Report::Streaming => {
                        Event::step_ended(&tier.name, step, status, Some(why.to_string()))
                    }
                    Report::NotYet => Event::StepSkipped {
                        tier: tier.name.clone(),
                        step,
                        reason: Some(why.to_string()),
                    },
                    _ => continue,
                };
                self.ctx.emit(event).await;
            }
            for step in &tier.steps {
                let name = plan.step(*step).name.clone();
                match self.steps[step.0] {
                    StepState::Running => {
                        self.steps[step.0] = StepState::Done {
                            status,
                            allowed: false,
                            tests: None,
                        };
                        self.ctx
                            .emit(Event::step_ended(
                                &tier.name,
                                name,
                                status,
                                Some(why.to_string()),
                            ))
                            .await;
                    }
                    StepState::Waiting => {
                        self.steps[step.0] = StepState::Skipped;
                        self.ctx
                            .emit(Event::StepSkipped {
                                tier: tier.name.clone(),
                                step: name,
                                reason: Some(why.to_string()),
                            })
                            .await;
                    }
                    _ => {}
                }
            }
            self.close_tier(tier.index).await;
        }
    }

    /// Leases the pipeline's caches (see [`crate::cache`]): each cache path
    /// gets its volume, or a private one for this run when another run holds
    /// the lease.
    async fn lease_caches(&mut self) -> Result<(), String> {
        let plan = self.ctx.plan.clone();
        let mut paths: Vec<&String> = plan.steps.iter().flat_map(|s| &s.cache).collect();
        paths.sort();
        paths.dedup();
        let mut volumes = HashMap::new();
        let state = crate::cache::state_dir();
        for path in paths {
            let shared = crate::cache::volume_name(&plan.pipeline, path);
            let lease = crate::cache::lease(&state, &shared)
                .map_err(|e| format!("cannot lease cache {shared} in {}: {e}", state.display()))?;
            let (volume, labels) = match lease {
                Some(lease) => {
                    self.leases.push(lease);
                    (shared, crate::cache::cache_labels(&plan.pipeline, path))
                }
                None => {
                    let private = format!("{shared}-{}", plan.run_id);
                    tracing::info!(
                        "cache {shared} is in use by another run: this run uses {private}"
                    );
                    (private, plan.labels.with_role("cache"))
                }
            };
            self.ctx
                .runtime
                .create_volume(&volume, labels)
                .await
                .map_err(|e| e.to_string())?;
            volumes.insert(path.clone(), volume);
        }
        let _ = self.ctx.caches.set(volumes);
        Ok(())
    }

    /// After an error before anything ran: every planned build and step is
    /// skipped with `why`, and every tier finishes `skipped`.
    async fn skip_everything(&mut self, why: &str) {
        let plan = self.ctx.plan.clone();
        for tier in &plan.tiers {
            if self.tiers[tier.index].closed {
                continue;
            }
            self.tiers[tier.index].closed = true;
            for step in plan.tier_step_names(tier.index) {
                self.ctx
                    .emit(Event::StepSkipped {
                        tier: tier.name.clone(),
                        step,
                        reason: Some(why.to_string()),
                    })
                    .await;
            }
            self.ctx
                .emit(Event::TierFinished {
                    tier: tier.name.clone(),
                    status: Status::Skipped,
                    duration_ms: 0,
                    tests: TestCounts::default(),
                })
                .await;
        }
    }

    /// Emits `tier_started` the first time anything of the tier happens.
    async fn start_tier(&mut self, tier: usize) {
        if self.tiers[tier].started.is_none() {
            self.tiers[tier].started = Some(Instant::now());
            self.ctx
                .emit(Event::TierStarted {
                    tier: self.ctx.plan.tiers[tier].name.clone(),
                })
                .await;
        }
    }

    /// Reports the current tier's builds in order: the one being streamed
    /// ends when its build does; the next starts (its output so far, then
    /// live). After a failure or a cancel, unreported builds are skipped.
    async fn report_builds(&mut self, tier: usize) -> bool {
        let plan = self.ctx.plan.clone();
        let tier_name = plan.tiers[tier].name.clone();
        let mut changed = false;
        for (i, build) in plan.tiers[tier].builds.iter().enumerate() {
            match self.tiers[tier].reports[i] {
                Report::Done(_) | Report::Skipped => continue,
                Report::Streaming => {
                    let BuildState::Done { outcome, .. } = &self.builds[build.0] else {
                        return changed;
                    };
                    let outcome = outcome.clone();
                    self.streaming = None;
                    self.tiers[tier].reports[i] = Report::Done(outcome.status);
                    if !outcome.status.is_success() && outcome.status != Status::Cancelled {
                        let kind = if outcome.status == Status::Errored {
                            Outcome::Errored
                        } else {
                            Outcome::Failed
                        };
                        self.fail(
                            kind,
                            format!(
                                "tier {tier_name} {}: build {} {}",
                                tier_word(outcome.status),
                                plan.build(*build).name,
                                outcome.status.word()
                            ),
                        );
                    }
                    let cause = if outcome.status.is_success() {
                        Vec::new()
                    } else {
                        let tail: Vec<String> = self.build_tails[build.0].drain(..).collect();
                        crate::report::cause::explain(&tail)
                    };
                    self.ctx
                        .emit(Event::StepFinished {
                            cause,
                            tier: tier_name.clone(),
                            step: plan.build(*build).step_name(),
                            status: outcome.status,
                            exit_code: None,
                            duration_ms: outcome.duration_ms,
                            log_tail: Vec::new(),
                            error: outcome.error,
                            tests: None,
                            failed_tests: Vec::new(),
                            junit: None,
                            reused: outcome.reused,
                            reused_from: None,
                            attempts: 1,
                            flaky_tests: Vec::new(),
                            allowed_failure: false,
                            timings: None,
                        })
                        .await;
                    changed = true;
                }
                Report::NotYet => {
                    if self.failure.is_some() || self.cancelled() {
                        self.tiers[tier].reports[i] = Report::Skipped;
                        self.ctx
                            .emit(Event::StepSkipped {
                                tier: tier_name.clone(),
                                step: plan.build(*build).step_name(),
                                reason: Some(self.skip_reason()),
                            })
                            .await;
                        changed = true;
                        continue;
                    }
                    self.start_report(tier, *build).await;
                    self.tiers[tier].reports[i] = Report::Streaming;
                    return true;
                }
            }
        }
        changed
    }

    async fn start_report(&mut self, tier: usize, id: BuildId) {
        let plan = self.ctx.plan.clone();
        let tier_name = plan.tiers[tier].name.clone();
        let step = plan.build(id).step_name();
        self.ctx
            .emit(Event::StepStarted {
                tier: tier_name.clone(),
                step: step.clone(),
                kind: StepKind::Build,
                image: plan.build(id).name.clone(),
            })
            .await;
        if let BuildState::Pending { buffer, omitted } = &mut self.builds[id.0] {
            let lines: Vec<String> = buffer.drain(..).collect();
            let omitted = std::mem::take(omitted);
            if omitted > 0 {
                self.ctx
                    .emit(Event::Log {
                        tier: tier_name.clone(),
                        step: step.clone(),
                        stream: LogStream::Stdout,
                        line: format!(
                            "[drydock: {omitted} earlier lines of build output not kept]"
                        ),
                    })
                    .await;
            }
            for line in lines {
                self.ctx
                    .emit(Event::Log {
                        tier: tier_name.clone(),
                        step: step.clone(),
                        stream: LogStream::Stdout,
                        line,
                    })
                    .await;
            }
        }
        self.streaming = Some((id, tier_name));
    }

    /// Once the current tier's builds are reported: records a service of
    /// the tier that failed (the tier errors). True when something changed.
    fn check_services(&mut self, tier: usize) -> bool {
        if self.tiers[tier].service_error.is_some() {
            return false;
        }
        let plan = self.ctx.plan.clone();
        for service in &plan.tiers[tier].services {
            let error = match &self.services[service.0] {
                ServiceState::Failed(e) => Some(e.clone()),
                ServiceState::NotStarted => match plan.service(*service).container.image {
                    ImageRef::Build(b) => match &self.builds[b.0] {
                        BuildState::Done { outcome, .. } if !outcome.status.is_success() => Some(
                            format!("its build {} {}", plan.build(b).name, outcome.status.word()),
                        ),
                        _ => None,
                    },
                    ImageRef::Reference(_) => None,
                },
                _ => None,
            };
            if let Some(error) = error {
                let message = format!(
                    "service {} is not ready: {error}",
                    plan.service(*service).name
                );
                self.tiers[tier].service_error = Some(message.clone());
                if !self.cancelled() {
                    self.fail(
                        Outcome::Errored,
                        format!("tier {} errored: {message}", plan.tiers[tier].name),
                    );
                }
                return true;
            }
        }
        false
    }

    /// Whether every service of a tier is ready.
    fn services_ready(&self, tier: usize) -> bool {
        self.ctx.plan.tiers[tier]
            .services
            .iter()
            .all(|s| matches!(self.services[s.0], ServiceState::Ready))
    }

    /// Why a step that will not run is skipped, in the run's current state.
    fn skip_reason(&self) -> String {
        if let Some(reason) = self.reason().filter(|r| r.stops_running_steps()) {
            return reason.describe().to_string();
        }
        match &self.failure {
            Some((_, message)) => format!("an earlier failure ({message})"),
            None => "nothing failed".to_string(),
        }
    }

    /// Whether step `id` runs now, waits, or is skipped.
    fn decide(&self, id: StepId, current: usize, builds_reported: bool) -> Decision {
        let plan = &self.ctx.plan;
        let step = plan.step(id);
        // Its dependencies: explicit needs, or every earlier tier (its tier
        // being current with its builds reported).
        let mut failed_need: Option<String> = None;
        match &step.needs {
            Some(needs) => {
                for need in needs {
                    match &self.steps[need.0] {
                        StepState::Waiting | StepState::Running => return Decision::Wait,
                        StepState::Done {
                            status, allowed, ..
                        } => {
                            if !status.is_success() && !allowed {
                                failed_need.get_or_insert_with(|| {
                                    format!(
                                        "its need {}/{} {}",
                                        plan.tiers[plan.step(*need).tier].name,
                                        plan.step(*need).name,
                                        status.word()
                                    )
                                });
                            }
                        }
                        StepState::Skipped => {
                            failed_need.get_or_insert_with(|| {
                                format!(
                                    "its need {}/{} was skipped",
                                    plan.tiers[plan.step(*need).tier].name,
                                    plan.step(*need).name
                                )
                            });
                        }
                    }
                }
            }
            None => {
                if step.tier != current || !builds_reported {
                    return Decision::Wait;
                }
            }
        }
        let cancelled = self.cancelled();
        let failed = self.failure.is_some();
        // After a second signal nothing more runs.
        if self.reason() == Some(CancelReason::SecondSignal) {
            return Decision::Skip(CancelReason::SecondSignal.describe().to_string());
        }
        match step.when {
            When::OnSuccess => {
                if cancelled {
                    return Decision::Skip(self.skip_reason());
                }
                if let Some(reason) = failed_need {
                    return Decision::Skip(reason);
                }
                if failed {
                    return Decision::Skip(self.skip_reason());
                }
            }
            When::OnFailure => {
                if cancelled {
                    return Decision::Skip(self.skip_reason());
                }
                if !failed && failed_need.is_none() {
                    // Nothing failed yet: its tier's other steps still could.
                    if step.needs.is_none() && self.later_work_pending(id) {
                        return Decision::Wait;
                    }
                    return Decision::Skip("nothing failed (`when: on_failure`)".to_string());
                }
            }
            When::Always => {}
        }
        // Its image.
        if let ImageRef::Build(b) = step.container.image {
            match &self.builds[b.0] {
                BuildState::Pending { .. } => return Decision::Wait,
                BuildState::Done {
                    image: None,
                    outcome,
                } => {
                    return Decision::Skip(format!(
                        "its build {} {}",
                        plan.build(b).name,
                        outcome.status.word()
                    ));
                }
                BuildState::Done { .. } => {}
            }
        }
        // Its stored result: looked up once its image is known; a step whose
        // result will be replayed needs no service.
        let replayed = match &self.verdicts[id.0] {
            VerdictState::Unknown => return Decision::LookUp,
            VerdictState::Pending => return Decision::Wait,
            VerdictState::Known(verdict) => verdict.replay.is_some(),
            VerdictState::Taken => false,
        };
        // Its tier's services: waited for in the normal flow; after a
        // failure or a cancel, `always` and `on_failure` steps do not wait
        // for services that may never come.
        if !replayed && !self.services_ready(step.tier) {
            if let Some(error) = &self.tiers[step.tier].service_error {
                if step.when == When::OnSuccess {
                    return Decision::Skip(error.clone());
                }
            } else if !(cancelled || failed) {
                return Decision::Wait;
            }
        }
        let deadline = if cancelled {
            match self.always_deadline {
                Some(d) if d > Instant::now() => Some(d),
                _ => {
                    return Decision::Skip(format!(
                        "the run was cancelled and the grace for `when: always` steps ({}) is over",
                        crate::pipeline::format_duration(ALWAYS_GRACE)
                    ))
                }
            }
        } else {
            None
        };
        Decision::Run { deadline }
    }

    /// Whether anything that runs before step `id` could still fail.
    fn later_work_pending(&self, id: StepId) -> bool {
        let plan = &self.ctx.plan;
        let tier = plan.step(id).tier;
        plan.tiers[..=tier].iter().any(|t| {
            t.steps.iter().any(|s| {
                *s != id && matches!(self.steps[s.0], StepState::Running)
                    || (*s != id
                        && matches!(self.steps[s.0], StepState::Waiting)
                        && plan.step(*s).when != When::OnFailure)
            })
        })
    }

    /// Looks `step`'s stored result up in the background (its image is
    /// known); the answer comes back as [`Msg::Verdict`].
    fn look_up(&mut self, step: &crate::plan::PlannedStep) {
        self.verdicts[step.id.0] = VerdictState::Pending;
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let planned = step.clone();
        let image = self.image_of(step.container.image);
        self.step_tasks.push(tokio::spawn(async move {
            let verdict = reuse::Verdict::of(&ctx, &planned, &image).await;
            let _ = tx.send(Msg::Verdict(planned.id, Box::new(verdict)));
        }));
    }

    fn spawn_step(&mut self, id: StepId, deadline: Option<Instant>) {
        let step = self.ctx.plan.step(id).clone();
        let image = self.image_of(step.container.image);
        // `always` steps keep running through a first cancel, within the grace.
        let stop = if step.when == When::Always {
            self.ctx.cancel.hard_token()
        } else {
            self.ctx.cancel.token()
        };
        self.steps[id.0] = StepState::Running;
        let verdict = match std::mem::replace(&mut self.verdicts[id.0], VerdictState::Taken) {
            VerdictState::Known(verdict) => Some(*verdict),
            _ => None,
        };
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        self.step_tasks.push(tokio::spawn(async move {
            let (outcome, removals) =
                step::run_step(ctx, &step, image, stop, deadline, verdict).await;
            let _ = tx.send(Msg::Step(step.id, outcome, removals));
        }));
    }

    async fn close_tier(&mut self, tier: usize) {
        let plan = self.ctx.plan.clone();
        let progress = &mut self.tiers[tier];
        progress.closed = true;
        let started = progress.started;
        let mut tests = TestCounts::default();
        let mut statuses: Vec<Status> = progress
            .reports
            .iter()
            .filter_map(|r| match r {
                Report::Done(s) => Some(*s),
                _ => None,
            })
            .collect();
        if progress.service_error.is_some() {
            statuses.push(Status::Errored);
        }
        for step in &plan.tiers[tier].steps {
            if let StepState::Done {
                status,
                allowed,
                tests: counts,
            } = &self.steps[step.0]
            {
                if let Some(counts) = counts {
                    tests.add(counts);
                }
                statuses.push(if *allowed { Status::Passed } else { *status });
            }
        }
        let status = if statuses.is_empty() {
            Status::Skipped
        } else if statuses.contains(&Status::Errored) {
            Status::Errored
        } else if let Some(s) = statuses
            .iter()
            .find(|s| matches!(s, Status::Failed | Status::TimedOut))
        {
            *s
        } else if statuses.contains(&Status::Cancelled) {
            Status::Cancelled
        } else {
            Status::Passed
        };
        self.ctx
            .emit(Event::TierFinished {
                tier: plan.tiers[tier].name.clone(),
                status,
                duration_ms: started.map_or(0, |s| s.elapsed().as_millis() as u64),
                tests,
            })
            .await;
    }

    /// Every image reference of the plan must exist before anything starts.
    async fn check_images(&self) -> Result<(), String> {
        for reference in &self.ctx.plan.images {
            if self
                .ctx
                .runtime
                .image_exists(reference)
                .await
                .map_err(|e| e.to_string())?
            {
                continue;
            }
            if reference.starts_with("drydock/") {
                return Err(format!(
                    "image {reference} is not in the engine\n  hint: build the base images with `drydock images bootstrap`"
                ));
            }
            // Where a registry is reachable, a pipeline may name registry images.
            if let Err(e) = self.ctx.runtime.pull(reference).await {
                return Err(format!(
                    "image {reference} is not in the engine and pulling it failed: {e}\n  hint: build it, or make its registry reachable"
                ));
            }
        }
        Ok(())
    }
}

/// What the loop does with a waiting step.
enum Decision {
    Wait,
    /// Look its stored result up first (see [`VerdictState`]).
    LookUp,
    Run {
        deadline: Option<Instant>,
    },
    Skip(String),
}

/// How a tier's failure reads: `failed`, `errored`, `timed out`.
fn tier_word(status: Status) -> &'static str {
    match status {
        Status::Errored => "errored",
        Status::TimedOut | Status::Failed => "failed",
        other => other.word(),
    }
}

impl<R: Runtime> RunLoop<R> {
    /// Releases the release build of a green run through
    /// [`crate::release::release`] (tags `<name>:<sha>` and `<name>:<run id>`,
    /// pushes to the registry if there is one, records the release in the
    /// ledger, moves `<name>:<channel>`), then announces it.
    async fn release(&self) -> Result<Option<Released>, crate::release::ReleaseError> {
        let plan = &self.ctx.plan;
        let Some(spec) = &plan.release else {
            return Ok(None);
        };
        let Ok(image_id) = self.image_of(ImageRef::Build(spec.build)) else {
            return Ok(None);
        };
        let request = crate::release::ReleaseRequest {
            product: spec.name.clone(),
            channel: spec.channel.clone(),
            image_id,
            tags: spec.tags.clone(),
            registry_repository: spec.registry_repository(),
            git_sha: spec.git_sha.clone(),
            run_id: Some(plan.run_id.clone()),
            fence: self.ctx.options.release_fence.clone(),
        };
        let released = crate::release::release(
            self.ctx.runtime.as_ref(),
            &self.ctx.options.ledger,
            &request,
            &self.ctx.cancel.token(),
            Some(&self.ctx.events),
        )
        .await?;
        self.ctx
            .emit(Event::Released {
                image_id: released.image_id.clone(),
                tags: released.tags.clone(),
                channel: released.channel.clone(),
            })
            .await;
        Ok(Some(released))
    }

    /// Removes everything the run created; returns how many objects went
    /// and, when some may be left, why. After a second signal or with a lost
    /// engine it takes at most [`HURRIED_TEARDOWN`].
    async fn teardown(&mut self) -> (usize, Option<String>) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        let hurried =
            self.engine_lost.is_some() || self.reason() == Some(CancelReason::SecondSignal);
        if !hurried {
            return (self.remove_everything().await, None);
        }
        match tokio::time::timeout(HURRIED_TEARDOWN, self.remove_everything()).await {
            Ok(removed) => (removed, None),
            Err(_) => (
                0,
                Some(format!(
                    "containers, networks and volumes of run {} may be left in the engine; `drydock gc` removes them once the engine answers",
                    self.ctx.plan.run_id
                )),
            ),
        }
    }

    async fn remove_everything(&mut self) -> usize {
        self.builder_stop.cancel();
        for task in self.service_tasks.drain(..) {
            task.abort();
        }
        // Steps still running (only after an error before their tier ended)
        // are stopped by the sweep below.
        for task in self.step_tasks.drain(..) {
            task.abort();
        }
        let unused = self.ctx.ahead.discard_all(&self.ctx.runtime);
        self.removals.extend(unused);
        futures::future::join_all(self.removals.drain(..)).await;
        let run_id = &self.ctx.plan.run_id;
        let mut removed = 0;
        // Twice: a container created while the first sweep ran is caught by the second.
        for _ in 0..2 {
            match self.ctx.runtime.remove_run(run_id).await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!("teardown of run {run_id}: {e}"),
            }
        }
        let _ = self
            .ctx
            .runtime
            .remove_network(&self.ctx.plan.network)
            .await;
        removed
    }
}

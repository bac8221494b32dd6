//! The executor: carries out a [`Plan`] on a [`Runtime`] and emits
//! [`Event`]s.
//!
//! One run loop ([`RunLoop`]) owns the run's state: which builds are done
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

mod builder;
mod cancel;
mod runtime;
mod service;
mod step;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

pub use cancel::{CancelReason, RunCancel};
pub use runtime::Runtime;
pub(crate) use service::probe_once;

use crate::engine::{ContainerSpec, EngineError};
use crate::events::{Event, LogStream, Outcome, Status, StepKind, TestCounts, TierPlan};
use crate::pipeline::Pipeline;
use crate::plan::{
    BuildId, ContainerPlan, ImageRef, NetworkPlan, Plan, PlanOptions, ReleaseChoice, ServiceId,
    StepId,
};
use crate::trust::Trust;

/// The sending half of a run's event stream.
pub type EventSender = mpsc::Sender<Event>;

/// Git facts about the commit being run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// Full sha of HEAD.
    pub sha: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
}

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
}

impl RunOptions {
    /// The planning part.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            run_id: self.run_id.clone(),
            git: self.git.clone(),
            trust: self.trust.clone(),
            release: self.release.clone(),
        }
    }

    /// The execution part.
    pub fn exec_options(&self) -> ExecOptions {
        ExecOptions {
            results_dir: self.results_dir.clone(),
            stop_grace: self.stop_grace,
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
}

/// What a release tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Image id.
    pub image_id: String,
    /// Image repository name.
    pub name: String,
    /// Tags applied.
    pub tags: Vec<String>,
    /// Channel moved.
    pub channel: String,
    /// References pushed to the release registry (empty without one).
    pub pushed: Vec<String>,
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
    /// What a green run tagged.
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

/// Plans `pipeline` with `options` and runs the plan (see [`run_plan`]).
pub async fn run_pipeline<R: Runtime>(
    pipeline: &Pipeline,
    runtime: Arc<R>,
    options: RunOptions,
    events: EventSender,
    cancel: RunCancel,
) -> RunReport {
    let plan = crate::plan::plan(pipeline, &options.plan_options());
    run_plan(&plan, runtime, options.exec_options(), events, cancel).await
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
pub async fn run_plan<R: Runtime>(
    plan: &Plan,
    runtime: Arc<R>,
    options: ExecOptions,
    events: EventSender,
    cancel: RunCancel,
) -> RunReport {
    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        runtime,
        plan: Arc::new(plan.clone()),
        options,
        events,
        cancel,
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
    let (mut outcome, mut error) = match run.execute().await {
        Ok(ended) => ended,
        Err(e) => (Outcome::Errored, Some(e)),
    };
    let mut released = None;
    if outcome == Outcome::Passed {
        match run.release().await {
            Ok(r) => released = r,
            Err(e) => {
                outcome = Outcome::Errored;
                error = Some(format!("release failed: {e}"));
            }
        }
    }
    let reason = run.reason();
    if reason.is_some_and(CancelReason::stops_running_steps) {
        outcome = Outcome::Interrupted;
        if error.is_none() {
            error = Some("interrupted".to_string());
        }
    }
    let removed = run.teardown().await;
    ctx.emit(Event::RunFinished {
        run_id: plan.run_id.clone(),
        outcome,
        duration_ms: started.elapsed().as_millis() as u64,
        error: error.clone(),
        removed,
        cancel_reason: reason,
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

/// What every task of a run may read: nothing in it changes during the run.
pub(crate) struct Ctx<R: Runtime> {
    pub runtime: Arc<R>,
    pub plan: Arc<Plan>,
    pub options: ExecOptions,
    pub events: EventSender,
    pub cancel: RunCancel,
}

impl<R: Runtime> Ctx<R> {
    pub async fn emit(&self, event: Event) {
        // A reporter that went away must not stop the run.
        let _ = self.events.send(event).await;
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
    /// A step ended; the handle removes its container in the background.
    Step(StepId, step::StepOutcome, Option<JoinHandle<()>>),
}

/// Most build output lines kept for a tier that has not reached the build yet.
const BUILD_BUFFER_LINES: usize = 20_000;

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

enum ServiceState {
    NotStarted,
    Starting,
    Ready,
    Failed(String),
}

/// The single owner of a run's state.
struct RunLoop<R: Runtime> {
    ctx: Arc<Ctx<R>>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    builds: Vec<BuildState>,
    services: Vec<ServiceState>,
    steps: Vec<Option<step::StepOutcome>>,
    /// Which build's output goes out live (its tier is reporting it).
    streaming: Option<(BuildId, String)>,
    builder_stop: CancellationToken,
    service_tasks: Vec<JoinHandle<()>>,
    step_tasks: Vec<JoinHandle<()>>,
    removals: Vec<JoinHandle<()>>,
    /// Reasons raised by the loop itself (a failed tier).
    own_reason: Option<CancelReason>,
    /// The strongest reason announced so far.
    announced: Option<CancelReason>,
}

impl<R: Runtime> RunLoop<R> {
    fn new(ctx: Arc<Ctx<R>>) -> Self {
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
            steps: plan.steps.iter().map(|_| None).collect(),
            streaming: None,
            service_tasks: Vec::new(),
            step_tasks: Vec::new(),
            removals: Vec::new(),
            own_reason: None,
            announced: None,
        }
    }

    /// The strongest cancel reason so far (the loop's own or the caller's).
    fn reason(&self) -> Option<CancelReason> {
        self.own_reason.max(self.ctx.cancel.reason())
    }

    async fn announce_reason(&mut self) {
        let reason = self.reason();
        if reason > self.announced {
            self.announced = reason;
            if let Some(reason) = reason {
                self.ctx.emit(Event::Cancelling { reason }).await;
            }
        }
    }

    /// Waits for one message (or a cancel) and applies it.
    async fn pump(&mut self) {
        let cancel = self.ctx.cancel.clone();
        let msg = tokio::select! {
            msg = self.rx.recv() => msg,
            _ = cancel.changed(self.announced) => None,
        };
        match msg {
            Some(msg) => self.handle(msg).await,
            None => self.announce_reason().await,
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::BuildProgress(id, line) => {
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
            Msg::Step(id, outcome, removal) => {
                self.steps[id.0] = Some(outcome);
                self.removals.extend(removal);
            }
        }
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
            let result = service::start_and_probe(ctx, &service, image).await;
            let _ = tx.send(Msg::Service(service.id, result));
        }));
    }

    /// Checks the images, creates the network, starts the services and the
    /// builder, then runs the tiers. `Err` is an infrastructure failure
    /// before any tier ran.
    async fn execute(&mut self) -> Result<(Outcome, Option<String>), String> {
        self.check_images().await?;
        let plan = self.ctx.plan.clone();
        self.ctx
            .runtime
            .create_network(&plan.network, plan.labels.with_role("network"))
            .await
            .map_err(|e| e.to_string())?;
        for service in &plan.services {
            if matches!(service.container.image, ImageRef::Reference(_)) {
                self.start_service(service.id);
            }
        }
        builder::start(self.ctx.clone(), self.tx.clone(), self.builder_stop.clone());

        let mut failure: Option<(Outcome, String)> = None;
        for tier in 0..plan.tiers.len() {
            self.announce_reason().await;
            if failure.is_some() || self.reason().is_some() {
                self.skip_tier(tier).await;
                continue;
            }
            let (status, error) = self.run_tier(tier).await;
            if !status.is_success() {
                self.builder_stop.cancel();
                if status != Status::Cancelled {
                    self.own_reason = self.own_reason.max(Some(CancelReason::FailedTier));
                }
                let outcome = match status {
                    Status::Errored => Outcome::Errored,
                    Status::Cancelled => Outcome::Interrupted,
                    _ => Outcome::Failed,
                };
                failure = Some((
                    outcome,
                    format!("tier {} {}: {error}", plan.tiers[tier].name, status.word()),
                ));
            }
        }
        self.announce_reason().await;
        Ok(match failure {
            Some((outcome, message)) => (outcome, Some(message)),
            None => (Outcome::Passed, None),
        })
    }

    async fn skip_tier(&mut self, tier: usize) {
        let plan = self.ctx.plan.clone();
        for step in plan.tier_step_names(tier) {
            self.ctx
                .emit(Event::StepSkipped {
                    tier: plan.tiers[tier].name.clone(),
                    step,
                })
                .await;
        }
        self.ctx
            .emit(Event::TierFinished {
                tier: plan.tiers[tier].name.clone(),
                status: Status::Skipped,
                duration_ms: 0,
                tests: TestCounts::default(),
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

    /// Runs one tier; returns its status and, when it did not pass, why.
    async fn run_tier(&mut self, index: usize) -> (Status, String) {
        let plan = self.ctx.plan.clone();
        let tier = &plan.tiers[index];
        let started = Instant::now();
        self.ctx
            .emit(Event::TierStarted {
                tier: tier.name.clone(),
            })
            .await;
        let mut tests = TestCounts::default();
        let mut result: (Status, String) = (Status::Passed, String::new());

        for (i, build) in tier.builds.iter().enumerate() {
            let status = self.report_build(index, *build).await;
            if !status.is_success() {
                result = (
                    status,
                    format!("build {} {}", plan.build(*build).name, status.word()),
                );
                for later in &tier.builds[i + 1..] {
                    self.ctx
                        .emit(Event::StepSkipped {
                            tier: tier.name.clone(),
                            step: plan.build(*later).step_name(),
                        })
                        .await;
                }
                break;
            }
        }

        if result.0.is_success() {
            for service in &tier.services {
                if let Err(e) = self.wait_for_service(*service).await {
                    result = (
                        if self.reason().is_some() {
                            Status::Cancelled
                        } else {
                            Status::Errored
                        },
                        format!("service {} is not ready: {e}", plan.service(*service).name),
                    );
                    break;
                }
            }
        }

        if result.0.is_success() {
            for step in &tier.steps {
                self.spawn_step(*step);
            }
            while tier.steps.iter().any(|s| self.steps[s.0].is_none()) {
                self.pump().await;
            }
            for step in &tier.steps {
                let Some(outcome) = &self.steps[step.0] else {
                    continue;
                };
                if let Some(counts) = outcome.tests {
                    tests.add(&counts);
                }
                if !outcome.status.is_success() && result.0.is_success() {
                    result = (
                        outcome.status,
                        format!("step {} {}", plan.step(*step).name, outcome.status.word()),
                    );
                }
            }
        } else {
            for step in &tier.steps {
                self.ctx
                    .emit(Event::StepSkipped {
                        tier: tier.name.clone(),
                        step: plan.step(*step).name.clone(),
                    })
                    .await;
            }
        }

        self.ctx
            .emit(Event::TierFinished {
                tier: tier.name.clone(),
                status: result.0,
                duration_ms: started.elapsed().as_millis() as u64,
                tests,
            })
            .await;
        result
    }

    fn spawn_step(&mut self, id: StepId) {
        let step = self.ctx.plan.step(id).clone();
        let image = self.image_of(step.container.image);
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        self.step_tasks.push(tokio::spawn(async move {
            let (outcome, removal) = step::run_step(ctx, &step, image).await;
            let _ = tx.send(Msg::Step(step.id, outcome, removal));
        }));
    }

    /// Reports a build as a step of tier `tier`: its output so far and from
    /// now on, and its outcome.
    async fn report_build(&mut self, tier: usize, id: BuildId) -> Status {
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
        self.streaming = Some((id, tier_name.clone()));
        while matches!(self.builds[id.0], BuildState::Pending { .. }) {
            self.pump().await;
        }
        self.streaming = None;
        let BuildState::Done { outcome, .. } = &self.builds[id.0] else {
            return Status::Errored;
        };
        let outcome = outcome.clone();
        self.ctx
            .emit(Event::StepFinished {
                tier: tier_name,
                step,
                status: outcome.status,
                exit_code: None,
                duration_ms: outcome.duration_ms,
                log_tail: Vec::new(),
                error: outcome.error,
                tests: None,
                failed_tests: Vec::new(),
                junit: None,
                reused: outcome.reused,
            })
            .await;
        outcome.status
    }

    async fn wait_for_service(&mut self, id: ServiceId) -> Result<(), String> {
        // A service whose build has not finished yet starts when it does.
        loop {
            match &self.services[id.0] {
                ServiceState::Ready => return Ok(()),
                ServiceState::Failed(e) => return Err(e.clone()),
                ServiceState::NotStarted => {
                    if let ImageRef::Build(b) = self.ctx.plan.service(id).container.image {
                        if let BuildState::Done { outcome, .. } = &self.builds[b.0] {
                            if !outcome.status.is_success() {
                                return Err(format!(
                                    "its build {} {}",
                                    self.ctx.plan.build(b).name,
                                    outcome.status.word()
                                ));
                            }
                        }
                    }
                }
                ServiceState::Starting => {}
            }
            if self.reason().is_some_and(CancelReason::stops_running_steps) {
                return Err("interrupted".to_string());
            }
            self.pump().await;
        }
    }

    /// Tags the release build of a green run: `<name>:<sha>` and
    /// `<name>:<run id>` first; with a registry, pushes
    /// `<registry>/<name>:{sha,run id,channel}` (the channel last); only then
    /// moves the local channel tag `<name>:<channel>`. A failed push moves no
    /// channel and puts the local registry tags back as they were.
    async fn release(&self) -> Result<Option<Released>, EngineError> {
        let plan = &self.ctx.plan;
        let Some(spec) = &plan.release else {
            return Ok(None);
        };
        let Ok(image_id) = self.image_of(ImageRef::Build(spec.build)) else {
            return Ok(None);
        };
        let runtime = self.ctx.runtime.as_ref();
        let mut tags = spec.tags.clone();
        for tag in &tags {
            runtime.tag(&image_id, &spec.name, tag).await?;
        }
        tags.push(spec.channel.clone());
        let pushed = match spec.registry_repository() {
            Some(repository) => {
                push_release(
                    runtime,
                    &image_id,
                    &repository,
                    &tags,
                    &self.ctx.cancel.token(),
                    Some(&self.ctx.events),
                )
                .await?
            }
            None => Vec::new(),
        };
        runtime.tag(&image_id, &spec.name, &spec.channel).await?;
        let tags: Vec<String> = tags.iter().map(|t| format!("{}:{t}", spec.name)).collect();
        self.ctx
            .emit(Event::Released {
                image_id: image_id.clone(),
                tags: tags.clone(),
                channel: spec.channel.clone(),
            })
            .await;
        Ok(Some(Released {
            image_id,
            name: spec.name.clone(),
            tags,
            channel: spec.channel.clone(),
            pushed,
        }))
    }

    /// Removes everything the run created; returns how many objects went.
    async fn teardown(&mut self) -> usize {
        self.builder_stop.cancel();
        for task in self.service_tasks.drain(..) {
            task.abort();
        }
        // Steps still running (only after an error before their tier ended)
        // are stopped by the sweep below.
        for task in self.step_tasks.drain(..) {
            task.abort();
        }
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

/// Tags `image_id` as `<repository>:<tag>` and pushes each, in order (put
/// the channel last), sending an [`Event::Pushed`] to `events` after each.
/// Returns the references pushed. On failure or cancellation, the local
/// `<repository>:<tag>` tags are put back to what they pointed to before (or
/// removed) and the error is returned; references already pushed stay in the
/// registry.
pub async fn push_release<R: Runtime + ?Sized>(
    runtime: &R,
    image_id: &str,
    repository: &str,
    tags: &[String],
    cancel: &CancellationToken,
    events: Option<&EventSender>,
) -> Result<Vec<String>, EngineError> {
    let registry = crate::engine::registry_host(repository);
    let mut previous: Vec<(String, Option<String>)> = Vec::new();
    let mut pushed = Vec::new();
    let mut result = Ok(());
    for tag in tags {
        let reference = format!("{repository}:{tag}");
        let step = async {
            previous.push((reference.clone(), runtime.image_id(&reference).await?));
            runtime.tag(image_id, repository, tag).await?;
            tokio::select! {
                pushed = runtime.push(&reference) => pushed,
                _ = cancel.cancelled() => Err(EngineError::Cancelled),
            }
        };
        if let Err(e) = step.await {
            result = Err(e);
            break;
        }
        if let Some(events) = events {
            let _ = events
                .send(Event::Pushed {
                    reference: reference.clone(),
                    registry: registry.clone(),
                })
                .await;
        }
        pushed.push(reference);
    }
    if let Err(e) = result {
        for (reference, before) in previous.into_iter().rev() {
            let restored = match &before {
                Some(id) if id != image_id => {
                    let (repo, tag) = crate::engine::split_tag(&reference);
                    runtime.tag(id, repo, tag).await
                }
                Some(_) => Ok(()),
                None => runtime.untag(&reference).await,
            };
            if let Err(err) = restored {
                tracing::warn!("could not restore local tag {reference}: {err}");
            }
        }
        return Err(e);
    }
    Ok(pushed)
}

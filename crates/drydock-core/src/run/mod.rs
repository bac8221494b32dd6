//! The executor: runs a validated [`Pipeline`] on a [`Runtime`] and emits
//! [`Event`]s.
//!
//! Tiers run in order and the first failing tier stops the run (later tiers
//! are reported skipped). Inside a tier, targets are built first, then the
//! tier waits for its services, then its steps run concurrently. Services
//! with an `image` start when the run starts (overlapping the build); services
//! built from a target start as soon as that target is built. Cancellation is
//! explicit (a [`CancellationToken`]); whatever happens, the teardown removes
//! every container and network labelled with the run.

mod builder;
mod runtime;
mod service;
mod step;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

pub use runtime::Runtime;
pub(crate) use service::probe_once;

use builder::Builder;

use crate::engine::context::BuildContext;
use crate::engine::labels::RunLabels;
use crate::engine::{BuildProgress, BuildRequest, EngineError};
use crate::events::{Event, LogStream, Outcome, Status, StepKind, TestCounts, TierPlan};
use crate::pipeline::{ImageSource, Pipeline, TierSpec};
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

/// How to run.
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

type Readiness = Shared<BoxFuture<'static, Result<(), String>>>;

/// Shared state of one run.
pub(crate) struct RunCtx<R: Runtime> {
    pub runtime: Arc<R>,
    pub pipeline: Pipeline,
    pub options: RunOptions,
    pub events: EventSender,
    pub cancel: CancellationToken,
    pub labels: RunLabels,
    pub network: String,
    pub built: Mutex<HashMap<String, String>>,
    services: Mutex<HashMap<String, Readiness>>,
    service_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Step containers being removed in the background.
    pub removals: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<R: Runtime> RunCtx<R> {
    pub async fn emit(&self, event: Event) {
        // A reporter that went away must not stop the run.
        let _ = self.events.send(event).await;
    }

    /// Container name for an object of this run.
    pub fn container_name(&self, parts: &[&str]) -> String {
        let mut name = format!("drydock-{}", self.options.run_id);
        for part in parts {
            name.push('-');
            name.extend(part.chars().map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            }));
        }
        name
    }

    /// The image id or reference for a source; targets must have been built.
    pub fn image_for(&self, source: &ImageSource) -> Result<String, String> {
        match source {
            ImageSource::Image(reference) => Ok(reference.clone()),
            ImageSource::Target(target) => self
                .built
                .lock()
                .expect("built map lock")
                .get(target)
                .cloned()
                .ok_or_else(|| format!("target {target} has not been built")),
        }
    }
}

/// Runs `pipeline` on `runtime`, sending events to `events`, until done or
/// `cancel` fires. Never leaves containers or networks of the run behind.
pub async fn run_pipeline<R: Runtime>(
    pipeline: &Pipeline,
    runtime: Arc<R>,
    options: RunOptions,
    events: EventSender,
    cancel: CancellationToken,
) -> RunReport {
    let started = Instant::now();
    let labels = RunLabels::for_this_process(&options.run_id, &pipeline.name);
    let ctx = Arc::new(RunCtx {
        network: format!("drydock-{}", options.run_id),
        runtime,
        pipeline: pipeline.clone(),
        options,
        events,
        cancel,
        labels,
        built: Mutex::new(HashMap::new()),
        services: Mutex::new(HashMap::new()),
        service_tasks: Mutex::new(Vec::new()),
        removals: Mutex::new(Vec::new()),
    });
    ctx.emit(Event::RunStarted {
        run_id: ctx.options.run_id.clone(),
        pipeline: pipeline.name.clone(),
        tiers: plan(pipeline),
        results_dir: ctx.options.results_dir.display().to_string(),
        engine: ctx.runtime.describe(),
    })
    .await;

    let (outcome, error, released) = match execute(&ctx).await {
        Ok((Outcome::Passed, _)) => match release(&ctx).await {
            Ok(released) => (Outcome::Passed, None, released),
            Err(e) => (
                if ctx.cancel.is_cancelled() {
                    Outcome::Interrupted
                } else {
                    Outcome::Errored
                },
                Some(format!("release failed: {e}")),
                None,
            ),
        },
        Ok((outcome, error)) => (outcome, error, None),
        Err(e) => (
            if ctx.cancel.is_cancelled() {
                Outcome::Interrupted
            } else {
                Outcome::Errored
            },
            Some(e),
            None,
        ),
    };
    let removed = teardown(&ctx).await;
    ctx.emit(Event::RunFinished {
        run_id: ctx.options.run_id.clone(),
        outcome,
        duration_ms: started.elapsed().as_millis() as u64,
        error: error.clone(),
        removed,
    })
    .await;
    RunReport {
        run_id: ctx.options.run_id.clone(),
        outcome,
        error,
        released,
    }
}

/// The tier plan announced in [`Event::RunStarted`].
pub fn plan(pipeline: &Pipeline) -> Vec<TierPlan> {
    pipeline
        .tiers
        .iter()
        .map(|tier| TierPlan {
            name: tier.name.clone(),
            steps: step_names(tier),
        })
        .collect()
}

fn build_step_name(target: &str) -> String {
    format!("build {target}")
}

fn step_names(tier: &TierSpec) -> Vec<String> {
    tier.build
        .iter()
        .map(|t| build_step_name(t))
        .chain(tier.steps.iter().map(|s| s.name.clone()))
        .collect()
}

/// Checks the images the pipeline names, creates the network, starts the
/// services, then runs the tiers. `Err` is an infrastructure failure.
async fn execute<R: Runtime>(ctx: &Arc<RunCtx<R>>) -> Result<(Outcome, Option<String>), String> {
    check_images(ctx).await?;
    ctx.runtime
        .create_network(&ctx.network, ctx.labels.with_role("network"))
        .await
        .map_err(|e| e.to_string())?;
    for service in &ctx.pipeline.services {
        if matches!(service.image, ImageSource::Image(_)) {
            start_service(ctx, &service.name);
        }
    }
    let builder = Builder::start(ctx);
    let mut failure: Option<(Outcome, String)> = None;
    for tier in &ctx.pipeline.tiers {
        if failure.is_some() || ctx.cancel.is_cancelled() {
            for step in step_names(tier) {
                ctx.emit(Event::StepSkipped {
                    tier: tier.name.clone(),
                    step,
                })
                .await;
            }
            ctx.emit(Event::TierFinished {
                tier: tier.name.clone(),
                status: Status::Skipped,
                duration_ms: 0,
                tests: TestCounts::default(),
            })
            .await;
            continue;
        }
        let (status, error) = run_tier(ctx, &builder, tier).await;
        if !status.is_success() {
            builder.stop();
            let outcome = match status {
                Status::Errored => Outcome::Errored,
                Status::Cancelled => Outcome::Interrupted,
                _ => Outcome::Failed,
            };
            failure = Some((
                outcome,
                format!("tier {} {}: {error}", tier.name, status.word()),
            ));
        }
    }
    if ctx.cancel.is_cancelled() {
        let message = failure
            .map(|(_, m)| m)
            .unwrap_or_else(|| "interrupted".to_string());
        return Ok((Outcome::Interrupted, Some(message)));
    }
    Ok(match failure {
        Some((outcome, message)) => (outcome, Some(message)),
        None => (Outcome::Passed, None),
    })
}

/// Every `image:` the pipeline names must exist before anything starts.
async fn check_images<R: Runtime>(ctx: &RunCtx<R>) -> Result<(), String> {
    let mut references: Vec<&str> = ctx
        .pipeline
        .services
        .iter()
        .map(|s| &s.image)
        .chain(
            ctx.pipeline
                .tiers
                .iter()
                .flat_map(|t| t.steps.iter().map(|s| &s.image)),
        )
        .filter_map(|source| match source {
            ImageSource::Image(reference) => Some(reference.as_str()),
            ImageSource::Target(_) => None,
        })
        .collect();
    references.sort_unstable();
    references.dedup();
    for reference in references {
        if ctx
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
        if let Err(e) = ctx.runtime.pull(reference).await {
            return Err(format!(
                "image {reference} is not in the engine and pulling it failed: {e}\n  hint: build it, or make its registry reachable"
            ));
        }
    }
    Ok(())
}

/// Runs one tier; returns its status and, when it did not pass, why.
async fn run_tier<R: Runtime>(
    ctx: &Arc<RunCtx<R>>,
    builder: &Builder,
    tier: &TierSpec,
) -> (Status, String) {
    let started = Instant::now();
    ctx.emit(Event::TierStarted {
        tier: tier.name.clone(),
    })
    .await;
    let mut tests = TestCounts::default();
    let mut result: (Status, String) = (Status::Passed, String::new());

    for (index, target) in tier.build.iter().enumerate() {
        let status = build_target(ctx, builder, tier, target).await;
        if !status.is_success() {
            result = (
                status,
                format!("build of target {target} {}", status.word()),
            );
            for later in &tier.build[index + 1..] {
                ctx.emit(Event::StepSkipped {
                    tier: tier.name.clone(),
                    step: build_step_name(later),
                })
                .await;
            }
            break;
        }
    }

    if result.0.is_success() {
        for service in &tier.services {
            if let Err(e) = wait_for_service(ctx, service).await {
                result = (
                    if ctx.cancel.is_cancelled() {
                        Status::Cancelled
                    } else {
                        Status::Errored
                    },
                    format!("service {service} is not ready: {e}"),
                );
                break;
            }
        }
    }

    if result.0.is_success() {
        let outcomes = futures::future::join_all(
            tier.steps
                .iter()
                .map(|s| step::run_step(ctx.clone(), tier.name.clone(), s.clone())),
        )
        .await;
        for (spec, outcome) in tier.steps.iter().zip(outcomes) {
            if let Some(counts) = outcome.tests {
                tests.add(&counts);
            }
            if !outcome.status.is_success() && result.0.is_success() {
                result = (
                    outcome.status,
                    format!("step {} {}", spec.name, outcome.status.word()),
                );
            }
        }
    } else {
        for step in &tier.steps {
            ctx.emit(Event::StepSkipped {
                tier: tier.name.clone(),
                step: step.name.clone(),
            })
            .await;
        }
    }

    ctx.emit(Event::TierFinished {
        tier: tier.name.clone(),
        status: result.0,
        duration_ms: started.elapsed().as_millis() as u64,
        tests,
    })
    .await;
    result
}

/// How many of a build's last output lines are searched for its cause.
const CAUSE_TAIL_LINES: usize = 200;

/// Reports the build of one target as a step of `tier`: its output (live if
/// it is still building) and its outcome.
async fn build_target<R: Runtime>(
    ctx: &Arc<RunCtx<R>>,
    builder: &Builder,
    tier: &TierSpec,
    target: &str,
) -> Status {
    let step = build_step_name(target);
    ctx.emit(Event::StepStarted {
        tier: tier.name.clone(),
        step: step.clone(),
        kind: StepKind::Build,
        image: target.to_string(),
    })
    .await;
    let Some(slot) = builder.slot(target) else {
        return Status::Errored;
    };
    let mut progress = slot.take_progress();
    let done = slot.done();
    tokio::pin!(done);
    // The last lines of the build's output, for the cause of a failure.
    let tail: Mutex<std::collections::VecDeque<String>> = Mutex::default();
    let emit_line = |progress: BuildProgress| {
        let line = match progress {
            BuildProgress::Step(line) | BuildProgress::Output(line) => line,
        };
        let mut tail = tail.lock().expect("build tail lock");
        if tail.len() == CAUSE_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        Event::Log {
            tier: tier.name.clone(),
            step: step.clone(),
            stream: LogStream::Stdout,
            line,
        }
    };
    let outcome = loop {
        let next = async {
            match progress.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(line) = next => ctx.emit(emit_line(line)).await,
            outcome = &mut done => break outcome,
        }
    };
    if let Some(rx) = progress.as_mut() {
        while let Ok(line) = rx.try_recv() {
            ctx.emit(emit_line(line)).await;
        }
    }
    let cause = if matches!(outcome.status, Status::Failed | Status::Errored) {
        let tail: Vec<String> = tail.lock().expect("build tail lock").drain(..).collect();
        crate::report::cause::explain(&tail)
    } else {
        Vec::new()
    };
    ctx.emit(Event::StepFinished {
        tier: tier.name.clone(),
        step,
        status: outcome.status,
        exit_code: None,
        duration_ms: outcome.duration_ms,
        cause,
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

/// Starts the services whose image is `target` (just built).
pub(crate) fn start_services_of<R: Runtime>(ctx: &Arc<RunCtx<R>>, target: &str) {
    for service in &ctx.pipeline.services {
        if service.image == ImageSource::Target(target.to_string()) {
            start_service(ctx, &service.name);
        }
    }
}

pub(crate) fn build_request<R: Runtime>(
    ctx: &RunCtx<R>,
    target: &str,
) -> Result<BuildRequest, String> {
    let build = ctx
        .pipeline
        .build
        .as_ref()
        .ok_or_else(|| "the pipeline has no build section".to_string())?;
    let mut ca_bundle = None;
    let mut transient_args = BTreeMap::new();
    if build.trust {
        // The engine decides how the bundle reaches the build (docs/trust.md).
        ca_bundle = ctx.options.trust.ca_bytes().map_err(|e| e.to_string())?;
        transient_args = ctx.options.trust.env.clone();
    }
    let mut labels = HashMap::from([
        (
            crate::engine::labels::MANAGED.to_string(),
            "true".to_string(),
        ),
        (
            crate::engine::labels::PIPELINE.to_string(),
            ctx.pipeline.name.clone(),
        ),
        (crate::engine::labels::ROLE.to_string(), "build".to_string()),
    ]);
    labels.insert("drydock.target".to_string(), target.to_string());
    Ok(BuildRequest {
        context: BuildContext {
            dir: build.context.clone(),
            dockerfile: build.dockerfile.clone(),
            extra_files: Vec::new(),
            // The run's own results may lie inside the context.
            never_send: vec![ctx.options.results_dir.clone()],
        },
        target: Some(target.to_string()),
        args: build.args.clone(),
        transient_args,
        labels,
        tag: Some(format!("drydock-build/{}:{target}", ctx.pipeline.name)),
        no_cache: false,
        ca_bundle,
    })
}

fn start_service<R: Runtime>(ctx: &Arc<RunCtx<R>>, name: &str) {
    let Some(spec) = ctx
        .pipeline
        .services
        .iter()
        .find(|s| s.name == name)
        .cloned()
    else {
        return;
    };
    let task = tokio::spawn(service::start_and_probe(ctx.clone(), spec));
    ctx.service_tasks
        .lock()
        .expect("service tasks lock")
        .push(task.abort_handle());
    let readiness: Readiness = async move {
        match task.await {
            Ok(result) => result,
            Err(e) => Err(format!("service task failed: {e}")),
        }
    }
    .boxed()
    .shared();
    ctx.services
        .lock()
        .expect("services lock")
        .insert(name.to_string(), readiness);
}

async fn wait_for_service<R: Runtime>(ctx: &Arc<RunCtx<R>>, name: &str) -> Result<(), String> {
    let readiness = ctx
        .services
        .lock()
        .expect("services lock")
        .get(name)
        .cloned();
    let readiness = readiness.ok_or_else(|| format!("service {name} was never started"))?;
    tokio::select! {
        result = readiness => result,
        _ = ctx.cancel.cancelled() => Err("interrupted".to_string()),
    }
}

/// Tags the release target of a green run: `<name>:<sha>` and
/// `<name>:<run id>` first; with a registry, pushes
/// `<registry>/<name>:{sha,run id,channel}` (the channel last); only then
/// moves the local channel tag `<name>:<channel>`. A failed push moves no
/// channel and puts the local registry tags back as they were.
async fn release<R: Runtime>(ctx: &RunCtx<R>) -> Result<Option<Released>, EngineError> {
    let Some(spec) = &ctx.pipeline.release else {
        return Ok(None);
    };
    let Ok(image_id) = ctx.image_for(&ImageSource::Target(spec.target.clone())) else {
        return Ok(None);
    };
    let mut tags = Vec::new();
    if let Some(sha) = &ctx.options.git.sha {
        tags.push(sha.clone());
    }
    tags.push(ctx.options.run_id.clone());
    for tag in &tags {
        ctx.runtime.tag(&image_id, &spec.name, tag).await?;
    }
    tags.push(spec.channel.clone());
    let pushed = match spec.registry_repository() {
        Some(repository) => {
            push_release(
                ctx.runtime.as_ref(),
                &image_id,
                &repository,
                &tags,
                &ctx.cancel,
                Some(&ctx.events),
            )
            .await?
        }
        None => Vec::new(),
    };
    ctx.runtime
        .tag(&image_id, &spec.name, &spec.channel)
        .await?;
    let tags: Vec<String> = tags.iter().map(|t| format!("{}:{t}", spec.name)).collect();
    ctx.emit(Event::Released {
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

/// Removes everything the run created; returns how many objects went.
async fn teardown<R: Runtime>(ctx: &RunCtx<R>) -> usize {
    for task in ctx
        .service_tasks
        .lock()
        .expect("service tasks lock")
        .drain(..)
    {
        task.abort();
    }
    let removals: Vec<_> = ctx
        .removals
        .lock()
        .expect("removals lock")
        .drain(..)
        .collect();
    futures::future::join_all(removals).await;
    let mut removed = 0;
    // Twice: a container created while the first sweep ran is caught by the second.
    for _ in 0..2 {
        match ctx.runtime.remove_run(&ctx.options.run_id).await {
            Ok(n) => removed += n,
            Err(e) => tracing::warn!("teardown of run {}: {e}", ctx.options.run_id),
        }
    }
    let _ = ctx.runtime.remove_network(&ctx.network).await;
    removed
}

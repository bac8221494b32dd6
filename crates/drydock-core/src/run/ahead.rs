//! Steps started ahead of time: a step's container is created and started
//! idle while earlier work runs, and its command is executed in it (Engine
//! exec) when its turn comes, so that creating and starting a container
//! leaves the critical path.
//!
//! Isolation is unchanged: each container serves one attempt of one step
//! (a retry gets a fresh container through the ordinary path) and is
//! removed in the background after it, as the ordinary path does.
//!
//! **Which steps.** The run loop ([`super::RunLoop`]) starts ahead the
//! waiting `when: on_success` steps of the current tier and the next one
//! whose image is known (a built image once its build is done), at most
//! [`MAX_AHEAD`] idle containers at once, in plan order, each step once.
//! None is started once the run failed or was cancelled, and the
//! containers of steps that end up skipped are removed at once.
//!
//! **The idle process.** The container is created from the step's own spec
//! (image, env and secrets, user, workdir, mounts, network, labels, the
//! engine's init as PID 1) with the entrypoint replaced by
//! [`idle_argv`]: a POSIX shell loop around `sleep`. Why: `docker-init`
//! (tini) needs a child to supervise and the images we run have no
//! drydock binary in them; `sleep infinity` is GNU-only (older busybox
//! refuses it), while a `sleep 3600` loop works with coreutils and busybox
//! alike, and exits (instead of spinning) when `sleep` is missing. On
//! `docker stop` (a timeout or a cancel) the trap passes SIGTERM on to every
//! process it may signal (the exec'd command among them) and waits until
//! they are gone, so that the command gets the stop grace a container's main
//! process gets (the engine kills everything once the grace is over). An image without `sh`
//! (distroless, scratch) cannot start it: the start fails, the container
//! is removed and the step takes the ordinary create-at-turn path.
//!
//! **Falling back.** A step runs as before (create at its turn) when:
//! it is not the first attempt; its image's ENTRYPOINT/CMD cannot be read
//! or give no command; the idle container cannot be created, filled or
//! started (e.g. no `sh`); the exec cannot be started (the idle container
//! died); or it copies host paths in (`copies:`) while some container of
//! the plan has a writable bind mount: an earlier step could change what
//! is copied, and a copy made ahead would miss that.
//!
//! **What differs from `docker run`.** The command runs as an exec'd
//! process, not as the init's child: an image ENTRYPOINT that insists on
//! being PID 1 or the init's child (e.g. `tini` without `-s`) may warn.
//! An exit 137 cannot be told apart from an OOM kill as reliably as for a
//! container's main process (the engine marks `OOMKilled` when the whole
//! container exits): the message says both are possible unless the engine
//! says OOM. A command that leaves background processes behind ends, as
//! far as the engine's exec output goes, up to 2 s after it exits (the
//! engine waits that long for the output to close; measured on 20.10), where
//! `docker run` ends at once (the container stops with them). Its
//! container name ends in `-ahead`.
//!
//! **No switch.** There is no `start_ahead: false`: where starting ahead
//! cannot be equivalent the step falls back by itself (above); the
//! remaining differences concern commands that already misbehave (stray
//! background processes).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::step::{drain_output, exit_reason, explain_not_started, follow_output, Ended};
use super::{Ctx, Runtime};
use crate::engine::{ContainerSpec, EngineError};
use crate::events::{Status, StepTimings};
use crate::plan::{PlannedStep, StepId};

/// Most containers started ahead and not yet taken by their step at once
/// (idle containers cost memory and a process each; four covers the next
/// tier of a typical pipeline without crowding a laptop).
pub const MAX_AHEAD: usize = 4;

/// The idle process of a container started ahead (see the module's docs).
pub(crate) const IDLE_SCRIPT: &str = "trap 'kill $! 2>/dev/null; kill -TERM -1 2>/dev/null; \
     while kill -0 -1 2>/dev/null; do sleep 0.1 || exit 0; done; exit 0' TERM INT; \
     while :; do sleep 3600 & wait $! || exit 1; done";

/// The entrypoint of an idle container: `sh -c` [`IDLE_SCRIPT`].
pub(crate) fn idle_argv() -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), IDLE_SCRIPT.to_string()]
}

/// A step's container, started ahead and idle.
pub(crate) struct Prestarted {
    /// The container id.
    pub id: String,
    /// The argv its turn executes (`docker run`'s combination of
    /// entrypoint and command).
    pub argv: Vec<String>,
    /// Creating it, copies in included (ms).
    pub create_ms: u64,
    /// Starting it (ms).
    pub start_ms: u64,
}

/// The containers started ahead, by step: owned by the run's context, so
/// the step's attempt takes its own and the run loop removes the rest.
#[derive(Default)]
pub(crate) struct Ahead {
    slots: Mutex<HashMap<StepId, JoinHandle<Option<Prestarted>>>>,
    /// Told when a step takes its container (a slot frees up).
    taken: tokio::sync::Notify,
}

impl Ahead {
    /// How many are being started or wait idle for their step.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StepId, JoinHandle<Option<Prestarted>>>> {
        // A panic while holding the lock leaves a map that is still sound.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `step`'s container ahead in the background.
    pub fn spawn<R: Runtime>(
        &self,
        ctx: Arc<Ctx<R>>,
        step: PlannedStep,
        image: String,
        stop: CancellationToken,
    ) {
        let id = step.id;
        let task = tokio::spawn(async move { prestart(&ctx, &step, image, &stop).await });
        self.lock().insert(id, task);
    }

    /// The step's container started ahead, waited for when still starting;
    /// `None` when there is none (or it could not start: the caller takes
    /// the ordinary path).
    pub async fn take(&self, id: StepId) -> Option<Prestarted> {
        let task = self.lock().remove(&id)?;
        self.taken.notify_one();
        task.await.ok().flatten()
    }

    /// Resolves once a step took its container (see [`Ahead::take`]).
    pub async fn taken(&self) {
        self.taken.notified().await;
    }

    /// Removes `id`'s container started ahead, if any, in the background
    /// (its step will not run); the handle ends once it is gone.
    pub fn discard<R: Runtime>(&self, runtime: &Arc<R>, id: StepId) -> Option<JoinHandle<()>> {
        let task = self.lock().remove(&id)?;
        // A slot is free: the run loop may start another step ahead.
        self.taken.notify_one();
        Some(remove_when_started(runtime.clone(), task))
    }

    /// Removes every container still started ahead (the run is ending).
    pub fn discard_all<R: Runtime>(&self, runtime: &Arc<R>) -> Vec<JoinHandle<()>> {
        let tasks: Vec<_> = self.lock().drain().map(|(_, t)| t).collect();
        tasks
            .into_iter()
            .map(|t| remove_when_started(runtime.clone(), t))
            .collect()
    }
}

fn remove_when_started<R: Runtime>(
    runtime: Arc<R>,
    task: JoinHandle<Option<Prestarted>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Ok(Some(pre)) = task.await {
            remove_in_background(runtime, pre.id).await;
        }
    })
}

async fn remove_in_background<R: Runtime>(runtime: Arc<R>, id: String) {
    if let Err(e) = runtime.remove(&id).await {
        tracing::warn!("removing step container {id} started ahead: {e}");
    }
}

/// Whether `step` may start ahead in `plan` (see the module's docs on
/// copies).
pub(crate) fn eligible(plan: &crate::plan::Plan, step: &PlannedStep) -> bool {
    if step.container.copies.is_empty() {
        return true;
    }
    let writable = plan
        .steps
        .iter()
        .map(|s| &s.container)
        .chain(plan.services.iter().map(|s| &s.container))
        .any(|c| c.binds.iter().any(|b| !b.read_only));
    !writable
}

/// The container spec of `step`'s idle container: the step's own, its
/// entrypoint replaced by the idle loop, its name marked.
pub(crate) fn idle_spec(mut spec: ContainerSpec) -> ContainerSpec {
    spec.name = format!("{}-ahead", spec.name);
    spec.entrypoint = Some(idle_argv());
    spec.command = Some(Vec::new());
    spec
}

/// Creates, fills and starts `step`'s idle container; `None` (and nothing
/// left behind) when that cannot be done or the run stopped.
async fn prestart<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    step: &PlannedStep,
    image: String,
    stop: &CancellationToken,
) -> Option<Prestarted> {
    let c = &step.container;
    let (image_entrypoint, image_cmd) = match (&c.entrypoint, &c.command) {
        (Some(_), Some(_)) => (Vec::new(), Vec::new()),
        _ => ctx.runtime.image_command(&image).await.ok()??,
    };
    let argv = combine_argv(
        c.entrypoint.as_deref(),
        c.command.as_deref(),
        image_entrypoint,
        image_cmd,
    );
    if argv.is_empty() || stop.is_cancelled() {
        return None;
    }
    let spec = idle_spec(ctx.step_spec(step, image));
    let began = Instant::now();
    let id = match ctx.runtime.create(&spec).await {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!("step {} not started ahead: {e}", step.name);
            return None;
        }
    };
    let give_up = |why: String| {
        tracing::debug!("step {} not started ahead: {why}", step.name);
        let runtime = ctx.runtime.clone();
        let id = id.clone();
        async move { remove_in_background(runtime, id).await }
    };
    for copy in &c.copies {
        if let Err(e) = ctx
            .runtime
            .copy_in(
                &id,
                &copy.source,
                &copy.target,
                &super::step::skip_dirs(&ctx.plan.repo_root),
            )
            .await
        {
            give_up(e.to_string()).await;
            return None;
        }
    }
    let create_ms = began.elapsed().as_millis() as u64;
    if stop.is_cancelled() {
        give_up("the run stopped".to_string()).await;
        return None;
    }
    let began = Instant::now();
    if let Err(e) = ctx.runtime.start(&id, &spec).await {
        give_up(e.to_string()).await;
        return None;
    }
    Some(Prestarted {
        id,
        argv,
        create_ms,
        start_ms: began.elapsed().as_millis() as u64,
    })
}

/// The argv `docker run` would start: the entrypoint (the step's, else the
/// image's) then the command (the step's; else the image's CMD, unless the
/// step overrides the entrypoint, which drops the image's CMD).
pub(crate) fn combine_argv(
    entrypoint: Option<&[String]>,
    command: Option<&[String]>,
    image_entrypoint: Vec<String>,
    image_cmd: Vec<String>,
) -> Vec<String> {
    let command = match (command, entrypoint) {
        (Some(cmd), _) => cmd.to_vec(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image_cmd,
    };
    let entrypoint = entrypoint.map_or(image_entrypoint, <[String]>::to_vec);
    entrypoint.into_iter().chain(command).collect()
}

/// How long the engine may take to report an exec's exit code once its
/// output ended (it is normally set before the output ends).
const EXIT_CODE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `step`'s command (`pre.argv`) through exec in its container
/// started ahead, as the step's `spec` says (user, workdir; env, mounts and
/// the rest were given when the container was created), streaming its
/// output as the ordinary path does. `None` when the exec cannot start
/// (the container is removed in the background and the caller takes the
/// ordinary path). A timeout or a cancel stops the container, which ends
/// the command.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_exec<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    tier: &str,
    step: &PlannedStep,
    spec: &ContainerSpec,
    pre: Prestarted,
    ready_wait: Duration,
    tail: &mut VecDeque<String>,
    container_id: &mut Option<String>,
    stop: &CancellationToken,
    timeout: Duration,
) -> Option<Ended> {
    let mut timings = StepTimings {
        started_ahead: true,
        create_ms: pre.create_ms,
        start_ms: pre.start_ms,
        ready_wait_ms: ready_wait.as_millis() as u64,
        ..Default::default()
    };
    if stop.is_cancelled() {
        *container_id = Some(pre.id);
        return Some(Ended {
            status: Status::Cancelled,
            exit_code: None,
            error: Some("interrupted".to_string()),
            timings: Some(timings),
        });
    }
    let began = Instant::now();
    let attached = match ctx
        .runtime
        .exec_attach(
            &pre.id,
            &pre.argv,
            spec.user.as_deref(),
            spec.workdir.as_deref(),
        )
        .await
    {
        Ok(attached) => attached,
        Err(e) => {
            tracing::warn!(
                "step {}: its container started ahead cannot run it ({e}); creating a new one",
                step.name
            );
            tokio::spawn(remove_in_background(ctx.runtime.clone(), pre.id));
            return None;
        }
    };
    *container_id = Some(pre.id.clone());
    let mut logs = follow_output(
        ctx.clone(),
        tier.to_string(),
        step.name.clone(),
        attached.output,
    );
    let (status, exit_code, error, drained) = tokio::select! {
        lines = &mut logs => {
            if let Ok(lines) = lines {
                *tail = lines;
            }
            match exit_code_of(ctx.runtime.as_ref(), &attached.exec_id).await {
                Ok(0) => (Status::Passed, Some(0), None, true),
                Ok(code) => (
                    Status::Failed,
                    Some(code),
                    Some(exit_reason(ctx, &pre.id, code, false).await),
                    true,
                ),
                Err(e) => (Status::Errored, None, Some(e.to_string()), true),
            }
        }
        _ = tokio::time::sleep(timeout) => {
            let _ = ctx.runtime.stop(&pre.id, ctx.options.stop_grace).await;
            (Status::TimedOut, None, Some(format!(
                "timed out after {}", crate::pipeline::format_duration(timeout)
            )), false)
        }
        _ = stop.cancelled() => {
            let _ = ctx.runtime.stop(&pre.id, ctx.options.stop_grace).await;
            (Status::Cancelled, None, Some("interrupted".to_string()), false)
        }
    };
    if !drained {
        drain_output(step, logs, tail).await;
    }
    let error = explain_not_started(&pre.argv, &spec.image, exit_code, tail, error);
    timings.command_ms = began.elapsed().as_millis() as u64;
    Some(Ended {
        status,
        exit_code,
        error,
        timings: Some(timings),
    })
}

/// The exit code of an exec whose output ended, waiting briefly for the
/// engine to record it.
async fn exit_code_of<R: Runtime>(runtime: &R, exec_id: &str) -> Result<i64, EngineError> {
    let began = Instant::now();
    loop {
        if let Some(code) = runtime.exec_exit_code(exec_id).await? {
            return Ok(code);
        }
        if began.elapsed() > EXIT_CODE_LIMIT {
            return Err(EngineError::Unresponsive {
                op: format!("exit code of exec {exec_id}"),
                after: EXIT_CODE_LIMIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

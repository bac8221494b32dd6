//! `drydock watch`: the TDD loop. One tier's step containers and services
//! are kept warm, the repository paths its steps mount are watched, and a
//! save runs the affected steps again through exec in their warm
//! containers.
//!
//! A [`Session`] is made once ([`Session::start`]): the images the tier
//! needs are checked and built (as `drydock run` builds them, same request,
//! same labels), the run network is created, the tier's services start on
//! it and are awaited with their readiness probes (as `drydock run` does),
//! and every chosen step gets one idle container — the step's own image,
//! environment, mounts, copies, network, user and working directory, under
//! the engine's init, with a shell loop of `sleep` as its command. The step's
//! command (its entrypoint and command, or the image's, as `docker run`
//! would combine them) then runs in it through exec ([`Session::run_step`]).
//!
//! [`watch`] turns saves into runs: a file-system watcher
//! (`notify-debouncer-full`, debounced; reads and metadata changes ignored) reports saved paths; [`WatchMap`]
//! says which steps mount them and which builds read them; builds that read
//! a saved file are rebuilt and the containers of their steps recreated.
//!
//! Everything a session creates carries the usual `drydock.*` labels with
//! the session's run id, so [`remove_all`] (and `drydock gc --run ID`, and
//! the sweep of runs whose owner died) finds it.

pub mod paths;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use paths::{filter_batch, is_noise, Affected, WatchMap};

use crate::events::{Status, TestCounts};
use crate::plan::{BuildId, ImageRef, Plan, ServiceId, StepId};
use crate::run::service::{self, LogFollower};
use crate::run::{Ctx, ExecOptions, RunCancel, Runtime};

/// How long saves are gathered into one batch before anything runs.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Output kept of one step run (its tail is shown on failure), in bytes.
const KEEP_OUTPUT: usize = 256 * 1024;

/// Lines of a failed step's output shown.
pub const TAIL_LINES: usize = 30;

/// The command of a warm container: idle until removed, answering
/// SIGTERM at once (the engine's init forwards it).
const IDLE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// Why a watch session cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Bad usage or configuration: an unknown tier or step, a tier with no
    /// step (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The engine or the environment failed (exit 3).
    #[error("{0}")]
    Infra(String),
    /// A build the tier needs failed (exit 1); `tail` holds its last output lines.
    #[error("build {build} failed: {error}")]
    Build {
        /// The build's name.
        build: String,
        /// What went wrong.
        error: String,
        /// Its last output lines.
        tail: Vec<String>,
    },
}

/// The tier a session watches: the one named `asked`, else the first tier
/// with a test step (one that collects a JUnit report), else the first tier
/// with steps. An unknown name or a pipeline without steps is
/// [`WatchError::Invalid`].
pub fn choose_tier(plan: &Plan, asked: Option<&str>) -> Result<usize, WatchError> {
    let names = || {
        plan.tiers
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = asked {
        let tier = plan.tiers.iter().find(|t| t.name == name).ok_or_else(|| {
            WatchError::Invalid(format!(
                "no tier {name:?} in the pipeline (tiers: {})",
                names()
            ))
        })?;
        if tier.steps.is_empty() {
            return Err(WatchError::Invalid(format!(
                "tier {name:?} has no steps to watch (it only builds)"
            )));
        }
        return Ok(tier.index);
    }
    let with_tests = plan
        .tiers
        .iter()
        .find(|t| t.steps.iter().any(|s| plan.step(*s).junit.is_some()));
    with_tests
        .or_else(|| plan.tiers.iter().find(|t| !t.steps.is_empty()))
        .map(|t| t.index)
        .ok_or_else(|| WatchError::Invalid("the pipeline has no steps to watch".to_string()))
}

/// The steps of `tier` to keep warm: those named in `asked` (every step when
/// empty). An unknown name is [`WatchError::Invalid`].
pub fn choose_steps(plan: &Plan, tier: usize, asked: &[String]) -> Result<Vec<StepId>, WatchError> {
    let steps = &plan.tiers[tier].steps;
    if asked.is_empty() {
        return Ok(steps.clone());
    }
    asked
        .iter()
        .map(|name| {
            steps
                .iter()
                .copied()
                .find(|s| plan.step(*s).name == *name)
                .ok_or_else(|| {
                    WatchError::Invalid(format!(
                        "no step {name:?} in tier {} (steps: {})",
                        plan.tiers[tier].name,
                        plan.tier_step_names(tier).join(", ")
                    ))
                })
        })
        .collect()
}

/// How one run of a step in its warm container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// Its id.
    pub id: StepId,
    /// `tier/step`.
    pub name: String,
    /// `passed`, `failed`, `timed_out` or `errored`.
    pub status: Status,
    /// From the start of the exec to the summarized JUnit report.
    pub duration: Duration,
    /// The command's exit code, when it ended.
    pub exit_code: Option<i64>,
    /// Test counts from its JUnit report, when it collects one.
    pub tests: Option<TestCounts>,
    /// Failed tests (`classname::name`), from its JUnit report.
    pub failed_tests: Vec<String>,
    /// The last [`TAIL_LINES`] lines of its output (secrets masked).
    pub tail: Vec<String>,
    /// What went wrong besides a non-zero exit.
    pub error: Option<String>,
}

/// What the loop reports to the terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Saved paths, once per batch that affects something.
    Changed(Vec<PathBuf>),
    /// A build reads a saved file: it is being rebuilt.
    Rebuilding {
        /// Its name.
        build: String,
        /// The saved paths that caused it.
        because: Vec<PathBuf>,
    },
    /// A build was made again; `changed` when its image id is new (its
    /// containers were then recreated).
    Rebuilt {
        /// Its name.
        build: String,
        /// Whether the image changed.
        changed: bool,
        /// How long it took.
        duration: Duration,
    },
    /// A rebuild failed: the old image and containers stay.
    RebuildFailed {
        /// Its name.
        build: String,
        /// What went wrong.
        error: String,
        /// Its last output lines.
        tail: Vec<String>,
    },
    /// A step ran.
    Step(StepResult),
}

struct Warm {
    id: String,
    argv: Vec<String>,
}

/// One tier kept warm: its builds' images, its ready services and one idle
/// container per chosen step.
pub struct Session<R: Runtime> {
    ctx: Arc<Ctx<R>>,
    tier: usize,
    steps: Vec<StepId>,
    builds: Vec<BuildId>,
    services: Vec<ServiceId>,
    images: HashMap<BuildId, String>,
    warm: HashMap<StepId, Warm>,
    followers: Vec<LogFollower>,
    generation: u32,
    drain: tokio::task::JoinHandle<()>,
}

impl<R: Runtime> Session<R> {
    /// Makes the tier `tier` of `plan` warm for `steps`: images checked,
    /// builds made, network and cache volumes (private to the session)
    /// created, services started and ready, idle step containers started.
    /// `note` gets a line for people per stage. On `Err` some objects may
    /// exist: call [`remove_all`].
    pub async fn start(
        plan: Plan,
        runtime: Arc<R>,
        options: ExecOptions,
        tier: usize,
        steps: Vec<StepId>,
        note: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Session<R>, WatchError> {
        // Events of services (their logs) go to the results folder only.
        let (events, mut rx) = mpsc::channel(256);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let ctx = Ctx::prepare(plan, runtime, options, events, RunCancel::new())
            .map_err(WatchError::Invalid)?;
        let ctx = Arc::new(ctx);
        let plan = ctx.plan.clone();
        let services = plan.tiers[tier].services.clone();
        let mut builds: BTreeSet<BuildId> = BTreeSet::new();
        let mut references: BTreeSet<usize> = BTreeSet::new();
        let containers = steps
            .iter()
            .map(|s| &plan.step(*s).container)
            .chain(services.iter().map(|s| &plan.service(*s).container));
        for c in containers {
            match c.image {
                ImageRef::Build(b) => {
                    builds.insert(b);
                }
                ImageRef::Reference(i) => {
                    references.insert(i);
                }
            }
        }
        let mut session = Session {
            ctx: ctx.clone(),
            tier,
            steps,
            builds: builds.into_iter().collect(),
            services,
            images: HashMap::new(),
            warm: HashMap::new(),
            followers: Vec::new(),
            generation: 0,
            drain,
        };
        for i in references {
            session.check_image(&plan.images[i]).await?;
        }
        let infra = |e: crate::engine::EngineError| WatchError::Infra(e.to_string());
        ctx.runtime
            .create_network(&plan.network, plan.labels.with_role("network"))
            .await
            .map_err(infra)?;
        let mut caches = HashMap::new();
        for step in &session.steps {
            for path in &plan.step(*step).cache {
                if caches.contains_key(path) {
                    continue;
                }
                // Private to the session: a shared cache would be leased for
                // as long as the session lives.
                let volume = format!(
                    "{}-{}",
                    crate::cache::volume_name(&plan.pipeline, path),
                    plan.run_id
                );
                ctx.runtime
                    .create_volume(&volume, plan.labels.with_role("cache"))
                    .await
                    .map_err(infra)?;
                caches.insert(path.clone(), volume);
            }
        }
        ctx.set_caches(caches);
        for build in session.builds.clone() {
            note(format!("building {}…", plan.build(build).name));
            let started = Instant::now();
            let (image, reused) = session.build(build).await?;
            note(format!(
                "built {} in {:.1}s{}",
                plan.build(build).name,
                started.elapsed().as_secs_f64(),
                if reused { " (reused)" } else { "" }
            ));
            session.images.insert(build, image);
        }
        for service in session.services.clone() {
            session.start_service(service).await?;
            note(format!("service {} ready", plan.service(service).name));
        }
        for step in session.steps.clone() {
            session.create_step(step).await.map_err(WatchError::Infra)?;
        }
        release_free_memory();
        Ok(session)
    }

    /// The plan the session runs.
    pub fn plan(&self) -> &Plan {
        &self.ctx.plan
    }

    /// The steps kept warm.
    pub fn steps(&self) -> &[StepId] {
        &self.steps
    }

    /// The builds the tier needs (its steps' and services' images).
    pub fn builds(&self) -> &[BuildId] {
        &self.builds
    }

    /// The name of the watched tier.
    pub fn tier_name(&self) -> &str {
        &self.ctx.plan.tiers[self.tier].name
    }

    async fn check_image(&self, reference: &str) -> Result<(), WatchError> {
        let runtime = &self.ctx.runtime;
        let exists = runtime
            .image_exists(reference)
            .await
            .map_err(|e| WatchError::Infra(e.to_string()))?;
        if exists {
            return Ok(());
        }
        if reference.starts_with("drydock/") {
            return Err(WatchError::Infra(format!(
                "image {reference} is not in the engine\n  hint: build the base images with `drydock images bootstrap`"
            )));
        }
        runtime.pull(reference).await.map_err(|e| {
            WatchError::Infra(format!(
                "image {reference} is not in the engine and pulling it failed: {e}"
            ))
        })
    }

    /// Builds `build` as `drydock run` does; returns its image id and
    /// whether the engine reused a cached image.
    async fn build(&self, build: BuildId) -> Result<(String, bool), WatchError> {
        let planned = self.ctx.plan.build(build);
        let request = crate::run::builder::build_request(
            &self.ctx.plan,
            planned,
            &self.ctx.plan.trust,
            &self.ctx.options.results_dir,
            &self.ctx.secrets,
        )
        .map_err(WatchError::Infra)?;
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut progress = |p: crate::engine::BuildProgress| {
            let line = match p {
                crate::engine::BuildProgress::Step(l) | crate::engine::BuildProgress::Output(l) => {
                    l
                }
            };
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        match self.ctx.runtime.build(&request, &mut progress).await {
            Ok(built) => Ok((built.image_id, built.reused)),
            Err(e @ crate::engine::EngineError::Build { .. }) => Err(WatchError::Build {
                build: planned.name.clone(),
                error: e.to_string(),
                tail: tail.into_iter().collect(),
            }),
            Err(e) => Err(WatchError::Infra(format!("build {}: {e}", planned.name))),
        }
    }

    fn image_of(&self, image: ImageRef) -> Result<String, String> {
        match image {
            ImageRef::Reference(i) => Ok(self.ctx.plan.images[i].clone()),
            ImageRef::Build(b) => self
                .images
                .get(&b)
                .cloned()
                .ok_or_else(|| format!("build {} has no image", self.ctx.plan.build(b).name)),
        }
    }

    async fn start_service(&mut self, id: ServiceId) -> Result<(), WatchError> {
        let service = self.ctx.plan.service(id).clone();
        let image = self
            .image_of(service.container.image)
            .map_err(WatchError::Infra)?;
        let (result, follower) = service::start_and_probe(self.ctx.clone(), &service, image).await;
        self.followers.extend(follower);
        result.map_err(WatchError::Infra)
    }

    /// Creates and starts the idle container of `step` (its previous one,
    /// if any, removed first) and works out the argv its runs exec.
    async fn create_step(&mut self, id: StepId) -> Result<(), String> {
        if let Some(old) = self.warm.remove(&id) {
            if let Err(e) = self.ctx.runtime.remove(&old.id).await {
                tracing::warn!("removing warm container {}: {e}", old.id);
            }
        }
        self.generation += 1;
        let step = self.ctx.plan.step(id).clone();
        let image = self.image_of(step.container.image)?;
        let argv = self.argv_of(&step, &image).await?;
        let mut spec = self.ctx.step_spec(&step, image);
        spec.name = format!("{}-warm{}", spec.name, self.generation);
        spec.entrypoint = Some(vec![
            "sh".to_string(),
            "-c".to_string(),
            IDLE_SCRIPT.to_string(),
        ]);
        spec.command = Some(Vec::new());
        let runtime = &self.ctx.runtime;
        let container = runtime.create(&spec).await.map_err(|e| e.to_string())?;
        // Known from here: a failure below still leaves it for removal.
        self.warm.insert(
            id,
            Warm {
                id: container.clone(),
                argv,
            },
        );
        for copy in &step.container.copies {
            runtime
                .copy_in(
                    &container,
                    &copy.source,
                    &copy.target,
                    &crate::run::step::skip_dirs(&self.ctx.plan.repo_root),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        runtime
            .start(&container, &spec)
            .await
            .map_err(|e| format!("step {}: the warm container does not start: {e}", step.name))
    }

    /// The argv a step's run execs: its entrypoint (or the image's) then its
    /// command (or the image's CMD unless the entrypoint is overridden), as
    /// `docker run` combines them.
    async fn argv_of(
        &self,
        step: &crate::plan::PlannedStep,
        image: &str,
    ) -> Result<Vec<String>, String> {
        let c = &step.container;
        let (image_entrypoint, image_cmd) = match (&c.entrypoint, &c.command) {
            (Some(_), Some(_)) => (Vec::new(), Vec::new()),
            _ => self
                .ctx
                .runtime
                .image_command(image)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
        };
        let argv = crate::run::ahead::combine_argv(
            c.entrypoint.as_deref(),
            c.command.as_deref(),
            image_entrypoint,
            image_cmd,
        );
        if argv.is_empty() {
            return Err(format!(
                "step {}: neither the step nor image {image} gives a command",
                step.name
            ));
        }
        Ok(argv)
    }

    /// Runs `step`'s command once in its warm container and collects its
    /// JUnit report (a stale report is removed first). A run that times out
    /// leaves its container recreated.
    pub async fn run_step(&self, id: StepId) -> StepResult {
        let step = self.ctx.plan.step(id);
        let name = format!("{}/{}", self.tier_name(), step.name);
        let started = Instant::now();
        let mut result = StepResult {
            id,
            name,
            status: Status::Errored,
            duration: Duration::ZERO,
            exit_code: None,
            tests: None,
            failed_tests: Vec::new(),
            tail: Vec::new(),
            error: None,
        };
        let Some(warm) = self.warm.get(&id) else {
            result.error = Some("the step has no warm container".to_string());
            return result;
        };
        let runtime = &self.ctx.runtime;
        if let Some(junit) = &step.junit {
            let rm = ["rm".to_string(), "-f".to_string(), junit.clone()];
            let _ = runtime.exec_bounded(&warm.id, &rm, 4096).await;
        }
        let ran = tokio::time::timeout(
            step.timeout,
            runtime.exec_bounded(&warm.id, &warm.argv, KEEP_OUTPUT),
        )
        .await;
        match ran {
            Err(_) => {
                result.status = Status::TimedOut;
                result.error = Some(format!(
                    "timed out after {}",
                    crate::pipeline::format_duration(step.timeout)
                ));
            }
            Ok(Err(e)) => result.error = Some(e.to_string()),
            Ok(Ok(out)) => {
                result.exit_code = Some(out.exit_code);
                result.status = if out.exit_code == 0 {
                    Status::Passed
                } else {
                    Status::Failed
                };
                if out.exit_code == 126 || out.exit_code == 127 {
                    result.error = Some(format!("command {:?} cannot be started", warm.argv));
                }
                let mut lines = crate::engine::render_lines(out.output);
                let skip = lines.len().saturating_sub(TAIL_LINES);
                lines.drain(..skip);
                if let Some(masker) = &self.ctx.masker {
                    for line in &mut lines {
                        *line = masker.mask(line);
                    }
                }
                result.tail = lines;
            }
        }
        if let (Some(report), Some(_)) = (&step.junit, result.exit_code) {
            let artifacts = self
                .ctx
                .options
                .results_dir
                .join("artifacts")
                .join(self.tier_name())
                .join(&step.name);
            match collect_junit(runtime.as_ref(), &warm.id, report, &artifacts).await {
                Ok(Some(summary)) => {
                    result.tests = Some(summary.counts);
                    result.failed_tests = summary.failed;
                }
                Ok(None) => {}
                Err(e) => result.error = Some(format!("JUnit report {report}: {e}")),
            }
        }
        result.duration = started.elapsed();
        result
    }

    /// Runs `steps` concurrently; results in the order given.
    pub async fn run_steps(&self, steps: &[StepId]) -> Vec<StepResult> {
        futures::future::join_all(steps.iter().map(|s| self.run_step(*s))).await
    }

    /// Builds `build` again; when its image changed, recreates the warm
    /// containers of the steps and restarts the services that use it.
    /// Returns whether the image changed.
    pub async fn rebuild(&mut self, build: BuildId) -> Result<bool, WatchError> {
        let built = self.build(build).await;
        release_free_memory();
        let (image, _) = built?;
        if self.images.get(&build) == Some(&image) {
            return Ok(false);
        }
        self.images.insert(build, image);
        let plan = self.ctx.plan.clone();
        for service in self.services.clone() {
            let s = plan.service(service);
            if s.container.image == ImageRef::Build(build) {
                let _ = self.ctx.runtime.remove(&s.container.name).await;
                self.start_service(service).await?;
            }
        }
        for step in self.steps.clone() {
            if plan.step(step).container.image == ImageRef::Build(build) {
                self.create_step(step).await.map_err(WatchError::Infra)?;
            }
        }
        Ok(true)
    }

    /// Recreates the warm container of `step` (after a timeout, or when a
    /// copied path changed).
    pub async fn recreate(&mut self, step: StepId) -> Result<(), WatchError> {
        self.create_step(step).await.map_err(WatchError::Infra)
    }

    /// Removes everything the session created (see [`remove_all`]); returns
    /// how many objects were removed.
    pub async fn teardown(self) -> usize {
        drop(self.followers);
        self.drain.abort();
        remove_all(self.ctx.runtime.as_ref(), &self.ctx.plan).await
    }
}

/// Hands the heap memory freed after a build (its context went through
/// buffers) back to the system: glibc's `malloc` keeps freed memory for
/// reuse, which a long-lived, mostly idle session would hold for nothing.
/// Nothing to do with other C libraries.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Copies the JUnit report out and summarizes it; `None` when there is none.
async fn collect_junit<R: Runtime>(
    runtime: &R,
    id: &str,
    report: &str,
    artifacts: &std::path::Path,
) -> Result<Option<crate::report::junit::JunitSummary>, String> {
    let name = std::path::Path::new(report)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "junit.xml".to_string());
    let local = artifacts.join(&name);
    let _ = tokio::fs::remove_file(&local).await;
    if !runtime
        .copy_out(id, report, artifacts)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(None);
    }
    tokio::task::spawn_blocking(move || crate::report::junit::summarize_file(&local))
        .await
        .map_err(|e| e.to_string())?
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Removes every container, network and volume labelled with the plan's run
/// (twice: an object created while the first sweep ran is caught by the
/// second), then the run network; returns how many were removed.
pub async fn remove_all<R: Runtime + ?Sized>(runtime: &R, plan: &Plan) -> usize {
    let mut removed = 0;
    for _ in 0..2 {
        match runtime.remove_run(&plan.run_id).await {
            Ok(n) => removed += n,
            Err(e) => tracing::warn!("removing watch session {}: {e}", plan.run_id),
        }
    }
    let _ = runtime.remove_network(&plan.network).await;
    removed
}

/// A file-system watcher on `map`'s roots: batches of saved paths, each
/// batch gathered for `debounce`. Only changes of content or names count
/// (creations, writes, renames, removals): reads and metadata changes
/// (access times, which the steps' own runs cause) are dropped, as are
/// noise ([`is_noise`]) and `ignored` folders. Dropping the returned watcher
/// stops it.
pub fn watch_files(
    map: &WatchMap,
    debounce: Duration,
    ignored: Vec<PathBuf>,
) -> Result<(FileWatcher, mpsc::UnboundedReceiver<Vec<PathBuf>>), WatchError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut debouncer = notify_debouncer_full::new_debouncer(
        debounce,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| match result {
            Ok(events) => {
                let paths = events
                    .into_iter()
                    .filter(|e| counts(&e.event.kind))
                    .flat_map(|e| e.event.paths);
                let batch = filter_batch(paths, &ignored);
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("file watcher: {e}");
                }
            }
        },
    )
    .map_err(|e| WatchError::Infra(format!("cannot watch files: {e}")))?;
    for (root, recursive) in map.roots() {
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        debouncer
            .watch(&root, mode)
            .map_err(|e| WatchError::Infra(format!("cannot watch {}: {e}", root.display())))?;
    }
    Ok((
        FileWatcher {
            _debouncer: debouncer,
        },
        rx,
    ))
}

/// Whether a file-system event changes what a step or build reads.
fn counts(kind: &EventKind) -> bool {
    use notify_debouncer_full::notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        // Some platforms' watchers cannot tell what changed.
        EventKind::Modify(_) | EventKind::Any => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// A running file-system watcher; dropping it stops it.
pub struct FileWatcher {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
}

/// The loop: runs every step once, then on each batch of saved paths from
/// `saves` rebuilds the builds that read them, recreates what must be,
/// and runs the affected steps again; each outcome goes to `report`. Ends
/// when `stop` fires or `saves` closes; an infrastructure failure ends it
/// with `Err`.
pub async fn watch<R: Runtime>(
    session: &mut Session<R>,
    mut map: WatchMap,
    ignored: Vec<PathBuf>,
    mut saves: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    stop: CancellationToken,
    report: &mut (dyn FnMut(Report) + Send),
) -> Result<(), WatchError> {
    let all = session.steps.clone();
    for result in session.run_steps(&all).await {
        after_run(session, &result).await?;
        report(Report::Step(result));
    }
    loop {
        let mut batch = tokio::select! {
            batch = saves.recv() => match batch {
                Some(b) => b,
                None => return Ok(()),
            },
            _ = stop.cancelled() => return Ok(()),
        };
        // Saves that came while the last batch ran join this one.
        while let Ok(more) = saves.try_recv() {
            batch.extend(more);
        }
        let batch = filter_batch(batch, &ignored);
        let affected = map.classify(&batch);
        if affected.is_empty() {
            continue;
        }
        report(Report::Changed(batch.clone()));
        let mut run: BTreeSet<StepId> = affected.run.clone();
        for build in &affected.rebuild {
            let name = session.plan().build(*build).name.clone();
            report(Report::Rebuilding {
                build: name.clone(),
                because: batch.clone(),
            });
            let started = Instant::now();
            let rebuilt = tokio::select! {
                r = session.rebuild(*build) => r,
                _ = stop.cancelled() => return Ok(()),
            };
            match rebuilt {
                Ok(changed) => {
                    report(Report::Rebuilt {
                        build: name,
                        changed,
                        duration: started.elapsed(),
                    });
                    if changed {
                        run.extend(session.steps.iter().copied().filter(|s| {
                            session.plan().step(*s).container.image == ImageRef::Build(*build)
                        }));
                    }
                }
                Err(WatchError::Build { error, tail, .. }) => {
                    report(Report::RebuildFailed {
                        build: name,
                        error,
                        tail,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        // The Dockerfile may have changed what the builds read.
        if !affected.rebuild.is_empty() {
            map = WatchMap::new(
                session.plan(),
                &session.steps,
                &session.builds,
                ignored.clone(),
            );
        }
        for step in &affected.recreate {
            session.recreate(*step).await?;
        }
        let order: Vec<StepId> = session
            .steps
            .iter()
            .copied()
            .filter(|s| run.contains(s))
            .collect();
        let results = tokio::select! {
            r = session.run_steps(&order) => r,
            _ = stop.cancelled() => return Ok(()),
        };
        for result in results {
            after_run(session, &result).await?;
            report(Report::Step(result));
        }
    }
}

/// A run that timed out leaves a command running: its container is made again.
async fn after_run<R: Runtime>(
    session: &mut Session<R>,
    result: &StepResult,
) -> Result<(), WatchError> {
    if result.status == Status::TimedOut {
        session.recreate(result.id).await?;
    }
    Ok(())
}

/// The compact line for a step result: `✔ unit/pytest 0.84s 162 passed` or
/// `✘ unit/pytest 1.02s 2 failed: test_x, test_y` (test counts from the
/// JUnit report when the step collects one, else the exit code).
pub fn summary_line(result: &StepResult) -> String {
    let mark = if result.status.is_success() {
        "✔"
    } else {
        "✘"
    };
    let secs = format!("{:.2}s", result.duration.as_secs_f64());
    let what = match (&result.tests, result.status) {
        (Some(t), _) if t.failures + t.errors > 0 => {
            let names: Vec<&str> = result
                .failed_tests
                .iter()
                .map(|n| n.rsplit("::").next().unwrap_or(n))
                .take(5)
                .collect();
            let more = result.failed_tests.len().saturating_sub(names.len());
            let mut text = format!("{} failed", t.failures + t.errors);
            if !names.is_empty() {
                text.push_str(": ");
                text.push_str(&names.join(", "));
                if more > 0 {
                    text.push_str(&format!(" (+{more})"));
                }
            }
            text
        }
        (Some(t), Status::Passed) => format!("{} passed", t.passed()),
        (Some(t), _) => format!(
            "{} passed, exit {}",
            t.passed(),
            result.exit_code.map_or("-".to_string(), |c| c.to_string())
        ),
        (None, Status::Passed) => "exit 0".to_string(),
        (None, Status::Failed) => format!(
            "exit {}",
            result.exit_code.map_or("-".to_string(), |c| c.to_string())
        ),
        (None, status) => status.word().to_string(),
    };
    let mut line = format!("{mark} {} {secs} {what}", result.name);
    if let Some(error) = &result.error {
        line.push_str(&format!(" ({error})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status, tests: Option<TestCounts>, failed: &[&str]) -> StepResult {
        StepResult {
            id: StepId(0),
            name: "unit/pytest".to_string(),
            status,
            duration: Duration::from_millis(840),
            exit_code: Some(if status == Status::Passed { 0 } else { 1 }),
            tests,
            failed_tests: failed.iter().map(|s| s.to_string()).collect(),
            tail: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn argv_combines_as_docker_run_does() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        /// (step entrypoint, step command, image ENTRYPOINT, image CMD, argv)
        type Case<'a> = (
            Option<&'a [&'a str]>,
            Option<&'a [&'a str]>,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            // step command, image without entrypoint
            (
                None,
                Some(&["pytest", "-q"]),
                &[],
                &["python3"],
                &["pytest", "-q"],
            ),
            // step command after the image's entrypoint
            (
                None,
                Some(&["ping"]),
                &["redis-cli"],
                &["--help"],
                &["redis-cli", "ping"],
            ),
            // nothing given: the image's entrypoint and CMD
            (
                None,
                None,
                &["tini", "--"],
                &["serve"],
                &["tini", "--", "serve"],
            ),
            // an overridden entrypoint drops the image's CMD
            (
                Some(&["sh", "-c", "x"]),
                None,
                &["tini"],
                &["serve"],
                &["sh", "-c", "x"],
            ),
            // `script:` clears the entrypoint and gives the command
            (
                Some(&[]),
                Some(&["sh", "-c", "set -e"]),
                &["tini"],
                &["serve"],
                &["sh", "-c", "set -e"],
            ),
        ];
        for (entrypoint, command, image_entrypoint, image_cmd, want) in cases {
            let e = entrypoint.map(v);
            let c = command.map(v);
            assert_eq!(
                crate::run::ahead::combine_argv(
                    e.as_deref(),
                    c.as_deref(),
                    v(image_entrypoint),
                    v(image_cmd)
                ),
                v(want),
                "{entrypoint:?} {command:?}"
            );
        }
    }

    #[test]
    fn only_changes_of_content_or_names_count() {
        use notify_debouncer_full::notify::event::{
            AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind, RenameMode,
        };
        let cases = [
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Remove(RemoveKind::Any), true),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), true),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
                false,
            ),
            (EventKind::Access(AccessKind::Any), false),
            (EventKind::Other, false),
        ];
        for (kind, want) in cases {
            assert_eq!(counts(&kind), want, "{kind:?}");
        }
    }

    #[test]
    fn summary_lines_are_compact() {
        let counts = |passed: u64, failures: u64| TestCounts {
            tests: passed + failures,
            failures,
            ..Default::default()
        };
        let cases = [
            (
                result(Status::Passed, Some(counts(162, 0)), &[]),
                "✔ unit/pytest 0.84s 162 passed",
            ),
            (
                result(
                    Status::Failed,
                    Some(counts(160, 2)),
                    &["tests.test_a::test_x", "tests.test_a::test_y"],
                ),
                "✘ unit/pytest 0.84s 2 failed: test_x, test_y",
            ),
            (
                result(Status::Passed, None, &[]),
                "✔ unit/pytest 0.84s exit 0",
            ),
            (
                result(Status::Failed, None, &[]),
                "✘ unit/pytest 0.84s exit 1",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(summary_line(&r), want);
        }
    }
}

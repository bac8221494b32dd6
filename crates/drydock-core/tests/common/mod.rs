//! Shared helpers of the engine integration tests: a per-test scope that
//! labels everything it creates and removes it afterwards, even when the
//! test body panics.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use drydock_core::engine::context::BuildContext;
use drydock_core::engine::labels::{self, RunLabels};
use drydock_core::engine::{
    BuildProgress, BuildRequest, Built, ContainerSpec, Engine, EngineError, LogStream,
};
use futures::{FutureExt, StreamExt};

/// Bootstrapped base images the tests build from.
pub const DEBIAN: &str = "drydock/debian:bookworm";
pub const PYTHON: &str = "drydock/python:3.11";

/// The pipeline name on every object the tests create.
pub const PIPELINE: &str = "engine-tests";

/// One test's view of the engine: its run id, labels and the images to remove.
#[derive(Clone)]
pub struct Scope {
    pub engine: Engine,
    pub run_id: String,
    pub labels: RunLabels,
    images: Arc<Mutex<Vec<String>>>,
    extra_runs: Arc<Mutex<Vec<String>>>,
}

/// A finished container: exit code and its output per stream.
#[derive(Debug)]
pub struct Ran {
    pub id: String,
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Builds of this test binary run one at a time, so that a build's
/// intermediate containers are not taken for another's leftovers.
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every container in the engine that carries no drydock label (build
/// containers are unlabelled; labelled ones may belong to other drydock runs).
pub async fn unlabelled_containers() -> HashMap<String, String> {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::MANAGED))
        })
        .filter_map(|c| Some((c.id?, c.image_id.unwrap_or_default())))
        .collect()
}

/// A run id unique to this process and test.
fn unique_run_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "et-{name}-{}-{}-{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

/// Runs `body` with a fresh [`Scope`], then removes everything the scope
/// created (containers and networks by run label, images by tag and by run
/// label) whether the body passed or panicked. A panic is re-raised after
/// cleanup; a clean body whose cleanup leaves something behind fails.
pub async fn engine_test<F, Fut>(name: &str, bases: &[&str], body: F)
where
    F: FnOnce(Scope) -> Fut,
    Fut: Future<Output = ()>,
{
    let engine = Engine::connect()
        .await
        .unwrap_or_else(|e| panic!("engine tests need a Docker Engine: {e}"));
    for base in bases {
        let found = engine.image(base).await.expect("inspect base image");
        assert!(
            found.is_some(),
            "base image {base} is missing from the engine: run `drydock images bootstrap` \
             (or `cargo run -p drydock-cli -- images bootstrap`) first"
        );
    }
    let run_id = unique_run_id(name);
    let scope = Scope {
        engine,
        labels: RunLabels::for_this_process(&run_id, PIPELINE),
        run_id,
        images: Arc::default(),
        extra_runs: Arc::default(),
    };
    let outcome = AssertUnwindSafe(body(scope.clone())).catch_unwind().await;
    let cleaned = scope.cleanup().await;
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(()) => {
            if let Err(e) = cleaned {
                panic!("cleanup of {} failed: {e}", scope.run_id);
            }
        }
    }
}

impl Scope {
    /// Labels of this run with `role`.
    pub fn role(&self, role: &str) -> HashMap<String, String> {
        self.labels.with_role(role)
    }

    /// A name unique to this test: `<run id>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.run_id)
    }

    /// A tag `drydock-test/<what>:<run id>`, removed at the end of the test.
    pub fn tag(&self, what: &str) -> String {
        let tag = format!("drydock-test/{what}:{}", self.run_id);
        self.track_image(&tag);
        tag
    }

    /// Removes `reference` at the end of the test.
    pub fn track_image(&self, reference: &str) {
        self.images.lock().unwrap().push(reference.to_string());
    }

    /// Also sweeps everything labelled with run id `run_id` at the end.
    pub fn track_run(&self, run_id: &str) {
        self.extra_runs.lock().unwrap().push(run_id.to_string());
    }

    /// A container spec of this run (role `test`), named `<run id>-<suffix>`.
    pub fn spec(&self, suffix: &str, image: &str, argv: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: self.name(suffix),
            image: image.to_string(),
            command: Some(argv.iter().map(|s| s.to_string()).collect()),
            labels: self.role("test"),
            ..Default::default()
        }
    }

    /// A build request for `dir` labelled with this run, tagged `drydock-test/<what>:<id>`.
    pub fn build_request(&self, dir: &Path, what: &str, target: Option<&str>) -> BuildRequest {
        BuildRequest {
            context: BuildContext::new(dir, "Dockerfile"),
            target: target.map(str::to_string),
            args: Default::default(),
            transient_args: Default::default(),
            labels: self.role("build"),
            tag: Some(self.tag(what)),
            no_cache: false,
            ca_bundle: None,
            secrets: Default::default(),
        }
    }

    /// Builds `request`, collecting its progress lines.
    pub async fn build(
        &self,
        request: &BuildRequest,
    ) -> (Result<Built, EngineError>, Vec<BuildProgress>) {
        let _one_at_a_time = BUILDS.lock().await;
        self.build_unlocked(request).await
    }

    /// Builds `request` while no other build of this binary runs, and
    /// returns the unlabelled containers it left (a build must remove its
    /// own, even when it fails).
    pub async fn build_counting_containers(
        &self,
        request: &BuildRequest,
    ) -> (Result<Built, EngineError>, Vec<BuildProgress>, Vec<String>) {
        let _one_at_a_time = BUILDS.lock().await;
        let before = unlabelled_containers().await;
        let (result, progress) = self.build_unlocked(request).await;
        let after = unlabelled_containers().await;
        // Build containers run on the image of the step before: the ids the
        // build printed (` ---> 0123456789ab`), except the base image's, which
        // other builds share.
        let layers: Vec<String> = progress
            .iter()
            .filter_map(|p| match p {
                BuildProgress::Output(line) => line.trim().strip_prefix("---> "),
                _ => None,
            })
            .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .skip(1)
            .map(|id| format!("sha256:{id}"))
            .collect();
        // A failed build keeps the layers it committed (unlabelled, dangling):
        // remove them with the test.
        if result.is_err() {
            for layer in &layers {
                self.track_image(layer.trim_start_matches("sha256:"));
            }
        }
        let new = after
            .into_iter()
            .filter(|(id, image)| {
                !before.contains_key(id) && layers.iter().any(|l| image.starts_with(l))
            })
            .map(|(id, _)| id)
            .collect();
        (result, progress, new)
    }

    async fn build_unlocked(
        &self,
        request: &BuildRequest,
    ) -> (Result<Built, EngineError>, Vec<BuildProgress>) {
        let mut progress = Vec::new();
        let result = self.engine.build(request, |p| progress.push(p)).await;
        if let Ok(built) = &result {
            self.track_image(&built.image_id);
        }
        (result, progress)
    }

    /// Creates, starts and waits for a container; returns its code and output.
    pub async fn run(&self, spec: &ContainerSpec) -> Ran {
        let id = self
            .engine
            .create_container(spec)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
        self.engine
            .start_container(&id, spec)
            .await
            .unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
        let code = tokio::time::timeout(Duration::from_secs(60), self.engine.wait_container(&id))
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within 60s", spec.name))
            .unwrap_or_else(|e| panic!("wait {}: {e}", spec.name));
        let (stdout, stderr) = self.output(&id).await;
        Ran {
            id,
            code,
            stdout,
            stderr,
        }
    }

    /// A container's whole output so far, split by stream.
    pub async fn output(&self, id: &str) -> (String, String) {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut logs = Box::pin(self.engine.logs(id, false));
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("logs of {id}: {e}"));
            let text = String::from_utf8_lossy(&chunk.bytes);
            match chunk.stream {
                LogStream::Stdout => stdout.push_str(&text),
                LogStream::Stderr => stderr.push_str(&text),
            }
        }
        (stdout, stderr)
    }

    /// Removes this run's containers and networks, then its images; checks
    /// that nothing labelled with the run is left.
    pub async fn cleanup(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut runs = vec![self.run_id.clone()];
        runs.extend(self.extra_runs.lock().unwrap().iter().cloned());
        for run in &runs {
            if let Err(e) = self.engine.remove_run(run).await {
                problems.push(format!("remove run {run}: {e}"));
            }
        }
        let mut images: Vec<String> = self.images.lock().unwrap().clone();
        for run in &runs {
            match self.engine.images_with_label(labels::RUN, run).await {
                Ok(ids) => images.extend(ids),
                Err(e) => problems.push(format!("list images of {run}: {e}")),
            }
        }
        for image in images.iter().rev() {
            if let Err(e) = self.engine.remove_image(image, true).await {
                problems.push(format!("remove image {image}: {e}"));
            }
        }
        for run in &runs {
            match self
                .engine
                .labelled(&format!("{}={run}", labels::RUN))
                .await
            {
                Ok(left) if left.is_empty() => {}
                Ok(left) => problems.push(format!("left behind: {left:?}")),
                Err(e) => problems.push(format!("list leftovers: {e}")),
            }
            match self.engine.images_with_label(labels::RUN, run).await {
                Ok(left) if left.is_empty() => {}
                Ok(left) => problems.push(format!("images left behind: {left:?}")),
                Err(e) => problems.push(format!("list images: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Writes `files` (relative path, content) under `dir`, creating folders.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
    }
}

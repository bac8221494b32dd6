//! Image builds with BuildKit, and the choice of builder.
//!
//! BuildKit is asked for with `version=2` on the ordinary `/build` endpoint,
//! with the same streamed, filtered context as the classic builder. bollard
//! opens the session BuildKit requires (a hijacked `/session` connection
//! serving registry auth) next to the build request. Compared to the classic
//! builder, BuildKit skips stages the target does not depend on, runs
//! independent stages in parallel, supports `RUN --mount=type=cache` and
//! leaves no build containers behind.
//!
//! Choice (per engine, see [`choose_builder`]): BuildKit when the daemon
//! supports it (Engine API 1.39 or newer on a Linux daemon), unless
//! `DRYDOCK_BUILDER=classic` or, in `auto` mode, `DOCKER_BUILDKIT=0`. If the
//! daemon rejects `version=2` or the session cannot be established, the
//! build is redone with the classic builder and the engine stays on it; a
//! build that fails (a failing `RUN`, a missing base image) is reported, never
//! retried.
//!
//! Sessions: bollard serves the session from a task it spawns and never
//! stops, which would hold one daemon connection per build for the life of
//! the process. Each BuildKit build therefore runs on a runtime of its own,
//! on its own thread, with its own client; dropping that runtime at the end
//! of the build (or when the caller stops waiting) closes the session.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bollard::moby::buildkit::v1::StatusResponse;
use bollard::models::{BuildInfo, BuildInfoAux, ImageId};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::builder::Builder;
use super::filesync::{FileSync, SyncDir};
use super::request::{build_error, BuildProgress, BuildRequest};
use super::session::{self, SessionSpec};
use super::terminal::LineBuffer;
use super::{Engine, EngineError};

/// How a BuildKit attempt ended.
pub(super) enum Attempt {
    /// Built; the image id when the engine sent one.
    Built(Option<String>),
    /// The build failed (reported as is).
    Failed(EngineError),
    /// BuildKit is not usable on this engine (why): use the classic builder.
    Unavailable(String),
}

impl Engine {
    /// The builder image builds use now. It can change from BuildKit to
    /// classic once, when the engine turns out not to support BuildKit.
    pub fn builder(&self) -> Builder {
        Builder::from_u8(self.builder.load(Ordering::Relaxed))
    }

    /// The same engine connection with its own choice of builder (its
    /// clones share it; this engine keeps its own). BuildKit falls back to
    /// the classic builder where the daemon turns out not to offer it.
    pub fn with_builder(&self, builder: Builder) -> Engine {
        let mut engine = self.clone();
        engine.builder = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(builder as u8));
        engine
    }

    /// Switches this engine (and its clones) to the classic builder.
    pub(super) fn fall_back_to_classic(&self, reason: &str) {
        let was = self.builder.swap(Builder::Classic as u8, Ordering::Relaxed);
        if was == Builder::BuildKit as u8 {
            tracing::warn!(
                "BuildKit is not usable on {}: {reason}; using the classic builder from now on",
                self.host()
            );
        }
    }

    /// Builds `request` with BuildKit. `labels` and `args` are the complete
    /// image labels and build args; `sent` is what BuildKit gets besides the
    /// context: the Dockerfile as sent and the secrets.
    pub(super) async fn build_with_buildkit(
        &self,
        request: &BuildRequest,
        what: &str,
        labels: &HashMap<String, String>,
        args: &HashMap<String, String>,
        sent: Sent,
        on_progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Attempt {
        let session = format!("drydock-{:032x}", rand::random::<u128>());
        let options = BuildImageOptions {
            dockerfile: sent.dockerfile_name.clone(),
            t: request.tag.clone(),
            nocache: request.no_cache,
            buildargs: Some(args.clone()),
            labels: Some(labels.clone()),
            target: request.target.clone().unwrap_or_default(),
            // Sent as version 2 by the request modifier (see `spawn_buildkit_build`).
            version: BuilderVersion::BuilderV1,
            remote: Some(CLIENT_SESSION.to_string()),
            session: Some(session.clone()),
            ..Default::default()
        };
        let spec = SessionSpec {
            shared_key: shared_key(&request.context.dir),
            id: session,
            files: FileSync::new(HashMap::from([
                (
                    "context".to_string(),
                    SyncDir::Context(Arc::new(request.context.clone())),
                ),
                (
                    "dockerfile".to_string(),
                    SyncDir::Memory(vec![(
                        sent.dockerfile_name.clone(),
                        Arc::new(sent.dockerfile),
                        0o644,
                    )]),
                ),
            ])),
            secrets: sent.secrets,
        };
        let mut items = match self.spawn_buildkit_build(options, spec) {
            Ok(items) => items,
            Err(reason) => return Attempt::Unavailable(reason),
        };
        let mut progress = Progress::default();
        let mut image_id = None;
        while let Some(item) = items.recv().await {
            let item = match item {
                Item::Info(info) => Ok(info),
                Item::Error(e) => Err(e),
                Item::NoSession(reason) => return Attempt::Unavailable(reason),
            };
            match item {
                Ok(BuildInfo { aux, stream, .. }) => {
                    match aux {
                        Some(BuildInfoAux::BuildKit(status)) => {
                            progress.update(status, on_progress)
                        }
                        Some(BuildInfoAux::Default(ImageId { id: Some(id) })) => {
                            image_id = Some(id)
                        }
                        _ => {}
                    }
                    if let Some(text) = stream {
                        progress.output("", text.as_bytes(), on_progress);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    progress.finish(on_progress);
                    return progress.failure(what, error);
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    progress.finish(on_progress);
                    return progress.failure(what, message);
                }
                // bollard's JSON-lines decoder now and then reports bytes
                // left over at the very end of a build stream; once the
                // image id has arrived, the build is done.
                Err(bollard::errors::Error::IOError { err })
                    if image_id.is_some() && err.to_string().contains("bytes remaining") =>
                {
                    tracing::debug!(error = %err, "end of the build stream after the image id");
                    break;
                }
                Err(source) => {
                    progress.finish(on_progress);
                    return Attempt::Failed(EngineError::api(format!("build {what}"), source));
                }
            }
        }
        progress.finish(on_progress);
        if let Some((vertex, error)) = progress.failed.take() {
            // An errored vertex but no error at the end of the stream.
            return Attempt::Failed(build_error(what, instruction(&vertex), error));
        }
        Attempt::Built(image_id)
    }

    /// Starts the build on a thread with its own runtime and client (see the
    /// module documentation): opens drydock's session, then asks for the
    /// build naming it. Returns the stream items. The thread stops, and the
    /// session closes, when the build ends or the receiver is dropped.
    ///
    /// bollard opens a session of its own for builds with version 2 (one
    /// that cannot serve the context nor secrets); the build is therefore
    /// asked with bollard's version-1 path and a request modifier that turns
    /// `version=1` into `version=2` in the `/build` query, the only change.
    fn spawn_buildkit_build(
        &self,
        options: BuildImageOptions,
        spec: SessionSpec,
    ) -> Result<mpsc::Receiver<Item>, String> {
        let host = self.host().to_string();
        let (tx, rx) = mpsc::channel(64);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for the build session: {e}"))?;
        std::thread::Builder::new()
            .name("drydock-buildkit".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let _session = match session::open(&host, spec).await {
                        Ok(session) => session,
                        Err(e) => {
                            let _ = tx.send(Item::NoSession(e.to_string())).await;
                            return;
                        }
                    };
                    let docker = match bollard::Docker::connect_with_host(&host) {
                        Ok(docker) => docker
                            .with_timeout(Duration::from_secs(120))
                            .with_request_modifier(build_version_2),
                        Err(e) => {
                            let _ = tx.send(Item::Error(e)).await;
                            return;
                        }
                    };
                    let body = bollard::body_full(bytes::Bytes::new());
                    let mut stream = docker.build_image(options, None, Some(body));
                    loop {
                        tokio::select! {
                            item = stream.next() => match item {
                                Some(item) => {
                                    let item = match item {
                                        Ok(info) => Item::Info(info),
                                        Err(e) => Item::Error(e),
                                    };
                                    if tx.send(item).await.is_err() {
                                        break;
                                    }
                                }
                                None => break,
                            },
                            // The caller stopped waiting: dropping the stream cancels the build.
                            _ = tx.closed() => break,
                        }
                    }
                });
                // Ends the session's tasks, closing its connection.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| format!("cannot start a thread for the build session: {e}"))?;
        Ok(rx)
    }
}

/// The `remote` value that makes BuildKit pull the context over the session.
const CLIENT_SESSION: &str = "client-session";

/// What a BuildKit build gets besides the context.
pub(super) struct Sent {
    /// The name the Dockerfile is served under (its base name, as the CLI
    /// serves it).
    pub dockerfile_name: String,
    /// The Dockerfile as sent (drydock may add mounts to its `RUN`s).
    pub dockerfile: Vec<u8>,
    /// Secrets by id.
    pub secrets: HashMap<String, Vec<u8>>,
}

/// One item of a BuildKit build's stream.
pub(super) enum Item {
    Info(BuildInfo),
    Error(bollard::errors::Error),
    /// The session could not be opened: BuildKit is not usable.
    NoSession(String),
}

/// The request modifier of BuildKit builds: `/build?…version=1…` becomes
/// `version=2`; any other request is left alone.
fn build_version_2(mut request: bollard::BollardRequest) -> bollard::BollardRequest {
    let uri = request.uri();
    if !uri.path().ends_with("/build") {
        return request;
    }
    let Some(query) = uri.query() else {
        return request;
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if pair == "version=1" {
                "version=2"
            } else {
                pair
            }
        })
        .collect();
    let path_and_query = format!("{}?{}", uri.path(), query.join("&"));
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return request,
    }
    if let Ok(new_uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = new_uri;
    }
    request
}

/// The session's shared key: a hash of the context folder, so that builds
/// of the same folder reuse what BuildKit synced before (as the CLI does).
fn shared_key(dir: &std::path::Path) -> String {
    use sha2::Digest;
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..16])
}

/// BuildKit progress of one build: which vertices were announced, their
/// partial log lines, and the first one that failed.
#[derive(Default)]
struct Progress {
    names: HashMap<String, String>,
    started: HashSet<String>,
    logs: HashMap<String, LineBuffer>,
    /// The first failing vertex: (name, error).
    failed: Option<(String, String)>,
}

impl Progress {
    fn update(
        &mut self,
        status: StatusResponse,
        on_progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) {
        for vertex in status.vertexes {
            if !vertex.name.is_empty() {
                self.names
                    .insert(vertex.digest.clone(), vertex.name.clone());
            }
            let name = self
                .names
                .get(&vertex.digest)
                .cloned()
                .unwrap_or_else(|| vertex.digest.clone());
            if vertex.started.is_some() && self.started.insert(vertex.digest.clone()) {
                on_progress(BuildProgress::Step(name.clone()));
                if vertex.cached {
                    on_progress(BuildProgress::Output("CACHED".to_string()));
                }
            }
            if !vertex.error.is_empty() && self.failed.is_none() && !is_cancellation(&vertex.error)
            {
                self.failed = Some((name, vertex.error.clone()));
            }
            if vertex.completed.is_some() {
                if let Some(mut buffer) = self.logs.remove(&vertex.digest) {
                    emit_lines(buffer.finish(), on_progress);
                }
            }
        }
        for log in status.logs {
            // Raw bytes: a UTF-8 sequence may be split between two messages.
            self.output(&log.vertex, &log.msg, on_progress);
        }
    }

    /// Output of `vertex` (`""` for text outside any vertex).
    fn output(
        &mut self,
        vertex: &str,
        text: &[u8],
        on_progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) {
        let lines = self.logs.entry(vertex.to_string()).or_default().push(text);
        emit_lines(lines, on_progress);
    }

    /// Emits what remains of every log.
    fn finish(&mut self, on_progress: &mut (dyn FnMut(BuildProgress) + Send)) {
        for (_, mut buffer) in self.logs.drain() {
            emit_lines(buffer.finish(), on_progress);
        }
    }

    /// The outcome of a build that ended with the engine's `message`. Only
    /// a refusal of BuildKit itself (see [`buildkit_unavailable`]) is
    /// `Unavailable`, never a failed `RUN`, whatever its command line says.
    fn failure(&mut self, what: &str, message: String) -> Attempt {
        let failed = self.failed.take();
        let ran_a_command = failed
            .as_ref()
            .and_then(|(vertex, _)| instruction(vertex))
            .is_some_and(|i| i.starts_with("RUN "));
        let refused = match &failed {
            Some((_, error)) => buildkit_unavailable(error),
            None => buildkit_unavailable(&message),
        };
        if refused && !ran_a_command {
            return Attempt::Unavailable(buildkit_message(&message));
        }
        match failed {
            Some((vertex, error)) => {
                Attempt::Failed(build_error(what, instruction(&vertex), error))
            }
            None => Attempt::Failed(build_error(what, None, buildkit_message(&message))),
        }
    }
}

fn emit_lines(lines: Vec<String>, on_progress: &mut (dyn FnMut(BuildProgress) + Send)) {
    for line in lines {
        if !line.trim().is_empty() {
            on_progress(BuildProgress::Output(line));
        }
    }
}

/// Vertices of other stages fail with a cancellation when one fails.
fn is_cancellation(error: &str) -> bool {
    let error = error.trim();
    error.ends_with("context canceled") || error.ends_with("context cancelled")
}

/// Whether the engine's answer means "no BuildKit here" rather than "this
/// build failed": the daemon rejects builder version 2 (a 20.10 daemon answers
/// an unknown version with 400 `invalid version "3"`), or the session BuildKit
/// asked for never reached it (`no active session for …`).
fn buildkit_unavailable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (m.contains("buildkit")
        && [
            "not supported",
            "not enabled",
            "unsupported",
            "disabled",
            "experimental",
        ]
        .iter()
        .any(|s| m.contains(s)))
        || m.contains("no active session")
        || m.contains("session not found")
        || m.contains("builder version")
        || m.contains("invalid version")
}

/// Trims BuildKit's wrapping from a whole-build error (the frontend's
/// `failed to solve with frontend dockerfile.v0: failed to create LLB
/// definition:` prefix) so the cause is readable.
fn buildkit_message(message: &str) -> String {
    let mut rest = message.trim();
    for prefix in [
        "failed to solve with frontend dockerfile.v0:",
        "failed to solve:",
        "failed to create LLB definition:",
        "rpc error: code = Unknown desc =",
    ] {
        if let Some(stripped) = rest.strip_prefix(prefix) {
            rest = stripped.trim_start();
        }
    }
    rest.to_string()
}

/// The Dockerfile instruction of a vertex name:
/// `[deps 3/4] RUN pip install …` → `RUN pip install …`;
/// `[internal] load metadata for docker.io/library/x:1` → `FROM x:1`;
/// other internal vertices (`[internal] load build definition …`,
/// `exporting to image`) → `None`.
pub(super) fn instruction(vertex: &str) -> Option<String> {
    let vertex = vertex.trim();
    if let Some(image) = vertex.strip_prefix("[internal] load metadata for ") {
        return Some(format!("FROM {}", short_reference(image.trim())));
    }
    let rest = vertex.strip_prefix('[')?;
    let (label, instruction) = rest.split_once("] ")?;
    if label == "internal" || label.starts_with("auth") {
        return None;
    }
    let instruction = instruction.trim();
    if let Some(image) = instruction.strip_prefix("FROM ") {
        return Some(format!("FROM {}", short_reference(image.trim())));
    }
    Some(instruction.to_string())
}

/// `docker.io/library/x:1` → `x:1`; `docker.io/a/b:1` → `a/b:1`.
fn short_reference(image: &str) -> &str {
    image
        .strip_prefix("docker.io/library/")
        .or_else(|| image.strip_prefix("docker.io/"))
        .unwrap_or(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_names_give_the_instruction() {
        for (vertex, expected) in [
            (
                "[deps 3/4] RUN pip install -r /tmp/build/requirements.txt",
                Some("RUN pip install -r /tmp/build/requirements.txt"),
            ),
            ("[2/3] RUN false", Some("RUN false")),
            (
                "[internal] load metadata for docker.io/drydock-test/absent-base:nope",
                Some("FROM drydock-test/absent-base:nope"),
            ),
            (
                "[base 1/2] FROM docker.io/library/debian:bookworm",
                Some("FROM debian:bookworm"),
            ),
            (
                "[1/2] FROM localhost:5000/a/b:1",
                Some("FROM localhost:5000/a/b:1"),
            ),
            ("[internal] load build definition from Dockerfile", None),
            ("exporting to image", None),
        ] {
            assert_eq!(instruction(vertex).as_deref(), expected, "{vertex}");
        }
    }

    #[test]
    fn only_daemon_refusals_mean_no_buildkit() {
        for (message, unavailable) in [
            ("buildkit not supported by daemon", true),
            ("BuildKit is not enabled on this daemon", true),
            (
                "no active session for drydock-1: context deadline exceeded",
                true,
            ),
            (
                "executor failed running [/bin/sh -c false]: exit code: 1",
                false,
            ),
            (
                "dockerfile parse error line 2: unknown instruction: X",
                false,
            ),
        ] {
            assert_eq!(buildkit_unavailable(message), unavailable, "{message}");
        }
        let vertex = |name: &str, error: &str| Progress {
            failed: Some((name.to_string(), error.to_string())),
            ..Default::default()
        };
        // (case, progress, final message, falls back?)
        let cases: [(&str, Progress, &str, bool); 5] = [
            ("refused before any vertex", Progress::default(), "invalid version \"2\"", true),
            (
                "session missing at FROM",
                vertex(
                    "[internal] load metadata for docker.io/a/b:1",
                    "no active session for drydock-1: context deadline exceeded",
                ),
                "failed to solve: no active session for drydock-1",
                true,
            ),
            (
                "failing RUN that mentions BuildKit",
                vertex(
                    "[2/3] RUN echo buildkit not supported; false",
                    "executor failed running [/bin/sh -c echo buildkit not supported; false]: exit code: 1",
                ),
                "executor failed running [/bin/sh -c echo buildkit not supported; false]: exit code: 1",
                false,
            ),
            (
                "missing base image",
                vertex(
                    "[internal] load metadata for docker.io/a/b:1",
                    "failed to do request: dial tcp: lookup registry-1.docker.io: no such host",
                ),
                "failed to solve with frontend dockerfile.v0: failed to create LLB definition: x",
                false,
            ),
            (
                "syntax error",
                Progress::default(),
                "dockerfile parse error line 2: unknown instruction: X",
                false,
            ),
        ];
        for (case, mut progress, message, falls_back) in cases {
            let attempt = progress.failure("x", message.to_string());
            assert_eq!(
                matches!(attempt, Attempt::Unavailable(_)),
                falls_back,
                "{case}"
            );
        }
        assert_eq!(
            buildkit_message(
                "failed to solve with frontend dockerfile.v0: failed to create LLB definition: \
                 target stage nope could not be found"
            ),
            "target stage nope could not be found"
        );
    }
}

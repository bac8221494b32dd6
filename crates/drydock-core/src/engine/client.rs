//! Connecting to the engine.

use std::collections::HashMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use super::buildkit::{self, BuilderPreference};
use super::EngineError;

/// Default socket when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Deadline of short engine calls, request to response headers (whole seconds only).
pub const SHORT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of long engine calls, request to response headers.
pub const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// Deadline of a liveness ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one Docker Engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The client for calls whose request or response may take long before
    /// the response headers arrive (builds and imports that upload a body,
    /// pushes, copies in): [`LONG_CALL_TIMEOUT`].
    pub(crate) docker: Docker,
    /// The client for everything else (create, start, inspect, remove,
    /// list, tag, exec…): an engine that does not answer these within
    /// [`SHORT_CALL_TIMEOUT`] is reported instead of waited for.
    pub(crate) quick: Docker,
    host: String,
    api_version: String,
    engine_version: String,
    /// The builder in use ([`buildkit::Builder`] as a number), shared by the
    /// clones so that a fallback to the classic builder sticks.
    pub(crate) builder: Arc<AtomicU8>,
    /// Image id → the system CA bundle files found in it (see
    /// `trustplan`), shared by the clones.
    pub(crate) bundle_probes: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Engine {
    /// Connects through `DOCKER_HOST`, or the local socket, and checks that the engine answers.
    pub async fn connect() -> Result<Self, EngineError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Self::connect_to(&host).await
    }

    /// Connects to the engine at `host` (`unix://…`, `tcp://…`, `http://…`).
    pub async fn connect_to(host: &str) -> Result<Self, EngineError> {
        let unreachable = |source| EngineError::Unreachable {
            host: host.to_string(),
            source,
        };
        // Whole seconds only: the client timeout covers request + headers;
        // streams (wait, logs, build output, events) outlive it, and the run
        // loop's liveness ping watches them.
        let docker = Docker::connect_with_host(host)
            .map_err(unreachable)?
            .with_timeout(LONG_CALL_TIMEOUT);
        let quick = docker.clone().with_timeout(SHORT_CALL_TIMEOUT);
        let version = tokio::time::timeout(Duration::from_secs(10), docker.version())
            .await
            .map_err(|_| {
                unreachable(bollard::errors::Error::IOError {
                    err: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 10s"),
                })
            })?
            .map_err(unreachable)?;
        let api_version = version.api_version.unwrap_or_default();
        let builder = buildkit::choose_builder(
            BuilderPreference::from_env(),
            &api_version,
            version.os.as_deref().unwrap_or_default(),
        );
        Ok(Engine {
            docker,
            quick,
            host: host.to_string(),
            api_version,
            engine_version: version.version.unwrap_or_default(),
            builder: Arc::new(AtomicU8::new(builder as u8)),
            bundle_probes: Arc::default(),
        })
    }

    /// Whether the engine answers a ping within `PING_TIMEOUT` (5 s).
    pub async fn ping(&self) -> Result<(), EngineError> {
        match tokio::time::timeout(PING_TIMEOUT, self.quick.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(EngineError::api("ping", e)),
            Err(_) => Err(EngineError::Unresponsive {
                op: "ping".to_string(),
                after: PING_TIMEOUT,
            }),
        }
    }

    /// A client whose deadline is `limit` plus [`SHORT_CALL_TIMEOUT`]
    /// (for `stop` with a grace period).
    pub(crate) fn with_deadline(&self, limit: Duration) -> Docker {
        self.quick.clone().with_timeout(limit + SHORT_CALL_TIMEOUT)
    }

    /// The address this engine was reached at.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The Engine API version the daemon reports (e.g. `1.41`).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The daemon's version string (e.g. `20.10.24+dfsg1`).
    pub fn engine_version(&self) -> &str {
        &self.engine_version
    }
}

//! Connecting to the engine.

use std::collections::HashMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use super::builder::{self, BuilderPreference};
use super::endpoint::{Endpoint, EndpointError, EndpointSource};
use super::EngineError;

pub use super::endpoint::DEFAULT_HOST;

/// Which engine answers the Docker Engine API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Docker Engine (moby).
    Docker,
    /// Podman's Docker-compatible service (`podman system service`).
    Podman,
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::Docker => "Docker",
            Flavour::Podman => "Podman",
        })
    }
}

/// The flavour of an engine from its `/version` answer: Podman names a
/// component `Podman Engine` (Docker's is `Engine`).
pub fn flavour_of(version: &bollard::models::SystemVersion) -> Flavour {
    let podman = version
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"))
        || version
            .platform
            .as_ref()
            .is_some_and(|p| p.name.to_ascii_lowercase().contains("podman"));
    if podman {
        Flavour::Podman
    } else {
        Flavour::Docker
    }
}
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
    /// How the engine was found (for messages and the run header).
    endpoint: Endpoint,
    flavour: Flavour,
    api_version: String,
    engine_version: String,
    /// For `ssh://` engines: the local socket that carries connections
    /// through `ssh` (kept alive as long as a clone of this engine is).
    tunnel: Option<Arc<super::ssh::SshTunnel>>,
    /// The builder in use ([`builder::Builder`] as a number), shared by the
    /// clones so that a fallback to the classic builder sticks.
    pub(crate) builder: Arc<AtomicU8>,
    /// Image id → the system CA bundle files found in it (see
    /// `trustplan`), shared by the clones.
    pub(crate) bundle_probes: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Engine {
    /// Connects to the engine the docker CLI would use (`DOCKER_HOST`, else
    /// `DOCKER_CONTEXT`, else the docker config's current context, else the
    /// local socket; see [`super::endpoint`]) and checks that it answers.
    ///
    /// # Errors
    /// [`EngineError::Endpoint`] when the configuration names a context
    /// that does not exist or cannot be used; [`EngineError::Unreachable`]
    /// (naming the context) when nothing answers there.
    pub async fn connect() -> Result<Self, EngineError> {
        let endpoint = super::endpoint::resolve_from_env()?;
        Self::connect_endpoint(endpoint).await
    }

    /// Connects to the engine at `host` (`unix://…`, `tcp://…`, `http://…`,
    /// `ssh://…`), without TLS.
    pub async fn connect_to(host: &str) -> Result<Self, EngineError> {
        Self::connect_endpoint(Endpoint {
            host: host.to_string(),
            source: EndpointSource::Default,
            tls: None,
            skip_tls_verify: false,
        })
        .await
    }

    /// The client for an endpoint: unix sockets and plain `tcp://` as
    /// bollard connects them, `tcp://` with TLS material over rustls
    /// (client certificate required, as `docker --tlsverify`). `ssh://`
    /// engines are reached through the local socket of an
    /// [`super::ssh::SshTunnel`] (`via`).
    fn client(endpoint: &Endpoint, via: Option<&str>) -> Result<Docker, EngineError> {
        let host = via.unwrap_or(endpoint.host.as_str());
        let timeout = LONG_CALL_TIMEOUT.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let unreachable = |source| EngineError::Unreachable {
            host: endpoint.describe(),
            source,
        };
        let refuse = |message: String| {
            EngineError::Endpoint(EndpointError::Config {
                path: endpoint.describe(),
                message,
            })
        };
        let tcp = host.starts_with("tcp://") || host.starts_with("https://");
        if endpoint.skip_tls_verify && tcp {
            return Err(refuse(
                "the context skips TLS verification (SkipTLSVerify), which drydock's client cannot do: give it the daemon's CA instead".to_string(),
            ));
        }
        match &endpoint.tls {
            Some(tls) if tcp => match (&tls.ca, &tls.cert, &tls.key) {
                (Some(ca), Some(cert), Some(key)) => {
                    Docker::connect_with_ssl(host, key, cert, ca, timeout, version)
                        .map_err(unreachable)
                }
                _ => Err(refuse(
                    "TLS needs ca.pem, cert.pem and key.pem (a client certificate, as `docker --tlsverify`); some are missing".to_string(),
                )),
            },
            _ if host.starts_with("tcp://") || host.starts_with("http://") => {
                Docker::connect_with_http(host, timeout, version).map_err(unreachable)
            }
            _ if host.starts_with("unix://") => {
                Docker::connect_with_unix(host, timeout, version).map_err(unreachable)
            }
            _ => Err(refuse(format!(
                "unsupported engine address {host:?}: drydock connects to unix://, tcp://, http://, https:// (with TLS material) and ssh:// addresses"
            ))),
        }
    }

    /// Connects to `endpoint` and checks that the engine answers.
    pub async fn connect_endpoint(endpoint: Endpoint) -> Result<Self, EngineError> {
        let unreachable = |source| EngineError::Unreachable {
            host: endpoint.describe(),
            source,
        };
        let tunnel = if endpoint.host.starts_with("ssh://") {
            let address = super::ssh::SshAddress::parse(&endpoint.host).map_err(|message| {
                EngineError::Endpoint(EndpointError::Config {
                    path: endpoint.describe(),
                    message,
                })
            })?;
            let tunnel = super::ssh::SshTunnel::start(&address)
                .map_err(|e| unreachable(bollard::errors::Error::IOError { err: e }))?;
            Some(Arc::new(tunnel))
        } else {
            None
        };
        let via = tunnel.as_ref().map(|t| t.socket());
        // Whole seconds only: the client timeout covers request + headers;
        // streams (wait, logs, build output, events) outlive it, and the run
        // loop's liveness ping watches them.
        let docker = Self::client(&endpoint, via.as_deref())?.with_timeout(LONG_CALL_TIMEOUT);
        let quick = docker.clone().with_timeout(SHORT_CALL_TIMEOUT);
        // An ssh:// connection starts the system ssh first: give it longer.
        let answer_within = if endpoint.host.starts_with("ssh://") {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(10)
        };
        let version = tokio::time::timeout(answer_within, docker.version())
            .await
            .map_err(|_| {
                unreachable(bollard::errors::Error::IOError {
                    err: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer in {}s", answer_within.as_secs()),
                    ),
                })
            })?
            .map_err(unreachable)?;
        let flavour = flavour_of(&version);
        let api_version = version.api_version.clone().unwrap_or_default();
        let builder = match flavour {
            // Podman's compatible API builds with Buildah behind the
            // classic build endpoint: no BuildKit session.
            Flavour::Podman => builder::Builder::Classic,
            Flavour::Docker => builder::choose_builder(
                BuilderPreference::from_env(),
                &api_version,
                version.os.as_deref().unwrap_or_default(),
            ),
        };
        Ok(Engine {
            docker,
            quick,
            // What bollard connects to: for ssh://, the tunnel's socket.
            host: via.unwrap_or_else(|| endpoint.host.clone()),
            tunnel,
            endpoint,
            flavour,
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

    /// The address bollard connects to (for an `ssh://` engine, the local
    /// socket that tunnels through `ssh`; [`Engine::endpoint`] has the
    /// address as configured).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How this engine was found (DOCKER_HOST, a docker context…).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Docker or Podman.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// A new client to the same engine, with the same TLS or SSH setup (for
    /// code that needs its own connection, such as a build session on
    /// another runtime).
    ///
    /// # Errors
    /// As [`Engine::connect_endpoint`] before any call is made.
    pub fn reconnect(&self) -> Result<Docker, EngineError> {
        let via = self.tunnel.as_ref().map(|t| t.socket());
        Self::client(&self.endpoint, via.as_deref())
    }

    /// The run header's description: address (and docker context), flavour,
    /// version, API version and the builder in use, e.g.
    /// `unix:///var/run/docker.sock (Docker 20.10.24, API 1.41, buildkit builder)`.
    pub fn describe(&self) -> String {
        let at = match self.endpoint.context() {
            Some(c) => format!("{} via docker context \"{c}\"", self.endpoint.host),
            None => self.endpoint.host.clone(),
        };
        format!(
            "{at} ({} {}, API {}, {} builder)",
            self.flavour,
            self.engine_version,
            self.api_version,
            self.builder()
        )
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

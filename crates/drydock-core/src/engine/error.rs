//! Errors of the engine layer.

use std::path::PathBuf;

/// What went wrong while talking to the Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No engine answered at the configured address.
    #[error("cannot reach the Docker Engine at {host}: {source}\n  hint: start the engine there, or point DOCKER_HOST, DOCKER_CONTEXT or `docker context use` at one that answers")]
    Unreachable {
        /// The address tried and how it was found (`DOCKER_HOST`, a docker context, the local socket).
        host: String,
        /// The underlying client error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The docker configuration names an engine that cannot be used (an
    /// unknown context, unreadable config, unsupported address or TLS setup).
    #[error(transparent)]
    Endpoint(#[from] super::endpoint::EndpointError),
    /// An image the run needs does not exist in the engine.
    #[error("image {image} is not in the engine{hint}")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// Extra advice (for example how to bootstrap base images).
        hint: String,
    },
    /// An image build failed; `step` is the Dockerfile step that failed when known.
    #[error("build of {what} failed{}: {message}", step.as_ref().map(|s| format!(" at `{s}`")).unwrap_or_default())]
    Build {
        /// What was being built (target or tag).
        what: String,
        /// The failing Dockerfile instruction, e.g. `RUN pip install -r requirements.txt`.
        step: Option<String>,
        /// The engine's message.
        message: String,
    },
    /// The build context could not be read or sent.
    #[error(transparent)]
    Context(#[from] super::context::ContextError),
    /// A container's command does not exist in its image.
    #[error("command {command:?} cannot be started in image {image}: {message}")]
    CommandNotFound {
        /// The argv that was asked for.
        command: Vec<String>,
        /// The image it was run in.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// A local file operation around the engine (copy-out, rootfs) failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The local path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An Engine API call failed.
    #[error("engine call `{op}` failed: {source}")]
    Api {
        /// The operation, e.g. `create container drydock-…`.
        op: String,
        /// The client error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A push to a registry failed. `message` says what kind of failure it
    /// was (authentication, unreachable registry, …) and never contains a password.
    #[error("push of {reference} to registry {registry} failed: {message}")]
    Push {
        /// The reference pushed (`host:port/name:tag`).
        reference: String,
        /// The registry host.
        registry: String,
        /// What kind of failure.
        kind: super::registry::PushFailure,
        /// The registry's message, with a hint.
        message: String,
    },
    /// Registry credentials could not be worked out.
    #[error(transparent)]
    Credentials(#[from] super::registry::CredentialsError),
    /// Copying host files into a container (a step's `copy:`) failed.
    #[error("cannot copy {} into the container as {target}: {message}", path.display())]
    CopyIn {
        /// The host path.
        path: PathBuf,
        /// The container path it was to become.
        target: String,
        /// Why.
        message: String,
    },
    /// The engine did not answer a call within its deadline (frozen,
    /// overloaded, or its connection hangs).
    #[error("the Docker Engine did not answer `{op}` within {}s (is it frozen or overloaded?)", after.as_secs())]
    Unresponsive {
        /// The call.
        op: String,
        /// Its deadline.
        after: std::time::Duration,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// Wraps a client error with the operation it belongs to; the client's
    /// own timeout becomes [`EngineError::Unresponsive`].
    pub fn api(op: impl Into<String>, source: bollard::errors::Error) -> Self {
        match source {
            bollard::errors::Error::RequestTimeoutError => EngineError::Unresponsive {
                op: op.into(),
                after: super::client::SHORT_CALL_TIMEOUT,
            },
            source => EngineError::Api {
                op: op.into(),
                source,
            },
        }
    }

    /// True when the error means "not found" (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            EngineError::Api {
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            } | EngineError::ImageMissing { .. }
        )
    }
}

/// The HTTP status of a client error, when it has one.
pub(crate) fn status_of(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

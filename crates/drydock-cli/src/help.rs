//! Help texts: examples and the environment variables each command reads.

/// How drydock finds the engine (every command that talks to it).
macro_rules! env_engine {
    () => {
        "  DOCKER_HOST        engine address (unix://, tcp://, ssh://user@host); wins over contexts
  DOCKER_TLS_VERIFY  with a tcp:// DOCKER_HOST: use TLS with DOCKER_CERT_PATH's ca/cert/key.pem
  DOCKER_CERT_PATH   TLS material for DOCKER_HOST (default ~/.docker)
  DOCKER_CONTEXT     docker context to use when DOCKER_HOST is unset
  DOCKER_CONFIG      docker's config folder (default ~/.docker): currentContext, contexts, auths"
    };
}
pub(crate) use env_engine;

/// drydock's own settings.
macro_rules! env_state {
    () => {
        "  DRYDOCK_STATE_DIR  ledger, cache leases (default ~/.local/share/drydock)"
    };
}
pub(crate) use env_state;
/// Logging.
macro_rules! env_log {
    () => {
        "  DRYDOCK_LOG        tracing filter for drydock's own diagnostics (e.g. debug)
  NO_COLOR           set (to anything): no colours, whatever the output is"
    };
}
pub(crate) use env_log;

macro_rules! env_block {
    ($($part:expr),* $(,)?) => {
        concat!("Environment:\n", $($part, "\n"),*)
    };
}
pub(crate) use env_block;

/// `drydock` itself.
pub const ROOT: &str = concat!(
    "Examples:
  drydock run pipelines/flask-api.yml            run a pipeline (exit 0 passed, 1 failed)
  drydock run --json pipelines/flask-api.yml     the event stream v1 on stdout (docs/events.md)
  drydock validate pipelines/flask-api.yml       every problem, with code frames
  drydock schema pipeline > pipeline.schema.json the pipeline format for editors
  drydock completions bash > /etc/bash_completion.d/drydock

Exit codes: 0 passed, 1 a step failed, 2 invalid configuration or usage,
3 infrastructure error (engine unreachable, image missing…), 130 interrupted.

",
    "Environment (each command's --help lists the ones it reads):\n",
    "  DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,\n",
    "  DRYDOCK_STATE_DIR, DRYDOCK_BUILDER, DRYDOCK_CA_BUNDLE, DRYDOCK_LOG, NO_COLOR\n"
);

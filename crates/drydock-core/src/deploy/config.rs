//! The deploy config file (`deploy/<channel>.yml`): what `drydock deploy`
//! runs for a channel. Validated like a pipeline file, every problem at
//! `file:line:col`; see `docs/deploy.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::{PipelineError, ReadySpec, Vars};

/// Default deadline for a new app container to become healthy.
pub const DEFAULT_APP_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest wait for in-flight connections to the old container to end.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// Default grace between SIGTERM and SIGKILL when the old container stops.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// The network alias of the proxy on the channel network: services and other
/// containers there reach the live app at `app:<port>`.
pub const APP_ALIAS: &str = "app";

/// A validated deploy config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployConfig {
    /// The file it was read from, as given.
    pub source_path: PathBuf,
    /// The image repository, as recorded in the ledger (`release.name` of the pipeline).
    pub name: String,
    /// The channel deployed.
    pub channel: String,
    /// The application container.
    pub app: AppSpec,
    /// Long-lived sidecars, started once and kept across deploys.
    pub services: Vec<DeployService>,
}

/// The application: the image the channel points to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSpec {
    /// The port the app listens on inside its container.
    pub port: u16,
    /// The host port (on 127.0.0.1) of the stable address (the proxy).
    pub publish: u16,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Command override; `None` keeps the image's CMD.
    pub command: Option<Vec<String>>,
    /// Services that must be ready before the app starts (besides those its
    /// environment names).
    pub depends_on: Vec<String>,
    /// Deadline for the new container to become healthy.
    #[serde(serialize_with = "ser_duration")]
    pub ready_timeout: Duration,
    /// HTTP path probed through the channel network when the image has no
    /// HEALTHCHECK (a TCP connect when `None`).
    pub ready_path: Option<String>,
    /// Longest wait for connections to the old container to end after the switch.
    #[serde(serialize_with = "ser_duration")]
    pub drain: Duration,
    /// Grace between SIGTERM and SIGKILL for the old container.
    #[serde(serialize_with = "ser_duration")]
    pub stop_grace: Duration,
}

/// A long-lived sidecar of a deploy; its name is its alias on the channel network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployService {
    /// Service name and network alias.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Readiness probe, awaited before the app starts.
    pub ready: Option<ReadySpec>,
    /// Ports published on 127.0.0.1: (host port, container port).
    pub publish: Vec<(u16, u16)>,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::pipeline::format_duration(*d))
}

/// The conventional config of `channel`: `deploy/<channel>.yml` under `repo_root`.
pub fn default_path(repo_root: &Path, channel: &str) -> PathBuf {
    repo_root.join("deploy").join(format!("{channel}.yml"))
}

/// Reads and validates the deploy config at `path`, which must deploy
/// `channel`. `${VAR}` in string values is interpolated from `vars`.
pub fn load(path: &Path, channel: &str, vars: &Vars) -> Result<DeployConfig, PipelineError> {
    let bytes = crate::pipeline::text::read_limited(path).map_err(|source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&bytes, &path.to_string_lossy(), channel, vars)
}

/// [`load`] of the bytes of a deploy config: checked as pipeline files are
/// ([`crate::pipeline::parse_bytes`]), then [`parse_str`].
pub fn parse_bytes(
    bytes: &[u8],
    file_label: &str,
    channel: &str,
    vars: &Vars,
) -> Result<DeployConfig, PipelineError> {
    let source = crate::pipeline::text::check_bytes(bytes).map_err(|e| {
        PipelineError::Syntax(crate::pipeline::Diagnostic {
            file: file_label.to_string(),
            line: e.pos.line,
            col: e.pos.col,
            message: e.message,
        })
    })?;
    parse_str(source, file_label, channel, vars)
}

/// [`load`] of YAML held in memory; `file_label` names it in errors.
pub fn parse_str(
    source: &str,
    file_label: &str,
    channel: &str,
    vars: &Vars,
) -> Result<DeployConfig, PipelineError> {
    parse_deploy_config(source, file_label, channel, vars)
}

/// Validates a deploy config held in memory, with the pipeline's checker
/// (the same positions, messages and service rules).
fn parse_deploy_config(
    source: &str,
    file_label: &str,
    channel: &str,
    vars: &Vars,
) -> Result<DeployConfig, PipelineError> {
    let root = crate::pipeline::parse_document(
        source,
        file_label,
        "the deploy config is empty (expected a mapping with version, name, channel and app)",
    )?;
    // Deploy configs name no repository paths: the root is never used.
    crate::pipeline::validate::Checker::new(vars, PathBuf::from("/"))
        .check_deploy(&root, PathBuf::from(file_label), channel)
        .map_err(|errors| crate::pipeline::invalid(file_label, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<DeployConfig, PipelineError> {
        parse_str(
            src,
            "deploy/staging.yml",
            "staging",
            &Vars::new(BTreeMap::new()),
        )
    }

    const GOOD: &str = "version: 1
name: flask-api
channel: staging
app:
  port: 8000
  publish: 18080
  env:
    DATABASE_URL: postgresql://app:app@db:5432/app
    MIGRATE_ON_START: \"1\"
  ready: { timeout: 90s }
services:
  db:
    image: drydock/postgres:15
    env: { POSTGRES_USER: app, POSTGRES_PASSWORD: app, POSTGRES_DB: app }
    publish: [\"15432:5432\"]
    ready:
      postgres: { user: app, password: app, database: app }
";

    #[test]
    fn a_good_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.name, "flask-api");
        assert_eq!(c.channel, "staging");
        assert_eq!(c.app.port, 8000);
        assert_eq!(c.app.publish, 18080);
        assert_eq!(c.app.ready_timeout, Duration::from_secs(90));
        assert_eq!(c.app.drain, DEFAULT_DRAIN);
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].name, "db");
        assert_eq!(c.services[0].publish, vec![(15432, 5432)]);
        assert!(c.services[0].ready.is_some());
    }

    #[test]
    fn the_sample_products_staging_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/staging.yml");
        let c = load(&path, "staging", &Vars::new(BTreeMap::new())).unwrap();
        assert_eq!(c.name, "flask-api");
        assert_eq!(c.services[0].name, "db");
    }

    fn error_of(src: &str) -> String {
        parse(src).unwrap_err().to_string()
    }

    #[test]
    fn problems_point_at_file_line_col() {
        let missing_service = GOOD.replace("@db:5432", "@dbx:5432");
        let e = error_of(&missing_service);
        assert!(e.starts_with("deploy/staging.yml:8:19:"), "{e}");
        assert!(e.contains("`dbx`") && e.contains("not a service"), "{e}");

        let depends = GOOD.replace("  ready: { timeout: 90s }", "  depends_on: [cache]");
        let e = error_of(&depends);
        assert!(e.starts_with("deploy/staging.yml:10:16:"), "{e}");
        assert!(e.contains("unknown service `cache`"), "{e}");

        let e = error_of(&GOOD.replace("publish: 18080", "publish: 70000"));
        assert!(e.starts_with("deploy/staging.yml:6:12:"), "{e}");

        let e = error_of(&GOOD.replace("channel: staging", "channel: production"));
        assert!(e.starts_with("deploy/staging.yml:3:10:"), "{e}");
        assert!(
            e.contains("deploys channel `production`, not `staging`"),
            "{e}"
        );

        let e = error_of(&GOOD.replace("  port: 8000\n", ""));
        assert!(e.contains("missing the required key `port`"), "{e}");

        let e = error_of(&GOOD.replace("timeout: 90s", "timeout: soon"));
        assert!(e.starts_with("deploy/staging.yml:10:21:"), "{e}");

        let all = parse(&GOOD.replace("services:", "servces:"))
            .unwrap_err()
            .diagnostics();
        assert!(
            all.iter()
                .any(|d| d.line == 11 && d.message.contains("did you mean `services`")),
            "{all:?}"
        );

        let e = error_of(&GOOD.replace("\"15432:5432\"", "\"15432\""));
        assert!(e.contains("HOST:CONTAINER"), "{e}");

        let e = error_of(&GOOD.replace("  db:\n", "  app:\n").replace("@db:", "@app:"));
        assert!(e.contains("reserved"), "{e}");
    }
}

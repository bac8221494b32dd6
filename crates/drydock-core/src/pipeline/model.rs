//! The validated pipeline: what the rest of drydock codes against.
//!
//! Every value here has been checked and interpolated; paths are absolute and
//! inside the repository root. Durations serialize as their pipeline-file
//! spelling (`5m`, `250ms`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A validated pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    /// The pipeline name (`[a-z0-9][a-z0-9_.-]*`), used in labels and tags.
    pub name: String,
    /// The product image build, if any.
    pub build: Option<BuildSpec>,
    /// Sidecar services, in file order.
    pub services: Vec<ServiceSpec>,
    /// Tiers, in run order (at least one).
    pub tiers: Vec<TierSpec>,
    /// What a green run tags, if anything.
    pub release: Option<ReleaseSpec>,
    /// The pipeline file as given to [`load`](super::load) (or the label given to
    /// [`parse_str`](super::parse_str)).
    pub source_path: PathBuf,
    /// The repository root, canonicalized.
    pub repo_root: PathBuf,
}

/// The top-level `build` section: how to build the product image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSpec {
    /// Build context: absolute, canonicalized, inside the repository root.
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: String,
    /// Build arguments (interpolated).
    pub args: BTreeMap<String, String>,
    /// Whether the run's CA bundle, proxies and pip settings are handed to the build.
    pub trust: bool,
}

/// Where a step's or service's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// An image reference such as `drydock/python:3.11`.
    Image(String),
    /// A target (stage) of the top-level build.
    Target(String),
}

/// A sidecar service; its name is its network alias.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// Service name and network alias.
    pub name: String,
    /// The image to run.
    pub image: ImageSource,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Optional argv override (never empty when given).
    pub command: Option<Vec<String>>,
    /// Optional readiness probe.
    pub ready: Option<ReadySpec>,
}

/// How to tell that a service is ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadySpec {
    /// The probe to run.
    pub probe: Probe,
    /// Deadline for the service to become ready (default 60s).
    #[serde(serialize_with = "super::duration::serialize")]
    pub timeout: Duration,
    /// First backoff step between probes (default 250ms, doubling up to 2s).
    #[serde(serialize_with = "super::duration::serialize")]
    pub interval: Duration,
}

/// A readiness probe kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// `SELECT 1` through psql over the run network.
    Postgres {
        /// Database user.
        user: String,
        /// Password, if any.
        password: Option<String>,
        /// Database name.
        database: String,
    },
    /// An argv run inside the service; exit status 0 means ready.
    Exec(Vec<String>),
    /// The image's own `HEALTHCHECK`.
    Healthcheck,
}

/// A tier: build targets, then services, then concurrent steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierSpec {
    /// Tier name, unique in the pipeline.
    pub name: String,
    /// Build targets built at the start of this tier.
    pub build: Vec<String>,
    /// Services this tier waits to be ready.
    pub services: Vec<String>,
    /// Steps, run concurrently.
    pub steps: Vec<StepSpec>,
}

/// A step: one container run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSpec {
    /// Step name, unique within its tier.
    pub name: String,
    /// The image to run.
    pub image: ImageSource,
    /// The argv (never empty).
    pub command: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory in the container (absolute), if given.
    pub workdir: Option<String>,
    /// Read-only mounts of repository paths.
    pub mounts: Vec<Mount>,
    /// Deadline for the step (default 10m).
    #[serde(serialize_with = "super::duration::serialize")]
    pub timeout: Duration,
    /// Container path of a JUnit XML file to collect, if any (absolute).
    pub junit: Option<String>,
    /// More container paths (absolute) copied to the results folder.
    pub collect: Vec<String>,
    /// Whether the step joins the run network and gets proxy / CA settings (default true).
    pub network: bool,
}

/// A read-only bind mount of a repository path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Host path: absolute, canonicalized, inside the repository root, existing.
    pub source: PathBuf,
    /// Absolute container path.
    pub target: String,
}

/// The `release` section: what a green run tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSpec {
    /// The build target that ships.
    pub target: String,
    /// The image repository name.
    pub name: String,
    /// The channel tag moved to the new image.
    pub channel: String,
    /// Registry the tags are pushed to (`host[:port][/namespace]`, no trailing `/`), if any.
    pub registry: Option<String>,
}

impl ReleaseSpec {
    /// The repository in the registry: `<registry>/<name>`, when a registry is set.
    pub fn registry_repository(&self) -> Option<String> {
        self.registry
            .as_ref()
            .map(|registry| format!("{registry}/{}", self.name))
    }
}

/// Default step timeout.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Default readiness deadline.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default first readiness backoff step.
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_millis(250);

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
    /// Every image build the pipeline uses, by name, in the order they are
    /// first needed: the entries of `builds:`, the targets of the
    /// version-1 `build:` block that the pipeline names, and the builds of
    /// services taken from a compose file. Builds nothing uses are left out.
    pub builds: Vec<BuildSpec>,
    /// Sidecar services, in file order.
    pub services: Vec<ServiceSpec>,
    /// Tiers, in run order (at least one).
    pub tiers: Vec<TierSpec>,
    /// What a green run tags, if anything.
    pub release: Option<ReleaseSpec>,
    /// Secrets steps and builds may ask for, by name (`secrets:`). Only
    /// where their values come from is kept here, never a value.
    pub secrets: Vec<SecretSpec>,
    /// The pipeline file as given to [`load`](super::load) (or the label given to
    /// [`parse_str`](super::parse_str)).
    pub source_path: PathBuf,
    /// The repository root, canonicalized.
    pub repo_root: PathBuf,
}

impl Pipeline {
    /// The build called `name`, if the pipeline has one.
    pub fn build(&self, name: &str) -> Option<&BuildSpec> {
        self.builds.iter().find(|b| b.name == name)
    }
}

/// One image build: a Dockerfile stage built from a context, as `docker build
/// --target` does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSpec {
    /// The name steps, services and tiers use (`build: <name>`): a key of
    /// `builds:`, a target of the version-1 `build:` block, or
    /// `compose.<service>` for a compose service's build.
    pub name: String,
    /// Build context: absolute, canonicalized, inside the repository root.
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: String,
    /// The stage to build; `None` builds the last stage, as `docker build`
    /// does without `--target`. Checked against the Dockerfile's stages.
    pub target: Option<String>,
    /// Build arguments (interpolated).
    pub args: BTreeMap<String, String>,
    /// Whether the run's CA bundle, proxies and pip settings are handed to the build.
    pub trust: bool,
    /// Secrets the build gets as BuildKit secret mounts (`RUN --mount=type=secret,id=NAME`).
    pub secrets: Vec<String>,
}

impl BuildSpec {
    /// How people should read this build: `target <t> of <dockerfile>` or
    /// `last stage of <dockerfile>`, with the Dockerfile relative to `root`.
    pub fn describe(&self, root: &std::path::Path) -> String {
        let dockerfile = self.context.join(&self.dockerfile);
        let shown = dockerfile.strip_prefix(root).unwrap_or(&dockerfile);
        match &self.target {
            Some(t) => format!("target {t} of {}", shown.display()),
            None => format!("last stage of {}", shown.display()),
        }
    }
}

/// Where a step's or service's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// An image reference such as `drydock/python:3.11`.
    Image(String),
    /// A build of the pipeline, by name (see [`Pipeline::builds`]).
    Build(String),
}

/// A sidecar service; its name is its network alias.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// Service name and network alias.
    pub name: String,
    /// The image to run.
    pub image: ImageSource,
    /// Environment variables (`env_file` entries first, `env` wins).
    pub env: BTreeMap<String, String>,
    /// Optional argv override of the image's CMD (never empty when given).
    pub command: Option<Vec<String>>,
    /// Optional override of the image's ENTRYPOINT (`[]` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// User (`name`, `uid` or `uid:gid`) to run as, if not the image's.
    pub user: Option<String>,
    /// Working directory (absolute), if not the image's.
    pub workdir: Option<String>,
    /// Repository paths bound into the service.
    pub mounts: Vec<Mount>,
    /// Optional readiness probe.
    pub ready: Option<ReadySpec>,
    /// The compose file and service it was taken from, if any.
    pub compose: Option<ComposeOrigin>,
}

/// Where a service taken from a compose file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComposeOrigin {
    /// The compose file (absolute).
    pub file: PathBuf,
    /// The service's name in it.
    pub service: String,
    /// Compose keys accepted but not applied in a pipeline run, one line each.
    pub notes: Vec<String>,
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

/// A tier: builds, then services, then concurrent steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierSpec {
    /// Tier name, unique in the pipeline.
    pub name: String,
    /// Builds listed under the tier's `build:` (reported, and awaited, here).
    pub build: Vec<String>,
    /// Services this tier waits to be ready.
    pub services: Vec<String>,
    /// Steps, run concurrently.
    pub steps: Vec<StepSpec>,
    /// The default `when` of its steps.
    pub when: When,
}

/// When a step runs, given how the run is going (GitLab CI's `when`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Only while nothing has failed (the default).
    #[default]
    OnSuccess,
    /// Only once something has failed.
    OnFailure,
    /// Whatever happened, also after a cancel (within a bounded grace).
    Always,
}

/// A step another step needs (`needs:`), resolved: its tier and full name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NeedSpec {
    /// Tier name.
    pub tier: String,
    /// Step name (a matrix step's need names every combination).
    pub step: String,
}

/// A secret of the pipeline: where its value comes from and how steps get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    /// Its name (`[A-Za-z_][A-Za-z0-9_]*`): the environment variable, or the
    /// file `/run/secrets/<name>`, a step gets.
    pub name: String,
    /// Where the value is read at run time.
    pub source: SecretSource,
    /// How steps get it.
    pub expose: SecretExpose,
}

/// Where a secret's value comes from (never the pipeline file itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable of the drydock process.
    Env(String),
    /// A file outside the repository (absolute; `~/` expanded).
    File(PathBuf),
}

/// How a step gets a secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretExpose {
    /// An environment variable named after the secret (the default).
    #[default]
    Env,
    /// A read-only file `/run/secrets/<name>`.
    File,
}

/// A step: one container run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSpec {
    /// Step name, unique within its tier.
    pub name: String,
    /// The image to run.
    pub image: ImageSource,
    /// What the container runs.
    pub run: StepRun,
    /// Optional override of the image's ENTRYPOINT (`[]` clears it). With
    /// [`StepRun::Script`] and no entrypoint given, the image's entrypoint is
    /// cleared (the script runs in `sh`).
    pub entrypoint: Option<Vec<String>>,
    /// User (`name`, `uid` or `uid:gid`) to run as, if not the image's.
    pub user: Option<String>,
    /// Environment variables (`env_file` entries first, `env` wins).
    pub env: BTreeMap<String, String>,
    /// Working directory in the container (absolute), if given.
    pub workdir: Option<String>,
    /// Repository paths bound into the container.
    pub mounts: Vec<Mount>,
    /// Repository paths copied into the container before it starts
    /// (writable, never written back to the checkout).
    pub copies: Vec<CopySpec>,
    /// Deadline for the step (default 10m).
    #[serde(serialize_with = "super::duration::serialize")]
    pub timeout: Duration,
    /// Container path of a JUnit XML file to collect, if any (absolute).
    pub junit: Option<String>,
    /// More container paths (absolute) copied to the results folder.
    pub collect: Vec<String>,
    /// Whether the step joins the run network and gets proxy / CA settings (default true).
    pub network: bool,
    /// Steps it needs (`needs:`): it starts as soon as they passed, whatever
    /// its tier's position. `None`: it waits for every earlier tier.
    pub needs: Option<Vec<NeedSpec>>,
    /// When it runs.
    pub when: When,
    /// How many more times a failed attempt is run again (0–5).
    pub retry: u32,
    /// A failure is a warning: the tier and the run still pass.
    pub allow_failure: bool,
    /// The matrix combination this step is (`[(PYTHON, 3.11)]`), empty otherwise.
    pub matrix: Vec<(String, String)>,
    /// Secrets it gets, by name.
    pub secrets: Vec<String>,
    /// Container paths kept in a cache volume of the pipeline across runs.
    pub cache: Vec<String>,
    /// `reuse:` of the step, else of the pipeline; `None`: neither gave
    /// one, the default policy applies (see [`crate::reuse`]).
    pub reuse: Option<Reuse>,
}

/// Whether a step's stored result may stand in for running it (`reuse:`
/// on a step or at the top of the pipeline file; see [`crate::reuse`] for
/// the key and the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reuse {
    /// `reuse: true`: a passed result is reused, whatever the step's
    /// network (its services and the internet are trusted not to change it).
    Passed,
    /// `reuse: false`: the step always runs.
    Never,
    /// `reuse: always`: like `true`, and a failed, timed-out or allowed-to-fail
    /// result is reused too (a known-red step is not run again until
    /// something in its key changes).
    Always,
}

impl StepSpec {
    /// The name without its matrix suffix (`unit` for `unit [PYTHON=3.11]`).
    pub fn base_name(&self) -> &str {
        if self.matrix.is_empty() {
            &self.name
        } else {
            self.name.split(" [").next().unwrap_or(&self.name)
        }
    }

    /// The argv of a `command:` step; `None` for `script:` and image-default steps.
    pub fn command(&self) -> Option<&Vec<String>> {
        match &self.run {
            StepRun::Command(argv) => Some(argv),
            _ => None,
        }
    }
}

/// What a step's container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRun {
    /// `command:`, an argv (never empty) that replaces the image's CMD.
    Command(Vec<String>),
    /// `script:`, shell lines run in order by one `sh` with `set -e`, each
    /// echoed first (as GitLab CI's `script:`).
    Script(Vec<String>),
    /// Neither: the image's own CMD (only with an `entrypoint`).
    ImageDefault,
}

/// A bind mount of a repository path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Host path: absolute, canonicalized, inside the repository root, existing.
    pub source: PathBuf,
    /// Absolute container path.
    pub target: String,
    /// Mounted read-only (`:ro`, the default) or writable (`:rw`).
    pub read_only: bool,
}

/// A repository path copied into a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySpec {
    /// Host path: absolute, canonicalized, inside the repository root, existing.
    pub source: PathBuf,
    /// Absolute container path the file or folder becomes.
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

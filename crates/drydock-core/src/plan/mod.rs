//! The plan stage: a validated [`Pipeline`] compiled once into a [`Plan`]
//! that the executor ([`crate::run`]) carries out without interpreting the
//! YAML model again.
//!
//! Planning resolves every name: builds, services and steps get ids
//! ([`BuildId`], [`ServiceId`], [`StepId`]); each step's and service's image
//! is a reference or a build id ([`ImageRef`]); container specs (argv,
//! entrypoint, environment with the run's trust settings, mounts, copies,
//! user, network and aliases, labels), the run network, the order in which
//! builds are needed and the tier that reports each, and the release tags
//! are computed here. It needs no engine, so it is unit-tested on its own and
//! printed by `drydock plan`.
//!
//! Rules (see `docs/pipeline-format.md`):
//! - A build is built once per run, as early as it can be, in the order the
//!   tiers first need it; it is reported (and awaited) by the tier that lists
//!   it under `build:`, else by the first tier whose steps or services use
//!   it, else (the release build only) by the last tier.
//! - Services with an image start when the run starts; services built from
//!   a build start as soon as that build is done.
//! - A step joins the run network (reaching services by name) when its tier
//!   lists services, the engine's default bridge otherwise, and no network
//!   with `network: false`; only networked steps get the CA bundle and
//!   proxy settings.
//! - `script:` runs `sh -c` on a script that starts with `set -e` and
//!   echoes each line (`$ line`) before running it, as GitLab CI's `script:`;
//!   the image's entrypoint is cleared unless the step gives one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::engine::labels::RunLabels;
use crate::pipeline::{
    format_duration, BuildSpec, ImageSource, Pipeline, ReadySpec, SecretSpec, StepRun, StepSpec,
    When,
};
use crate::trust::{Trust, STEP_CA_PATH};

mod text;

pub use text::render;

/// Index of a build in [`Plan::builds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BuildId(pub usize);

/// Index of a service in [`Plan::services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServiceId(pub usize);

/// Index of a step in [`Plan::steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepId(pub usize);

/// What the caller decides about the release, whatever the pipeline says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReleaseChoice {
    /// As the pipeline's `release:` says.
    #[default]
    AsWritten,
    /// Release, but to this channel (the runner's deploy-on-green channel).
    Channel(String),
    /// Do not release (a runner candidate, a branch that does not deploy).
    Off,
}

/// Git facts about the commit being run (`DRYDOCK_GIT_SHA`, the release tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// Full sha of HEAD.
    pub sha: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
}

/// Inputs of planning besides the pipeline.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The run id (names the network, containers and the `:<run id>` tag).
    pub run_id: String,
    /// The commit being run (its sha becomes a release tag).
    pub git: GitInfo,
    /// CA bundle and proxy settings for builds and networked steps.
    pub trust: Trust,
    /// The release decision.
    pub release: ReleaseChoice,
    /// Run every step once, whatever its `retry:` says (`drydock run --no-retry`).
    pub no_retry: bool,
}

/// A pipeline compiled for one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The pipeline file.
    pub source_path: PathBuf,
    /// The repository root.
    pub repo_root: PathBuf,
    /// The run network (`drydock-<run id>`), created before anything starts.
    pub network: String,
    /// The labels every object of the run carries (plus its role).
    #[serde(serialize_with = "serialize_labels")]
    pub labels: RunLabels,
    /// Image references the run uses, checked (or pulled) before anything starts.
    pub images: Vec<String>,
    /// Builds in the order they are built.
    pub builds: Vec<PlannedBuild>,
    /// Services, in pipeline order.
    pub services: Vec<PlannedService>,
    /// Tiers, in run order.
    pub tiers: Vec<PlannedTier>,
    /// Steps of every tier, tier by tier.
    pub steps: Vec<PlannedStep>,
    /// What a green run tags, if anything.
    pub release: Option<PlannedRelease>,
    /// The CA bundle and proxy settings of the run.
    #[serde(skip)]
    pub trust: Trust,
    /// Things worth knowing that are not errors (compose keys not applied…).
    pub notes: Vec<String>,
    /// The pipeline's secrets: where each comes from (never a value).
    pub secrets: Vec<SecretSpec>,
}

/// One build of the run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedBuild {
    /// Its id.
    pub id: BuildId,
    /// The build's name in the pipeline.
    pub name: String,
    /// Context folder (absolute).
    pub context: PathBuf,
    /// Dockerfile, relative to the context.
    pub dockerfile: String,
    /// Stage to build; `None`: the last stage.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// Whether the run's CA bundle and proxy settings reach the build.
    pub trust: bool,
    /// Secrets the build mounts (BuildKit secret mounts), by name.
    pub secrets: Vec<String>,
    /// The tag the image gets (`drydock-build/<pipeline>:<build>`).
    pub tag: String,
    /// Index of the tier that reports (and awaits) it.
    pub tier: usize,
}

impl PlannedBuild {
    /// The step name the build is reported under: `build <name>`.
    pub fn step_name(&self) -> String {
        format!("build {}", self.name)
    }
}

/// Where an image comes from at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageRef {
    /// An image reference, index into [`Plan::images`].
    Reference(usize),
    /// The image a build of the run produces.
    Build(BuildId),
}

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NetworkPlan {
    /// The run network, answering to these aliases.
    Run {
        /// Network aliases.
        aliases: Vec<String>,
    },
    /// The engine's default bridge (reaches the outside, not the services).
    Bridge,
    /// No network at all.
    None,
}

/// A host path bound into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindPlan {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute container path.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// A host path copied into a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyPlan {
    /// Absolute host path (file or folder).
    pub source: PathBuf,
    /// The container path it becomes.
    pub target: String,
}

/// How to create one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerPlan {
    /// Container name (`drydock-<run id>-…`).
    pub name: String,
    /// The image.
    pub image: ImageRef,
    /// ENTRYPOINT override: `None` keeps the image's, `Some([])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// CMD override: `None` keeps the image's.
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// User, if not the image's.
    pub user: Option<String>,
    /// Working directory, if not the image's.
    pub workdir: Option<String>,
    /// Bind mounts.
    pub binds: Vec<BindPlan>,
    /// Copies made before start.
    pub copies: Vec<CopyPlan>,
    /// Network.
    pub network: NetworkPlan,
    /// `drydock.role` label value (`step`, `service`).
    pub role: String,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    /// Its id.
    pub id: ServiceId,
    /// Its name (and network alias).
    pub name: String,
    /// The container.
    pub container: ContainerPlan,
    /// Readiness probe, if any.
    pub ready: Option<ReadySpec>,
}

/// One tier.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTier {
    /// Index in [`Plan::tiers`].
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Builds this tier reports (and awaits), in build order.
    pub builds: Vec<BuildId>,
    /// Every build this tier's steps need (reported here or earlier).
    pub needs_builds: Vec<BuildId>,
    /// Services it waits to be ready.
    pub services: Vec<ServiceId>,
    /// Its steps, run concurrently.
    pub steps: Vec<StepId>,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// Its id.
    pub id: StepId,
    /// Index of its tier.
    pub tier: usize,
    /// Its name (unique in the tier).
    pub name: String,
    /// The container.
    pub container: ContainerPlan,
    /// Deadline.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// JUnit report to collect (container path).
    pub junit: Option<String>,
    /// More container paths to collect.
    pub collect: Vec<String>,
    /// The steps it needs (`needs:`); `None`: it waits for every earlier tier.
    pub needs: Option<Vec<StepId>>,
    /// When it runs.
    pub when: When,
    /// How many more times a failed attempt runs again.
    pub retry: u32,
    /// Whether a failure is only a warning.
    pub allow_failure: bool,
    /// Secrets it gets, by name (values are read when the run starts).
    pub secrets: Vec<String>,
    /// Container paths backed by the pipeline's cache volumes.
    pub cache: Vec<String>,
    /// Its `reuse:` (the step's, else the pipeline's); `None`: the default
    /// policy of [`crate::reuse`].
    pub reuse: Option<crate::pipeline::Reuse>,
}

/// What a green run tags and where it pushes.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRelease {
    /// The build that ships.
    pub build: BuildId,
    /// Image repository name.
    pub name: String,
    /// Tags applied first (`<sha>` when known, `<run id>`).
    pub tags: Vec<String>,
    /// The git commit the image is built from, when known (recorded in the
    /// release ledger).
    pub git_sha: Option<String>,
    /// The channel tag moved last.
    pub channel: String,
    /// Registry to push to, if any.
    pub registry: Option<String>,
}

impl PlannedRelease {
    /// `<registry>/<name>`, when a registry is set.
    pub fn registry_repository(&self) -> Option<String> {
        self.registry.as_ref().map(|r| format!("{r}/{}", self.name))
    }
}

impl Plan {
    /// The build `id`.
    pub fn build(&self, id: BuildId) -> &PlannedBuild {
        &self.builds[id.0]
    }

    /// The service `id`.
    pub fn service(&self, id: ServiceId) -> &PlannedService {
        &self.services[id.0]
    }

    /// The step `id`.
    pub fn step(&self, id: StepId) -> &PlannedStep {
        &self.steps[id.0]
    }

    /// The step names of a tier as events announce them: its builds
    /// (`build <name>`) first, then its steps.
    pub fn tier_step_names(&self, tier: usize) -> Vec<String> {
        let t = &self.tiers[tier];
        t.builds
            .iter()
            .map(|b| self.build(*b).step_name())
            .chain(t.steps.iter().map(|s| self.step(*s).name.clone()))
            .collect()
    }

    /// A description of an image for people: the reference, or `build <name>`.
    pub fn describe_image(&self, image: ImageRef) -> String {
        match image {
            ImageRef::Reference(i) => self.images[i].clone(),
            ImageRef::Build(b) => format!("build {}", self.build(b).name),
        }
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn serialize_labels<S: serde::Serializer>(labels: &RunLabels, s: S) -> Result<S::Ok, S::Error> {
    let mut map: BTreeMap<String, String> = labels.with_role("").into_iter().collect();
    map.remove(crate::engine::labels::ROLE);
    serde::Serialize::serialize(&map, s)
}

/// Compiles a validated pipeline into the plan of one run.
///
/// Planning cannot fail: every name was resolved by validation. Container
/// names follow `drydock-<run id>-<tier>-<step>` (steps) and
/// `drydock-<run id>-svc-<service>` (services), with characters other than
/// `[A-Za-z0-9_.-]` replaced by `_`.
pub fn plan(pipeline: &Pipeline, options: &PlanOptions) -> Plan {
    Planner::new(pipeline, options).finish()
}

struct Planner<'a> {
    pipeline: &'a Pipeline,
    options: &'a PlanOptions,
    images: Vec<String>,
    builds: Vec<PlannedBuild>,
    notes: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(pipeline: &'a Pipeline, options: &'a PlanOptions) -> Self {
        Planner {
            pipeline,
            options,
            images: Vec::new(),
            builds: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn container_name(&self, parts: &[&str]) -> String {
        let mut name = format!("drydock-{}", self.options.run_id);
        for part in parts {
            name.push('-');
            name.extend(part.chars().map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            }));
        }
        name
    }

    /// The build named `name`, planned (reported by `tier`) if not yet.
    fn build_id(&mut self, name: &str, tier: usize) -> BuildId {
        if let Some(b) = self.builds.iter().find(|b| b.name == name) {
            return b.id;
        }
        let spec: &BuildSpec = self
            .pipeline
            .build(name)
            .expect("validation resolved every build name");
        let id = BuildId(self.builds.len());
        self.builds.push(PlannedBuild {
            id,
            name: spec.name.clone(),
            context: spec.context.clone(),
            dockerfile: spec.dockerfile.clone(),
            target: spec.target.clone(),
            args: spec.args.clone(),
            trust: spec.trust,
            secrets: spec.secrets.clone(),
            tag: build_tag(&self.pipeline.name, &spec.name),
            tier,
        });
        id
    }

    fn image_ref(&mut self, source: &ImageSource, tier: usize) -> ImageRef {
        match source {
            ImageSource::Image(reference) => {
                let index = match self.images.iter().position(|r| r == reference) {
                    Some(i) => i,
                    None => {
                        self.images.push(reference.clone());
                        self.images.len() - 1
                    }
                };
                ImageRef::Reference(index)
            }
            ImageSource::Build(name) => ImageRef::Build(self.build_id(name, tier)),
        }
    }

    fn finish(mut self) -> Plan {
        let pipeline = self.pipeline;
        let tier_count = pipeline.tiers.len();
        // Services are planned in the order tiers first list them (their
        // builds are reported there), then the rest in file order.
        let mut service_first_tier: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, tier) in pipeline.tiers.iter().enumerate() {
            for s in &tier.services {
                service_first_tier.entry(s.as_str()).or_insert(i);
            }
        }

        // Builds: tier by tier, listed ones first, then those its services
        // and steps need.
        for (i, tier) in pipeline.tiers.iter().enumerate() {
            for b in &tier.build {
                self.build_id(b, i);
            }
            for s in &tier.services {
                if let Some(spec) = pipeline.services.iter().find(|x| &x.name == s) {
                    if let ImageSource::Build(b) = &spec.image {
                        self.build_id(b, i);
                    }
                }
            }
            for step in &tier.steps {
                if let ImageSource::Build(b) = &step.image {
                    self.build_id(b, i);
                }
            }
        }

        let mut services = Vec::new();
        for spec in &pipeline.services {
            let tier = service_first_tier
                .get(spec.name.as_str())
                .copied()
                .unwrap_or(tier_count.saturating_sub(1));
            let image = self.image_ref(&spec.image, tier);
            let id = ServiceId(services.len());
            if let Some(origin) = &spec.compose {
                for note in &origin.notes {
                    self.notes
                        .push(format!("service {} (compose): {note}", spec.name));
                }
            }
            services.push(PlannedService {
                id,
                name: spec.name.clone(),
                container: ContainerPlan {
                    name: self.container_name(&["svc", &spec.name]),
                    image,
                    entrypoint: spec.entrypoint.clone(),
                    command: spec.command.clone(),
                    env: spec.env.clone(),
                    user: spec.user.clone(),
                    workdir: spec.workdir.clone(),
                    binds: spec
                        .mounts
                        .iter()
                        .map(|m| BindPlan {
                            source: m.source.clone(),
                            target: m.target.clone(),
                            read_only: m.read_only,
                        })
                        .collect(),
                    copies: Vec::new(),
                    network: NetworkPlan::Run {
                        aliases: vec![spec.name.clone()],
                    },
                    role: "service".to_string(),
                },
                ready: spec.ready.clone(),
            });
        }

        let mut tiers = Vec::new();
        let mut steps = Vec::new();
        for (i, tier) in pipeline.tiers.iter().enumerate() {
            let tier_services: Vec<ServiceId> = tier
                .services
                .iter()
                .filter_map(|name| services.iter().find(|s| &s.name == name).map(|s| s.id))
                .collect();
            let mut step_ids = Vec::new();
            let mut needs_builds = Vec::new();
            for spec in &tier.steps {
                let id = StepId(steps.len());
                let step = self.step(id, i, &tier.name, !tier.services.is_empty(), spec);
                if let ImageRef::Build(b) = step.container.image {
                    if !needs_builds.contains(&b) {
                        needs_builds.push(b);
                    }
                }
                step_ids.push(id);
                steps.push(step);
            }
            tiers.push(PlannedTier {
                index: i,
                name: tier.name.clone(),
                builds: Vec::new(),
                needs_builds,
                services: tier_services,
                steps: step_ids,
            });
        }

        let release = match (&pipeline.release, &self.options.release) {
            (None, _) | (_, ReleaseChoice::Off) => None,
            (Some(spec), choice) => {
                let build = self.build_id(&spec.target, tier_count.saturating_sub(1));
                let mut tags = Vec::new();
                if let Some(sha) = &self.options.git.sha {
                    tags.push(sha.clone());
                }
                tags.push(self.options.run_id.clone());
                Some(PlannedRelease {
                    build,
                    name: spec.name.clone(),
                    tags,
                    git_sha: self.options.git.sha.clone(),
                    channel: match choice {
                        ReleaseChoice::Channel(c) => c.clone(),
                        _ => spec.channel.clone(),
                    },
                    registry: spec.registry.clone(),
                })
            }
        };
        for b in &self.builds {
            tiers[b.tier].builds.push(b.id);
        }
        // Needs, now that every step has an id.
        for (tier, spec_tier) in pipeline.tiers.iter().enumerate() {
            for (index, spec) in spec_tier.steps.iter().enumerate() {
                let id = tiers[tier].steps[index];
                steps[id.0].needs = spec.needs.as_ref().map(|needs| {
                    needs
                        .iter()
                        .filter_map(|need| {
                            let t = pipeline.tiers.iter().position(|t| t.name == need.tier)?;
                            let s = pipeline.tiers[t]
                                .steps
                                .iter()
                                .position(|s| s.name == need.step)?;
                            Some(tiers[t].steps[s])
                        })
                        .collect()
                });
            }
        }

        Plan {
            run_id: self.options.run_id.clone(),
            pipeline: pipeline.name.clone(),
            source_path: pipeline.source_path.clone(),
            repo_root: pipeline.repo_root.clone(),
            network: format!("drydock-{}", self.options.run_id),
            labels: RunLabels::for_this_process(&self.options.run_id, &pipeline.name),
            images: self.images,
            builds: self.builds,
            services,
            tiers,
            steps,
            release,
            trust: self.options.trust.clone(),
            notes: self.notes,
            secrets: pipeline.secrets.clone(),
        }
    }

    fn step(
        &mut self,
        id: StepId,
        tier: usize,
        tier_name: &str,
        tier_has_services: bool,
        spec: &StepSpec,
    ) -> PlannedStep {
        let image = self.image_ref(&spec.image, tier);
        let mut env = BTreeMap::new();
        let mut binds: Vec<BindPlan> = spec
            .mounts
            .iter()
            .map(|m| BindPlan {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect();
        let network = if spec.network {
            let trust = &self.options.trust;
            env.extend(trust.step_env());
            if let Some(ca) = &trust.ca_bundle {
                binds.push(BindPlan {
                    source: ca.clone(),
                    target: STEP_CA_PATH.to_string(),
                    read_only: true,
                });
            }
            // Joining a user-defined network costs ~0.1 s per container:
            // only tiers that use services need the run network.
            if tier_has_services {
                NetworkPlan::Run {
                    aliases: vec![network_alias(&spec.name)],
                }
            } else {
                NetworkPlan::Bridge
            }
        } else {
            NetworkPlan::None
        };
        env.extend(spec.env.clone());
        let (entrypoint, command) = match &spec.run {
            StepRun::Command(argv) => (spec.entrypoint.clone(), Some(argv.clone())),
            StepRun::Script(lines) => (
                Some(spec.entrypoint.clone().unwrap_or_default()),
                Some(vec!["sh".to_string(), "-c".to_string(), script_text(lines)]),
            ),
            StepRun::ImageDefault => (spec.entrypoint.clone(), None),
        };
        PlannedStep {
            id,
            tier,
            name: spec.name.clone(),
            container: ContainerPlan {
                name: self.container_name(&[tier_name, &spec.name]),
                image,
                entrypoint,
                command,
                env,
                user: spec.user.clone(),
                workdir: spec.workdir.clone(),
                binds,
                copies: spec
                    .copies
                    .iter()
                    .map(|c| CopyPlan {
                        source: c.source.clone(),
                        target: c.target.clone(),
                    })
                    .collect(),
                network,
                role: "step".to_string(),
            },
            timeout: spec.timeout,
            junit: spec.junit.clone(),
            collect: spec.collect.clone(),
            needs: None,
            when: spec.when,
            retry: if self.options.no_retry { 0 } else { spec.retry },
            allow_failure: spec.allow_failure,
            secrets: spec.secrets.clone(),
            cache: spec.cache.clone(),
            reuse: spec.reuse,
        }
    }
}

/// The tag of a build's image: `drydock-build/<pipeline>:<build>`, the
/// build name made a valid tag (a matrix variant's `app [PY=3.11]` becomes
/// `app-py-3.11` and a short hash keeps variants apart).
fn build_tag(pipeline: &str, build: &str) -> String {
    let clean: String = build
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    let tag = if clean == build {
        clean.to_string()
    } else {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(build.as_bytes()));
        format!("{}-{}", &clean[..clean.len().min(100)], &digest[..8])
    };
    format!("drydock-build/{pipeline}:{tag}")
}

/// A network alias for a step name: a DNS label (`unit [PYTHON=3.11]` →
/// `unit-python-3.11`), at most 63 characters.
fn network_alias(name: &str) -> String {
    let mut alias = String::new();
    for c in name.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => {
                alias.push(c.to_ascii_lowercase())
            }
            _ if !alias.ends_with('-') => alias.push('-'),
            _ => {}
        }
    }
    let alias = alias.trim_matches('-');
    alias.chars().take(63).collect()
}

/// The shell script a `script:` step runs with `sh -c`: `set -e`, then for
/// each entry an echo of it (`$ <first line>`, with ` # …` when it has more
/// lines) and the entry itself. Single quotes make the echo literal.
pub fn script_text(lines: &[String]) -> String {
    let mut script = String::from("set -e\n");
    for line in lines {
        let mut shown = line.lines().next().unwrap_or_default().to_string();
        if line.trim_end().contains('\n') {
            shown.push_str(" # (multi-line command)");
        }
        script.push_str(&format!(
            "printf '%s\\n' {}\n",
            shell_quote(&format!("$ {shown}"))
        ));
        script.push_str(line);
        if !line.ends_with('\n') {
            script.push('\n');
        }
    }
    script
}

/// `s` as one single-quoted POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;

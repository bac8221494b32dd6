//! Services taken from a repository's compose file (`docker-compose.yml`,
//! `compose.yaml`), so that the development environment and the pipeline
//! share one definition.
//!
//! [`load_service`] reads one service the way Docker Compose v2 (the compose
//! specification, as implemented by compose-go) reads it, and returns what a
//! pipeline run can reproduce as a [`ComposeService`]:
//!
//! * **interpolation** in every value drydock takes: `$VAR`, `${VAR}`,
//!   `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`,
//!   `${VAR:?error}`, `${VAR?error}`, `$$`; variables come from the caller's
//!   lookup (the environment) and then from the project's `.env` file next to
//!   the compose file (compose's precedence); an unset variable becomes the
//!   empty string (and a note);
//! * YAML anchors, aliases and merge keys (`<<: *anchor`); `x-*` extension
//!   fields are ignored;
//! * `image` and/or `build` (a context string, or `context`, `dockerfile`,
//!   `target`, `args`);
//! * `environment` (a mapping or a `KEY=VALUE` list; a `KEY` without value
//!   takes the variable from the lookup or `.env`, and is left out when unset)
//!   over `env_file` (a path, a list, or a list of `{path, required}`), files in
//!   order, as compose merges them;
//! * `command` and `entrypoint` (a list, or a string split into words as
//!   compose splits it), `user`, `working_dir`;
//! * `volumes`: binds of repository files and folders (paths relative to the
//!   compose file's folder, which must exist and stay inside the repository),
//!   named and anonymous volumes and `tmpfs` as paths kept for the run only;
//! * `healthcheck`, with durations in compose's syntax (`1m30s`, `500ms`).
//!
//! Keys that change nothing a pipeline run can observe (`ports`, `restart`,
//! `depends_on`, `networks`, `labels`, ...) are accepted and reported in
//! [`ComposeService::notes`]. Keys whose effect drydock cannot reproduce
//! (`privileged`, `cap_add`, `devices`, `network_mode`, `extends`, `secrets`,
//! resource limits, ...) are errors located at the key. `docs/compose-import.md`
//! lists them all.
//!
//! Where Docker Compose 1.29 (Debian's `docker-compose`) and v2 differ, drydock
//! follows v2; the differences that matter are listed in that document.

mod merge;
mod shellwords;
pub(crate) mod template;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::dotenv;
use super::error::Diagnostic;
use super::text::suggest;
use super::tree::{self, Kind, Node, Pos, ScalarType};

/// The largest compose file drydock reads, in bytes (1 MiB).
pub const MAX_COMPOSE_FILE_BYTES: u64 = 1024 * 1024;

/// The compose file names compose looks for, in its order of preference
/// (compose-go's `DefaultFileNames`).
pub const DEFAULT_COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The override files compose merges over the default file when present
/// (compose-go's `DefaultOverrideFileNames`); drydock does not merge them and
/// says so in a note.
const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// One compose service as a pipeline run can reproduce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// The service's name in the compose file.
    pub name: String,
    /// `image`: the image to run, or the tag of the image `build` makes.
    pub image: Option<String>,
    /// `build`: how to build the image (with or without `image`).
    pub build: Option<ComposeBuild>,
    /// The container environment: the `env_file`s in order, then
    /// `environment` over them (compose's precedence). A value-less `KEY` in
    /// `environment` whose variable is unset removes `KEY`.
    pub environment: BTreeMap<String, String>,
    /// `command`: `None` keeps the image's `CMD`; `Some(vec![])` clears it
    /// (`command: []` or `""`). A string is split into words as compose splits
    /// it (no shell runs).
    pub command: Option<Vec<String>>,
    /// `entrypoint`: `None` keeps the image's `ENTRYPOINT`; `Some(vec![])`
    /// clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `user` (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
    /// `working_dir`: an absolute container path.
    pub working_dir: Option<String>,
    /// Host file and folder binds, in file order.
    pub binds: Vec<ComposeBind>,
    /// Container paths of named and anonymous volumes and of `tmpfs` mounts,
    /// in file order. Each should get storage of its own for the run only,
    /// starting as a new compose volume starts (filled from the image's
    /// content at that path), never shared between runs.
    pub ephemeral: Vec<String>,
    /// `healthcheck`, unless absent or disabled (`disable: true`, `test: [NONE]`).
    pub healthcheck: Option<ComposeHealthcheck>,
    /// One human line per key accepted but not applied in a pipeline run, and
    /// per unset variable that became the empty string, each starting
    /// `file:line:col:`.
    pub notes: Vec<String>,
}

/// A service's `build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBuild {
    /// The build context: absolute, canonical, inside the repository root.
    pub context: PathBuf,
    /// The Dockerfile, relative to `context` (compose's default:
    /// `Dockerfile`); it exists and stays inside the repository.
    pub dockerfile: String,
    /// The stage to build; `None` builds the last stage, as `docker build` does.
    pub target: Option<String>,
    /// Build arguments. A value-less argument takes the variable from the
    /// lookup or `.env`, and is left out when unset (so the Dockerfile's
    /// default applies), as compose v2 does.
    pub args: BTreeMap<String, String>,
}

/// A bind of a repository file or folder into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBind {
    /// The host path: absolute, canonical, inside the repository root.
    pub source: PathBuf,
    /// The absolute container path.
    pub target: String,
    /// `:ro` / `read_only: true`; compose's default is read-write.
    pub read_only: bool,
}

/// A service's `healthcheck`, as the engine would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeHealthcheck {
    /// The argv to run: `CMD a b` gives `[a, b]`; `CMD-SHELL s` and a plain
    /// string give `["/bin/sh", "-c", s]` (the engine's default shell). Empty
    /// when the healthcheck only sets timings: the image's own `HEALTHCHECK`
    /// command applies.
    pub test: Vec<String>,
    /// Time between checks; `None`: the engine's default (30s).
    pub interval: Option<Duration>,
    /// Time one check may take; `None`: the engine's default (30s).
    pub timeout: Option<Duration>,
    /// Consecutive failures that make the container unhealthy; `None`: the
    /// engine's default (3).
    pub retries: Option<u32>,
    /// Start-up time during which failures do not count; `None`: 0s.
    pub start_period: Option<Duration>,
    /// Time between checks during the start period; `None`: `interval`.
    pub start_interval: Option<Duration>,
}

/// The compose file drydock uses when none is named: compose's own search
/// order in `dir` (`compose.yaml`, `compose.yml`, `docker-compose.yml`,
/// `docker-compose.yaml`; see [`DEFAULT_COMPOSE_FILES`]). Unlike compose,
/// parent folders are not searched. `None` when `dir` holds none of them.
pub fn default_compose_file(dir: &Path) -> Option<PathBuf> {
    DEFAULT_COMPOSE_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Loads service `service` from the compose file at `path` (named `label` in
/// errors), with paths resolved as compose does (relative to the compose
/// file's folder) and checked to stay inside `repo_root`; interpolation as
/// compose does it, with variables from `lookup` and then from the `.env`
/// file next to the compose file.
///
/// Only the keys drydock takes are interpolated: a `${VAR:?}` in another
/// service, or in a key that only yields a note, does not stop the load.
///
/// Errors: every problem found, located `file:line:col` in the compose file
/// (or in the `.env`/env file concerned), in file order: unreadable or
/// oversized files ([`MAX_COMPOSE_FILE_BYTES`]), YAML syntax, an unknown
/// service (listing the services that exist), wrong shapes, bad
/// interpolation, paths that are missing or leave the repository, and keys
/// drydock cannot reproduce.
pub fn load_service(
    path: &Path,
    label: &str,
    repo_root: &Path,
    service: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ComposeService, Vec<Diagnostic>> {
    let at_start = |message: String| {
        vec![Diagnostic {
            file: label.to_string(),
            line: 1,
            col: 1,
            message,
        }]
    };
    let repo_root = repo_root.canonicalize().map_err(|e| {
        at_start(format!(
            "cannot resolve the repository root {}: {e}",
            repo_root.display()
        ))
    })?;
    let bytes = dotenv::read_bounded(path, label, "compose file", MAX_COMPOSE_FILE_BYTES)
        .map_err(|d| vec![d])?;
    let source = dotenv::decode(&bytes, label, "compose file").map_err(|d| vec![d])?;
    let file = path
        .canonicalize()
        .map_err(|e| at_start(format!("cannot resolve {}: {e}", path.display())))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    if !dir.starts_with(&repo_root) {
        return Err(at_start(format!(
            "the compose file is outside the repository root {} (it is in {})",
            repo_root.display(),
            dir.display()
        )));
    }

    let mut loader = Loader {
        label: label.to_string(),
        dir,
        repo_root,
        lookup,
        dotenv: HashMap::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        noted: HashSet::new(),
        unset: BTreeSet::new(),
        volumes_decl: HashMap::new(),
        service: service.to_string(),
    };
    loader.read_project_dotenv();
    if !loader.errors.is_empty() {
        return Err(loader.errors);
    }

    let root = match tree::parse(&source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(at_start(
                "the compose file is empty (expected a mapping with `services`)".to_string(),
            ))
        }
        Err(e) => return Err(vec![loader.diag(e.pos, e.message)]),
    };
    let root = merge::resolve(root).map_err(|(pos, m)| vec![loader.diag(pos, m)])?;
    let result = loader.document(&root, path);
    match result {
        Some(s) if loader.errors.is_empty() => Ok(s),
        _ => {
            if loader.errors.is_empty() {
                loader.err(root.pos, format!("service {service:?} could not be loaded"));
            }
            let label = loader.label.clone();
            loader.errors.sort_by(|a, b| {
                (a.file != label, a.line, a.col).cmp(&(b.file != label, b.line, b.col))
            });
            loader.errors.dedup();
            Err(loader.errors)
        }
    }
}

/// What a service key is to drydock.
enum KeyClass {
    /// Taken into [`ComposeService`].
    Taken,
    /// Accepted; not applied in a pipeline run (the reason).
    Note(&'static str),
    /// Not reproducible (the reason); the predicate says whether this value is
    /// harmless (for instance `privileged: false`).
    Refused(&'static str),
}

const TAKEN_KEYS: &[&str] = &[
    "image",
    "build",
    "environment",
    "env_file",
    "command",
    "entrypoint",
    "user",
    "working_dir",
    "volumes",
    "tmpfs",
    "healthcheck",
];

const NOTE_KEYS: &[(&str, &str)] = &[
    ("ports", "ports are not published: pipeline steps reach services by name on the run's private network"),
    ("expose", "every port is reachable on the run's private network"),
    ("restart", "a pipeline service runs once, for the run"),
    ("container_name", "drydock names its containers"),
    ("depends_on", "the pipeline orders services and steps by tiers and readiness"),
    ("networks", "the service joins the run's private network under its pipeline name"),
    ("links", "services are reached by name on the run's private network"),
    ("labels", "drydock sets its own drydock.* labels"),
    ("label_file", "drydock sets its own drydock.* labels"),
    ("annotations", "drydock sets no annotations"),
    ("hostname", "the container keeps the hostname the engine gives it"),
    ("domainname", "the container keeps the engine's default domain name"),
    ("stdin_open", "pipeline containers have no standard input"),
    ("tty", "drydock collects output without a terminal"),
    ("logging", "drydock collects the container's output itself"),
    ("stop_signal", "drydock stops and removes services at the end of the run"),
    ("stop_grace_period", "drydock stops and removes services at the end of the run"),
    ("profiles", "the pipeline names the services it starts"),
    ("pull_policy", "drydock uses the image on the engine, or builds it"),
    ("pull_refresh_after", "drydock uses the image on the engine, or builds it"),
    ("develop", "compose watch is for local development"),
    ("attach", "drydock collects the output of every service"),
];

const REFUSED_KEYS: &[(&str, &str)] = &[
    ("privileged", "it gives the container every privilege of the host"),
    ("cap_add", "it changes the container's Linux capabilities"),
    ("cap_drop", "it changes the container's Linux capabilities"),
    ("security_opt", "it changes the container's security options"),
    ("group_add", "it adds supplementary groups to the container's user"),
    ("userns_mode", "it changes the container's user namespace"),
    ("credential_spec", "it configures Windows credentials"),
    ("use_api_socket", "it gives the container the engine's API socket"),
    ("devices", "it gives the container host devices"),
    ("device_cgroup_rules", "it gives the container host devices"),
    ("gpus", "it gives the container host GPUs"),
    ("network_mode", "drydock runs every service on the run's private network"),
    ("pid", "it shares a process namespace"),
    ("ipc", "it shares an IPC namespace"),
    ("uts", "it shares the host's UTS namespace"),
    ("cgroup", "it changes the container's cgroup namespace"),
    ("cgroup_parent", "it places the container in another cgroup"),
    ("isolation", "it changes the container's isolation technology"),
    ("runtime", "it selects another container runtime"),
    ("platform", "drydock builds and runs images for the engine's own platform"),
    ("extends", "drydock reads one service of one compose file: copy the extended keys into it"),
    ("volumes_from", "it mounts the volumes of another container"),
    ("external_links", "it links to containers outside the project"),
    ("extra_hosts", "it changes name resolution inside the container"),
    ("dns", "it changes name resolution inside the container"),
    ("dns_opt", "it changes name resolution inside the container"),
    ("dns_search", "it changes name resolution inside the container"),
    ("mac_address", "it fixes the container's network identity"),
    ("secrets", "compose secrets are files from outside the repository; give the service what it needs through mounts or environment"),
    ("configs", "compose configs are files from outside the repository; bind a repository file instead"),
    ("sysctls", "it changes kernel parameters"),
    ("ulimits", "it changes resource limits"),
    ("shm_size", "it changes the size of /dev/shm"),
    ("mem_limit", "it sets a memory limit"),
    ("mem_reservation", "it sets a memory reservation"),
    ("memswap_limit", "it sets a swap limit"),
    ("mem_swappiness", "it tunes swapping"),
    ("oom_kill_disable", "it changes out-of-memory handling"),
    ("oom_score_adj", "it changes out-of-memory handling"),
    ("cpus", "it sets a CPU limit"),
    ("cpu_count", "it sets a CPU limit"),
    ("cpu_percent", "it sets a CPU limit"),
    ("cpu_period", "it sets a CPU limit"),
    ("cpu_quota", "it sets a CPU limit"),
    ("cpu_rt_period", "it sets a CPU limit"),
    ("cpu_rt_runtime", "it sets a CPU limit"),
    ("cpu_shares", "it sets CPU shares"),
    ("cpuset", "it pins the container to CPUs"),
    ("pids_limit", "it sets a process limit"),
    ("blkio_config", "it sets block-I/O limits"),
    ("storage_opt", "it sets storage-driver options"),
    ("read_only", "it makes the container's root filesystem read-only"),
    ("init", "it runs an init process as PID 1"),
    ("post_start", "it runs lifecycle hooks"),
    ("pre_start", "it runs lifecycle hooks"),
    ("pre_stop", "it runs lifecycle hooks"),
    ("models", "it needs compose's model runner"),
    ("provider", "it needs a compose provider plugin"),
];

/// Keys refused only when set to `true` (`false` is the default: nothing to
/// reproduce).
const REFUSED_WHEN_TRUE: &[&str] = &["privileged", "read_only", "init", "oom_kill_disable"];

fn classify(key: &str) -> Option<KeyClass> {
    if TAKEN_KEYS.contains(&key) {
        return Some(KeyClass::Taken);
    }
    if let Some((_, why)) = NOTE_KEYS.iter().find(|(k, _)| *k == key) {
        return Some(KeyClass::Note(why));
    }
    if let Some((_, why)) = REFUSED_KEYS.iter().find(|(k, _)| *k == key) {
        return Some(KeyClass::Refused(why));
    }
    None
}

fn all_service_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = TAKEN_KEYS.to_vec();
    keys.extend(NOTE_KEYS.iter().map(|(k, _)| *k));
    keys.extend(REFUSED_KEYS.iter().map(|(k, _)| *k));
    keys.extend(["deploy", "scale"]);
    keys
}

const BUILD_TAKEN: &[&str] = &["context", "dockerfile", "target", "args"];
const BUILD_NOTES: &[(&str, &str)] = &[
    ("cache_from", "drydock manages its own build cache"),
    ("cache_to", "drydock manages its own build cache"),
    ("labels", "drydock labels its images itself"),
    ("tags", "drydock tags its images itself"),
    ("pull", "drydock uses the base images on the engine"),
    ("no_cache", "drydock decides when a build is reused"),
    ("no_cache_filter", "drydock decides when a build is reused"),
    ("provenance", "drydock attaches no attestations"),
    ("sbom", "drydock attaches no attestations"),
];
const BUILD_REFUSED: &[(&str, &str)] = &[
    ("additional_contexts", "drydock sends one build context"),
    (
        "dockerfile_inline",
        "drydock builds Dockerfiles from the repository",
    ),
    ("entitlements", "it grants the build extra privileges"),
    ("privileged", "it grants the build extra privileges"),
    ("extra_hosts", "it changes name resolution during the build"),
    ("network", "it changes the build's network"),
    ("isolation", "it changes the build's isolation"),
    ("platforms", "drydock builds for the engine's own platform"),
    ("secrets", "build secrets come from outside the repository"),
    ("ssh", "it forwards an SSH agent into the build"),
    ("shm_size", "it changes the build's /dev/shm"),
    ("ulimits", "it changes the build's resource limits"),
];

const HEALTHCHECK_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];

const VOLUME_LONG_KEYS: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
    "image",
];

struct Loader<'l> {
    label: String,
    /// The compose file's folder (canonical): relative paths start here.
    dir: PathBuf,
    repo_root: PathBuf,
    lookup: &'l dyn Fn(&str) -> Option<String>,
    /// The project's `.env` next to the compose file.
    dotenv: HashMap<String, String>,
    errors: Vec<Diagnostic>,
    notes: Vec<String>,
    /// The notes given so far (each is given once).
    noted: HashSet<String>,
    /// Unset variables met while interpolating (each noted once).
    unset: BTreeSet<String>,
    /// The top-level `volumes` section: name to declaration.
    volumes_decl: HashMap<String, Node>,
    service: String,
}

/// A value of `environment` or `build.args` before resolution: `None` is a
/// value-less `KEY`.
type RawVars = Vec<(String, Option<String>, Pos)>;

impl<'l> Loader<'l> {
    fn diag(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.label.clone(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }

    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        let d = self.diag(pos, message);
        self.errors.push(d);
    }

    fn note(&mut self, pos: Pos, message: impl AsRef<str>) {
        let line = format!(
            "{}:{}:{}: {}",
            self.label,
            pos.line,
            pos.col,
            message.as_ref()
        );
        if self.noted.insert(line.clone()) {
            self.notes.push(line);
        }
    }

    /// A project variable: the lookup (environment) first, then `.env`.
    fn project_var(&self, name: &str) -> Option<String> {
        (self.lookup)(name).or_else(|| self.dotenv.get(name).cloned())
    }

    /// The label of a file named `rel` (as written) relative to the compose
    /// file, for messages: `dir-of-label/rel`.
    fn sibling_label(&self, rel: &str) -> String {
        let rel = rel.strip_prefix("./").unwrap_or(rel);
        if Path::new(rel).is_absolute() {
            return rel.to_string();
        }
        match Path::new(&self.label).parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(rel).display().to_string(),
            _ => rel.to_string(),
        }
    }

    /// Reads the project's `.env` (compose reads it from the project folder,
    /// the compose file's folder; the environment wins over it).
    fn read_project_dotenv(&mut self) {
        let path = self.dir.join(".env");
        if !path.is_file() {
            return;
        }
        let label = self.sibling_label(".env");
        let inside = path
            .canonicalize()
            .map(|c| c.starts_with(&self.repo_root))
            .unwrap_or(false);
        if !inside {
            self.errors.push(Diagnostic {
                file: label,
                line: 1,
                col: 1,
                message: format!(
                    "the project's .env resolves outside the repository root {}",
                    self.repo_root.display()
                ),
            });
            return;
        }
        let lookup = self.lookup;
        let parsed = dotenv::read_bounded(&path, &label, "env file", dotenv::MAX_ENV_FILE_BYTES)
            .and_then(|b| dotenv::decode(&b, &label, "env file"))
            .and_then(|src| dotenv::parse_env_with(&src, &label, lookup, &|_| None));
        match parsed {
            Ok(p) => self.dotenv.extend(p.pairs),
            Err(d) => self.errors.push(d),
        }
    }

    // ----- generic shapes ----------------------------------------------------

    /// The entries of a mapping, keys as text; duplicate keys and non-string
    /// keys are reported and left out. `x-*` keys are kept (callers skip them).
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
    ) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a mapping for {what}, found {}", node.describe()),
            );
            return None;
        };
        let mut out: Vec<(&str, &Node, &Node)> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<&str, Pos> = HashMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = match &k.kind {
                Kind::Scalar { text, .. } if k.scalar_type() != Some(ScalarType::Null) => {
                    text.as_str()
                }
                _ => {
                    self.err(
                        k.pos,
                        format!("expected a key name in {what}, found {}", k.describe()),
                    );
                    continue;
                }
            };
            if let Some(first) = seen.get(key) {
                let first = *first;
                self.err(
                    k.pos,
                    format!("duplicate key `{key}` in {what} (first given at {first})"),
                );
                continue;
            }
            seen.insert(key, k.pos);
            out.push((key, k, v));
        }
        Some(out)
    }

    /// Interpolates `text` (found at `pos`) with compose's rules.
    fn interp(&mut self, text: &str, pos: Pos) -> Option<String> {
        let result = template::substitute(text, &|name: &str| self.project_var(name));
        match result {
            Ok(e) => {
                for name in e.unset {
                    if self.unset.insert(name.clone()) {
                        self.note(
                            pos,
                            format!("variable {name} is not set: an empty string is used, as compose does"),
                        );
                    }
                }
                Some(e.text)
            }
            Err(m) => {
                self.err(pos, m);
                None
            }
        }
    }

    /// A string value, interpolated. Numbers (and, with `bools`, booleans)
    /// are accepted and written as compose v2 writes them.
    fn string(&mut self, node: &Node, what: &str, numbers: bool, bools: bool) -> Option<String> {
        match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { text, .. }, Some(ScalarType::Str)) => self.interp(text, node.pos),
            (Kind::Scalar { text, .. }, Some(t @ (ScalarType::Int | ScalarType::Float)))
                if numbers =>
            {
                Some(go_number(text, t))
            }
            (Kind::Scalar { .. }, Some(ScalarType::Bool(b))) if bools => Some(b.to_string()),
            (
                Kind::Scalar { text, .. },
                Some(ScalarType::Int | ScalarType::Float | ScalarType::Bool(_)),
            ) => {
                self.err(
                    node.pos,
                    format!(
                        "expected {what} as a string, found {} (quote it: \"{text}\")",
                        node.describe()
                    ),
                );
                None
            }
            _ => {
                self.err(
                    node.pos,
                    format!("expected {what} as a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A boolean: YAML `true`/`false`, or a string compose casts
    /// (`true`, `yes`, `on`, ... after interpolation).
    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.scalar_type() {
            Some(ScalarType::Bool(b)) => Some(b),
            Some(ScalarType::Str) => {
                let s = self.string(node, what, false, false)?;
                match s.to_ascii_lowercase().as_str() {
                    "true" | "y" | "yes" | "on" => Some(true),
                    "false" | "n" | "no" | "off" => Some(false),
                    _ => {
                        self.err(
                            node.pos,
                            format!("expected true or false for {what}, found {s:?}"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected true or false for {what}, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// A string or list of strings (compose's `string_or_list`).
    fn string_or_list(&mut self, node: &Node, what: &str) -> Vec<(String, Pos)> {
        match &node.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, what, false, false).map(|s| (s, i.pos)))
                .collect(),
            _ => self
                .string(node, what, false, false)
                .map(|s| vec![(s, node.pos)])
                .unwrap_or_default(),
        }
    }

    /// A path on the host, relative to the compose file's folder: it must
    /// exist and stay inside the repository; returns the canonical path.
    fn host_path(&mut self, raw: &str, pos: Pos, what: &str) -> Option<PathBuf> {
        if raw.starts_with('~') {
            self.err(
                pos,
                format!("{what} {raw:?} is in a home folder, outside the repository: drydock reads only repository paths"),
            );
            return None;
        }
        super::paths::resolve(&self.dir, raw, &self.repo_root, what)
            .map_err(|e| self.err(pos, e))
            .ok()
    }

    fn container_path(&mut self, raw: String, pos: Pos, what: &str) -> Option<String> {
        super::paths::container_path(&raw, what)
            .map(|()| raw)
            .map_err(|e| self.err(pos, e))
            .ok()
    }

    // ----- the document --------------------------------------------------------

    fn document(&mut self, root: &Node, path: &Path) -> Option<ComposeService> {
        let entries = self.entries(root, "the compose file")?;
        let mut services = None;
        let mut include = None;
        for (key, k, v) in &entries {
            match *key {
                "services" => services = Some((*k, *v)),
                "volumes" => {
                    if let Kind::Map(decls) = &v.kind {
                        for (k, d) in decls {
                            if let Kind::Scalar { text, .. } = &k.kind {
                                self.volumes_decl
                                    .entry(text.clone())
                                    .or_insert_with(|| d.clone());
                            }
                        }
                    }
                }
                "include" => include = Some(k.pos),
                _ => {}
            }
        }
        let Some((services_key, services)) = services else {
            self.err(root.pos, "the compose file has no `services` section");
            return None;
        };
        let list = self.entries(services, "services")?;
        let wanted = self.service.clone();
        let Some((_, name_node, node)) = list.iter().find(|(n, _, _)| *n == wanted) else {
            let names: Vec<&str> = list
                .iter()
                .map(|(n, _, _)| *n)
                .filter(|n| !n.starts_with("x-"))
                .collect();
            let hint = match suggest(&wanted, &names) {
                Some(s) => format!(" (did you mean {s:?}?)"),
                None => String::new(),
            };
            let have = if names.is_empty() {
                "it defines none".to_string()
            } else {
                format!("it defines: {}", names.join(", "))
            };
            let include = if include.is_some() {
                "; services from `include`d files are not read by drydock"
            } else {
                ""
            };
            self.err(
                services_key.pos,
                format!("no service {wanted:?} in the compose file{hint}: {have}{include}"),
            );
            return None;
        };
        let name_pos = name_node.pos;
        if let Some(dir) = path.parent() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if DEFAULT_COMPOSE_FILES.contains(&name) {
                if let Some(o) = OVERRIDE_FILES.iter().find(|o| dir.join(o).is_file()) {
                    self.note(
                        Pos::START,
                        format!("{o} exists next to the compose file: compose would merge it over this file, drydock does not"),
                    );
                }
            }
        }
        self.service_body(node, name_pos)
    }

    fn service_body(&mut self, node: &Node, name_pos: Pos) -> Option<ComposeService> {
        let name = self.service.clone();
        let what = format!("service {name:?}");
        if node.scalar_type() == Some(ScalarType::Null) {
            self.err(
                name_pos,
                format!("{what} is empty (expected a mapping with `image` or `build`)"),
            );
            return None;
        }
        let entries = self.entries(node, &what)?;
        let mut svc = ComposeService {
            name: name.clone(),
            image: None,
            build: None,
            environment: BTreeMap::new(),
            command: None,
            entrypoint: None,
            user: None,
            working_dir: None,
            binds: Vec::new(),
            ephemeral: Vec::new(),
            healthcheck: None,
            notes: Vec::new(),
        };
        let mut env_node = None;
        let mut env_files = None;
        let mut targets: HashMap<String, Pos> = HashMap::new();
        for (key, k, v) in entries {
            if key.starts_with("x-") {
                continue;
            }
            let class = classify(key);
            // `key:` with nothing (null) is the same as no key, for the keys
            // drydock takes as for the others.
            if v.scalar_type() == Some(ScalarType::Null) {
                continue;
            }
            match class {
                Some(KeyClass::Taken) => match key {
                    "image" => svc.image = self.image(v),
                    "build" => svc.build = self.build(v),
                    "environment" => env_node = Some(v),
                    "env_file" => env_files = Some(v),
                    "command" => svc.command = self.argv(v, "command"),
                    "entrypoint" => svc.entrypoint = self.argv(v, "entrypoint"),
                    "user" => svc.user = self.string(v, "user", true, false),
                    "working_dir" => {
                        svc.working_dir = self
                            .string(v, "working_dir", false, false)
                            .and_then(|s| self.container_path(s, v.pos, "working_dir"));
                    }
                    "volumes" => self.volumes(v, &mut svc, &mut targets),
                    "tmpfs" => {
                        for (s, pos) in self.string_or_list(v, "a tmpfs path") {
                            let target = s.split(':').next().unwrap_or("").to_string();
                            if let Some(t) = self.container_path(target, pos, "a tmpfs path") {
                                self.add_target(&t, pos, &mut targets);
                                svc.ephemeral.push(t);
                            }
                        }
                        self.note(k.pos, "`tmpfs` paths are kept for the run only, on disk rather than in memory (size and mode options are not applied)");
                    }
                    "healthcheck" => svc.healthcheck = self.healthcheck(v),
                    _ => {}
                },
                Some(KeyClass::Note(why)) => {
                    let extra = aliases_of(key, v);
                    self.note(
                        k.pos,
                        format!("`{key}` is not applied in a pipeline run: {why}{extra}"),
                    );
                }
                Some(KeyClass::Refused(why)) => {
                    if REFUSED_WHEN_TRUE.contains(&key) && is_false(v) {
                        continue;
                    }
                    self.refuse(k.pos, key, why);
                }
                None => match key {
                    "deploy" => self.deploy(v),
                    "scale" => {
                        let one = matches!(&v.kind, Kind::Scalar { text, .. } if text == "1");
                        if !one {
                            self.refuse(k.pos, key, "drydock starts one container per service");
                        }
                    }
                    _ => {
                        let keys = all_service_keys();
                        let hint = match suggest(key, &keys) {
                            Some(s) => format!(" (did you mean `{s}`?)"),
                            None => String::new(),
                        };
                        self.err(k.pos, format!("unknown key `{key}` in {what}{hint}: it is not a compose service key"));
                    }
                },
            }
        }
        if svc.image.is_none() && svc.build.is_none() && self.errors.is_empty() {
            self.err(name_pos, format!("{what} has neither `image` nor `build`"));
        }
        svc.environment = self.environment(env_node, env_files);
        svc.notes = std::mem::take(&mut self.notes);
        Some(svc)
    }

    fn refuse(&mut self, pos: Pos, key: &str, why: &str) {
        let service = self.service.clone();
        self.err(
            pos,
            format!(
                "compose key `{key}` cannot be reproduced by drydock ({why}): remove it from service {service:?} or define the service in the pipeline instead"
            ),
        );
    }

    fn image(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node, "image", false, false)?;
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.err(
                node.pos,
                format!("expected an image reference such as postgres:16, found {s:?}"),
            );
            return None;
        }
        Some(s)
    }

    fn deploy(&mut self, node: &Node) {
        let Some(entries) = self.entries(node, "deploy") else {
            return;
        };
        for (key, k, v) in entries {
            match key {
                _ if key.starts_with("x-") => {}
                "resources" => self.refuse(
                    k.pos,
                    "deploy.resources",
                    "it sets resource limits and reservations",
                ),
                "replicas" => {
                    if !matches!(&v.kind, Kind::Scalar { text, .. } if text == "1") {
                        self.refuse(
                            k.pos,
                            "deploy.replicas",
                            "drydock starts one container per service",
                        );
                    }
                }
                "mode" => {
                    if !matches!(&v.kind, Kind::Scalar { text, .. } if text == "replicated") {
                        self.refuse(
                            k.pos,
                            "deploy.mode",
                            "drydock starts one container per service",
                        );
                    }
                }
                "restart_policy" | "labels" | "update_config" | "rollback_config" | "placement"
                | "endpoint_mode" => {
                    self.note(k.pos, format!("`deploy.{key}` is not applied in a pipeline run: it concerns orchestrated deployments"));
                }
                _ => self.err(k.pos, format!("unknown key `{key}` in deploy")),
            }
        }
    }

    /// `command` / `entrypoint`: null, a string split into words, or a list.
    fn argv(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        match (&node.kind, node.scalar_type()) {
            (_, Some(ScalarType::Null)) => None,
            (Kind::Seq(items), _) => {
                let before = self.errors.len();
                let out: Vec<String> = items
                    .iter()
                    .filter_map(|i| self.string(i, &format!("an item of {what}"), true, false))
                    .collect();
                (self.errors.len() == before).then_some(out)
            }
            (Kind::Scalar { .. }, Some(ScalarType::Str)) => {
                let s = self.string(node, what, false, false)?;
                match shellwords::split(&s, what) {
                    Ok(words) => Some(words),
                    Err(m) => {
                        self.err(node.pos, m);
                        None
                    }
                }
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected {what} as a list or a string, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    // ----- environment ---------------------------------------------------------

    /// `environment` (or `build.args`): a mapping or a `KEY=VALUE` list.
    fn raw_vars(&mut self, node: &Node, what: &str) -> RawVars {
        let mut out: RawVars = Vec::new();
        match &node.kind {
            Kind::Map(_) => {
                for (key, k, v) in self.entries(node, what).unwrap_or_default() {
                    if !self.check_var_name(key, k.pos, what) {
                        continue;
                    }
                    let value = match (&v.kind, v.scalar_type()) {
                        (_, Some(ScalarType::Null)) => None,
                        (Kind::Scalar { .. }, _) => {
                            match self.string(v, &format!("the value of {key}"), true, true) {
                                Some(s) => Some(s),
                                None => continue,
                            }
                        }
                        _ => {
                            self.err(
                                v.pos,
                                format!("expected a string, number or boolean for {key} in {what}, found {}", v.describe()),
                            );
                            continue;
                        }
                    };
                    out.push((key.to_string(), value, k.pos));
                }
            }
            Kind::Seq(items) => {
                let mut seen: HashMap<&str, Pos> = HashMap::new();
                for item in items {
                    let raw = match &item.kind {
                        Kind::Scalar { text, .. } => text.as_str(),
                        _ => "",
                    };
                    if let Some(first) = seen.get(raw) {
                        let first = *first;
                        self.err(item.pos, format!("duplicate entry {raw:?} in {what} (first given at {first}); compose refuses it too"));
                        continue;
                    }
                    seen.insert(raw, item.pos);
                    let Some(s) = self.string(
                        item,
                        &format!("an entry of {what} (KEY=VALUE)"),
                        false,
                        false,
                    ) else {
                        continue;
                    };
                    let (key, value) = match s.split_once('=') {
                        Some((k, v)) => (k, Some(v.to_string())),
                        None => (s.as_str(), None),
                    };
                    if key.ends_with(char::is_whitespace) {
                        self.err(item.pos, format!("variable {:?} in {what} is declared with a trailing space (write KEY=VALUE with no blanks around =)", key));
                        continue;
                    }
                    if !self.check_var_name(key, item.pos, what) {
                        continue;
                    }
                    out.push((key.to_string(), value, item.pos));
                }
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected {what} as a mapping or a list of KEY=VALUE, found {}",
                        node.describe()
                    ),
                );
            }
        }
        out
    }

    fn check_var_name(&mut self, key: &str, pos: Pos, what: &str) -> bool {
        if key.is_empty()
            || key.contains('=')
            || key.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.err(pos, format!("invalid variable name {key:?} in {what}"));
            return false;
        }
        true
    }

    /// env_file(s) first, then `environment` over them; value-less entries
    /// are resolved from the project variables (unset: removed).
    fn environment(
        &mut self,
        env: Option<&Node>,
        files: Option<&Node>,
    ) -> BTreeMap<String, String> {
        let raw = env
            .map(|n| self.raw_vars(n, "environment"))
            .unwrap_or_default();
        // compose-go: service.Environment.Resolve(project environment).
        let mut service_env: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v, _) in raw {
            let v = v.or_else(|| self.project_var(&k));
            service_env.insert(k, v);
        }
        let mut acc: BTreeMap<String, String> = service_env
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        if let Some(files) = files {
            for (path, label, pos) in self.env_files(files) {
                let src = match dotenv::read_bounded(
                    &path,
                    &label,
                    "env file",
                    dotenv::MAX_ENV_FILE_BYTES,
                )
                .and_then(|b| dotenv::decode(&b, &label, "env file"))
                {
                    Ok(s) => s,
                    Err(d) => {
                        self.errors.push(d);
                        continue;
                    }
                };
                // compose-go: the project environment, then the service's
                // environment, then what earlier files and lines set.
                let project = |k: &str| {
                    self.project_var(k)
                        .or_else(|| service_env.get(k).cloned().flatten())
                };
                let base = |k: &str| acc.get(k).cloned();
                match dotenv::parse_env_with(&src, &label, &project, &base) {
                    Ok(parsed) => {
                        for name in parsed.unset {
                            self.note(pos, format!("{label}: variable {name} is not set: an empty string is used, as compose does"));
                        }
                        acc.extend(parsed.pairs);
                    }
                    Err(d) => self.errors.push(d),
                }
            }
        }
        for (k, v) in service_env {
            match v {
                Some(v) => {
                    acc.insert(k, v);
                }
                None => {
                    acc.remove(&k);
                }
            }
        }
        acc
    }

    /// The env files named by `env_file`: (path, label, position), skipping
    /// missing optional ones.
    fn env_files(&mut self, node: &Node) -> Vec<(PathBuf, String, Pos)> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            let (path_node, required) = match &item.kind {
                Kind::Map(_) => {
                    let Some(entries) = self.entries(item, "an env_file entry") else {
                        continue;
                    };
                    let mut path = None;
                    let mut required = true;
                    for (key, k, v) in entries {
                        match key {
                            "path" => path = Some(v),
                            "required" => required = self.boolean(v, "required").unwrap_or(true),
                            "format" => {
                                let f = self.string(v, "format", false, false);
                                if f.as_deref() != Some("") {
                                    self.err(v.pos, format!("env_file format {:?} is not supported: drydock reads the dotenv format only (leave `format` out)", f.unwrap_or_default()));
                                }
                            }
                            _ if key.starts_with("x-") => {}
                            _ => self.err(k.pos, format!("unknown key `{key}` in an env_file entry (expected path, required, format)")),
                        }
                    }
                    let Some(path) = path else {
                        self.err(item.pos, "an env_file entry needs `path`");
                        continue;
                    };
                    (path, required)
                }
                _ => (item, true),
            };
            let Some(rel) = self.string(path_node, "an env_file path", false, false) else {
                continue;
            };
            if !required && !self.dir.join(&rel).exists() {
                self.note(path_node.pos, format!("env_file {rel:?} (required: false) does not exist: skipped, as compose does"));
                continue;
            }
            let Some(path) = self.host_path(&rel, path_node.pos, "env_file") else {
                continue;
            };
            if !path.is_file() {
                self.err(path_node.pos, format!("env_file {rel:?} is not a file"));
                continue;
            }
            out.push((path, self.sibling_label(&rel), path_node.pos));
        }
        out
    }

    // ----- build ----------------------------------------------------------------

    fn build(&mut self, node: &Node) -> Option<ComposeBuild> {
        let mut context_node = None;
        let mut dockerfile_node = None;
        let mut target = None;
        let mut args = RawVars::new();
        match &node.kind {
            Kind::Scalar { .. } => context_node = Some(node),
            Kind::Map(_) => {
                for (key, k, v) in self.entries(node, "build")? {
                    if key.starts_with("x-") {
                        continue;
                    }
                    if BUILD_TAKEN.contains(&key) {
                        match key {
                            "context" => context_node = Some(v),
                            "dockerfile" => dockerfile_node = Some(v),
                            "target" => target = self.string(v, "build target", false, false),
                            _ => args = self.raw_vars(v, "build args"),
                        }
                    } else if let Some((_, why)) = BUILD_NOTES.iter().find(|(n, _)| *n == key) {
                        self.note(k.pos, format!("`build.{key}` is not applied: {why}"));
                    } else if let Some((_, why)) = BUILD_REFUSED.iter().find(|(n, _)| *n == key) {
                        self.refuse(k.pos, &format!("build.{key}"), why);
                    } else {
                        let known: Vec<&str> = BUILD_TAKEN
                            .iter()
                            .copied()
                            .chain(BUILD_NOTES.iter().map(|(n, _)| *n))
                            .chain(BUILD_REFUSED.iter().map(|(n, _)| *n))
                            .collect();
                        let hint = match suggest(key, &known) {
                            Some(s) => format!(" (did you mean `{s}`?)"),
                            None => String::new(),
                        };
                        self.err(k.pos, format!("unknown key `{key}` in build{hint}"));
                    }
                }
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected build as a context path or a mapping, found {}",
                        node.describe()
                    ),
                );
                return None;
            }
        }
        let (context_raw, context_pos) = match context_node {
            Some(n) => (self.string(n, "build context", false, false)?, n.pos),
            None => (".".to_string(), node.pos),
        };
        if context_raw.contains("://") || context_raw.starts_with("git@") {
            self.err(
                context_pos,
                format!("build context {context_raw:?} is remote: drydock builds from the repository only"),
            );
            return None;
        }
        let context = self.host_path(&context_raw, context_pos, "build context")?;
        if !context.is_dir() {
            self.err(
                context_pos,
                format!("build context {context_raw:?} is not a folder"),
            );
            return None;
        }
        let (dockerfile, df_pos) = match dockerfile_node {
            Some(n) => (self.string(n, "dockerfile", false, false)?, n.pos),
            None => ("Dockerfile".to_string(), context_pos),
        };
        if dockerfile.is_empty() || Path::new(&dockerfile).is_absolute() {
            self.err(
                df_pos,
                format!(
                    "dockerfile must be a path relative to the build context, found {dockerfile:?}"
                ),
            );
            return None;
        }
        let df_path = context.join(&dockerfile);
        match df_path.canonicalize() {
            Ok(c) if !c.starts_with(&self.repo_root) => {
                self.err(
                    df_pos,
                    format!(
                        "dockerfile {dockerfile:?} is outside the repository root {}",
                        self.repo_root.display()
                    ),
                );
                return None;
            }
            Ok(c) if !c.is_file() => {
                self.err(df_pos, format!("dockerfile {dockerfile:?} is not a file"));
                return None;
            }
            Ok(_) => {}
            Err(_) => {
                self.err(
                    df_pos,
                    format!(
                        "dockerfile {dockerfile:?} does not exist (looked for {})",
                        df_path.display()
                    ),
                );
                return None;
            }
        }
        let mut resolved = BTreeMap::new();
        for (k, v, pos) in args {
            match v.or_else(|| self.project_var(&k)) {
                Some(v) => {
                    resolved.insert(k, v);
                }
                None => {
                    resolved.remove(&k);
                    self.note(pos, format!("build arg {k} has no value and is not set: left out, so the Dockerfile's default applies (as compose v2 does)"));
                }
            }
        }
        Some(ComposeBuild {
            context,
            dockerfile,
            target,
            args: resolved,
        })
    }

    // ----- volumes ---------------------------------------------------------------

    fn add_target(&mut self, target: &str, pos: Pos, targets: &mut HashMap<String, Pos>) {
        let norm = target.trim_end_matches('/').to_string();
        if let Some(first) = targets.get(&norm) {
            let first = *first;
            self.err(
                pos,
                format!("container path {target:?} is mounted twice (first at {first})"),
            );
            return;
        }
        targets.insert(norm, pos);
    }

    fn volumes(
        &mut self,
        node: &Node,
        svc: &mut ComposeService,
        targets: &mut HashMap<String, Pos>,
    ) {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("expected volumes as a list, found {}", node.describe()),
            );
            return;
        };
        for item in items {
            match &item.kind {
                Kind::Map(_) => self.volume_long(item, svc, targets),
                _ => self.volume_short(item, svc, targets),
            }
        }
    }

    /// `./host:/container[:ro|rw]`, `name:/container`, `/container`, parsed as
    /// compose-go's `format.ParseVolume`.
    fn volume_short(
        &mut self,
        item: &Node,
        svc: &mut ComposeService,
        targets: &mut HashMap<String, Pos>,
    ) {
        let Some(spec) = self.string(item, "a volume (SOURCE:TARGET[:MODE])", false, false) else {
            return;
        };
        let pos = item.pos;
        let parts = match split_volume_spec(&spec) {
            Ok(p) => p,
            Err(m) => {
                self.err(pos, format!("invalid volume {spec:?}: {m}"));
                return;
            }
        };
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, t.clone(), None),
            [s, t] => (Some(s.clone()), t.clone(), None),
            [s, t, m] => (Some(s.clone()), t.clone(), Some(m.clone())),
            _ => {
                self.err(pos, format!("invalid volume {spec:?}: too many colons"));
                return;
            }
        };
        let mut read_only = false;
        for opt in mode
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|o| !o.is_empty())
        {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                // macOS file-sharing hints: no effect on Linux (compose ignores them).
                "consistent" | "cached" | "delegated" => {}
                "z" | "Z" => self.note(
                    pos,
                    format!("volume option `{opt}` (SELinux relabelling) is not applied"),
                ),
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => self.note(
                    pos,
                    format!("volume option `{opt}` (mount propagation) is not applied"),
                ),
                "nocopy" => self.refuse(
                    pos,
                    "volumes (nocopy)",
                    "drydock fills a new volume from the image",
                ),
                _ => self.err(
                    pos,
                    format!("unknown volume option {opt:?} in {spec:?} (expected ro or rw)"),
                ),
            }
        }
        let Some(target) = self.container_path(target, pos, "a volume target") else {
            return;
        };
        match source {
            Some(s) if is_file_path(&s) => {
                if let Some(source) = self.host_path(&s, pos, "bind source") {
                    self.add_target(&target, pos, targets);
                    svc.binds.push(ComposeBind {
                        source,
                        target,
                        read_only,
                    });
                }
            }
            Some(name) => {
                if self.named_volume(&name, pos) {
                    self.add_target(&target, pos, targets);
                    svc.ephemeral.push(target);
                }
            }
            None => {
                self.add_target(&target, pos, targets);
                svc.ephemeral.push(target);
            }
        }
    }

    fn volume_long(
        &mut self,
        item: &Node,
        svc: &mut ComposeService,
        targets: &mut HashMap<String, Pos>,
    ) {
        let Some(entries) = self.entries(item, "a volume") else {
            return;
        };
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut read_only = false;
        for (key, k, v) in entries {
            match key {
                _ if key.starts_with("x-") => {}
                "type" => {
                    kind = self
                        .string(v, "volume type", false, false)
                        .map(|t| (t, v.pos))
                }
                "source" => {
                    source = self
                        .string(v, "volume source", false, false)
                        .map(|s| (s, v.pos))
                }
                "target" => {
                    target = self
                        .string(v, "volume target", false, false)
                        .map(|t| (t, v.pos))
                }
                "read_only" => read_only = self.boolean(v, "read_only").unwrap_or(false),
                "consistency" => {}
                "bind" => {
                    for (sub, sk, sv) in self.entries(v, "bind options").unwrap_or_default() {
                        match sub {
                            "create_host_path" => {}
                            "propagation" | "selinux" => {
                                self.note(sk.pos, format!("bind option `{sub}` is not applied"))
                            }
                            "recursive" => {
                                let r = self.string(sv, "recursive", false, false);
                                if r.as_deref() != Some("enabled") {
                                    self.note(sk.pos, "bind option `recursive` is not applied (submounts are bound recursively)");
                                }
                            }
                            _ if sub.starts_with("x-") => {}
                            _ => self.err(sk.pos, format!("unknown bind option `{sub}`")),
                        }
                    }
                }
                "volume" => {
                    for (sub, sk, sv) in self.entries(v, "volume options").unwrap_or_default() {
                        match sub {
                            "nocopy" => {
                                if self.boolean(sv, "nocopy") == Some(true) {
                                    self.refuse(
                                        sk.pos,
                                        "volume.nocopy",
                                        "drydock fills a new volume from the image",
                                    );
                                }
                            }
                            "subpath" => self.refuse(
                                sk.pos,
                                "volume.subpath",
                                "drydock's run volumes have no sub-paths",
                            ),
                            "labels" => {}
                            _ if sub.starts_with("x-") => {}
                            _ => self.err(sk.pos, format!("unknown volume option `{sub}`")),
                        }
                    }
                }
                "tmpfs" => self.note(k.pos, "tmpfs options (size, mode) are not applied"),
                "image" => {}
                _ => {
                    let hint = match suggest(key, VOLUME_LONG_KEYS) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => String::new(),
                    };
                    self.err(k.pos, format!("unknown key `{key}` in a volume{hint}"));
                }
            }
        }
        let Some((kind, kind_pos)) = kind else {
            self.err(
                item.pos,
                "a volume in the long syntax needs `type` (bind, volume or tmpfs)",
            );
            return;
        };
        let Some((target, target_pos)) = target else {
            self.err(item.pos, "a volume in the long syntax needs `target`");
            return;
        };
        let Some(target) = self.container_path(target, target_pos, "a volume target") else {
            return;
        };
        match kind.as_str() {
            "bind" => {
                let Some((s, spos)) = source else {
                    self.err(item.pos, "a bind needs `source`");
                    return;
                };
                if let Some(source) = self.host_path(&s, spos, "bind source") {
                    self.add_target(&target, target_pos, targets);
                    svc.binds.push(ComposeBind {
                        source,
                        target,
                        read_only,
                    });
                }
            }
            "volume" => {
                if let Some((name, npos)) = &source {
                    if !self.named_volume(name, *npos) {
                        return;
                    }
                }
                self.add_target(&target, target_pos, targets);
                svc.ephemeral.push(target);
            }
            "tmpfs" => {
                if let Some((_, spos)) = source {
                    self.err(spos, "a tmpfs mount takes no `source`");
                    return;
                }
                self.note(
                    kind_pos,
                    "tmpfs mounts are kept for the run only, on disk rather than in memory",
                );
                self.add_target(&target, target_pos, targets);
                svc.ephemeral.push(target);
            }
            "npipe" | "cluster" | "image" => {
                self.refuse(
                    kind_pos,
                    &format!("volumes (type: {kind})"),
                    "drydock mounts repository binds and run volumes only",
                );
            }
            other => self.err(
                kind_pos,
                format!("unknown volume type {other:?} (expected bind, volume or tmpfs)"),
            ),
        }
    }

    /// Checks a named volume against the top-level `volumes` section.
    fn named_volume(&mut self, name: &str, pos: Pos) -> bool {
        let entry = self.volumes_decl.get(name).cloned();
        let Some(entry) = entry else {
            self.err(
                pos,
                format!("named volume {name:?} is not declared in the top-level `volumes` section (compose refuses this too)"),
            );
            return false;
        };
        if let Kind::Map(_) = &entry.kind {
            for (key, k, v) in self
                .entries(&entry, &format!("volume {name:?}"))
                .unwrap_or_default()
            {
                match key {
                    "external" => {
                        let external = match &v.kind {
                            Kind::Map(_) => true,
                            _ => self.boolean(v, "external").unwrap_or(false),
                        };
                        if external {
                            self.refuse(
                                k.pos,
                                &format!("volumes.{name}.external"),
                                "an external volume's data lives outside the run",
                            );
                            return false;
                        }
                    }
                    "driver" => {
                        let d = self.string(v, "driver", false, false);
                        if d.as_deref() != Some("local") {
                            self.refuse(
                                k.pos,
                                &format!("volumes.{name}.driver"),
                                "drydock's run volumes use the local driver",
                            );
                            return false;
                        }
                    }
                    "driver_opts"
                        if !matches!(&v.kind, Kind::Map(es) if es.is_empty())
                            && v.scalar_type() != Some(ScalarType::Null) =>
                    {
                        self.refuse(
                            k.pos,
                            &format!("volumes.{name}.driver_opts"),
                            "driver options (such as a bind of a host folder) are not reproduced",
                        );
                        return false;
                    }
                    _ => {}
                }
            }
        }
        true
    }

    // ----- healthcheck -------------------------------------------------------------

    fn healthcheck(&mut self, node: &Node) -> Option<ComposeHealthcheck> {
        let entries = self.entries(node, "healthcheck")?;
        let mut hc = ComposeHealthcheck {
            test: Vec::new(),
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
            start_interval: None,
        };
        let mut disabled = false;
        for (key, k, v) in entries {
            match key {
                _ if key.starts_with("x-") => {}
                "test" => match self.health_test(v) {
                    Some(Some(test)) => hc.test = test,
                    Some(None) => disabled = true,
                    None => {}
                },
                "interval" => hc.interval = self.health_duration(v, key),
                "timeout" => hc.timeout = self.health_duration(v, key),
                "start_period" => hc.start_period = self.health_duration(v, key),
                "start_interval" => hc.start_interval = self.health_duration(v, key),
                "retries" => {
                    let n = match (&v.kind, v.scalar_type()) {
                        (Kind::Scalar { text, .. }, Some(ScalarType::Int)) => Some(text.clone()),
                        (_, Some(ScalarType::Str)) => self.string(v, "retries", false, false),
                        _ => {
                            self.err(
                                v.pos,
                                format!(
                                    "expected retries as a whole number, found {}",
                                    v.describe()
                                ),
                            );
                            None
                        }
                    };
                    if let Some(n) = n {
                        match n.trim().parse::<u32>() {
                            Ok(0) => hc.retries = None,
                            Ok(r) => hc.retries = Some(r),
                            Err(_) => self.err(
                                v.pos,
                                format!("expected retries as a whole number, found {n:?}"),
                            ),
                        }
                    }
                }
                "disable" => disabled |= self.boolean(v, "disable").unwrap_or(false),
                _ => {
                    let hint = match suggest(key, HEALTHCHECK_KEYS) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => String::new(),
                    };
                    self.err(k.pos, format!("unknown key `{key}` in healthcheck{hint}"));
                }
            }
        }
        (!disabled).then_some(hc)
    }

    /// `Some(Some(argv))`, `Some(None)` for `NONE` (disabled), `None` on error.
    fn health_test(&mut self, node: &Node) -> Option<Option<Vec<String>>> {
        const SHELL: [&str; 2] = ["/bin/sh", "-c"];
        match &node.kind {
            Kind::Seq(items) => {
                let before = self.errors.len();
                let words: Vec<String> = items
                    .iter()
                    .filter_map(|i| self.string(i, "an item of healthcheck test", true, false))
                    .collect();
                if self.errors.len() > before {
                    return None;
                }
                let Some((first, rest)) = words.split_first() else {
                    // An empty test keeps the image's HEALTHCHECK command.
                    return Some(Some(Vec::new()));
                };
                match first.as_str() {
                    "NONE" => Some(None),
                    "CMD" | "CMD-SHELL" if rest.is_empty() => {
                        self.err(
                            node.pos,
                            format!("healthcheck test {first} needs a command after it"),
                        );
                        None
                    }
                    "CMD" => Some(Some(rest.to_vec())),
                    "CMD-SHELL" => Some(Some(
                        SHELL
                            .iter()
                            .map(|s| s.to_string())
                            .chain(rest.iter().cloned())
                            .collect(),
                    )),
                    _ => {
                        self.err(
                            node.pos,
                            format!("healthcheck test must start with CMD, CMD-SHELL or NONE, found {first:?} (or write the test as one string for the shell)"),
                        );
                        None
                    }
                }
            }
            _ => {
                let s = self.string(node, "healthcheck test", false, false)?;
                if s.trim().is_empty() {
                    self.err(node.pos, "healthcheck test must not be empty");
                    return None;
                }
                Some(Some(
                    SHELL.iter().map(|x| x.to_string()).chain([s]).collect(),
                ))
            }
        }
    }

    fn health_duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let s = self.string(node, key, false, false)?;
        match parse_go_duration(&s) {
            Ok(d) if d.is_zero() => None,
            Ok(d) if d < Duration::from_millis(1) => {
                self.err(node.pos, format!("healthcheck {key} must be at least 1ms (the engine refuses shorter), found {s:?}"));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                self.err(node.pos, format!("healthcheck {key}: {m}"));
                None
            }
        }
    }
}

/// `false`, or a string compose casts to false (`"false"`, `no`, `off`, `n`).
fn is_false(v: &Node) -> bool {
    match (&v.kind, v.scalar_type()) {
        (_, Some(ScalarType::Bool(b))) => !b,
        (Kind::Scalar { text, .. }, Some(ScalarType::Str)) => {
            matches!(
                text.to_ascii_lowercase().as_str(),
                "false" | "no" | "off" | "n"
            )
        }
        _ => false,
    }
}

/// For notes on `networks` and `links`: the aliases that will not resolve.
fn aliases_of(key: &str, v: &Node) -> String {
    let mut aliases = Vec::new();
    match (key, &v.kind) {
        ("networks", Kind::Map(nets)) => {
            for (_, net) in nets {
                if let Kind::Map(opts) = &net.kind {
                    for (k, a) in opts {
                        if matches!(&k.kind, Kind::Scalar { text, .. } if text == "aliases") {
                            if let Kind::Seq(items) = &a.kind {
                                for i in items {
                                    if let Kind::Scalar { text, .. } = &i.kind {
                                        aliases.push(text.clone());
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        ("links", Kind::Seq(items)) => {
            for i in items {
                if let Kind::Scalar { text, .. } = &i.kind {
                    if let Some((_, alias)) = text.split_once(':') {
                        aliases.push(alias.to_string());
                    }
                }
            }
        }
        _ => {}
    }
    if aliases.is_empty() {
        String::new()
    } else {
        format!(
            " (the aliases {} do not resolve in a pipeline run)",
            aliases.join(", ")
        )
    }
}

/// Splits a short volume spec at `:` as compose-go's `format.ParseVolume`
/// does (a one-letter first part followed by `:` is a Windows drive; specs of
/// one or two characters are a target alone).
fn split_volume_spec(spec: &str) -> Result<Vec<String>, String> {
    if spec.is_empty() {
        return Err("empty volume".to_string());
    }
    if spec.chars().count() <= 2 {
        return Ok(vec![spec.to_string()]);
    }
    let mut parts = Vec::new();
    let mut buf = String::new();
    for c in spec.chars() {
        let drive = c == ':'
            && parts.is_empty()
            && buf.chars().count() == 1
            && buf.chars().all(char::is_alphabetic);
        if c == ':' && !drive {
            if buf.is_empty() {
                return Err("empty section between colons".to_string());
            }
            parts.push(std::mem::take(&mut buf));
        } else {
            buf.push(c);
        }
    }
    if buf.is_empty() {
        return Err("empty section between colons".to_string());
    }
    parts.push(buf);
    Ok(parts)
}

/// compose-go's `isFilePath`: a source starting with `.`, `/` or `~` (or a
/// Windows path) is a host path; anything else names a volume.
fn is_file_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~']) || source.starts_with("\\\\") || {
        let mut cs = source.chars();
        matches!((cs.next(), cs.next()), (Some(d), Some(':')) if d.is_alphabetic())
    }
}

/// Parses a duration as Go's `time.ParseDuration` (the syntax compose's
/// schema checks): `[-+]?(NUMBER UNIT)+` with decimal numbers and units `ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h` (`1m30s`, `1.5s`, `500ms`), or `0`.
/// Negative durations are refused.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 30s, 1m30s or 500ms, found {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after[..n];
            rest = &after[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut value = int.checked_mul(unit).ok_or_else(bad)?;
        // Fractions: at most 18 digits are significant for a nanosecond count.
        let frac: String = frac_part.chars().take(18).collect();
        if !frac.is_empty() {
            let num: u128 = frac.parse().map_err(|_| bad())?;
            let scale = 10u128.pow(frac.len() as u32);
            value = value.checked_add(num * unit / scale).ok_or_else(bad)?;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
    }
    if total > u128::from(u64::MAX) {
        return Err(bad());
    }
    if neg && total > 0 {
        return Err(format!("a duration must not be negative, found {s:?}"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A YAML number written as compose v2 writes it into a string (Go's
/// `fmt.Sprint` of what its YAML library decoded): `010` is octal 8, `0x1F`
/// is 31, `3.10` is `3.1`, `1e6` is `1e+06`.
pub(crate) fn go_number(text: &str, ty: ScalarType) -> String {
    let t = text.strip_prefix('+').unwrap_or(text);
    if ty == ScalarType::Int {
        let (neg, digits) = match t.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, t),
        };
        let parsed = if let Some(h) = digits.strip_prefix("0x") {
            i128::from_str_radix(h, 16).ok()
        } else if let Some(o) = digits.strip_prefix("0o") {
            i128::from_str_radix(o, 8).ok()
        } else if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            i128::from_str_radix(&digits[1..], 8).ok()
        } else {
            digits.parse::<i128>().ok()
        };
        if let Some(v) = parsed {
            let v = if neg { -v } else { v };
            if i128::from(i64::MIN) <= v && v <= i128::from(u64::MAX) {
                return v.to_string();
            }
        }
    }
    let f: f64 = match t.to_ascii_lowercase().trim_start_matches('-') {
        ".inf" => {
            if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        ".nan" => f64::NAN,
        _ => match t.parse() {
            Ok(f) => f,
            Err(_) => return text.to_string(),
        },
    };
    go_float(f)
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // strconv's 'g' with the shortest precision switches to an exponent
    // below 1e-4 and from 1e6 on ("if precision was the shortest possible,
    // use precision 6 for this decision").
    if !(-4..6).contains(&exp) {
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    format!("{f}")
}

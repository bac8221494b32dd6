//! From a positioned YAML tree to a validated [`Pipeline`], collecting every
//! problem with its position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::dockerfile;
use super::duration::parse_duration;
use super::error::Diagnostic;
use super::interpolate::{interpolate, Vars};
use super::model::*;
use super::text::suggest;
use super::tree::{Kind, Node, Pos, ScalarType};

mod compose_service;
mod controls;

#[cfg(test)]
pub(crate) use compose_service::COMPOSE_KEYS;
#[cfg(test)]
pub(crate) use controls::SECRET_KEYS;

pub(crate) const ROOT_KEYS: &[&str] = &[
    "version", "name", "build", "builds", "secrets", "services", "tiers", "release", "reuse",
];
pub(crate) const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args", "trust", "secrets"];
pub(crate) const NAMED_BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "target",
    "args",
    "trust",
    "secrets",
];
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "compose",
    "env",
    "env_file",
    "command",
    "entrypoint",
    "user",
    "workdir",
    "mounts",
    "ready",
];
pub(crate) const READY_KEYS: &[&str] = &["postgres", "exec", "healthcheck", "timeout", "interval"];
pub(crate) const POSTGRES_KEYS: &[&str] = &["user", "password", "database"];
pub(crate) const TIER_KEYS: &[&str] = &["name", "build", "services", "steps", "when"];
pub(crate) const STEP_KEYS: &[&str] = &[
    "name",
    "build",
    "image",
    "command",
    "script",
    "entrypoint",
    "user",
    "env",
    "env_file",
    "workdir",
    "mounts",
    "copy",
    "timeout",
    "junit",
    "collect",
    "network",
    "needs",
    "when",
    "retry",
    "allow_failure",
    "matrix",
    "secrets",
    "cache",
    "reuse",
];
pub(crate) const RELEASE_KEYS: &[&str] = &["target", "name", "channel", "registry"];

/// A mapping whose keys have been checked against the allowed set.
pub(crate) struct Fields<'a> {
    /// Where "missing key" problems are reported.
    owner: Pos,
    /// What the mapping is, for messages (`step "unit"`, `the build section`).
    what: String,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
    /// Allowed keys that an unknown key of the mapping looks like a
    /// misspelling of (`comand` → `command`): already reported as such.
    misspelt: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// Whether one of `keys` was given misspelt: its absence is then not
    /// reported again ("did you mean `command`?" says it all, where "needs
    /// `command`" would mislead).
    pub(crate) fn misspelt(&self, keys: &[&str]) -> bool {
        self.misspelt.iter().any(|m| keys.contains(m))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.2)
    }

    pub(crate) fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.1.pos)
    }
}

/// Positions kept beside a tier for the cross-reference checks.
struct TierRefs {
    name: Option<String>,
    build: Vec<(String, Pos)>,
    services: Vec<(String, Pos)>,
    /// Every step's build use: (step index in the tier, build, position,
    /// the step's matrix variables).
    step_builds: Vec<StepBuild>,
    /// Every step's `needs` entries: (step index in the tier, entries).
    step_needs: Vec<(usize, Vec<(String, Pos)>)>,
    /// The `name:` of every step item of the tier, valid or not (so that a
    /// need of a broken pipeline is checked against what is declared).
    declared_steps: Vec<String>,
    /// The `needs` entries of steps that were refused.
    broken_needs: Vec<Vec<(String, Pos)>>,
}

/// A step's use of a build.
struct StepBuild {
    /// Index of the step in its tier.
    index: usize,
    /// The step's name.
    step: String,
    /// The build's name.
    build: String,
    /// Where the build was named.
    pos: Pos,
    /// The step's matrix variables, if any.
    vars: Option<Vars>,
}

/// Positions kept beside a service.
struct ServiceRefs {
    name_pos: Pos,
    build: Option<(String, Pos)>,
}

/// A step (tier index, step index) whose build got a variant's name.
type Rename = ((usize, usize), String);

/// Problems in the pipeline file (positions in it), and in other files it names.
pub(crate) type Problems = (Vec<(Pos, String)>, Vec<Diagnostic>);

/// The version-1 top-level `build:` block: one context whose targets are
/// used by name.
struct LegacyBuild {
    base: BuildBase,
}

/// A build declaration but its args, which are interpolated per use (a
/// matrix step may give them variables): `spec.args` is empty until then.
struct BuildBase {
    spec: BuildSpec,
    args: BuildArgs,
}

/// A build's args before interpolation.
#[derive(Clone)]
enum BuildArgs {
    /// None given.
    None,
    /// The pipeline's `args:` mapping, interpolated per use.
    Node(Node),
    /// Already resolved (a compose service's build).
    Fixed(BTreeMap<String, String>),
}

/// An entry of `builds:` and where its name was given.
struct NamedBuild {
    base: BuildBase,
    name_pos: Pos,
    /// Made for a compose service's `build:`.
    from_compose: bool,
}

/// Every use of a build name, for resolution.
struct BuildUse {
    name: String,
    pos: Pos,
    /// Index of the tier that needs it (`usize::MAX`: the release).
    tier: usize,
    /// The step (tier index, step index) that uses it, if a step does.
    step: Option<(usize, usize)>,
    /// The using step's matrix variables, if any.
    vars: Option<Vars>,
}

pub(crate) struct Checker<'v> {
    vars: &'v Vars,
    /// Variables of the matrix combination being checked (they win over `vars`).
    matrix_vars: Option<Vars>,
    /// Names under `secrets:` (`None`: the pipeline has no secrets section).
    declared_secrets: Option<HashSet<String>>,
    repo_root: PathBuf,
    pub(crate) errors: Vec<(Pos, String)>,
    /// Every service name given under `services:`, valid or not (so that a
    /// broken service is not reported again as unknown where it is used).
    declared_services: HashSet<String>,
    /// Names under `builds:` whose declaration was refused (already
    /// reported: a use of one is not reported again as unknown).
    broken_builds: HashSet<String>,
    /// Problems located in other files (Dockerfiles, env files, compose files).
    foreign: Vec<Diagnostic>,
    /// The `secrets:` section.
    secrets: Vec<SecretSpec>,
    /// Builds of services taken from a compose file (`compose.<service>`).
    compose_builds: Vec<NamedBuild>,
    /// Dockerfiles read so far, by path.
    dockerfiles: HashMap<PathBuf, Result<Vec<dockerfile::Stage>, ()>>,
    /// The pipeline's `reuse:` (steps without their own inherit it).
    pipeline_reuse: Option<Reuse>,
}

impl<'v> Checker<'v> {
    pub(crate) fn new(vars: &'v Vars, repo_root: PathBuf) -> Self {
        Checker {
            vars,
            matrix_vars: None,
            declared_secrets: None,
            repo_root,
            errors: Vec::new(),
            declared_services: HashSet::new(),
            broken_builds: HashSet::new(),
            foreign: Vec::new(),
            secrets: Vec::new(),
            compose_builds: Vec::new(),
            dockerfiles: HashMap::new(),
            pipeline_reuse: None,
        }
    }

    /// How a file other than the pipeline is named in diagnostics: relative
    /// to the current folder when it is below it, else absolute.
    fn label_of(path: &Path) -> String {
        let cwd = std::env::current_dir().ok();
        match cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
            Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
            _ => path.display().to_string(),
        }
    }

    /// Records a problem located in another file.
    fn foreign_err(&mut self, file: &Path, line: usize, col: usize, message: impl Into<String>) {
        self.foreign.push(Diagnostic {
            file: Self::label_of(file),
            line,
            col,
            message: message.into(),
        });
    }

    /// The stages of a Dockerfile (read once); a problem reading it is
    /// reported in the Dockerfile itself and gives `None`.
    fn stages(&mut self, path: &Path) -> Option<Vec<dockerfile::Stage>> {
        if let Some(known) = self.dockerfiles.get(path) {
            return known.clone().ok();
        }
        let read = dockerfile::read_stages(path);
        let result = match read {
            Ok(stages) => Ok(stages),
            Err(e) => {
                self.foreign_err(path, e.line, e.col, e.message);
                Err(())
            }
        };
        self.dockerfiles.insert(path.to_path_buf(), result.clone());
        result.ok()
    }

    pub(crate) fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push((pos, message.into()));
    }

    /// Validates the whole document. On failure, every problem in file order.
    /// On failure: the problems in the pipeline file (in file order), and
    /// those in other files it names (Dockerfiles, env files, compose files).
    pub(crate) fn check(mut self, root: &Node, source_path: PathBuf) -> Result<Pipeline, Problems> {
        let pipeline = self.pipeline(root, source_path);
        if self.errors.is_empty() && self.foreign.is_empty() {
            if let Some(p) = pipeline {
                return Ok(p);
            }
            self.err(root.pos, "invalid pipeline");
        }
        self.errors.sort_by_key(|e| e.0);
        self.errors.dedup();
        self.foreign.dedup();
        Err((self.errors, self.foreign))
    }

    // ----- generic shapes -------------------------------------------------

    pub(crate) fn fields<'a>(
        &mut self,
        node: &'a Node,
        owner: Pos,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<Fields<'a>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a mapping for {what}, found {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut misspelt = Vec::new();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (k, v) in entries {
            let Some(key) = self.key_text(k) else {
                continue;
            };
            if !allowed.contains(&key) {
                let hint = match suggest(key, allowed) {
                    Some(s) => {
                        misspelt.push(s);
                        format!("did you mean `{s}`? ")
                    }
                    None => String::new(),
                };
                self.err(
                    k.pos,
                    format!(
                        "unknown key `{key}` in {what} ({hint}expected one of: {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            if let Some(first) = seen.get(key) {
                self.err(
                    k.pos,
                    format!("duplicate key `{key}` (first given at {first})"),
                );
                continue;
            }
            seen.insert(key, k.pos);
            out.push((key, k, v));
        }
        // A misspelt key that is also given correctly is just unknown.
        misspelt.retain(|m| !out.iter().any(|(k, _, _)| k == m));
        Some(Fields {
            owner,
            what: what.to_string(),
            entries: out,
            misspelt,
        })
    }

    /// The text of a mapping key; keys must be plain scalars.
    pub(crate) fn key_text<'a>(&mut self, k: &'a Node) -> Option<&'a str> {
        match &k.kind {
            Kind::Scalar { text, .. } if !matches!(k.scalar_type(), Some(ScalarType::Null)) => {
                Some(text.as_str())
            }
            _ => {
                self.err(
                    k.pos,
                    format!("expected a key name, found {}", k.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn required<'a>(&mut self, f: &Fields<'a>, key: &str) -> Option<&'a Node> {
        let v = f.get(key);
        if v.is_none() && !f.misspelt(&[key]) {
            let what = f.what.clone();
            self.err(
                f.owner,
                format!("{what} is missing the required key `{key}`"),
            );
        }
        v
    }

    /// A string value, interpolated.
    pub(crate) fn string(&mut self, node: &Node) -> Option<String> {
        let raw = self.raw_string(node, "a string")?;
        let vars = self.matrix_vars.as_ref().unwrap_or(self.vars);
        match interpolate(raw, vars) {
            // No command line, environment or file name can hold a NUL.
            Ok(s) if s.contains('\0') => {
                self.err(
                    node.pos,
                    "a NUL character cannot appear in a value (no argument, environment variable or path can hold one)",
                );
                None
            }
            Ok(s) => Some(s),
            Err(msg) => {
                self.err(node.pos, msg);
                None
            }
        }
    }

    /// The text of a string scalar (no interpolation); `expected` names the
    /// wanted thing in the error.
    fn raw_string<'a>(&mut self, node: &'a Node, expected: &str) -> Option<&'a str> {
        match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { text, .. }, Some(ScalarType::Str)) => Some(text),
            (
                Kind::Scalar { text, .. },
                Some(ScalarType::Int | ScalarType::Float | ScalarType::Bool(_)),
            ) => {
                self.err(
                    node.pos,
                    format!(
                        "expected {expected}, found {} (quote it to use it as text: \"{text}\")",
                        node.describe()
                    ),
                );
                None
            }
            _ => {
                self.err(
                    node.pos,
                    format!("expected {expected}, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A list of strings, each interpolated, with positions. Bad items are
    /// reported and left out.
    pub(crate) fn strings(&mut self, node: &Node) -> Option<Vec<(String, Pos)>> {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a list of strings, found {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(s) = self.string(item) {
                out.push((s, item.pos));
            }
        }
        Some(out)
    }

    /// An argv: a non-empty list of strings.
    pub(crate) fn argv(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        if !matches!(node.kind, Kind::Seq(_)) {
            self.err(
                node.pos,
                format!(
                    "expected {what} as a list (an argv such as [pytest, -q]), found {}",
                    node.describe()
                ),
            );
            return None;
        }
        let before = self.errors.len();
        let items = self.strings(node)?;
        if self.errors.len() > before {
            return None;
        }
        if items.is_empty() {
            self.err(node.pos, format!("{what} must not be empty"));
            return None;
        }
        Some(items.into_iter().map(|(s, _)| s).collect())
    }

    /// A mapping of variable names to string values (env, build args).
    pub(crate) fn string_map(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Option<BTreeMap<String, String>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a mapping for {what}, found {}", node.describe()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (k, v) in entries {
            let Some(key) = self.key_text(k) else {
                continue;
            };
            if let Some(first) = seen.get(key) {
                self.err(
                    k.pos,
                    format!("duplicate key `{key}` (first given at {first})"),
                );
                continue;
            }
            seen.insert(key, k.pos);
            if !is_var_name(key) {
                self.err(
                    k.pos,
                    format!("invalid name `{key}` in {what}: expected [A-Za-z_][A-Za-z0-9_]*"),
                );
                continue;
            }
            if let Some(value) = self.string(v) {
                out.insert(key.to_string(), value);
            }
        }
        Some(out)
    }

    /// `reuse: true | false | always` (see [`Reuse`]).
    fn reuse(&mut self, node: &Node) -> Option<Reuse> {
        match (node.scalar_type(), &node.kind) {
            (Some(ScalarType::Bool(true)), _) => Some(Reuse::Passed),
            (Some(ScalarType::Bool(false)), _) => Some(Reuse::Never),
            (Some(ScalarType::Str), Kind::Scalar { text, .. }) if text == "always" => {
                Some(Reuse::Always)
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected true, false or always (reuse a stored result even when it failed), found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node) -> Option<bool> {
        match node.scalar_type() {
            Some(ScalarType::Bool(b)) => Some(b),
            _ => {
                self.err(
                    node.pos,
                    format!("expected true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, node: &Node) -> Option<Duration> {
        let text = match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { text, .. }, Some(ScalarType::Int | ScalarType::Float)) => text.clone(),
            (_, Some(ScalarType::Str)) => self.string(node)?,
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected a duration like 30s, 5m or 1h30m, found {}",
                        node.describe()
                    ),
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(msg) => {
                self.err(node.pos, msg);
                None
            }
        }
    }

    /// A name (interpolated) checked against a pattern.
    pub(crate) fn name(&mut self, node: &Node, what: &str, lower: bool) -> Option<String> {
        let s = self.string(node)?;
        self.check_name(&s, node.pos, what, lower).then_some(s)
    }
    /// The required `version: 1` of a document (the integer 1, not the
    /// string "1").
    pub(crate) fn version_1(&mut self, f: &Fields) {
        if let Some(v) = self.required(f, "version") {
            let ok = matches!(&v.kind, Kind::Scalar { text, .. } if text == "1")
                && v.scalar_type() == Some(ScalarType::Int);
            if !ok {
                self.err(
                    v.pos,
                    format!("unsupported version: expected 1, found {}", v.describe()),
                );
            }
        }
    }

    /// The entries of a mapping of names to things (`builds:`, `services:`
    /// of a pipeline or a deploy config): each name checked
    /// ([`Checker::check_name`]; `lower`: lower case only) and taken once —
    /// a repeated name is reported with where it was first defined and left
    /// out. `thing` says what the values are (`build`, `service`). Returns
    /// `(name, key position, value, whether the name is valid)`.
    pub(crate) fn named_entries<'n>(
        &mut self,
        node: &'n Node,
        thing: &str,
        lower: bool,
    ) -> Vec<(String, Pos, &'n Node, bool)> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected a mapping of {thing} names to {thing}s, found {}",
                    node.describe()
                ),
            );
            return Vec::new();
        };
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(name) = self.key_text(k) else {
                continue;
            };
            if let Some(first) = seen.get(name) {
                self.err(
                    k.pos,
                    format!("duplicate {thing} `{name}` (first defined at {first})"),
                );
                continue;
            }
            seen.insert(name, k.pos);
            let ok = self.check_name(name, k.pos, &format!("{thing} name"), lower);
            out.push((name.to_string(), k.pos, v, ok));
        }
        out
    }

    pub(crate) fn check_name(&mut self, s: &str, pos: Pos, what: &str, lower: bool) -> bool {
        if s.len() > MAX_NAME_LENGTH {
            self.err(
                pos,
                format!(
                    "{what} is {} characters long; names have at most {MAX_NAME_LENGTH} (they become network aliases, container names and image tags)",
                    s.chars().count()
                ),
            );
            return false;
        }
        if is_name(s, lower) {
            return true;
        }
        let pattern = if lower {
            "[a-z0-9][a-z0-9_.-]*"
        } else {
            "[A-Za-z0-9][A-Za-z0-9_.-]*"
        };
        self.err(pos, format!("invalid {what} {s:?}: expected {pattern}"));
        false
    }

    /// An image reference in docker's grammar (`[host[:port]/]path[:tag][@digest]`,
    /// lowercase path components), checked as `docker run` would check it.
    pub(crate) fn image_ref(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node)?;
        if let Err(why) = check_image_reference(&s) {
            self.err(
                node.pos,
                format!("invalid image reference {s:?}: {why} (expected [host[:port]/]name[:tag][@digest], such as drydock/python:3.11)"),
            );
            return None;
        }
        Some(s)
    }

    /// `image:` xor `build:` on a step or service.
    fn image_source(&mut self, f: &Fields, owner_what: &str) -> Option<(ImageSource, Option<Pos>)> {
        match (f.get("image"), f.get("build")) {
            (Some(_), Some(_)) => {
                let later = f
                    .key_pos("image")
                    .max(f.key_pos("build"))
                    .unwrap_or(f.owner);
                self.err(
                    later,
                    format!("{owner_what} has both `image` and `build`: give exactly one"),
                );
                None
            }
            (None, None) => {
                if !f.misspelt(&["image", "build"]) {
                    self.err(
                        f.owner,
                        format!(
                            "{owner_what} needs exactly one of `image` (an image reference) or `build` (the name of a build)"
                        ),
                    );
                }
                None
            }
            (Some(img), None) => Some((ImageSource::Image(self.image_ref(img)?), None)),
            (None, Some(t)) => {
                let build = self.name(t, "build name", false)?;
                Some((ImageSource::Build(build), Some(t.pos)))
            }
        }
    }

    fn abs_container_path(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node)?;
        super::paths::container_path(&s, what)
            .map(|()| s)
            .map_err(|e| self.err(node.pos, e))
            .ok()
    }

    /// Resolves a repository-relative path: must exist and stay inside the
    /// repository root after canonicalization.
    fn repo_path(&mut self, rel: &str, pos: Pos, what: &str) -> Option<PathBuf> {
        if Path::new(rel).is_absolute() {
            self.err(
                pos,
                format!("{what} {rel:?} must be relative to the repository root"),
            );
            return None;
        }
        super::paths::resolve(&self.repo_root, rel, &self.repo_root, what)
            .map_err(|e| self.err(pos, e))
            .ok()
    }

    // ----- sections ---------------------------------------------------------

    fn pipeline(&mut self, root: &Node, source_path: PathBuf) -> Option<Pipeline> {
        let f = self.fields(root, Pos::START, "the pipeline file", ROOT_KEYS)?;

        self.version_1(&f);
        let name = self
            .required(&f, "name")
            .and_then(|n| self.name(n, "pipeline name", true));

        if let Some(node) = f.get("secrets") {
            self.secrets_section(node);
        }
        if let Some(node) = f.get("reuse") {
            self.pipeline_reuse = self.reuse(node);
        }
        let legacy_key = f.key_pos("build");
        let legacy = f
            .get("build")
            .map(|b| self.legacy_build(b, legacy_key.unwrap_or(b.pos)));
        let mut named = match f.get("builds") {
            Some(b) => self.named_builds(b),
            None => Vec::new(),
        };

        let mut services = Vec::new();
        let mut service_refs = Vec::new();
        if let Some(s) = f.get("services") {
            self.services(s, &mut services, &mut service_refs);
        }

        named.append(&mut self.compose_builds);
        let mut tiers = Vec::new();
        let mut tier_refs = Vec::new();
        if let Some(t) = self.required(&f, "tiers") {
            self.tiers(t, &mut tiers, &mut tier_refs);
        }

        let release_key = f.key_pos("release");
        let release = f
            .get("release")
            .map(|r| (self.release(r, release_key.unwrap_or(r.pos)), r));

        // ----- cross references ----------------------------------------------
        let listed_at = self.check_build_lists(&tier_refs);
        self.check_steps(&tier_refs, &listed_at);
        self.check_services(&services, &service_refs, &tier_refs, &listed_at);
        let mut uses = Vec::new();
        for (i, tier) in tier_refs.iter().enumerate() {
            for (build, pos) in &tier.build {
                uses.push(BuildUse {
                    name: build.clone(),
                    pos: *pos,
                    tier: i,
                    step: None,
                    vars: None,
                });
            }
            for (service, _) in &tier.services {
                if let Some((spec, r)) = services
                    .iter()
                    .zip(&service_refs)
                    .find(|(s, _)| &s.name == service)
                {
                    if let (ImageSource::Build(b), Some((_, pos))) = (&spec.image, &r.build) {
                        uses.push(BuildUse {
                            name: b.clone(),
                            pos: *pos,
                            tier: i,
                            step: None,
                            vars: None,
                        });
                    }
                }
            }
            for b in &tier.step_builds {
                uses.push(BuildUse {
                    name: b.build.clone(),
                    pos: b.pos,
                    tier: i,
                    step: Some((i, b.index)),
                    vars: b.vars.clone(),
                });
            }
        }
        // Services no tier lists are reported by check_services; their builds
        // are still resolved so that a bad name is reported too.
        for (spec, r) in services.iter().zip(&service_refs) {
            if let (ImageSource::Build(b), Some((_, pos))) = (&spec.image, &r.build) {
                uses.push(BuildUse {
                    name: b.clone(),
                    pos: *pos,
                    tier: usize::MAX,
                    step: None,
                    vars: None,
                });
            }
        }
        if let Some((Some(rel), node)) = &release {
            let pos = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "target"))
                    .map(|(_, v)| v.pos)
                    .unwrap_or(node.pos),
                _ => node.pos,
            };
            uses.push(BuildUse {
                name: rel.target.clone(),
                pos,
                tier: usize::MAX,
                step: None,
                vars: None,
            });
        }
        let (builds, renames) = self.resolve_builds(legacy.as_ref(), named, &uses);
        for ((t, s), name) in renames {
            if let Some(step) = tiers.get_mut(t).and_then(|t| t.steps.get_mut(s)) {
                step.image = ImageSource::Build(name);
            }
        }
        self.resolve_needs(&mut tiers, &tier_refs);

        let release = match release {
            Some((r, _)) => Some(r?),
            None => None,
        };
        Some(Pipeline {
            name: name?,
            builds,
            services,
            tiers,
            release,
            secrets: self.secrets.clone(),
            source_path,
            repo_root: self.repo_root.clone(),
        })
    }

    /// The builds the pipeline uses, in the order of their first use; every
    /// name used must be a `builds:` entry or a stage of the version-1 build
    /// block's Dockerfile (`legacy`: `None` when absent, `Some(None)` when
    /// present but invalid, in which case its targets are not reported again).
    ///
    /// A build's args are interpolated for each use: a matrix step's
    /// variables may change them, and a build used with two different arg
    /// sets is two builds (the second named `<build> [VAR=value, …]`).
    /// Returns the builds and the steps whose build got such a name.
    fn resolve_builds(
        &mut self,
        legacy: Option<&Option<LegacyBuild>>,
        named: Vec<NamedBuild>,
        uses: &[BuildUse],
    ) -> (Vec<BuildSpec>, Vec<Rename>) {
        let mut out: Vec<BuildSpec> = Vec::new();
        // (declared name, the name given to the variant) per variant.
        let mut variants: Vec<(String, String)> = Vec::new();
        let mut renames = Vec::new();
        let mut reported: HashSet<String> = HashSet::new();
        let mut used_named: HashSet<String> = HashSet::new();
        let mut order: Vec<&BuildUse> = uses.iter().collect();
        // Tier order first (stable: file order within a tier), then the
        // rest; uses without matrix variables first, so that the plain name
        // goes to the plain build.
        order.sort_by_key(|u| (u.tier, u.vars.is_some()));
        for u in order {
            if reported.contains(&u.name) {
                continue;
            }
            let Some((mut spec, args)) = self.declared_build(u, legacy, &named, &mut used_named)
            else {
                reported.insert(u.name.clone());
                continue;
            };
            // Args, with the use's matrix variables.
            let saved = std::mem::replace(&mut self.matrix_vars, u.vars.clone());
            let before = self.errors.len();
            let interpolated = match &args {
                BuildArgs::Node(node) => self.string_map(node, "build args"),
                BuildArgs::Fixed(args) => Some(args.clone()),
                BuildArgs::None => Some(BTreeMap::new()),
            };
            self.matrix_vars = saved;
            let Some(interpolated) = interpolated.filter(|_| self.errors.len() == before) else {
                continue;
            };
            spec.args = interpolated;
            let existing = variants
                .iter()
                .filter(|(declared, _)| declared == &u.name)
                .filter_map(|(_, given)| out.iter().find(|b| &b.name == given))
                .find(|b| b.args == spec.args)
                .map(|b| b.name.clone());
            let given = match existing {
                Some(name) => name,
                None => {
                    let taken = variants.iter().any(|(declared, _)| declared == &u.name);
                    let given = if !taken {
                        u.name.clone()
                    } else {
                        // Named by the args that make it differ.
                        let differing: Vec<String> = spec
                            .args
                            .iter()
                            .filter(|(k, v)| {
                                out.iter()
                                    .find(|b| b.name == u.name)
                                    .is_none_or(|b| b.args.get(*k) != Some(*v))
                            })
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        format!("{} [{}]", u.name, differing.join(", "))
                    };
                    spec.name = given.clone();
                    variants.push((u.name.clone(), given.clone()));
                    out.push(spec);
                    given
                }
            };
            if let (Some(step), true) = (u.step, given != u.name) {
                renames.push((step, given));
            }
        }
        // A mistyped name would also make its build look unused: say it once.
        // (A compose service's build is its service's: reported with it.)
        let unknown_names = !reported.is_empty();
        for n in named.iter().filter(|n| !n.from_compose) {
            if !used_named.contains(&n.base.spec.name) && !unknown_names {
                self.err(
                    n.name_pos,
                    format!(
                        "build `{}` is not used by any step, service, tier or the release",
                        n.base.spec.name
                    ),
                );
            }
        }
        (out, renames)
    }

    /// The declaration a build use names (its spec without args, and its
    /// args node), or `None` after reporting why there is none.
    fn declared_build(
        &mut self,
        u: &BuildUse,
        legacy: Option<&Option<LegacyBuild>>,
        named: &[NamedBuild],
        used_named: &mut HashSet<String>,
    ) -> Option<(BuildSpec, BuildArgs)> {
        if let Some(n) = named.iter().find(|n| n.base.spec.name == u.name) {
            used_named.insert(u.name.clone());
            return Some((n.base.spec.clone(), n.base.args.clone()));
        }
        match legacy {
            Some(Some(l)) => {
                let path = l.base.spec.context.join(&l.base.spec.dockerfile);
                let stages = self.stages(&path)?;
                if dockerfile::has_stage(&stages, &u.name) {
                    let mut spec = l.base.spec.clone();
                    spec.name = u.name.clone();
                    spec.target = Some(u.name.clone());
                    return Some((spec, l.base.args.clone()));
                }
                let shown = Self::label_of(&path);
                self.err(
                    u.pos,
                    format!(
                        "unknown build `{}`: it is not a `builds:` entry, and {shown} has no stage named `{}` (its stages: {}){}",
                        u.name,
                        u.name,
                        dockerfile::describe(&stages),
                        if stages.iter().any(|s| s.name.is_none()) {
                            "; to build a Dockerfile's last stage, as `docker build` does, declare it under `builds:` without `target`"
                        } else {
                            ""
                        }
                    ),
                );
                None
            }
            Some(None) => None,
            // Declared, but its declaration was refused: said there.
            None if self.broken_builds.contains(&u.name) => None,
            None => {
                let known: Vec<&str> = named.iter().map(|n| n.base.spec.name.as_str()).collect();
                let hint = match suggest(&u.name, &known) {
                    Some(s) => format!("did you mean `{s}`? "),
                    None => String::new(),
                };
                let declared = if known.is_empty() {
                    "the pipeline declares no builds: add a `builds:` section".to_string()
                } else {
                    format!("declared builds: {}", known.join(", "))
                };
                self.err(
                    u.pos,
                    format!("unknown build `{}` ({hint}{declared})", u.name),
                );
                None
            }
        }
    }

    /// The `builds:` section: name → build.
    fn named_builds(&mut self, node: &Node) -> Vec<NamedBuild> {
        let mut out = Vec::new();
        for (name, pos, v, name_ok) in self.named_entries(node, "build", false) {
            match self.named_build(&name, v, pos) {
                Some(base) if name_ok => out.push(NamedBuild {
                    base,
                    name_pos: pos,
                    from_compose: false,
                }),
                _ => {
                    self.broken_builds.insert(name);
                }
            }
        }
        out
    }

    fn named_build(&mut self, name: &str, node: &Node, key_pos: Pos) -> Option<BuildBase> {
        let what = format!("build `{name}`");
        let f = self.fields(node, key_pos, &what, NAMED_BUILD_KEYS)?;
        let mut base = self.build_fields(&f, key_pos)?;
        let target_node = f.get("target");
        let target = match target_node {
            Some(t) => Some(self.name(t, "build target", false)?),
            None => None,
        };
        let path = base.spec.context.join(&base.spec.dockerfile);
        let stages = self.stages(&path)?;
        if let (Some(t), Some(node)) = (&target, target_node) {
            if !dockerfile::has_stage(&stages, t) {
                let shown = Self::label_of(&path);
                self.err(
                    node.pos,
                    format!(
                        "target `{t}` is not a stage of {shown} (its stages: {}; without `target` the last stage is built)",
                        dockerfile::describe(&stages)
                    ),
                );
                return None;
            }
        }
        base.spec.name = name.to_string();
        base.spec.target = target;
        Some(base)
    }

    /// `context`, `dockerfile`, `trust` and `secrets` of a build mapping,
    /// and its `args` node (interpolated per use).
    fn build_fields(&mut self, f: &Fields, owner: Pos) -> Option<BuildBase> {
        let context_node = self.required(f, "context");
        let context = context_node.and_then(|c| {
            let rel = self.string(c)?;
            let path = self.repo_path(&rel, c.pos, "build context")?;
            if !path.is_dir() {
                self.err(c.pos, format!("build context {rel:?} is not a directory"));
                return None;
            }
            Some(path)
        });
        let dockerfile_node = f.get("dockerfile");
        let dockerfile = match dockerfile_node {
            Some(d) => self.string(d),
            None => Some("Dockerfile".to_string()),
        };
        let mut dockerfile_ok = false;
        if let (Some(ctx), Some(df)) = (&context, &dockerfile) {
            let pos = dockerfile_node
                .or(context_node)
                .map(|n| n.pos)
                .unwrap_or(owner);
            dockerfile_ok = self.check_dockerfile(ctx, df, pos);
        }
        // Checked for shape here, interpolated for each use.
        let args = match f.get("args") {
            Some(a) if !matches!(a.kind, Kind::Map(_)) => {
                self.err(
                    a.pos,
                    format!("expected a mapping for build args, found {}", a.describe()),
                );
                return None;
            }
            Some(a) => BuildArgs::Node(a.clone()),
            None => BuildArgs::None,
        };
        let trust = match f.get("trust") {
            Some(t) => self.boolean(t),
            None => Some(true),
        };
        let secrets = match f.get("secrets") {
            Some(node) => self.secret_refs(node),
            None => Some(Vec::new()),
        };
        if !dockerfile_ok {
            return None;
        }
        Some(BuildBase {
            spec: BuildSpec {
                name: String::new(),
                context: context?,
                dockerfile: dockerfile?,
                target: None,
                args: BTreeMap::new(),
                trust: trust?,
                secrets: secrets?,
            },
            args,
        })
    }

    fn legacy_build(&mut self, node: &Node, owner: Pos) -> Option<LegacyBuild> {
        let f = self.fields(node, owner, "the build section", BUILD_KEYS)?;
        let base = self.build_fields(&f, owner)?;
        Some(LegacyBuild { base })
    }

    /// Whether `dockerfile` is a file inside `context`; reports why not.
    fn check_dockerfile(&mut self, context: &Path, dockerfile: &str, pos: Pos) -> bool {
        if dockerfile.is_empty() || Path::new(dockerfile).is_absolute() {
            self.err(
                pos,
                format!(
                    "dockerfile must be a path relative to the build context, found {dockerfile:?}"
                ),
            );
            return false;
        }
        let errors = self.errors.len();
        match context.join(dockerfile).canonicalize() {
            Ok(p) if !p.starts_with(context) => self.err(
                pos,
                format!(
                    "dockerfile {dockerfile:?} is outside the build context {}",
                    context.display()
                ),
            ),
            Ok(p) if !p.is_file() => self.err(
                pos,
                format!(
                    "dockerfile {dockerfile:?} in the build context {} is not a file",
                    context.display()
                ),
            ),
            Ok(_) => {}
            Err(_) => self.err(
                pos,
                format!(
                    "dockerfile {dockerfile:?} not found in the build context {}",
                    context.display()
                ),
            ),
        }
        self.errors.len() == errors
    }

    fn services(&mut self, node: &Node, out: &mut Vec<ServiceSpec>, refs: &mut Vec<ServiceRefs>) {
        for (name, pos, v, name_ok) in self.named_entries(node, "service", false) {
            self.declared_services.insert(name.clone());
            if let Some((spec, target)) = self.service(&name, v, pos) {
                if name_ok {
                    refs.push(ServiceRefs {
                        name_pos: pos,
                        build: target,
                    });
                    out.push(spec);
                }
            }
        }
    }

    fn service(
        &mut self,
        name: &str,
        node: &Node,
        key_pos: Pos,
    ) -> Option<(ServiceSpec, Option<(String, Pos)>)> {
        let what = format!("service `{name}`");
        let f = self.fields(node, key_pos, &what, SERVICE_KEYS)?;
        if let Some(compose) = f.get("compose") {
            return self.compose_service(name, &f, compose);
        }
        let image = self.image_source(&f, &what);
        let env = self.environment(&f);
        let command = match f.get("command") {
            Some(c) => self.argv(c, "command").map(Some),
            None => Some(None),
        };
        let entrypoint = self.entrypoint(&f);
        let user = self.user(&f);
        let workdir = match f.get("workdir") {
            Some(w) => self.abs_container_path(w, "workdir").map(Some),
            None => Some(None),
        };
        let mounts = match f.get("mounts") {
            Some(m) => self.mounts(m),
            None => Some(Vec::new()),
        };
        let ready = match f.get("ready") {
            Some(r) => self.ready(r, f.key_pos("ready").unwrap_or(r.pos)).map(Some),
            None => Some(None),
        };
        let (image, build_pos) = image?;
        let build = match (&image, build_pos) {
            (ImageSource::Build(t), Some(p)) => Some((t.clone(), p)),
            _ => None,
        };
        Some((
            ServiceSpec {
                name: name.to_string(),
                image,
                env: env?,
                command: command?,
                entrypoint: entrypoint?,
                user: user?,
                workdir: workdir?,
                mounts: mounts?,
                ready: ready?,
                compose: None,
            },
            build,
        ))
    }

    /// `env_file` (entries in file order) overlaid by `env`, as compose does.
    fn environment(&mut self, f: &Fields) -> Option<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        let mut ok = true;
        if let Some(files) = f.get("env_file") {
            let list: Vec<(String, Pos)> = match &files.kind {
                Kind::Seq(_) => self.strings(files)?,
                _ => vec![(self.string(files)?, files.pos)],
            };
            for (rel, pos) in list {
                let Some(path) = self.repo_path(&rel, pos, "env_file") else {
                    ok = false;
                    continue;
                };
                if !path.is_file() {
                    self.err(pos, format!("env_file {rel:?} is not a file"));
                    ok = false;
                    continue;
                }
                let vars = self.vars;
                let lookup = |name: &str| vars.get(name).map(str::to_string);
                match super::dotenv::read_env_file(&path, &Self::label_of(&path), &lookup) {
                    Ok(pairs) => env.extend(pairs),
                    Err(d) => {
                        self.foreign.push(d);
                        ok = false;
                    }
                }
            }
        }
        if let Some(e) = f.get("env") {
            env.extend(self.string_map(e, "env")?);
        }
        ok.then_some(env)
    }

    /// `entrypoint`: an argv, where `[]` clears the image's entrypoint.
    fn entrypoint(&mut self, f: &Fields) -> Option<Option<Vec<String>>> {
        let Some(node) = f.get("entrypoint") else {
            return Some(None);
        };
        if matches!(&node.kind, Kind::Seq(items) if items.is_empty()) {
            return Some(Some(Vec::new()));
        }
        self.argv(node, "entrypoint").map(Some)
    }

    /// `user`: `name`, `uid`, `name:group` or `uid:gid`, as `docker run --user`.
    fn user(&mut self, f: &Fields) -> Option<Option<String>> {
        let Some(node) = f.get("user") else {
            return Some(None);
        };
        let user = match node.scalar_type() {
            // `user: 1000` is as clear as `user: "1000"`.
            Some(ScalarType::Int) => match &node.kind {
                Kind::Scalar { text, .. } => text.clone(),
                _ => return None,
            },
            _ => self.string(node)?,
        };
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        let ok = match user.split_once(':') {
            Some((u, g)) => valid_part(u) && valid_part(g),
            None => valid_part(&user),
        };
        if !ok {
            self.err(
                node.pos,
                format!("invalid user {user:?}: expected a name or uid, optionally `:group` or `:gid` (as `docker run --user`)"),
            );
            return None;
        }
        Some(Some(user))
    }

    pub(crate) fn ready(&mut self, node: &Node, owner: Pos) -> Option<ReadySpec> {
        let f = self.fields(node, owner, "ready", READY_KEYS)?;
        let kinds: Vec<&str> = ["postgres", "exec", "healthcheck"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        let probe = match kinds.as_slice() {
            [] => {
                if !f.misspelt(&["postgres", "exec", "healthcheck"]) {
                    self.err(
                        owner,
                        "ready needs exactly one probe: `postgres`, `exec` or `healthcheck`",
                    );
                }
                None
            }
            [kind] => {
                let v = f.get(kind).expect("present");
                match *kind {
                    "postgres" => self.postgres(v, f.key_pos(kind).unwrap_or(v.pos)),
                    "exec" => self.argv(v, "exec").map(Probe::Exec),
                    _ => match self.boolean(v) {
                        Some(true) => Some(Probe::Healthcheck),
                        Some(false) => {
                            self.err(
                                v.pos,
                                "`healthcheck: false` is not a probe: write `healthcheck: true`, use another probe, or drop `ready`",
                            );
                            None
                        }
                        None => None,
                    },
                }
            }
            [first, rest @ ..] => {
                let later = rest
                    .iter()
                    .filter_map(|k| f.key_pos(k))
                    .max()
                    .unwrap_or(owner);
                self.err(
                    later,
                    format!(
                        "ready takes exactly one probe, found `{first}` and `{}`",
                        rest.join("`, `")
                    ),
                );
                None
            }
        };
        let timeout = match f.get("timeout") {
            Some(t) => self.duration(t),
            None => Some(DEFAULT_READY_TIMEOUT),
        };
        let interval = match f.get("interval") {
            Some(i) => self.duration(i),
            None => Some(DEFAULT_READY_INTERVAL),
        };
        if let (Some(t), Some(i)) = (timeout, interval) {
            if i > t {
                let pos = f
                    .get("interval")
                    .or(f.get("timeout"))
                    .map(|n| n.pos)
                    .unwrap_or(owner);
                self.err(
                    pos,
                    format!(
                        "ready interval ({}) must not exceed the ready timeout ({})",
                        super::duration::format_duration(i),
                        super::duration::format_duration(t)
                    ),
                );
                return None;
            }
        }
        Some(ReadySpec {
            probe: probe?,
            timeout: timeout?,
            interval: interval?,
        })
    }

    fn postgres(&mut self, node: &Node, owner: Pos) -> Option<Probe> {
        let f = self.fields(node, owner, "the postgres probe", POSTGRES_KEYS)?;
        let user = self.required(&f, "user").and_then(|u| self.string(u));
        let database = self.required(&f, "database").and_then(|d| self.string(d));
        let password = match f.get("password") {
            Some(p) => self.string(p).map(Some),
            None => Some(None),
        };
        Some(Probe::Postgres {
            user: user?,
            password: password?,
            database: database?,
        })
    }

    fn tiers(&mut self, node: &Node, out: &mut Vec<TierSpec>, refs: &mut Vec<TierRefs>) {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a list of tiers, found {}", node.describe()),
            );
            return;
        };
        if items.is_empty() {
            self.err(node.pos, "a pipeline needs at least one tier");
            return;
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for item in items {
            let (spec, r) = self.tier(item);
            if let Some(name) = r.as_ref().and_then(|r| r.name.clone()) {
                if let Some(first) = seen.get(&name) {
                    let pos = name_value_pos(item).unwrap_or(item.pos);
                    self.err(
                        pos,
                        format!("duplicate tier name `{name}` (first defined at {first})"),
                    );
                } else {
                    seen.insert(name, name_value_pos(item).unwrap_or(item.pos));
                }
            }
            if let Some(r) = r {
                refs.push(r);
            }
            if let Some(s) = spec {
                out.push(s);
            }
        }
    }

    fn tier(&mut self, node: &Node) -> (Option<TierSpec>, Option<TierRefs>) {
        let Some(mut f) = self.fields(node, node.pos, "tier", TIER_KEYS) else {
            return (None, None);
        };
        let name = self
            .required(&f, "name")
            .and_then(|n| self.name(n, "tier name", false));
        let tier_what = match &name {
            Some(n) => format!("tier `{n}`"),
            None => "tier".to_string(),
        };
        f.what = tier_what.clone();

        let build = match f.get("build") {
            Some(b) => self.strings(b).map(|v| {
                v.into_iter()
                    .filter(|(t, p)| self.check_name(t, *p, "build name", false))
                    .collect::<Vec<_>>()
            }),
            None => Some(Vec::new()),
        };
        let services = match f.get("services") {
            Some(s) => self.strings(s),
            None => Some(Vec::new()),
        };

        let mut steps = Some(Vec::new());
        let mut step_builds = Vec::new();
        let mut step_needs = Vec::new();
        let mut declared_steps = Vec::new();
        let mut broken_needs = Vec::new();
        let tier_when = match f.get("when") {
            Some(w) => self.when(w),
            None => Some(When::OnSuccess),
        };
        let mut steps_given = false;
        if let Some(s) = f.get("steps") {
            match &s.kind {
                Kind::Seq(items) => {
                    steps_given = !items.is_empty();
                    let mut seen: HashMap<String, Pos> = HashMap::new();
                    let mut list = Vec::new();
                    let mut ok = true;
                    for item in items {
                        if let Some(Kind::Scalar { text, .. }) =
                            item_key(item, "name").map(|n| &n.kind)
                        {
                            declared_steps.push(text.clone());
                        }
                        let needs = item_key(item, "needs").and_then(|n| self.need_entries(n));
                        // A matrix step is checked once per combination,
                        // with the combination's variables.
                        let combinations = match item_key(item, "matrix") {
                            Some(m) => match self.matrix(m) {
                                Some(c) => c,
                                None => {
                                    ok = false;
                                    broken_needs.extend(needs);
                                    continue;
                                }
                            },
                            None => vec![Vec::new()],
                        };
                        let mut broken = false;
                        for combination in combinations {
                            self.matrix_vars = (!combination.is_empty()).then(|| {
                                combination.iter().fold(self.vars.clone(), |vars, (k, v)| {
                                    vars.with_builtin(k, v.as_str())
                                })
                            });
                            let step = self.step(item, &tier_what, tier_when.unwrap_or_default());
                            let vars = self.matrix_vars.take();
                            let Some((mut spec, target)) = step else {
                                ok = false;
                                broken = true;
                                continue;
                            };
                            if !combination.is_empty() {
                                let suffix: Vec<String> = combination
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect();
                                spec.name = format!("{} [{}]", spec.name, suffix.join(", "));
                                // The combination's variables come first; `env` wins.
                                for (k, v) in &combination {
                                    spec.env.entry(k.clone()).or_insert_with(|| v.clone());
                                }
                                spec.matrix = combination;
                            }
                            let pos = name_value_pos(item).unwrap_or(item.pos);
                            if let Some(first) = seen.get(&spec.name) {
                                self.err(
                                    pos,
                                    format!(
                                        "duplicate step name `{}` in {tier_what} (first defined at {first})",
                                        spec.name
                                    ),
                                );
                                ok = false;
                                continue;
                            }
                            seen.insert(spec.name.clone(), pos);
                            if let Some((build, pos)) = target {
                                step_builds.push(StepBuild {
                                    index: list.len(),
                                    step: spec.name.clone(),
                                    build,
                                    pos,
                                    vars,
                                });
                            }
                            if let Some(needs) = &needs {
                                step_needs.push((list.len(), needs.clone()));
                            }
                            list.push(spec);
                        }
                        if broken {
                            broken_needs.extend(needs);
                        }
                    }
                    steps = ok.then_some(list);
                }
                _ => {
                    steps_given = true; // reported below as a type error instead
                    self.err(
                        s.pos,
                        format!("expected a list of steps, found {}", s.describe()),
                    );
                    steps = None;
                }
            }
        }

        let build_given = f
            .get("build")
            .is_some_and(|b| !matches!(&b.kind, Kind::Seq(v) if v.is_empty()));
        if !build_given && !steps_given && !f.misspelt(&["build", "steps"]) {
            self.err(
                f.owner,
                format!("{tier_what} has neither `build` nor `steps` (it needs one or both)"),
            );
        }
        // Duplicate services within the tier.
        if let Some(list) = &services {
            let mut seen = HashSet::new();
            for (s, p) in list {
                if !seen.insert(s.clone()) {
                    self.err(*p, format!("service `{s}` is listed twice in {tier_what}"));
                }
            }
        }

        let refs = TierRefs {
            name: name.clone(),
            build: build.clone().unwrap_or_default(),
            services: services.clone().unwrap_or_default(),
            step_builds,
            step_needs,
            declared_steps,
            broken_needs,
        };
        let spec = (|| {
            Some(TierSpec {
                name: name?,
                build: build?.into_iter().map(|(s, _)| s).collect(),
                services: services?.into_iter().map(|(s, _)| s).collect(),
                steps: steps?,
                when: tier_when?,
            })
        })();
        (spec, Some(refs))
    }

    fn step(
        &mut self,
        node: &Node,
        tier_what: &str,
        tier_when: When,
    ) -> Option<(StepSpec, Option<(String, Pos)>)> {
        let mut f = self.fields(node, node.pos, &format!("a step of {tier_what}"), STEP_KEYS)?;
        let name = self
            .required(&f, "name")
            .and_then(|n| self.name(n, "step name", false));
        let what = match &name {
            Some(n) => format!("step `{n}`"),
            None => format!("a step of {tier_what}"),
        };
        f.what = what.clone();
        let image = self.image_source(&f, &what);
        let entrypoint = self.entrypoint(&f);
        let run = match (f.get("command"), f.get("script")) {
            (Some(_), Some(_)) => {
                let later = f
                    .key_pos("command")
                    .max(f.key_pos("script"))
                    .unwrap_or(f.owner);
                self.err(
                    later,
                    format!("{what} has both `command` and `script`: give one (`script` runs shell lines, `command` an argv)"),
                );
                None
            }
            (Some(c), None) => self.argv(c, "command").map(StepRun::Command),
            (None, Some(sc)) => self.script(sc).map(StepRun::Script),
            (None, None) if f.misspelt(&["command", "script", "entrypoint"]) => None,
            (None, None) => match &entrypoint {
                Some(Some(e)) if !e.is_empty() => Some(StepRun::ImageDefault),
                Some(None) => {
                    self.err(
                        f.owner,
                        format!("{what} needs `command` (an argv such as [pytest, -q]) or `script` (shell lines)"),
                    );
                    None
                }
                _ => {
                    self.err(
                        f.owner,
                        format!("{what} needs `command`, `script` or a non-empty `entrypoint`"),
                    );
                    None
                }
            },
        };
        let user = self.user(&f);
        let env = self.environment(&f);
        let workdir = match f.get("workdir") {
            Some(w) => self.abs_container_path(w, "workdir").map(Some),
            None => Some(None),
        };
        let mounts = match f.get("mounts") {
            Some(m) => self.mounts(m),
            None => Some(Vec::new()),
        };
        let copies = match f.get("copy") {
            Some(c) => self.copies(c),
            None => Some(Vec::new()),
        };
        let timeout = match f.get("timeout") {
            Some(t) => self.duration(t),
            None => Some(DEFAULT_STEP_TIMEOUT),
        };
        let junit = match f.get("junit") {
            Some(j) => self.abs_container_path(j, "junit").map(Some),
            None => Some(None),
        };
        let collect = match f.get("collect") {
            Some(c) => match &c.kind {
                Kind::Seq(items) => {
                    let before = self.errors.len();
                    let v: Vec<String> = items
                        .iter()
                        .filter_map(|i| self.abs_container_path(i, "collect entry"))
                        .collect();
                    (self.errors.len() == before).then_some(v)
                }
                _ => {
                    self.err(
                        c.pos,
                        format!("expected a list of container paths, found {}", c.describe()),
                    );
                    None
                }
            },
            None => Some(Vec::new()),
        };
        let network = match f.get("network") {
            Some(n) => self.boolean(n),
            None => Some(true),
        };
        let when = match f.get("when") {
            Some(w) => self.when(w),
            None => Some(tier_when),
        };
        let retry = match f.get("retry") {
            Some(r) => self.retry(r),
            None => Some(0),
        };
        let allow_failure = match f.get("allow_failure") {
            Some(a) => self.boolean(a),
            None => Some(false),
        };
        let secrets = match f.get("secrets") {
            Some(node) => self.secret_refs(node),
            None => Some(Vec::new()),
        };
        let cache = match f.get("cache") {
            Some(c) => self.cache_paths(c),
            None => Some(Vec::new()),
        };
        let reuse = match f.get("reuse") {
            Some(r) => self.reuse(r).map(Some),
            None => Some(self.pipeline_reuse),
        };
        let (image, target_pos) = image?;
        let target = match (&image, target_pos) {
            (ImageSource::Build(t), Some(p)) => Some((t.clone(), p)),
            _ => None,
        };
        Some((
            StepSpec {
                name: name?,
                image,
                run: run?,
                entrypoint: entrypoint?,
                user: user?,
                env: env?,
                workdir: workdir?,
                mounts: mounts?,
                copies: copies?,
                timeout: timeout?,
                junit: junit?,
                collect: collect?,
                network: network?,
                // Resolved once every tier is known.
                needs: None,
                when: when?,
                retry: retry?,
                allow_failure: allow_failure?,
                matrix: Vec::new(),
                secrets: secrets?,
                cache: cache?,
                reuse: reuse?,
            },
            target,
        ))
    }

    /// `mounts`: `repo/path:/container/path[:ro|:rw]` (read-only by default).
    fn mounts(&mut self, node: &Node) -> Option<Vec<Mount>> {
        let items = self.path_pairs(node, "mount", "repo/path:/container/path")?;
        let before = self.errors.len();
        let mut out = Vec::new();
        for (source, target, mode, pos) in items {
            let read_only = match mode.as_deref() {
                None | Some("ro") => true,
                Some("rw") => false,
                Some(other) => {
                    self.err(
                        pos,
                        format!(
                            "unknown mount mode {other:?}: expected `ro` (the default) or `rw`"
                        ),
                    );
                    continue;
                }
            };
            out.push(Mount {
                source,
                target,
                read_only,
            });
        }
        (self.errors.len() == before).then_some(out)
    }

    /// `copy`: `repo/path:/container/path`, copied in before the step starts.
    fn copies(&mut self, node: &Node) -> Option<Vec<CopySpec>> {
        let items = self.path_pairs(node, "copy", "repo/path:/container/path")?;
        let before = self.errors.len();
        let mut out = Vec::new();
        for (source, target, mode, pos) in items {
            if let Some(mode) = mode {
                self.err(
                    pos,
                    format!("a copy takes no mode (found {mode:?}): copies are always writable and never written back"),
                );
                continue;
            }
            out.push(CopySpec { source, target });
        }
        (self.errors.len() == before).then_some(out)
    }

    /// A list of `repo/path:/container/path[:mode]`: resolved sources, checked
    /// targets (no two alike), optional mode, positions. `None` when any entry is bad.
    #[allow(clippy::type_complexity)]
    fn path_pairs(
        &mut self,
        node: &Node,
        key: &str,
        shape: &str,
    ) -> Option<Vec<(PathBuf, String, Option<String>, Pos)>> {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected a list of {key}s (\"{shape}\"), found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let before = self.errors.len();
        let mut out: Vec<(PathBuf, String, Option<String>, Pos)> = Vec::new();
        for item in items {
            let Some(s) = self.string(item) else {
                continue;
            };
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [source, target] => (*source, *target, None),
                [source, target, mode] => (*source, *target, Some(mode.to_string())),
                _ => {
                    self.err(
                        item.pos,
                        format!("expected a {key} like {shape}, found {s:?}"),
                    );
                    continue;
                }
            };
            if source.is_empty() || target.is_empty() {
                self.err(
                    item.pos,
                    format!("expected a {key} like {shape}, found {s:?}"),
                );
                continue;
            }
            if let Err(why) = check_container_target(target) {
                self.err(item.pos, format!("{key} target {target:?} {why}"));
                continue;
            }
            if let Some((_, _, _, first)) = out.iter().find(|(_, t, _, _)| t == target) {
                self.err(
                    item.pos,
                    format!("{key} target {target:?} is given twice (first at {first})"),
                );
                continue;
            }
            if let Some(src) = self.repo_path(source, item.pos, &format!("{key} source")) {
                out.push((src, target.to_string(), mode, item.pos));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn release(&mut self, node: &Node, owner: Pos) -> Option<ReleaseSpec> {
        let f = self.fields(node, owner, "the release section", RELEASE_KEYS)?;
        let target = self
            .required(&f, "target")
            .and_then(|t| self.name(t, "build target", false));
        let name = self.required(&f, "name").and_then(|n| {
            let s = self.string(n)?;
            if is_repository(&s) {
                Some(s)
            } else {
                self.err(
                    n.pos,
                    format!("invalid image repository name {s:?}: expected lowercase path components such as drydock/flask-api (no tag)"),
                );
                None
            }
        });
        let channel = self.required(&f, "channel").and_then(|c| {
            let s = self.string(c)?;
            if is_tag(&s) {
                Some(s)
            } else {
                self.err(
                    c.pos,
                    format!("invalid channel {s:?}: expected an image tag [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 128 characters)"),
                );
                None
            }
        });
        let registry = match f.get("registry") {
            None => Some(None),
            Some(r) => self.string(r).and_then(|s| {
                let s = s.trim_end_matches('/').to_string();
                if !is_registry(&s) {
                    self.err(
                        r.pos,
                        format!("invalid registry {s:?}: expected host[:port][/namespace] such as 127.0.0.1:5000 or registry.example.com/team (the host needs a `.` or a `:port`, or is `localhost`)"),
                    );
                    return None;
                }
                if let Some(n) = &name {
                    if n.contains('/') && is_registry(n.split('/').next().unwrap_or_default()) {
                        self.err(
                            r.pos,
                            format!("release.name {n:?} already names a registry host; with `registry:` give the name without it"),
                        );
                        return None;
                    }
                }
                Some(Some(s))
            }),
        };
        Some(ReleaseSpec {
            target: target?,
            name: name?,
            channel: channel?,
            registry: registry?,
        })
    }

    // ----- cross references ---------------------------------------------------

    /// Records which tier lists which build; reports builds listed twice.
    fn check_build_lists(&mut self, tiers: &[TierRefs]) -> HashMap<String, (usize, Pos)> {
        let mut listed_at: HashMap<String, (usize, Pos)> = HashMap::new();
        for (i, tier) in tiers.iter().enumerate() {
            for (build, pos) in &tier.build {
                if let Some((_, first)) = listed_at.get(build) {
                    self.err(
                        *pos,
                        format!("build `{build}` is already listed at {first} (a build is built once per run)"),
                    );
                    continue;
                }
                listed_at.insert(build.clone(), (i, *pos));
            }
        }
        listed_at
    }

    /// A step may not use a build that a later tier lists (the listing
    /// says when it is built).
    fn check_steps(&mut self, tiers: &[TierRefs], listed_at: &HashMap<String, (usize, Pos)>) {
        for (i, tier) in tiers.iter().enumerate() {
            for StepBuild {
                step, build, pos, ..
            } in &tier.step_builds
            {
                if let Some((t, at)) = listed_at.get(build) {
                    if *t > i {
                        self.err(
                            *pos,
                            format!("step `{step}` uses build `{build}` before it is built (a later tier lists it, at {at}; drop it from that list or move it to this tier or an earlier one)"),
                        );
                    }
                }
            }
        }
    }

    fn check_services(
        &mut self,
        services: &[ServiceSpec],
        refs: &[ServiceRefs],
        tiers: &[TierRefs],
        listed_at: &HashMap<String, (usize, Pos)>,
    ) {
        let by_name: HashMap<&str, (&ServiceSpec, &ServiceRefs)> = services
            .iter()
            .zip(refs)
            .map(|(s, r)| (s.name.as_str(), (s, r)))
            .collect();
        let mut used = HashSet::new();
        for (i, tier) in tiers.iter().enumerate() {
            for (name, pos) in &tier.services {
                let Some((_, r)) = by_name.get(name.as_str()) else {
                    if !self.declared_services.contains(name) {
                        let known: Vec<&str> = by_name.keys().copied().collect();
                        let hint = match suggest(name, &known) {
                            Some(s) => format!("; did you mean `{s}`?"),
                            None => String::new(),
                        };
                        self.err(
                            *pos,
                            format!(
                                "unknown service `{name}` (not defined under `services:`{hint})"
                            ),
                        );
                    }
                    continue;
                };
                used.insert(name.clone());
                if let Some((build, _)) = &r.build {
                    if let Some((t, at)) = listed_at.get(build) {
                        if *t > i {
                            self.err(
                                *pos,
                                format!("service `{name}` runs build `{build}`, which is only built by a later tier (at {at})"),
                            );
                        }
                    }
                }
            }
        }
        for (spec, r) in services.iter().zip(refs) {
            if !used.contains(&spec.name) {
                self.err(
                    r.name_pos,
                    format!(
                        "service `{}` is not used by any tier (list it under a tier's `services:`)",
                        spec.name
                    ),
                );
            }
        }
    }

    /// `script`: a non-empty list of shell lines (strings).
    fn script(&mut self, node: &Node) -> Option<Vec<String>> {
        if !matches!(node.kind, Kind::Seq(_)) {
            self.err(
                node.pos,
                format!(
                    "expected `script` as a list of shell lines, found {}",
                    node.describe()
                ),
            );
            return None;
        }
        // `- echo a: b` is a mapping in YAML, the classic trap of CI files.
        if let Kind::Seq(items) = &node.kind {
            for item in items {
                if let Kind::Map(entries) = &item.kind {
                    if let [(k, _)] = entries.as_slice() {
                        if matches!(&k.kind, Kind::Scalar { plain: true, .. }) {
                            self.err(
                                item.pos,
                                "this script line holds `: ` (or ends with `:`), so YAML reads it as a mapping: quote the whole line",
                            );
                            return None;
                        }
                    }
                }
            }
        }
        let before = self.errors.len();
        let lines = self.strings(node)?;
        if self.errors.len() > before {
            return None;
        }
        if lines.is_empty() {
            self.err(node.pos, "script must not be empty");
            return None;
        }
        for (line, pos) in &lines {
            if line.trim().is_empty() {
                self.err(*pos, "a script line must not be empty");
                return None;
            }
        }
        Some(lines.into_iter().map(|(l, _)| l).collect())
    }
}

/// Why a container path cannot be a mount or copy target, as the engine
/// would refuse it at run time (`/`, `/proc`, `/sys`, `/dev`, relative or
/// unnormalized paths).
fn check_container_target(target: &str) -> Result<(), &'static str> {
    if !target.starts_with('/') {
        return Err("must be an absolute container path (starting with /)");
    }
    if target.chars().any(|c| c.is_control() || c == ',') {
        return Err("must not contain control characters or commas");
    }
    let components: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| *c == "." || *c == "..") {
        return Err("must not contain `.` or `..` components");
    }
    match components.as_slice() {
        [] => Err("cannot be `/` (the engine refuses to mount over the root)"),
        ["proc", ..] | ["sys", ..] => {
            Err("is under /proc or /sys, which the container runtime owns")
        }
        ["dev"] => Err("cannot be /dev, which the container runtime owns"),
        _ => Ok(()),
    }
}

/// Longest tier, step, service, build or pipeline name: a DNS label (names
/// become network aliases), and well inside docker's tag and name limits.
pub(crate) const MAX_NAME_LENGTH: usize = 63;

/// Why `s` is not an image reference docker accepts, by the grammar of
/// `distribution/reference` (as ported by the `oci-spec` crate): lowercase
/// repository path, a tag of at most 128 `[A-Za-z0-9_.-]` characters not
/// starting with `.` or `-`, an optional well-formed digest.
pub(crate) fn check_image_reference(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".to_string());
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {c:?}"));
    }
    s.parse::<oci_spec::distribution::Reference>()
        .map(|_| ())
        .map_err(|e| {
            let name = s.split(['@']).next().unwrap_or(s);
            if name.chars().any(|c| c.is_ascii_uppercase())
                && s.to_ascii_lowercase()
                    .parse::<oci_spec::distribution::Reference>()
                    .is_ok()
            {
                "repository names must be lowercase".to_string()
            } else {
                e.to_string()
            }
        })
}

/// The value of `key` in a mapping node, if it has one.
fn item_key<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Position of the value of `name:` in a mapping node.
fn name_value_pos(node: &Node) -> Option<Pos> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "name"))
            .map(|(_, v)| v.pos),
        _ => None,
    }
}

fn is_name(s: &str, lower: bool) -> bool {
    let ok_first = |c: char| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || (!lower && c.is_ascii_uppercase())
    };
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if ok_first(c))
        && chars.all(|c| ok_first(c) || matches!(c, '_' | '.' | '-'))
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Whether `s` is an image tag, as Docker's reference grammar has it:
/// `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 characters. Release channels
/// (`release.channel`, `--channel`) are tags.
pub fn is_tag(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 128
        && matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphanumeric())
        && chars.all(|c| c == '_' || c == '.' || c == '-' || c.is_ascii_alphanumeric())
}

/// An image repository name without tag or digest: `[host[:port]/]path`,
/// path components lowercase `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
/// Whether `s` is a valid `release.registry`: `host[:port][/namespace…]`
/// (no scheme, no trailing `/`) whose host is unmistakably a registry host
/// (contains `.` or `:`, or is `localhost`), as Docker decides it.
pub fn is_registry(s: &str) -> bool {
    let host = s.split('/').next().unwrap_or_default();
    (host.contains('.') || host.contains(':') || host == "localhost")
        && is_repository(&format!("{s}/x"))
}

pub(crate) fn is_repository(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    let (host, path) = match parts.as_slice() {
        [first, rest @ ..]
            if !rest.is_empty()
                && (first.contains('.') || first.contains(':') || *first == "localhost") =>
        {
            (Some(*first), rest)
        }
        all => (None, all),
    };
    let host_ok = host.is_none_or(|h| {
        let (name, port) = match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        };
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && !c.contains("..")
            && !c.contains("___")
    };
    host_ok && !path.is_empty() && path.iter().all(|c| component_ok(c))
}

//! From a positioned YAML tree to a validated [`Pipeline`], collecting every
//! problem with its position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::parse_duration;
use super::interpolate::{interpolate, Vars};
use super::model::*;
use super::tree::{Kind, Node, Pos, ScalarType};

mod deploy;

const ROOT_KEYS: &[&str] = &["version", "name", "build", "services", "tiers", "release"];
const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args", "trust"];
const SERVICE_KEYS: &[&str] = &["image", "build", "env", "command", "ready"];
const READY_KEYS: &[&str] = &["postgres", "exec", "healthcheck", "timeout", "interval"];
const POSTGRES_KEYS: &[&str] = &["user", "password", "database"];
const TIER_KEYS: &[&str] = &["name", "build", "services", "steps"];
const STEP_KEYS: &[&str] = &[
    "name", "build", "image", "command", "env", "workdir", "mounts", "timeout", "junit", "collect",
    "network",
];
const RELEASE_KEYS: &[&str] = &["target", "name", "channel", "registry"];

/// A mapping whose keys have been checked against the allowed set.
struct Fields<'a> {
    /// Where "missing key" problems are reported.
    owner: Pos,
    /// What the mapping is, for messages (`step "unit"`, `the build section`).
    what: String,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.2)
    }

    fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.1.pos)
    }
}

/// Positions kept beside a tier for the cross-reference checks.
struct TierRefs {
    name: Option<String>,
    build: Vec<(String, Pos)>,
    services: Vec<(String, Pos)>,
    /// (step name, target, position of the target value)
    step_targets: Vec<(String, String, Pos)>,
}

/// Positions kept beside a service.
struct ServiceRefs {
    name_pos: Pos,
    target: Option<(String, Pos)>,
}

pub(crate) struct Checker<'v> {
    vars: &'v Vars,
    repo_root: PathBuf,
    errors: Vec<(Pos, String)>,
    /// Every service name given under `services:`, valid or not (so that a
    /// broken service is not reported again as unknown where it is used).
    declared_services: HashSet<String>,
}

impl<'v> Checker<'v> {
    pub(crate) fn new(vars: &'v Vars, repo_root: PathBuf) -> Self {
        Checker {
            vars,
            repo_root,
            errors: Vec::new(),
            declared_services: HashSet::new(),
        }
    }

    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push((pos, message.into()));
    }

    /// Validates the whole document. On failure, every problem in file order.
    pub(crate) fn check(
        mut self,
        root: &Node,
        source_path: PathBuf,
    ) -> Result<Pipeline, Vec<(Pos, String)>> {
        let pipeline = self.pipeline(root, source_path);
        if self.errors.is_empty() {
            if let Some(p) = pipeline {
                return Ok(p);
            }
            self.err(root.pos, "invalid pipeline");
        }
        self.errors.sort_by_key(|e| e.0);
        self.errors.dedup();
        Err(self.errors)
    }

    // ----- generic shapes -------------------------------------------------

    fn fields<'a>(
        &mut self,
        node: &'a Node,
        owner: Pos,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'a>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a mapping for {what}, found {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (k, v) in entries {
            let Some(key) = self.key_text(k) else {
                continue;
            };
            if !allowed.contains(&key) {
                let hint = match suggest(key, allowed) {
                    Some(s) => format!("did you mean `{s}`? "),
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
        Some(Fields {
            owner,
            what: what.to_string(),
            entries: out,
        })
    }

    /// The text of a mapping key; keys must be plain scalars.
    fn key_text<'a>(&mut self, k: &'a Node) -> Option<&'a str> {
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

    fn required<'a>(&mut self, f: &Fields<'a>, key: &str) -> Option<&'a Node> {
        let v = f.get(key);
        if v.is_none() {
            let what = f.what.clone();
            self.err(
                f.owner,
                format!("{what} is missing the required key `{key}`"),
            );
        }
        v
    }

    /// A string value, interpolated.
    fn string(&mut self, node: &Node) -> Option<String> {
        let raw = self.raw_string(node, "a string")?;
        match interpolate(raw, self.vars) {
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
    fn strings(&mut self, node: &Node) -> Option<Vec<(String, Pos)>> {
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
    fn argv(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
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
    fn string_map(&mut self, node: &Node, what: &str) -> Option<BTreeMap<String, String>> {
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

    fn duration(&mut self, node: &Node) -> Option<Duration> {
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
    fn name(&mut self, node: &Node, what: &str, lower: bool) -> Option<String> {
        let s = self.string(node)?;
        self.check_name(&s, node.pos, what, lower).then_some(s)
    }

    fn check_name(&mut self, s: &str, pos: Pos, what: &str, lower: bool) -> bool {
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

    fn image_ref(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node)?;
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.err(
                node.pos,
                format!("expected an image reference such as drydock/python:3.11, found {s:?}"),
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
                self.err(
                    f.owner,
                    format!(
                        "{owner_what} needs exactly one of `image` (an image reference) or `build` (a build target)"
                    ),
                );
                None
            }
            (Some(img), None) => Some((ImageSource::Image(self.image_ref(img)?), None)),
            (None, Some(t)) => {
                let target = self.name(t, "build target", false)?;
                Some((ImageSource::Target(target), Some(t.pos)))
            }
        }
    }

    fn abs_container_path(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node)?;
        if !s.starts_with('/') {
            self.err(
                node.pos,
                format!("{what} must be an absolute container path (starting with /), found {s:?}"),
            );
            return None;
        }
        Some(s)
    }

    /// Resolves a repository-relative path: must exist and stay inside the
    /// repository root after canonicalization.
    fn repo_path(&mut self, rel: &str, pos: Pos, what: &str) -> Option<PathBuf> {
        if rel.is_empty() {
            self.err(pos, format!("{what} must not be empty"));
            return None;
        }
        if Path::new(rel).is_absolute() {
            self.err(
                pos,
                format!("{what} {rel:?} must be relative to the repository root"),
            );
            return None;
        }
        let joined = self.repo_root.join(rel);
        let canonical = match joined.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.err(
                    pos,
                    format!(
                        "{what} {rel:?} does not exist (looked for {})",
                        joined.display()
                    ),
                );
                return None;
            }
            Err(e) => {
                self.err(pos, format!("{what} {rel:?} cannot be resolved: {e}"));
                return None;
            }
        };
        if !canonical.starts_with(&self.repo_root) {
            self.err(
                pos,
                format!(
                    "{what} {rel:?} is outside the repository root {} (it resolves to {})",
                    self.repo_root.display(),
                    canonical.display()
                ),
            );
            return None;
        }
        Some(canonical)
    }

    // ----- sections ---------------------------------------------------------

    fn pipeline(&mut self, root: &Node, source_path: PathBuf) -> Option<Pipeline> {
        let f = self.fields(root, Pos::START, "the pipeline file", ROOT_KEYS)?;

        if let Some(v) = self.required(&f, "version") {
            let ok = matches!(&v.kind, Kind::Scalar { text, .. } if text == "1")
                && v.scalar_type() == Some(ScalarType::Int);
            if !ok {
                self.err(
                    v.pos,
                    format!("unsupported version: expected 1, found {}", v.describe()),
                );
            }
        }
        let name = self
            .required(&f, "name")
            .and_then(|n| self.name(n, "pipeline name", true));

        let build_key = f.key_pos("build");
        let build = f
            .get("build")
            .map(|b| self.build(b, build_key.unwrap_or(b.pos)));

        let mut services = Vec::new();
        let mut service_refs = Vec::new();
        if let Some(s) = f.get("services") {
            self.services(s, &mut services, &mut service_refs);
        }

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
        let built_at = self.check_build_targets(build_key, &tier_refs);
        self.check_steps(build_key, &tier_refs, &built_at);
        self.check_services(build_key, &services, &service_refs, &tier_refs, &built_at);
        if let Some((Some(rel), node)) = &release {
            let pos = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "target"))
                    .map(|(_, v)| v.pos)
                    .unwrap_or(node.pos),
                _ => node.pos,
            };
            if build_key.is_none() {
                self.err(
                    pos,
                    format!(
                        "release target `{}` needs a top-level `build` section",
                        rel.target
                    ),
                );
            } else if !built_at.contains_key(rel.target.as_str()) {
                self.err(
                    pos,
                    format!(
                        "release target `{}` is not built by any tier (add it to a tier's `build:` list)",
                        rel.target
                    ),
                );
            }
        }

        let build = match build {
            Some(b) => Some(b?),
            None => None,
        };
        let release = match release {
            Some((r, _)) => Some(r?),
            None => None,
        };
        Some(Pipeline {
            name: name?,
            build,
            services,
            tiers,
            release,
            source_path,
            repo_root: self.repo_root.clone(),
        })
    }

    fn build(&mut self, node: &Node, owner: Pos) -> Option<BuildSpec> {
        let f = self.fields(node, owner, "the build section", BUILD_KEYS)?;
        let context_node = self.required(&f, "context");
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
        if let (Some(ctx), Some(df)) = (&context, &dockerfile) {
            let pos = dockerfile_node
                .or(context_node)
                .map(|n| n.pos)
                .unwrap_or(owner);
            self.check_dockerfile(ctx, df, pos);
        }
        let args = match f.get("args") {
            Some(a) => self.string_map(a, "build args"),
            None => Some(BTreeMap::new()),
        };
        let trust = match f.get("trust") {
            Some(t) => self.boolean(t),
            None => Some(true),
        };
        Some(BuildSpec {
            context: context?,
            dockerfile: dockerfile?,
            args: args?,
            trust: trust?,
        })
    }

    fn check_dockerfile(&mut self, context: &Path, dockerfile: &str, pos: Pos) {
        if dockerfile.is_empty() || Path::new(dockerfile).is_absolute() {
            self.err(
                pos,
                format!(
                    "dockerfile must be a path relative to the build context, found {dockerfile:?}"
                ),
            );
            return;
        }
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
    }

    fn services(&mut self, node: &Node, out: &mut Vec<ServiceSpec>, refs: &mut Vec<ServiceRefs>) {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected a mapping of service names to services, found {}",
                    node.describe()
                ),
            );
            return;
        };
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (k, v) in entries {
            let Some(name) = self.key_text(k) else {
                continue;
            };
            if let Some(first) = seen.get(name) {
                self.err(
                    k.pos,
                    format!("duplicate service `{name}` (first defined at {first})"),
                );
                continue;
            }
            seen.insert(name.to_string(), k.pos);
            self.declared_services.insert(name.to_string());
            let name_ok = self.check_name(name, k.pos, "service name", false);
            if let Some((spec, target)) = self.service(name, v, k.pos) {
                if name_ok {
                    refs.push(ServiceRefs {
                        name_pos: k.pos,
                        target,
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
        let image = self.image_source(&f, &what);
        let env = match f.get("env") {
            Some(e) => self.string_map(e, "env"),
            None => Some(BTreeMap::new()),
        };
        let command = match f.get("command") {
            Some(c) => self.argv(c, "command").map(Some),
            None => Some(None),
        };
        let ready = match f.get("ready") {
            Some(r) => self.ready(r, f.key_pos("ready").unwrap_or(r.pos)).map(Some),
            None => Some(None),
        };
        let (image, target_pos) = image?;
        let target = match (&image, target_pos) {
            (ImageSource::Target(t), Some(p)) => Some((t.clone(), p)),
            _ => None,
        };
        Some((
            ServiceSpec {
                name: name.to_string(),
                image,
                env: env?,
                command: command?,
                ready: ready?,
            },
            target,
        ))
    }

    fn ready(&mut self, node: &Node, owner: Pos) -> Option<ReadySpec> {
        let f = self.fields(node, owner, "ready", READY_KEYS)?;
        let kinds: Vec<&str> = ["postgres", "exec", "healthcheck"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        let probe = match kinds.as_slice() {
            [] => {
                self.err(
                    owner,
                    "ready needs exactly one probe: `postgres`, `exec` or `healthcheck`",
                );
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
                    .filter(|(t, p)| self.check_name(t, *p, "build target", false))
                    .collect::<Vec<_>>()
            }),
            None => Some(Vec::new()),
        };
        let services = match f.get("services") {
            Some(s) => self.strings(s),
            None => Some(Vec::new()),
        };

        let mut steps = Some(Vec::new());
        let mut step_targets = Vec::new();
        let mut steps_given = false;
        if let Some(s) = f.get("steps") {
            match &s.kind {
                Kind::Seq(items) => {
                    steps_given = !items.is_empty();
                    let mut seen: HashMap<String, Pos> = HashMap::new();
                    let mut list = Vec::new();
                    let mut ok = true;
                    for item in items {
                        let step = self.step(item, &tier_what);
                        let Some((spec, target)) = step else {
                            ok = false;
                            continue;
                        };
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
                        if let Some((t, p)) = target {
                            step_targets.push((spec.name.clone(), t, p));
                        }
                        list.push(spec);
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
        if !build_given && !steps_given {
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
            step_targets,
        };
        let spec = (|| {
            Some(TierSpec {
                name: name?,
                build: build?.into_iter().map(|(s, _)| s).collect(),
                services: services?.into_iter().map(|(s, _)| s).collect(),
                steps: steps?,
            })
        })();
        (spec, Some(refs))
    }

    fn step(&mut self, node: &Node, tier_what: &str) -> Option<(StepSpec, Option<(String, Pos)>)> {
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
        let command = self
            .required(&f, "command")
            .and_then(|c| self.argv(c, "command"));
        let env = match f.get("env") {
            Some(e) => self.string_map(e, "env"),
            None => Some(BTreeMap::new()),
        };
        let workdir = match f.get("workdir") {
            Some(w) => self.abs_container_path(w, "workdir").map(Some),
            None => Some(None),
        };
        let mounts = match f.get("mounts") {
            Some(m) => self.mounts(m),
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
        let (image, target_pos) = image?;
        let target = match (&image, target_pos) {
            (ImageSource::Target(t), Some(p)) => Some((t.clone(), p)),
            _ => None,
        };
        Some((
            StepSpec {
                name: name?,
                image,
                command: command?,
                env: env?,
                workdir: workdir?,
                mounts: mounts?,
                timeout: timeout?,
                junit: junit?,
                collect: collect?,
                network: network?,
            },
            target,
        ))
    }

    fn mounts(&mut self, node: &Node) -> Option<Vec<Mount>> {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected a list of mounts (\"repo/path:/container/path\"), found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let before = self.errors.len();
        let mut out = Vec::new();
        for item in items {
            let Some(s) = self.string(item) else {
                continue;
            };
            let parts: Vec<&str> = s.split(':').collect();
            let [source, target] = parts.as_slice() else {
                self.err(
                    item.pos,
                    format!("expected a mount like repo/path:/container/path, found {s:?}"),
                );
                continue;
            };
            if source.is_empty() || target.is_empty() {
                self.err(
                    item.pos,
                    format!("expected a mount like repo/path:/container/path, found {s:?}"),
                );
                continue;
            }
            if !target.starts_with('/') {
                self.err(
                    item.pos,
                    format!("mount target {target:?} must be an absolute container path (starting with /)"),
                );
                continue;
            }
            if let Some(src) = self.repo_path(source, item.pos, "mount source") {
                out.push(Mount {
                    source: src,
                    target: target.to_string(),
                });
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

    /// Records which tier builds which target; reports targets without a
    /// top-level build and targets built twice.
    fn check_build_targets(
        &mut self,
        build_key: Option<Pos>,
        tiers: &[TierRefs],
    ) -> HashMap<String, (usize, Pos)> {
        let mut built_at: HashMap<String, (usize, Pos)> = HashMap::new();
        for (i, tier) in tiers.iter().enumerate() {
            for (target, pos) in &tier.build {
                if build_key.is_none() {
                    self.err(
                        *pos,
                        format!("build target `{target}` is listed but the pipeline has no top-level `build` section"),
                    );
                    continue;
                }
                if let Some((_, first)) = built_at.get(target) {
                    self.err(
                        *pos,
                        format!("build target `{target}` is already built at {first} (a target is built once per run)"),
                    );
                    continue;
                }
                built_at.insert(target.clone(), (i, *pos));
            }
        }
        built_at
    }

    fn check_steps(
        &mut self,
        build_key: Option<Pos>,
        tiers: &[TierRefs],
        built_at: &HashMap<String, (usize, Pos)>,
    ) {
        for (i, tier) in tiers.iter().enumerate() {
            for (step, target, pos) in &tier.step_targets {
                if build_key.is_none() {
                    self.err(
                        *pos,
                        format!("step `{step}` uses build target `{target}` but the pipeline has no top-level `build` section"),
                    );
                    continue;
                }
                match built_at.get(target) {
                    Some((t, _)) if *t <= i => {}
                    Some((_, at)) => self.err(
                        *pos,
                        format!("step `{step}` uses build target `{target}` before it is built (it is built by a later tier, at {at})"),
                    ),
                    None => self.err(
                        *pos,
                        format!("step `{step}` uses build target `{target}`, which no tier builds (add it to the `build:` list of this tier or an earlier one)"),
                    ),
                }
            }
        }
    }

    fn check_services(
        &mut self,
        build_key: Option<Pos>,
        services: &[ServiceSpec],
        refs: &[ServiceRefs],
        tiers: &[TierRefs],
        built_at: &HashMap<String, (usize, Pos)>,
    ) {
        let by_name: HashMap<&str, (&ServiceSpec, &ServiceRefs)> = services
            .iter()
            .zip(refs)
            .map(|(s, r)| (s.name.as_str(), (s, r)))
            .collect();
        let mut used = HashSet::new();
        // A target with a problem at the service itself is not reported again per use.
        let mut bad_target = HashSet::new();
        for (spec, r) in services.iter().zip(refs) {
            if let Some((target, pos)) = &r.target {
                if build_key.is_none() {
                    self.err(
                        *pos,
                        format!("service `{}` uses build target `{target}` but the pipeline has no top-level `build` section", spec.name),
                    );
                    bad_target.insert(spec.name.clone());
                } else if !built_at.contains_key(target) {
                    self.err(
                        *pos,
                        format!(
                            "service `{}` uses build target `{target}`, which no tier builds",
                            spec.name
                        ),
                    );
                    bad_target.insert(spec.name.clone());
                }
            }
        }
        for (i, tier) in tiers.iter().enumerate() {
            for (name, pos) in &tier.services {
                let Some((spec, r)) = by_name.get(name.as_str()) else {
                    if !self.declared_services.contains(name) {
                        self.err(
                            *pos,
                            format!("unknown service `{name}` (not defined under `services:`)"),
                        );
                    }
                    continue;
                };
                used.insert(name.clone());
                if bad_target.contains(&spec.name) {
                    continue;
                }
                if let Some((target, _)) = &r.target {
                    if let Some((t, at)) = built_at.get(target) {
                        if *t > i {
                            self.err(
                                *pos,
                                format!("service `{name}` runs build target `{target}`, which is only built by a later tier (at {at})"),
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

fn is_tag(s: &str) -> bool {
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

fn is_repository(s: &str) -> bool {
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

/// The allowed key closest to `key` (edit distance at most 2), if any.
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

//! The pipeline controls teams bring from other CI systems: `needs`, `when`,
//! `retry`, `allow_failure`, `matrix`, `secrets` and `cache`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::super::model::{NeedSpec, SecretExpose, SecretSource, SecretSpec, TierSpec, When};
use super::super::tree::{Kind, Node, Pos, ScalarType};
use super::{check_container_target, is_var_name, Checker, TierRefs};
use crate::pipeline::text::suggest;

/// A step by (tier index, step index).
type StepAt = (usize, usize);

pub(crate) const SECRET_KEYS: &[&str] = &["env", "file", "as"];
/// Most combinations one `matrix` may expand into.
pub(crate) const MAX_MATRIX_COMBINATIONS: usize = 64;
/// Most times a step may be run again.
pub(crate) const MAX_RETRY: u32 = 5;

impl Checker<'_> {
    /// `when: on_success | on_failure | always`.
    pub(super) fn when(&mut self, node: &Node) -> Option<When> {
        let text = self.raw_string(node, "on_success, on_failure or always")?;
        match text {
            "on_success" => Some(When::OnSuccess),
            "on_failure" => Some(When::OnFailure),
            "always" => Some(When::Always),
            other => {
                let hint = suggest(other, &["on_success", "on_failure", "always"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    node.pos,
                    format!("unknown `when` {other:?}{hint}: expected on_success (the default), on_failure or always"),
                );
                None
            }
        }
    }

    /// `retry: N`, 0 to [`MAX_RETRY`].
    pub(super) fn retry(&mut self, node: &Node) -> Option<u32> {
        let value = match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { text, .. }, Some(ScalarType::Int)) => text.parse::<i64>().ok(),
            _ => None,
        };
        match value {
            Some(n) if (0..=MAX_RETRY as i64).contains(&n) => Some(n as u32),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "retry must be a whole number from 0 to {MAX_RETRY} (runs after the first), found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// `cache: [/container/path, …]`.
    pub(super) fn cache_paths(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.strings(node)?;
        let before = self.errors.len();
        let mut out: Vec<String> = Vec::new();
        for (path, pos) in items {
            if let Err(why) = check_container_target(&path) {
                self.err(pos, format!("cache path {path:?} {why}"));
            } else if out.contains(&path) {
                self.err(pos, format!("cache path {path:?} is given twice"));
            } else {
                out.push(path);
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// `matrix: {VAR: [values…], …}`: every combination, the first variable
    /// varying slowest (as GitHub Actions and GitLab's `parallel:matrix` order them).
    pub(super) fn matrix(&mut self, node: &Node) -> Option<Vec<Vec<(String, String)>>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected `matrix` as a mapping of variables to lists of values, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        if entries.is_empty() {
            self.err(node.pos, "a matrix needs at least one variable");
            return None;
        }
        let before = self.errors.len();
        let mut axes: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in entries {
            let Some(key) = self.key_text(k) else {
                continue;
            };
            if !is_var_name(key) {
                self.err(
                    k.pos,
                    format!("invalid matrix variable `{key}`: expected [A-Za-z_][A-Za-z0-9_]*"),
                );
                continue;
            }
            if axes.iter().any(|(name, _)| name == key) {
                self.err(k.pos, format!("matrix variable `{key}` is given twice"));
                continue;
            }
            let before_values = self.errors.len();
            let Some(values) = self.strings(v) else {
                continue;
            };
            if self.errors.len() > before_values {
                continue;
            }
            if values.is_empty() {
                self.err(
                    v.pos,
                    format!("matrix variable `{key}` has no values (give at least one)"),
                );
                continue;
            }
            let mut seen = HashSet::new();
            for (value, pos) in &values {
                if !seen.insert(value.clone()) {
                    self.err(
                        *pos,
                        format!("matrix value {value:?} of `{key}` is given twice"),
                    );
                }
            }
            axes.push((
                key.to_string(),
                values.into_iter().map(|(v, _)| v).collect(),
            ));
        }
        if self.errors.len() > before {
            return None;
        }
        let count: usize = axes.iter().map(|(_, v)| v.len()).product();
        if count > MAX_MATRIX_COMBINATIONS {
            self.err(
                node.pos,
                format!("this matrix has {count} combinations; a step expands into at most {MAX_MATRIX_COMBINATIONS}"),
            );
            return None;
        }
        let mut combinations: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (name, values) in &axes {
            combinations = combinations
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((name.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        Some(combinations)
    }

    /// The raw `needs` entries of a step (`step` or `tier/step`), with positions.
    pub(super) fn need_entries(&mut self, node: &Node) -> Option<Vec<(String, Pos)>> {
        let items = self.strings(node)?;
        let before = self.errors.len();
        for (need, pos) in &items {
            let parts: Vec<&str> = need.split('/').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                self.err(
                    *pos,
                    format!("expected a need as `step` (same tier) or `tier/step`, found {need:?}"),
                );
            }
        }
        (self.errors.len() == before).then_some(items)
    }

    /// Reports a need that names no tier (`step: None`; `known` the tiers)
    /// or no step of `tier` (`known` its steps), with a "did you mean".
    fn unknown_need(
        &mut self,
        pos: Pos,
        need: &str,
        tier: &str,
        step: Option<&str>,
        known: &[&str],
    ) {
        let hint = suggest(step.unwrap_or(tier), known)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let message = match step {
            None => format!("unknown tier `{tier}` in need {need:?}{hint}"),
            Some(step) => format!("unknown step `{step}` in tier `{tier}` (need {need:?}{hint})"),
        };
        self.err(pos, message);
    }

    /// For a pipeline with refused tiers or steps: every `needs` entry must
    /// name a declared tier and, in it, a declared step (by `name:`, a
    /// matrix step by its base name). Cycles are checked once all is valid.
    fn check_need_names(&mut self, refs: &[TierRefs]) {
        for tier_refs in refs {
            let entries = tier_refs
                .step_needs
                .iter()
                .map(|(_, e)| e)
                .chain(&tier_refs.broken_needs)
                .flatten();
            for (need, pos) in entries {
                let (tier_name, step_name) = match need.split_once('/') {
                    Some((t, s)) => (t, s),
                    None => match &tier_refs.name {
                        Some(t) => (t.as_str(), need.as_str()),
                        None => continue,
                    },
                };
                let Some(target) = refs.iter().find(|r| r.name.as_deref() == Some(tier_name))
                else {
                    if refs.iter().any(|r| r.name.is_none()) {
                        continue; // maybe the tier whose name was refused
                    }
                    let names: Vec<&str> = refs.iter().filter_map(|r| r.name.as_deref()).collect();
                    self.unknown_need(*pos, need, tier_name, None, &names);
                    continue;
                };
                if !target.declared_steps.iter().any(|s| s == step_name) {
                    let names: Vec<&str> =
                        target.declared_steps.iter().map(String::as_str).collect();
                    self.unknown_need(*pos, need, tier_name, Some(step_name), &names);
                }
            }
        }
    }

    /// Resolves every step's `needs` into the steps it names (a matrix
    /// step's name means all its combinations) and refuses unknown names,
    /// a step needing itself, and cycles — counting the implicit edges of
    /// steps without `needs`, which wait for every earlier tier.
    pub(super) fn resolve_needs(&mut self, tiers: &mut [TierSpec], refs: &[TierRefs]) {
        if tiers.len() != refs.len() || refs.iter().any(|r| !r.broken_needs.is_empty()) {
            // Some tier or step was refused: its problems are reported; check
            // only that every need (of valid and refused steps alike) names
            // a declared step, so that this problem is not held back.
            self.check_need_names(refs);
            return;
        }
        // (tier, step index) → the steps it needs, with the position of the entry.
        let mut explicit: HashMap<StepAt, Vec<(StepAt, Pos)>> = HashMap::new();
        for (t, tier_refs) in refs.iter().enumerate() {
            let Some(tier) = tiers.get(t) else { continue };
            for (s, entries) in &tier_refs.step_needs {
                let mut resolved = Vec::new();
                for (need, pos) in entries {
                    let (tier_name, step_name) = match need.split_once('/') {
                        Some((t, s)) => (t, s),
                        None => (tier.name.as_str(), need.as_str()),
                    };
                    let Some(nt) = tiers.iter().position(|x| x.name == tier_name) else {
                        let names: Vec<&str> = tiers.iter().map(|x| x.name.as_str()).collect();
                        self.unknown_need(*pos, need, tier_name, None, &names);
                        continue;
                    };
                    let matches: Vec<usize> = tiers[nt]
                        .steps
                        .iter()
                        .enumerate()
                        .filter(|(_, st)| st.name == step_name || st.base_name() == step_name)
                        .map(|(i, _)| i)
                        .collect();
                    if matches.is_empty() {
                        let names: Vec<&str> =
                            tiers[nt].steps.iter().map(|st| st.base_name()).collect();
                        self.unknown_need(*pos, need, &tiers[nt].name, Some(step_name), &names);
                        continue;
                    }
                    for m in matches {
                        if (nt, m) == (t, *s) {
                            self.err(*pos, format!("step `{}` needs itself", tier.steps[*s].name));
                            continue;
                        }
                        resolved.push(((nt, m), *pos));
                    }
                }
                explicit.insert((t, *s), resolved);
            }
        }
        // Cycles, over explicit and implicit edges.
        let deps = |node: (usize, usize)| -> Vec<((usize, usize), Option<Pos>)> {
            match explicit.get(&node) {
                Some(needs) => needs.iter().map(|(n, p)| (*n, Some(*p))).collect(),
                None => (0..node.0)
                    .flat_map(|t| (0..tiers[t].steps.len()).map(move |s| ((t, s), None)))
                    .collect(),
            }
        };
        let all: Vec<(usize, usize)> = (0..tiers.len())
            .flat_map(|t| (0..tiers[t].steps.len()).map(move |s| (t, s)))
            .collect();
        // 0 = unseen, 1 = on the stack, 2 = done.
        let mut state: HashMap<(usize, usize), u8> = HashMap::new();
        let mut reported = false;
        for start in &all {
            if reported || state.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            // Iterative DFS: (node, its dependencies, next index).
            let mut stack = vec![(*start, deps(*start), 0usize)];
            state.insert(*start, 1);
            while let Some((node, edges, next)) = stack.last_mut() {
                if *next == edges.len() {
                    state.insert(*node, 2);
                    stack.pop();
                    continue;
                }
                let (dep, pos) = edges[*next];
                *next += 1;
                match state.get(&dep).copied().unwrap_or(0) {
                    0 => {
                        state.insert(dep, 1);
                        let d = deps(dep);
                        stack.push((dep, d, 0));
                    }
                    1 => {
                        // The cycle: from `dep` around to the current node.
                        let at = stack.iter().position(|(n, _, _)| *n == dep).unwrap_or(0);
                        let path: Vec<String> = stack[at..]
                            .iter()
                            .map(|(n, _, _)| {
                                format!("{}/{}", tiers[n.0].name, tiers[n.0].steps[n.1].name)
                            })
                            .chain(std::iter::once(format!(
                                "{}/{}",
                                tiers[dep.0].name, tiers[dep.0].steps[dep.1].name
                            )))
                            .collect();
                        // Report at an explicit need of the cycle.
                        let pos = pos.or_else(|| {
                            stack[at..].iter().find_map(|(n, _, _)| {
                                explicit.get(n).and_then(|v| v.first().map(|(_, p)| *p))
                            })
                        });
                        if let Some(pos) = pos {
                            self.err(
                                pos,
                                format!(
                                    "the needs form a cycle: {} (a step without `needs` waits for every earlier tier)",
                                    path.join(" → ")
                                ),
                            );
                        }
                        reported = true;
                        break;
                    }
                    _ => {}
                }
            }
        }
        if !self.errors.is_empty() {
            return;
        }
        for ((t, s), needs) in explicit {
            let needs: Vec<NeedSpec> = needs
                .into_iter()
                .map(|((nt, ns), _)| NeedSpec {
                    tier: tiers[nt].name.clone(),
                    step: tiers[nt].steps[ns].name.clone(),
                })
                .collect();
            tiers[t].steps[s].needs = Some(needs);
        }
    }

    /// The `secrets:` section: name → `{env: VAR}` or `{file: path}`, with
    /// `as: env` (default) or `as: file`. The source must exist now; its
    /// value is read when the run starts and never kept in the model.
    pub(super) fn secrets_section(&mut self, node: &Node) {
        self.declared_secrets = Some(HashSet::new());
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "expected a mapping of secret names to sources, found {}",
                    node.describe()
                ),
            );
            return;
        };
        for (k, v) in entries {
            let Some(name) = self.key_text(k) else {
                continue;
            };
            let name = name.to_string();
            if let Some(declared) = &mut self.declared_secrets {
                declared.insert(name.clone());
            }
            if !is_var_name(&name) {
                self.err(
                    k.pos,
                    format!("invalid secret name `{name}`: expected [A-Za-z_][A-Za-z0-9_]* (it becomes a variable or a file name)"),
                );
                continue;
            }
            if self.secrets.iter().any(|s| s.name == name) {
                self.err(k.pos, format!("duplicate secret `{name}`"));
                continue;
            }
            let what = format!("secret `{name}`");
            if matches!(v.scalar_type(), Some(ScalarType::Str)) {
                self.err(
                    v.pos,
                    format!("{what} must name where its value comes from (`{{env: VAR}}` or `{{file: ~/path}}`), never the value itself"),
                );
                continue;
            }
            let Some(f) = self.fields(v, k.pos, &what, SECRET_KEYS) else {
                continue;
            };
            let source = match (f.get("env"), f.get("file")) {
                (Some(e), None) => self.string(e).and_then(|var| {
                    if !is_var_name(&var) {
                        self.err(e.pos, format!("invalid variable name {var:?}"));
                        return None;
                    }
                    let set = self
                        .vars
                        .get(&var)
                        .is_some_and(|value| !value.is_empty());
                    if !set && self.vars.checks_secret_sources() {
                        self.err(
                            e.pos,
                            format!("{what} comes from the environment variable {var}, which is not set (or empty)"),
                        );
                        return None;
                    }
                    Some(SecretSource::Env(var))
                }),
                (None, Some(file)) => self.string(file).and_then(|path| {
                    let resolved = expand_home(&path, self.vars.get("HOME"));
                    let Some(resolved) = resolved.filter(|p| p.is_absolute()) else {
                        self.err(
                            file.pos,
                            format!("{what}: the file must be absolute or start with ~/ (a path outside the repository), found {path:?}"),
                        );
                        return None;
                    };
                    match resolved.canonicalize() {
                        Ok(real) if real.starts_with(&self.repo_root) => {
                            self.err(
                                file.pos,
                                format!("{what}: {} is inside the repository; keep secrets out of it", resolved.display()),
                            );
                            None
                        }
                        Ok(real) if real.is_file() => Some(SecretSource::File(real)),
                        Ok(_) => {
                            self.err(file.pos, format!("{what}: {} is not a file", resolved.display()));
                            None
                        }
                        Err(_) if !self.vars.checks_secret_sources() => {
                            Some(SecretSource::File(resolved))
                        }
                        Err(e) => {
                            self.err(file.pos, format!("{what}: cannot read {}: {e}", resolved.display()));
                            None
                        }
                    }
                }),
                _ => {
                    self.err(
                        f.owner,
                        format!("{what} needs exactly one source: `env: VAR` or `file: ~/path`"),
                    );
                    None
                }
            };
            let expose = match f.get("as") {
                None => Some(SecretExpose::Env),
                Some(a) => match self.raw_string(a, "env or file") {
                    Some("env") => Some(SecretExpose::Env),
                    Some("file") => Some(SecretExpose::File),
                    Some(other) => {
                        self.err(
                            a.pos,
                            format!("unknown `as` {other:?}: expected env (a variable) or file (/run/secrets/{name})"),
                        );
                        None
                    }
                    None => None,
                },
            };
            if let (Some(source), Some(expose)) = (source, expose) {
                self.secrets.push(SecretSpec {
                    name,
                    source,
                    expose,
                });
            }
        }
    }

    /// A list of secret names, each declared under `secrets:`.
    pub(super) fn secret_refs(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.strings(node)?;
        let before = self.errors.len();
        let mut out = Vec::new();
        for (name, pos) in items {
            let known = self
                .declared_secrets
                .as_ref()
                .is_some_and(|d| d.contains(&name));
            if !known {
                let declared: Vec<&str> = self.secrets.iter().map(|s| s.name.as_str()).collect();
                let hint = suggest(&name, &declared)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.err(
                    pos,
                    format!(
                        "unknown secret `{name}` ({hint}{})",
                        if self.declared_secrets.is_none() {
                            "the pipeline has no `secrets:` section".to_string()
                        } else {
                            format!("declared: {}", declared.join(", "))
                        }
                    ),
                );
            } else if out.contains(&name) {
                self.err(pos, format!("secret `{name}` is listed twice"));
            } else {
                out.push(name);
            }
        }
        (self.errors.len() == before).then_some(out)
    }
}

/// `~/x` with the home folder; other paths as they are.
fn expand_home(path: &str, home: Option<&str>) -> Option<PathBuf> {
    match path.strip_prefix("~/") {
        Some(rest) => home.map(|h| PathBuf::from(h).join(rest)),
        None if path == "~" => None,
        None => Some(PathBuf::from(path)),
    }
}

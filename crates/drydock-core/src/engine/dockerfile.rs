//! Reading a Dockerfile for what drydock adds when it sends one with a CA
//! bundle (see `docs/trust.md`): the `RUN` instructions that get the bundle
//! mounted (BuildKit), the stages' base images (to probe for a system
//! bundle), and the copies that would carry `.drydock-trust/ca.crt` into an
//! image.
//!
//! The user's file on disk is never changed: [`add_ca_mounts`] returns the
//! text BuildKit receives. Each mount is inserted right after its `RUN`
//! keyword, on the same line, so line numbers in BuildKit's errors still
//! match the file. Parsing uses the `parse-dockerfile` crate (instruction
//! spans); `ARG` expansion in `FROM` follows the Dockerfile reference
//! (`$X`, `${X}`, `${X:-default}`, `${X:+alternative}`, global `ARG`s only,
//! build args overriding their defaults).

use std::collections::{BTreeMap, HashMap};

use parse_dockerfile::{Command, Flag, Instruction, Source};

use super::dockerignore::path_match;

/// The secret id of the CA bundle in a BuildKit session.
pub(crate) const CA_SECRET_ID: &str = "drydock-ca";

/// Where drydock puts the CA bundle in a build context, for Dockerfiles
/// that copy it themselves (see [`crate::trust::TRUST_CONTEXT_PATH`]).
const TRUST_DIR: &str = ".drydock-trust";

/// Files in which Linux distributions keep the CA bundle their TLS tools
/// read (Debian, Ubuntu and Alpine; Fedora and RHEL; openSUSE). Probed in a
/// stage's base image; only the ones that exist there as regular files are
/// mounted over.
pub(crate) const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
];

/// Where a bundle is assumed to appear after a `RUN` that installs
/// `ca-certificates` on a base image that had none (Debian, Ubuntu, Alpine).
const INSTALLED_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// An image reference (`ARG`s expanded).
    Image(String),
    /// An earlier stage (its index).
    Stage(usize),
    /// `FROM scratch`.
    Scratch,
}

/// One `RUN` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunInfo {
    /// Byte offset just after the `RUN` keyword, where a flag can go.
    pub insert_at: usize,
    /// 1-based line of the keyword.
    pub line: usize,
    /// The command may rewrite the system CA bundle (installs, reinstalls
    /// or upgrades `ca-certificates`, runs `update-ca-certificates`,
    /// upgrades OS packages): a bundle mounted over it would make the
    /// rename fail with "Device or resource busy".
    pub manages_certificates: bool,
    /// Targets the instruction already mounts something at.
    pub mount_targets: Vec<String>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageInfo {
    /// Its base.
    pub base: Base,
    /// Its `RUN`s in order.
    pub runs: Vec<RunInfo>,
    /// Its name (`FROM … AS name`), lower-cased.
    pub name: Option<String>,
    /// Context sources its `COPY`/`ADD`/`RUN --mount=type=bind` read, as
    /// written (`.`, `requirements.txt`, `src/*.py`…); URLs left out.
    pub context_sources: Vec<String>,
    /// Stages (names or indices, as written) its `COPY --from` and
    /// `RUN --mount=from=` read.
    pub from_stages: Vec<String>,
    /// The build args it declares (`ARG NAME[=default]`).
    pub args: Vec<String>,
}

/// What drydock needs to know of a Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// The stages in order.
    pub stages: Vec<StageInfo>,
    /// Lines of `COPY`/`ADD` sources or bind mounts that name `.drydock-trust`.
    pub trust_dir_uses: Vec<usize>,
    /// Instructions that copy or bind the whole context, a glob that
    /// matches `.drydock-trust`, or a path only known at build time:
    /// (line, instruction text).
    pub whole_context: Vec<(usize, String)>,
    /// The global build args (`ARG`s before the first `FROM`).
    pub global_args: Vec<String>,
}

/// Reads `text` with the build args `args` (for `FROM` expansion). An
/// unreadable Dockerfile is an error with the parser's message; the engine
/// reports the real syntax errors when it builds.
pub(crate) fn analyze(text: &str, args: &BTreeMap<String, String>) -> Result<Analysis, String> {
    let dockerfile = parse_dockerfile::parse(text).map_err(|e| e.to_string())?;
    if !dockerfile
        .instructions
        .iter()
        .any(|i| matches!(i, Instruction::From(_)))
    {
        return Err("no FROM instruction".to_string());
    }
    let lines = LineIndex::new(text);
    // Global ARGs: defaults, overridden by the build args given.
    let mut globals: HashMap<String, String> = HashMap::new();
    let mut out = Analysis::default();
    for arg in dockerfile.global_args() {
        for (name, default) in arg_pairs(&arg.arguments.value) {
            out.global_args.push(name.clone());
            let value = args.get(&name).cloned().or(default);
            if let Some(value) = value {
                globals.insert(name, value);
            }
        }
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for (index, stage) in dockerfile.stages().enumerate() {
        let image = expand(&stage.from.image.value, &globals);
        let base = if image.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if let Some(&i) = names.get(&image.to_ascii_lowercase()) {
            Base::Stage(i)
        } else {
            Base::Image(image)
        };
        if let Some((_, name)) = &stage.from.as_ {
            names.insert(name.value.to_ascii_lowercase(), index);
        }
        let mut runs = Vec::new();
        let mut context_sources = Vec::new();
        let mut from_stages = Vec::new();
        let mut stage_args = Vec::new();
        for instruction in stage.instructions {
            match instruction {
                Instruction::Arg(arg) => {
                    stage_args.extend(arg_pairs(&arg.arguments.value).into_iter().map(|(n, _)| n));
                }
                Instruction::Run(run) => {
                    let mut command = match &run.arguments {
                        Command::Shell(shell) => shell.value.to_string(),
                        Command::Exec(exec) => exec
                            .value
                            .iter()
                            .map(|a| a.value.as_ref())
                            .collect::<Vec<_>>()
                            .join(" "),
                        // A form this parser version does not know: read the
                        // instruction's text.
                        _ => text
                            .get(run.run.span.start..)
                            .and_then(|t| t.lines().next())
                            .unwrap_or_default()
                            .to_string(),
                    };
                    for doc in &run.here_docs {
                        command.push('\n');
                        command.push_str(&doc.value);
                    }
                    let mut mount_targets = Vec::new();
                    for flag in &run.options {
                        let Some(mount) = mount_flag(flag) else {
                            continue;
                        };
                        if let Some(target) = mount.get("target") {
                            mount_targets.push(target.clone());
                        }
                        if let Some(from) = mount.get("from") {
                            from_stages.push(from.clone());
                        }
                        let kind = mount.get("type").map_or("bind", String::as_str);
                        if kind == "bind" && !mount.contains_key("from") {
                            let source = mount.get("source").map_or(".", String::as_str);
                            context_sources.push(source.to_string());
                            let line = lines.line(run.run.span.start);
                            classify_source(
                                source,
                                line,
                                text_of(text, &run.run.span, &run.arguments),
                                &mut out,
                            );
                        }
                    }
                    runs.push(RunInfo {
                        insert_at: run.run.span.end,
                        line: lines.line(run.run.span.start),
                        manages_certificates: manages_certificates(&command),
                        mount_targets,
                    });
                }
                Instruction::Copy(copy) => {
                    if let Some(from) = copy.options.iter().find(|f| f.name.value == "from") {
                        if let Some(value) = &from.value {
                            from_stages.push(value.value.to_string());
                        }
                        continue;
                    }
                    let line = lines.line(copy.copy.span.start);
                    let whole = instruction_text(text, copy.copy.span.start, &copy.dest.span);
                    for source in &copy.src {
                        if let Source::Path(path) = source {
                            context_sources.push(path.value.to_string());
                            classify_source(&path.value, line, whole.clone(), &mut out);
                        }
                    }
                }
                Instruction::Add(add) => {
                    let line = lines.line(add.add.span.start);
                    let whole = instruction_text(text, add.add.span.start, &add.dest.span);
                    for source in &add.src {
                        if let Source::Path(path) = source {
                            let p = path.value.to_ascii_lowercase();
                            if p.starts_with("http://")
                                || p.starts_with("https://")
                                || p.starts_with("git@")
                            {
                                continue;
                            }
                            context_sources.push(path.value.to_string());
                            classify_source(&path.value, line, whole.clone(), &mut out);
                        }
                    }
                }
                _ => {}
            }
        }
        out.stages.push(StageInfo {
            base,
            runs,
            name: stage
                .from
                .as_
                .as_ref()
                .map(|(_, n)| n.value.to_ascii_lowercase()),
            context_sources,
            from_stages,
            args: stage_args,
        });
    }
    out.trust_dir_uses.dedup();
    out.whole_context.dedup();
    Ok(out)
}

/// What a build of one target reads from its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContextInputs {
    /// Some instruction copies the whole context (`COPY . …`, a glob over
    /// the top level, a path only known at build time).
    Whole,
    /// Only these sources (as written, relative to the context).
    Sources(Vec<String>),
}

impl Analysis {
    /// The context sources the build of `target` (`None`: the last stage)
    /// reads: the target stage, the stages it is built on, and the stages
    /// its `COPY --from`/`RUN --mount=from=` name, transitively; `None`
    /// when `target` names no stage. As BuildKit does, unused stages count
    /// for nothing.
    pub(crate) fn context_inputs(&self, target: Option<&str>) -> Option<ContextInputs> {
        let mut sources = Vec::new();
        for i in self.chain(target)? {
            for source in &self.stages[i].context_sources {
                let trimmed = source.trim();
                let cleaned = trimmed.trim_start_matches('/');
                let cleaned = cleaned.strip_prefix("./").unwrap_or(cleaned);
                let first = cleaned.split('/').find(|c| !c.is_empty() && *c != ".");
                if first.is_none() || trimmed.contains('$') {
                    return Some(ContextInputs::Whole);
                }
                sources.push(cleaned.trim_end_matches('/').to_string());
            }
        }
        sources.sort();
        sources.dedup();
        Some(ContextInputs::Sources(sources))
    }

    /// The build args the build of `target` can see: the global ones
    /// (they choose base images) and those its stages declare with `ARG`
    /// (the stages of [`Analysis::context_inputs`]). Docker ignores the
    /// others: they change nothing in the image. `None` when `target` names
    /// no stage.
    pub(crate) fn declared_args(&self, target: Option<&str>) -> Option<Vec<String>> {
        let mut args = self.global_args.clone();
        for i in self.chain(target)? {
            args.extend(self.stages[i].args.iter().cloned());
        }
        args.sort();
        args.dedup();
        Some(args)
    }

    /// The stages the build of `target` (`None`: the last stage) runs: the
    /// target stage, the stages it is built on, and the stages its `COPY
    /// --from`/`RUN --mount=from=` name, transitively, each once.
    fn chain(&self, target: Option<&str>) -> Option<Vec<usize>> {
        let find = |name: &str| -> Option<usize> {
            let lower = name.to_ascii_lowercase();
            self.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .or_else(|| {
                    name.parse::<usize>()
                        .ok()
                        .filter(|i| *i < self.stages.len())
                })
        };
        let start = match target {
            Some(t) => find(t)?,
            None => self.stages.len().checked_sub(1)?,
        };
        let mut seen = vec![false; self.stages.len()];
        let mut todo = vec![start];
        let mut chain = Vec::new();
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            chain.push(i);
            let stage = &self.stages[i];
            if let Base::Stage(b) = stage.base {
                todo.push(b);
            }
            // A `--from` that names no stage is an image: nothing of the context.
            todo.extend(stage.from_stages.iter().filter_map(|f| find(f)));
        }
        Some(chain)
    }
}

/// Whether the context-relative path `relative` is read by a build whose
/// sources are `sources` (patterns as `COPY` takes them, relative): it
/// matches one, or lies under a folder one matches.
pub(crate) fn source_reads(sources: &[String], relative: &str) -> bool {
    sources.iter().any(|pattern| {
        let mut prefix = String::new();
        relative.split('/').any(|component| {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            path_match(pattern, &prefix)
        })
    })
}

/// The text of an instruction from `start` to the end of `last`.
fn instruction_text(text: &str, start: usize, last: &std::ops::Range<usize>) -> String {
    text.get(start..last.end)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_of(text: &str, keyword: &std::ops::Range<usize>, arguments: &Command<'_>) -> String {
    let end = match arguments {
        Command::Shell(shell) => shell.span.end,
        Command::Exec(exec) => exec.span.end,
        _ => keyword.end,
    };
    instruction_text(text, keyword.start, &(keyword.start..end))
}

/// Sorts a context source into a use of `.drydock-trust`, a whole-context
/// copy, or neither.
fn classify_source(source: &str, line: usize, instruction: String, out: &mut Analysis) {
    let trimmed = source.trim();
    if trimmed.contains('$') {
        out.whole_context.push((line, instruction));
        return;
    }
    let cleaned = trimmed.trim_start_matches('/');
    let cleaned = cleaned.strip_prefix("./").unwrap_or(cleaned);
    let first = cleaned.split('/').find(|c| !c.is_empty() && *c != ".");
    match first {
        None => out.whole_context.push((line, instruction)),
        Some(first) if first.starts_with(TRUST_DIR) => out.trust_dir_uses.push(line),
        Some(first) if path_match(first, TRUST_DIR) => out.whole_context.push((line, instruction)),
        Some(_) => {}
    }
}

/// The key/value options of a `--mount` flag.
fn mount_flag(flag: &Flag<'_>) -> Option<HashMap<String, String>> {
    if flag.name.value != "mount" {
        return None;
    }
    let value = flag.value.as_ref()?;
    let mut out = HashMap::new();
    for field in value.value.split(',') {
        let (key, val) = field.split_once('=').unwrap_or((field, ""));
        let key = match key.trim().to_ascii_lowercase().as_str() {
            "dst" | "destination" => "target".to_string(),
            "src" => "source".to_string(),
            other => other.to_string(),
        };
        out.insert(key, val.trim().to_string());
    }
    Some(out)
}

/// Whether a `RUN` command may rewrite the system CA bundle.
fn manages_certificates(command: &str) -> bool {
    let tokens: Vec<&str> = command
        .split(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .filter(|t| !t.is_empty())
        .collect();
    let mut package_manager = false;
    for token in tokens {
        let t = token.to_ascii_lowercase();
        // Package names (`ca-certificates`, `ca-certificates-java`…) and the
        // tools; not the bundle's own file name (`ca-certificates.crt`).
        if t == "ca-certificates"
            || t.starts_with("ca-certificates-")
            || t == "update-ca-certificates"
            || t == "update-ca-trust"
            || matches!(
                t.as_str(),
                "upgrade" | "dist-upgrade" | "full-upgrade" | "distro-sync"
            )
            // `yum update` and its kin upgrade every package.
            || (package_manager && matches!(t.as_str(), "update" | "up"))
        {
            return true;
        }
        if matches!(t.as_str(), "yum" | "dnf" | "microdnf" | "zypper") {
            package_manager = true;
        }
    }
    false
}

/// `NAME=value NAME2` of an `ARG` instruction: names with their defaults.
fn arg_pairs(arguments: &str) -> Vec<(String, Option<String>)> {
    arguments
        .split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (
                name.to_string(),
                Some(value.trim_matches(|c| c == '"' || c == '\'').to_string()),
            ),
            None => (pair.to_string(), None),
        })
        .collect()
}

/// Expands `$X`, `${X}`, `${X:-default}` and `${X:+alternative}` from `vars`
/// (unknown variables are empty, as in a Dockerfile).
pub(crate) fn expand(value: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                out.push('$');
                chars.next();
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let mut inner = String::new();
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    inner.push(c);
                }
                let (name, op) = match inner.find(':') {
                    Some(i) => (&inner[..i], Some(&inner[i..])),
                    None => (inner.as_str(), None),
                };
                let set = vars.get(name).filter(|v| !v.is_empty());
                match op {
                    Some(op) if op.starts_with(":-") => match set {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&expand(&op[2..], vars)),
                    },
                    Some(op) if op.starts_with(":+") => {
                        if set.is_some() {
                            out.push_str(&expand(&op[2..], vars));
                        }
                    }
                    _ => out.push_str(vars.get(name).map_or("", String::as_str)),
                }
            }
            '$' if chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
            c => out.push(c),
        }
    }
    out
}

/// What [`add_ca_mounts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Mounted {
    /// The Dockerfile to send.
    pub text: String,
    /// `RUN`s that got the bundle, and how many there are in all.
    pub runs_mounted: usize,
    /// All `RUN`s.
    pub runs: usize,
    /// Lines of `RUN`s left without it because they manage certificates.
    pub skipped_managing: Vec<usize>,
    /// Lines of `RUN`s left without it because no system bundle exists at
    /// that point (the base image has none).
    pub skipped_no_bundle: Vec<usize>,
    /// The paths mounted over, over all stages.
    pub targets: Vec<String>,
}

/// Adds a secret mount of the CA bundle ([`CA_SECRET_ID`], mode 0444 so
/// that any `USER` can read it) over each system bundle that exists at each
/// `RUN` of every stage. `bundles_of` gives the system bundles present in
/// a base image (see [`SYSTEM_BUNDLES`]).
///
/// A stage starts with the bundles of its base (an image, or the stage it
/// is built `FROM` as that stage ended); a `RUN` that manages certificates
/// gets no mount, and afterwards a stage that had no bundle is taken to
/// have [`INSTALLED_BUNDLE`]. Mounting only over files that exist leaves
/// nothing in the layers: BuildKit creates missing mount targets, and the
/// folders it creates for them stay in the layer.
pub(crate) fn add_ca_mounts(
    text: &str,
    analysis: &Analysis,
    bundles_of: &dyn Fn(&str) -> Vec<String>,
) -> Mounted {
    let mut ends: Vec<Vec<String>> = Vec::new();
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut mounted = Mounted::default();
    for stage in &analysis.stages {
        let mut present = match &stage.base {
            Base::Image(image) => bundles_of(image),
            Base::Stage(i) => ends.get(*i).cloned().unwrap_or_default(),
            Base::Scratch => Vec::new(),
        };
        for run in &stage.runs {
            mounted.runs += 1;
            if run.manages_certificates {
                mounted.skipped_managing.push(run.line);
                if present.is_empty() {
                    present.push(INSTALLED_BUNDLE.to_string());
                }
                continue;
            }
            let targets: Vec<&String> = present
                .iter()
                .filter(|p| !run.mount_targets.contains(p))
                .collect();
            if targets.is_empty() {
                mounted.skipped_no_bundle.push(run.line);
                continue;
            }
            let mut flags = String::new();
            for target in targets {
                flags.push_str(&format!(
                    " --mount=type=secret,id={CA_SECRET_ID},target={target},mode=0444"
                ));
                if !mounted.targets.contains(target) {
                    mounted.targets.push(target.clone());
                }
            }
            inserts.push((run.insert_at, flags));
            mounted.runs_mounted += 1;
        }
        ends.push(present);
    }
    inserts.sort_by_key(|(at, _)| *at);
    let mut out = String::with_capacity(text.len() + inserts.len() * 96);
    let mut last = 0;
    for (at, flags) in inserts {
        out.push_str(&text[last..at]);
        out.push_str(&flags);
        last = at;
    }
    out.push_str(&text[last..]);
    mounted.text = out;
    mounted
}

/// Byte offset → 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_target_reads_the_sources_of_the_stages_it_needs() {
        let text = "FROM base AS deps\nCOPY requirements.txt .trust* /tmp/\n\
FROM deps AS dev\nCOPY requirements-dev.txt /tmp/\n\
FROM base AS production\nCOPY --from=deps /opt /opt\nCOPY app/ /app/app\n\
FROM production AS test\nCOPY . /app\n\
FROM base AS tools\nRUN --mount=type=bind,source=scripts,target=/s true\n";
        let a = analyze(text, &BTreeMap::new()).unwrap();
        let sources =
            |t: &[&str]| ContextInputs::Sources(t.iter().map(|s| s.to_string()).collect());
        let cases: &[(Option<&str>, Option<ContextInputs>)] = &[
            (
                Some("deps"),
                Some(sources(&[".trust*", "requirements.txt"])),
            ),
            (
                Some("DEV"),
                Some(sources(&[
                    ".trust*",
                    "requirements-dev.txt",
                    "requirements.txt",
                ])),
            ),
            (
                Some("production"),
                Some(sources(&[".trust*", "app", "requirements.txt"])),
            ),
            (Some("test"), Some(ContextInputs::Whole)),
            (None, Some(sources(&["scripts"]))),
            (Some("nope"), None),
        ];
        for (target, want) in cases {
            assert_eq!(&a.context_inputs(*target), want, "{target:?}");
        }
        let reads = ["requirements.txt", "app", ".trust*"].map(String::from);
        for (path, want) in [
            ("requirements.txt", true),
            ("app/x.py", true),
            ("app/sub/y.py", true),
            (".trust/ca.crt", true),
            ("apps/x.py", false),
            ("tests/test_x.py", false),
            ("requirements-dev.txt", false),
        ] {
            assert_eq!(source_reads(&reads, path), want, "{path}");
        }
    }

    use super::*;

    /// A target sees the global args and those its own stages declare;
    /// a stage it does not build from counts for nothing.
    #[test]
    fn a_target_sees_the_args_of_its_stages_only() {
        let text = "ARG BASE=alpine\nFROM ${BASE} AS a\nARG X\nRUN true\nFROM a AS b\nARG Y=1 W\nFROM alpine AS c\nARG Z\nCOPY --from=b / /\n";
        let a = analyze(text, &BTreeMap::new()).unwrap();
        let cases: [(Option<&str>, &[&str]); 4] = [
            (Some("a"), &["BASE", "X"]),
            (Some("b"), &["BASE", "W", "X", "Y"]),
            (Some("c"), &["BASE", "W", "X", "Y", "Z"]),
            (None, &["BASE", "W", "X", "Y", "Z"]),
        ];
        for (target, expected) in cases {
            assert_eq!(a.declared_args(target).unwrap(), expected, "{target:?}");
        }
        assert_eq!(a.declared_args(Some("nope")), None);
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MULTI: &str = "\
# syntax and comments are kept
ARG BASE=drydock/python:3.11
ARG SLIM
FROM ${BASE} AS deps
RUN pip install six==1.16.0
RUN apt-get update && apt-get install -y --reinstall ca-certificates
COPY requirements.txt .drydock-trust* /tmp/build/
FROM debian:${SLIM:-bookworm-slim} AS slim
RUN echo no bundle here
RUN apt-get update && apt-get install -y ca-certificates curl
RUN curl https://example.org
FROM deps AS final
USER nobody
RUN [\"python\", \"-c\", \"print(1)\"]
RUN --mount=type=secret,id=mine,target=/etc/ssl/certs/ca-certificates.crt cat /etc/ssl/certs/ca-certificates.crt
COPY --from=deps /opt /opt
FROM scratch
COPY . /
";

    #[test]
    fn stages_bases_and_runs_are_read() {
        let a = analyze(MULTI, &args(&[])).unwrap();
        let bases: Vec<&Base> = a.stages.iter().map(|s| &s.base).collect();
        assert_eq!(
            bases,
            [
                &Base::Image("drydock/python:3.11".into()),
                &Base::Image("debian:bookworm-slim".into()),
                &Base::Stage(0),
                &Base::Scratch
            ]
        );
        let runs: Vec<(usize, bool)> = a
            .stages
            .iter()
            .flat_map(|s| s.runs.iter().map(|r| (r.line, r.manages_certificates)))
            .collect();
        assert_eq!(
            runs,
            [
                (5, false),
                (6, true),
                (9, false),
                (10, true),
                (11, false),
                (14, false),
                (15, false)
            ]
        );
        assert_eq!(a.trust_dir_uses, [7]);
        assert_eq!(a.whole_context, [(18, "COPY . /".to_string())]);
        // Build args override global ARG defaults in FROM.
        let a = analyze(MULTI, &args(&[("BASE", "x/y:1"), ("SLIM", "12")])).unwrap();
        assert_eq!(a.stages[0].base, Base::Image("x/y:1".into()));
        assert_eq!(a.stages[1].base, Base::Image("debian:12".into()));
    }

    #[test]
    fn mounts_go_where_a_bundle_exists_and_nothing_manages_it() {
        let a = analyze(MULTI, &args(&[])).unwrap();
        let bundles = |image: &str| -> Vec<String> {
            if image.starts_with("drydock/") {
                vec![INSTALLED_BUNDLE.to_string()]
            } else {
                Vec::new()
            }
        };
        let m = add_ca_mounts(MULTI, &a, &bundles);
        let flag = " --mount=type=secret,id=drydock-ca,target=/etc/ssl/certs/ca-certificates.crt,mode=0444";
        let lines: Vec<&str> = m.text.lines().collect();
        let original: Vec<&str> = MULTI.lines().collect();
        assert_eq!(lines.len(), original.len(), "line numbers are kept");
        for (n, (got, was)) in lines.iter().zip(&original).enumerate() {
            let line = n + 1;
            let expect_mount = [5, 11, 14].contains(&line);
            if expect_mount {
                assert_eq!(
                    *got,
                    was.replacen("RUN", &format!("RUN{flag}"), 1),
                    "line {line}"
                );
            } else {
                assert_eq!(got, was, "line {line}");
            }
        }
        assert_eq!((m.runs_mounted, m.runs), (3, 7));
        assert_eq!(m.skipped_managing, [6, 10]);
        // Line 9: the slim base has no bundle yet; line 15 mounts its own.
        assert_eq!(m.skipped_no_bundle, [9, 15]);
        assert_eq!(m.targets, [INSTALLED_BUNDLE]);
    }

    #[test]
    fn sources_are_sorted_into_trust_uses_and_whole_context_copies() {
        // (instruction, trust use?, whole context?)
        let cases: &[(&str, bool, bool)] = &[
            ("COPY . /app", false, true),
            ("COPY ./ /app", false, true),
            ("COPY / /app", false, true),
            ("COPY * /app/", false, true),
            ("COPY .* /app/", false, true),
            ("COPY .d* /app/", false, true),
            ("COPY $SRC /app/", false, true),
            ("ADD . /app", false, true),
            ("COPY src /app/src", false, false),
            ("COPY *.txt /app/", false, false),
            ("COPY --from=deps / /", false, false),
            ("ADD https://example.org/x /x", false, false),
            ("COPY .drydock-trust/ca.crt /tmp/", true, false),
            ("COPY ./.drydock-trust* /tmp/", true, false),
            (
                "RUN --mount=type=bind,target=/src cp -r /src /app",
                false,
                true,
            ),
            (
                "RUN --mount=type=bind,source=src,target=/src ls",
                false,
                false,
            ),
            ("RUN --mount=type=bind,from=deps,target=/d ls", false, false),
            (
                "RUN --mount=type=cache,target=/root/.cache ls",
                false,
                false,
            ),
        ];
        for (instruction, trust, whole) in cases {
            let text = format!("FROM drydock/python:3.11\n{instruction}\n");
            let a = analyze(&text, &BTreeMap::new()).unwrap();
            assert_eq!(!a.trust_dir_uses.is_empty(), *trust, "{instruction}");
            assert_eq!(!a.whole_context.is_empty(), *whole, "{instruction}");
        }
    }

    #[test]
    fn certificate_management_is_recognised() {
        for (command, manages) in [
            ("apt-get install -y ca-certificates", true),
            ("apk add --no-cache ca-certificates", true),
            ("update-ca-certificates", true),
            ("update-ca-trust extract", true),
            ("apt-get update && apt-get upgrade -y", true),
            ("apt-get dist-upgrade -y", true),
            ("yum update -y", true),
            ("dnf -y update", true),
            ("zypper up", true),
            ("apt-get update && apt-get install -y curl", false),
            ("pip install --upgrade pip", false),
            ("pip install -U pip", false),
            ("npm update", false),
            ("cat /etc/ssl/certs/ca-certificates.crt", false),
            ("apt-get install -y ca-certificates-java", true),
        ] {
            assert_eq!(manages_certificates(command), manages, "{command}");
        }
    }

    #[test]
    fn expansion_follows_the_dockerfile_rules() {
        let vars: HashMap<String, String> = [("A", "x"), ("E", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (value, want) in [
            ("$A", "x"),
            ("${A}:1", "x:1"),
            ("${B:-d}", "d"),
            ("${E:-d}", "d"),
            ("${A:-d}", "x"),
            ("${A:+y}", "y"),
            ("${B:+y}", ""),
            ("\\$A", "$A"),
            ("pre-$A-post", "pre-x-post"),
            ("$1", "$1"),
        ] {
            assert_eq!(expand(value, &vars), want, "{value}");
        }
    }

    #[test]
    fn unreadable_dockerfiles_are_errors_not_panics() {
        for text in ["", "RUN echo no from\n", "FROM\n"] {
            assert!(analyze(text, &BTreeMap::new()).is_err(), "{text:?}");
        }
    }
}

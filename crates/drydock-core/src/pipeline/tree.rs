//! A YAML tree that remembers where every node starts (1-based line and column).
//!
//! Built from the events of `yaml-rust2`'s parser so that every diagnostic can
//! point at the offending key or value. Anchors and aliases are resolved by
//! copying the anchored node (positions then point at the anchored original).
//!
//! Everything a small file could make unbounded is bounded: the text itself
//! ([`super::text`]), nesting ([`MAX_DEPTH`]), nodes including alias copies
//! ([`MAX_NODES`]), entries of one collection ([`MAX_ENTRIES`]) and the length
//! of one scalar ([`MAX_SCALAR_BYTES`]). Each refusal is a [`SyntaxError`]
//! with the position of the item that crossed the limit.

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use super::text::{Pos, SyntaxError};

/// The position of a yaml-rust2 marker (its line is 1-based, its column 0-based).
fn pos_of(m: Marker) -> Pos {
    Pos {
        line: m.line().max(1),
        col: m.col() + 1,
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar: its text, whether it was written plain (unquoted, not a block
    /// scalar) and its tag, if any (`!!str` for instance, as `tag:yaml.org,2002:str`).
    Scalar {
        /// The text.
        text: String,
        /// Written plain (unquoted, not a block scalar).
        plain: bool,
        /// Its tag, if any.
        tag: Option<String>,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// Entries in file order; duplicates are kept (validation reports them).
    Map(Vec<(Node, Node)>),
}

/// The resolved type of a scalar (YAML 1.2 core schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// A string.
    Str,
}

impl Node {
    /// The type of a scalar after core-schema resolution; `None` for collections.
    pub fn scalar_type(&self) -> Option<ScalarType> {
        match &self.kind {
            Kind::Scalar { text, plain, tag } => Some(resolve(text, *plain, tag.as_deref())),
            _ => None,
        }
    }

    /// A short description for error messages: `a list`, `the integer 5`, ...
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
            Kind::Scalar { text, .. } => match self.scalar_type() {
                Some(ScalarType::Null) => "nothing (null)".to_string(),
                Some(ScalarType::Bool(b)) => format!("the boolean {b}"),
                Some(ScalarType::Int) => format!("the integer {text}"),
                Some(ScalarType::Float) => format!("the number {text}"),
                _ => format!("the string {text:?}"),
            },
        }
    }
}

fn resolve(text: &str, plain: bool, tag: Option<&str>) -> ScalarType {
    match tag {
        Some("tag:yaml.org,2002:str") => return ScalarType::Str,
        Some("tag:yaml.org,2002:null") => return ScalarType::Null,
        Some("tag:yaml.org,2002:int") => return ScalarType::Int,
        Some("tag:yaml.org,2002:float") => return ScalarType::Float,
        Some("tag:yaml.org,2002:bool") => {
            return ScalarType::Bool(matches!(text, "true" | "True" | "TRUE"))
        }
        _ => {}
    }
    if !plain {
        return ScalarType::Str;
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => ScalarType::Null,
        "true" | "True" | "TRUE" => ScalarType::Bool(true),
        "false" | "False" | "FALSE" => ScalarType::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => ScalarType::Float,
        _ if is_int(text) => ScalarType::Int,
        _ if is_float(text) => ScalarType::Float,
        _ => ScalarType::Str,
    }
}

fn is_int(t: &str) -> bool {
    if let Some(h) = t.strip_prefix("0x") {
        return !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(o) = t.strip_prefix("0o") {
        return !o.is_empty() && o.chars().all(|c| ('0'..='7').contains(&c));
    }
    let d = t.strip_prefix(['-', '+']).unwrap_or(t);
    !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
}

fn is_float(t: &str) -> bool {
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    };
    mantissa_ok && exp_ok
}

/// Deepest nesting of lists and mappings accepted (the root mapping is level 1).
///
/// A pipeline nests about 6 levels; the limit keeps every recursive walk of
/// the tree (validation, `Drop`) far from the end of the stack.
pub const MAX_DEPTH: usize = 64;

/// Most nodes (scalars, lists, mappings) one document may stand for, alias
/// copies included: 9 levels of 9 aliases to the level below stand for 9⁹
/// nodes in 476 bytes ("billion laughs"). Each alias is counted at the size
/// of what it copies before it is copied.
pub const MAX_NODES: usize = 100_000;

/// Most entries in one list or mapping.
pub const MAX_ENTRIES: usize = 10_000;

/// Longest scalar (key or value) in bytes: 128 KiB, the Linux kernel's limit
/// for one argument or environment string (`MAX_ARG_STRLEN`), which is where
/// every value of a pipeline ends up.
pub const MAX_SCALAR_BYTES: usize = 128 * 1024;

/// Parses `source` into a positioned tree. `Ok(None)` for an empty document.
///
/// The text is checked first ([`super::text::check_text`]: control
/// characters, byte order marks, size); the tree is bounded by
/// [`MAX_DEPTH`], [`MAX_NODES`], [`MAX_ENTRIES`] and [`MAX_SCALAR_BYTES`].
/// Parsing stops at the first problem.
///
/// # Errors
/// A [`SyntaxError`] at the first problem.
pub fn parse(source: &str) -> Result<Option<Node>, SyntaxError> {
    let text = super::text::check_text(source)?;
    check_directives(text)?;
    let mut builder = Builder::default();
    // The event iterator, not `Parser::load`: `load` recurses once per
    // nesting level (50,000 nested `- ` overflow the stack before any limit
    // could be checked) and panics on event orders it does not expect.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| SyntaxError {
            pos: pos_of(*e.marker()),
            message: match e.info() {
                // The scanner's own limit on `[`/`{` nesting (it scans ahead
                // of the events, so it can be reached before MAX_DEPTH is).
                "recursion limit exceeded" => format!(
                    "flow lists and mappings are nested deeper than {MAX_DEPTH} levels \
                     (drydock's limit)"
                ),
                info => info.to_string(),
            },
        })?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
        if end {
            return Ok(builder.root);
        }
    }
}

/// Refuses a `%YAML` directive of another major version (YAML 1.2, section
/// 6.8.1: such documents "should be rejected"); the parser ignores it.
fn check_directives(text: &str) -> Result<(), SyntaxError> {
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") || !(line.starts_with('%') || line.starts_with('#')) {
            if !line.trim().is_empty() {
                break;
            }
            continue;
        }
        let Some(version) = line.strip_prefix("%YAML") else {
            continue;
        };
        let version = version.split('#').next().unwrap_or("").trim();
        if version.split('.').next() != Some("1") {
            return Err(SyntaxError {
                pos: Pos {
                    line: i + 1,
                    col: 1,
                },
                message: format!(
                    "YAML version {version} is not supported (drydock reads YAML 1.2)"
                ),
            });
        }
    }
    Ok(())
}

/// Parses the bytes of a YAML file: [`super::text::check_bytes`], then [`parse`].
///
/// # Errors
/// A [`SyntaxError`] at the first problem.
pub fn parse_bytes(bytes: &[u8]) -> Result<Option<Node>, SyntaxError> {
    parse(super::text::check_bytes(bytes)?)
}

/// What [`Builder::admit`] counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// A node of the file.
    None,
    /// An alias: a copy of an anchored node.
    Alias,
    /// The copy kept of an anchored node.
    Anchor,
}

/// A list or mapping being built: where it starts, its anchor, its items
/// (keys and values alternate in a mapping) and the nodes it stands for.
struct Open {
    pos: Pos,
    anchor: usize,
    map: bool,
    items: Vec<Node>,
    size: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Anchored nodes and the number of nodes each stands for.
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    documents: usize,
    /// Nodes the document stands for so far, alias copies included.
    nodes: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos,
                message: message.into(),
            });
        }
    }

    /// Where the next item goes, for messages: `tiers[0].steps[2].env`
    /// (deep paths are shortened in the middle).
    fn path(&self) -> String {
        let mut segments: Vec<String> = Vec::new();
        for open in &self.stack {
            if open.map {
                let key = open
                    .items
                    .len()
                    .checked_sub(1)
                    .filter(|i| i % 2 == 0)
                    .and_then(|i| match &open.items[i].kind {
                        Kind::Scalar { text, .. } => Some(text.as_str()),
                        _ => None,
                    });
                if let Some(key) = key {
                    let dot = if segments.is_empty() { "" } else { "." };
                    segments.push(format!("{dot}{}", key.chars().take(40).collect::<String>()));
                } else if open.items.len() % 2 == 1 {
                    segments.push(".<key>".to_string());
                }
            } else {
                segments.push(format!("[{}]", open.items.len()));
            }
        }
        if segments.is_empty() {
            return "the document".to_string();
        }
        if segments.len() > 8 {
            segments.splice(4..segments.len() - 3, ["…".to_string()]);
        }
        format!("`{}`", segments.concat())
    }

    /// Counts `size` more nodes for an item at `pos` (`copy`: an alias, or
    /// the copy kept of an anchored node); false (and an error) when a limit
    /// is crossed.
    fn admit(&mut self, pos: Pos, size: usize, copy: Counted) -> bool {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            let what = match copy {
                Counted::Alias => format!(
                    "this alias copies {size} nodes, which makes the document stand for more \
                     than {MAX_NODES} nodes (drydock's limit; aliases of aliases multiply)"
                ),
                Counted::Anchor => format!(
                    "keeping this anchored node ({size} nodes) makes the document stand for \
                     more than {MAX_NODES} nodes (drydock's limit)"
                ),
                Counted::None => {
                    format!("the document has more than {MAX_NODES} nodes (drydock's limit)")
                }
            };
            self.fail(pos, what);
            return false;
        }
        if copy == Counted::Anchor {
            return true;
        }
        if let Some(open) = self.stack.last() {
            let entries = if open.map {
                open.items.len() / 2
            } else {
                open.items.len()
            };
            if entries >= MAX_ENTRIES {
                let what = if open.map { "mapping" } else { "list" };
                let message = format!(
                    "{}: the {what} has more than {MAX_ENTRIES} entries (drydock's limit)",
                    self.path()
                );
                self.fail(pos, message);
                return false;
            }
        }
        true
    }

    fn push_node(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 {
            // Keeping a copy of an anchored node costs as much as an alias to it
            // (anchors nested in anchors would copy the same nodes again and again).
            if !self.admit(node.pos, size, Counted::Anchor) {
                return;
            }
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            Some(open) => {
                open.items.push(node);
                open.size += size;
            }
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
    }

    fn open(&mut self, pos: Pos, anchor: usize, map: bool) {
        if self.stack.len() >= MAX_DEPTH {
            let message = format!(
                "{}: lists and mappings are nested deeper than {MAX_DEPTH} levels \
                 (drydock's limit)",
                self.path()
            );
            self.fail(pos, message);
            return;
        }
        if self.admit(pos, 1, Counted::None) {
            self.stack.push(Open {
                pos,
                anchor,
                map,
                items: Vec::new(),
                size: 1,
            });
        }
    }

    fn close(&mut self) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        let node = if open.map {
            let mut entries = Vec::with_capacity(open.items.len() / 2);
            let mut it = open.items.into_iter();
            while let (Some(k), Some(mut v)) = (it.next(), it.next()) {
                // An omitted value (`key:` then nothing) is marked at
                // the next token; point at its key instead.
                if matches!(&v.kind, Kind::Scalar { text, plain: true, tag: None } if text.is_empty())
                {
                    v.pos = k.pos;
                }
                entries.push((k, v));
            }
            // Block mappings are marked after their first key: a
            // mapping starts at its first key (or its `{`).
            let pos = entries
                .first()
                .map_or(open.pos, |(k, _)| open.pos.min(k.pos));
            Node {
                pos,
                kind: Kind::Map(entries),
            }
        } else {
            Node {
                pos: open.pos,
                kind: Kind::Seq(open.items),
            }
        };
        self.push_node(node, open.anchor, open.size);
    }
}

fn tag_name(tag: Option<Tag>) -> Option<String> {
    tag.map(|t| {
        if t.handle == "!!" {
            format!("tag:yaml.org,2002:{}", t.suffix)
        } else {
            format!("{}{}", t.handle, t.suffix)
        }
    })
}

/// Tags of YAML's core schema, the only ones drydock reads: any other tag
/// (`!!binary`, `!!set`, `!!timestamp`, a local `!custom`…) would change
/// what a value means, so it is refused rather than ignored.
const CORE_TAGS: &[&str] = &[
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
    // `!!merge <<`: the merge key, which compose files use (pipelines refuse `<<`).
    "tag:yaml.org,2002:merge",
];

/// Why a tag is not accepted, if it is not.
fn tag_problem(tag: &Option<Tag>) -> Option<String> {
    let name = tag_name(tag.clone())?;
    if CORE_TAGS.contains(&name.as_str()) {
        return None;
    }
    let shown = match name.strip_prefix("tag:yaml.org,2002:") {
        Some(suffix) => format!("!!{suffix}"),
        None => name,
    };
    Some(format!(
        "unsupported YAML tag `{shown}`: drydock reads YAML's core schema only (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map); drop the tag"
    ))
}

impl Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let tag = match &ev {
            Event::Scalar(_, _, _, tag) => tag.clone(),
            Event::SequenceStart(_, tag) | Event::MappingStart(_, tag) => tag.clone(),
            _ => None,
        };
        if let Some(problem) = tag_problem(&tag) {
            self.fail(pos_of(mark), problem);
            return;
        }
        let pos = pos_of(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        pos,
                        "the file must hold a single YAML document (a second one starts here)",
                    );
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if text.len() > MAX_SCALAR_BYTES {
                    let message = format!(
                        "{}: the value is {} KiB long; drydock's limit is {} KiB \
                         (the kernel's limit for one argument or environment string)",
                        self.path(),
                        text.len() / 1024,
                        MAX_SCALAR_BYTES / 1024
                    );
                    self.fail(pos, message);
                    return;
                }
                if !self.admit(pos, 1, Counted::None) {
                    return;
                }
                let plain = matches!(style, TScalarStyle::Plain);
                let node = Node {
                    pos,
                    kind: Kind::Scalar {
                        text,
                        plain,
                        tag: tag_name(tag),
                    },
                };
                self.push_node(node, anchor, 1);
            }
            Event::SequenceStart(anchor, _) => self.open(pos, anchor, false),
            Event::MappingStart(anchor, _) => self.open(pos, anchor, true),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => match self.anchors.get(&id).map(|(_, size)| *size) {
                Some(size) => {
                    if self.admit(pos, size, Counted::Alias) {
                        let node = self.anchors[&id].0.clone();
                        self.push_node(node, 0, size);
                    }
                }
                None => self.fail(
                    pos,
                    "alias to an anchor that is not complete (recursive alias)",
                ),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn only_core_schema_tags_are_read() {
        // Located at the tagged value.
        for (src, col) in [
            ("a: [!!binary aGVsbG8=]\n", 14),
            ("a: !custom x\n", 12),
            ("a: !!set {x: null}\n", 10),
            ("a: !<tag:example.com,2000:x> y\n", 30),
        ] {
            let err = parse(src).unwrap_err();
            assert_eq!(err.pos, p(1, col), "{src:?}: {err:?}");
            assert!(
                err.message.contains("unsupported YAML tag"),
                "{src:?}: {err:?}"
            );
        }
        for src in [
            "a: !!str 5\n",
            "a: !!map {b: !!int 1}\n",
            "a: !!seq [!!null ~]\n",
        ] {
            assert!(parse(src).is_ok(), "{src:?}");
        }
    }

    #[test]
    fn positions_of_keys_values_and_collections() {
        let src = "a: 1\nb:\n  c: [x, 'y']\n  d:\n    - e: f\n";
        let root = parse(src).unwrap().unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, p(1, 1));
        assert_eq!(entries[0].1.pos, p(1, 4));
        let Kind::Map(b) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!(entries[1].1.pos, p(3, 3));
        assert_eq!(b[0].1.pos, p(3, 6));
        let Kind::Seq(xs) = &b[0].1.kind else {
            panic!()
        };
        assert_eq!(xs[1].pos, p(3, 10));
        assert_eq!(xs[1].scalar_type(), Some(ScalarType::Str));
        let Kind::Seq(ds) = &b[1].1.kind else {
            panic!()
        };
        assert_eq!(ds[0].pos, p(5, 7));
    }

    #[test]
    fn scalar_resolution() {
        let cases = [
            ("1", true, ScalarType::Int),
            ("-12", true, ScalarType::Int),
            ("0x1F", true, ScalarType::Int),
            ("1.5", true, ScalarType::Float),
            ("1e3", true, ScalarType::Float),
            (".inf", true, ScalarType::Float),
            ("true", true, ScalarType::Bool(true)),
            ("FALSE", true, ScalarType::Bool(false)),
            ("yes", true, ScalarType::Str),
            ("~", true, ScalarType::Null),
            ("", true, ScalarType::Null),
            ("1", false, ScalarType::Str),
            ("1.2.3", true, ScalarType::Str),
            ("5m", true, ScalarType::Str),
            (".", true, ScalarType::Str),
        ];
        for (text, plain, want) in cases {
            assert_eq!(resolve(text, plain, None), want, "{text:?} plain={plain}");
        }
        assert_eq!(
            resolve("1", true, Some("tag:yaml.org,2002:str")),
            ScalarType::Str
        );
    }

    #[test]
    fn aliases_copy_nodes_and_errors_have_positions() {
        let root = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        let Kind::Map(e) = &root.kind else { panic!() };
        assert_eq!(e[0].1.kind, e[1].1.kind);

        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos, p(2, 1));
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }

    /// The 476-byte "billion laughs": nine levels of nine aliases.
    pub(crate) fn billion_laughs() -> String {
        let mut src = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let (prev, name) = (w[0], w[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            src.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        src
    }

    #[test]
    fn alias_expansion_is_bounded_and_located() {
        let src = billion_laughs();
        assert!(src.len() < 500, "{}", src.len());
        let started = std::time::Instant::now();
        let err = parse(&src).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(err.message.contains("more than 100000 nodes"), "{err:?}");
        assert!(err.pos.line >= 5, "{err:?}");
        // Reasonable reuse is fine.
        let ok = "env: &e {A: '1', B: '2'}\nx: [*e, *e, *e]\n";
        let Kind::Map(entries) = parse(ok).unwrap().unwrap().kind else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
        // Anchors nested in anchors count their copies too.
        let mut nested = String::new();
        for i in 0..60 {
            nested.push_str(&format!("{}- &a{i}\n", "  ".repeat(i)));
        }
        nested.push_str(&format!(
            "{}- [{}]\n",
            "  ".repeat(60),
            vec!["x"; 9000].join(",")
        ));
        let err = parse(&nested).unwrap_err();
        assert!(err.message.contains("anchored node"), "{err:?}");
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        for depth in [65usize, 5_000, 50_000] {
            let src = format!("x:\n  {}y\n", "- ".repeat(depth));
            let err = parse(&src).unwrap_err();
            assert_eq!(err.pos.line, 2, "{err:?}");
            assert!(err.message.contains("deeper than 64 levels"), "{err:?}");
            assert!(err.message.starts_with("`x[0][0][0]…[0][0][0]`"), "{err:?}");
            let flow = format!("x: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
            assert!(parse(&flow).is_err());
        }
        // 63 levels under the root mapping is within the limit.
        assert!(parse(&format!("x:\n  {}y\n", "- ".repeat(63))).is_ok());
    }

    #[test]
    fn entries_and_scalars_are_bounded() {
        let mut env = String::from("tiers:\n  - steps:\n      - env:\n");
        for i in 0..20_000 {
            env.push_str(&format!("          V{i}: x\n"));
        }
        let err = parse(&env).unwrap_err();
        assert_eq!(err.pos, p(10_004, 11));
        assert_eq!(
            err.message,
            "`tiers[0].steps[0].env`: the mapping has more than 10000 entries (drydock's limit)"
        );
        let list = format!("x: [{}]\n", vec!["1"; 10_001].join(","));
        assert!(parse(&list)
            .unwrap_err()
            .message
            .contains("list has more than"));
        let long = format!("cmd: [echo, {}]\n", "a".repeat(200 * 1024));
        let err = parse(&long).unwrap_err();
        assert_eq!(err.pos, p(1, 13));
        assert!(
            err.message.starts_with("`cmd[1]`: the value is 200 KiB"),
            "{err:?}"
        );
        let nodes = "- [1,2,3,4,5,6,7,8,9,10]\n".repeat(10_000);
        assert!(parse(&nodes)
            .unwrap_err()
            .message
            .contains("more than 100000 nodes"));
    }

    #[test]
    fn nothing_after_a_nul_is_dropped() {
        let src = "version: 1\n# \0\ntiers: []\nbogus: 1\n";
        let err = parse(src).unwrap_err();
        assert_eq!(err.pos, p(2, 3));
        assert!(parse_bytes(b"\xef\xbb\xbfa: 1\n").unwrap().is_some());
    }
}

//! A YAML tree that remembers where every node starts (1-based line and column).
//!
//! Built from the events of `yaml-rust2`'s parser so that every diagnostic can
//! point at the offending key or value. Anchors and aliases are resolved by
//! copying the anchored node (positions then point at the anchored original).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Pos {
    /// Line 1, column 1.
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 markers: line is 1-based, column is 0-based.
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
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

/// A YAML syntax problem: position and message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Parses `source` into a positioned tree. `Ok(None)` for an empty document.
pub fn parse(source: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: Pos::from_marker(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root)
}

enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
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

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(Open::Seq(_, _, items)) | Some(Open::Map(_, _, items)) => items.push(node),
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from_marker(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(pos, "a pipeline file must hold a single YAML document");
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let node = Node {
                    pos,
                    kind: Kind::Scalar {
                        text,
                        plain,
                        tag: tag_name(tag),
                    },
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(pos, anchor, Vec::new())),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(p, a, items)) => (
                        Node {
                            pos: p,
                            kind: Kind::Seq(items),
                        },
                        a,
                    ),
                    Some(Open::Map(p, a, items)) => {
                        let mut entries = Vec::with_capacity(items.len() / 2);
                        let mut it = items.into_iter();
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
                        let p = entries.first().map_or(p, |(k, _)| p.min(k.pos));
                        (
                            Node {
                                pos: p,
                                kind: Kind::Map(entries),
                            },
                            a,
                        )
                    }
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.push_node(node, 0);
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
}

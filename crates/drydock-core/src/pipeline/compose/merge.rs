//! YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`), resolved over the
//! positioned tree, as YAML 1.1's merge type (<https://yaml.org/type/merge.html>)
//! and Docker Compose (through its YAML library) define them: keys written in
//! the mapping win over merged ones, and earlier mappings in a merge list win
//! over later ones.
//!
//! `tree.rs` has already copied aliased nodes in place; this pass only folds
//! the merge entries into their mapping. Each merged entry keeps the position
//! of the anchored original.

use std::collections::HashSet;

use crate::pipeline::tree::{Kind, Node, Pos};

/// How deep a document may nest for this pass (deeper documents are refused
/// rather than risking the stack).
const MAX_DEPTH: usize = 200;

fn is_merge_key(k: &Node) -> bool {
    match &k.kind {
        Kind::Scalar { text, plain, tag } => {
            (*plain && text == "<<" && tag.is_none())
                || tag.as_deref() == Some("tag:yaml.org,2002:merge")
        }
        _ => false,
    }
}

fn key_text(k: &Node) -> Option<&str> {
    match &k.kind {
        Kind::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

/// Resolves every merge key in `node`; errors are `(position, message)`.
pub(crate) fn resolve(node: Node) -> Result<Node, (Pos, String)> {
    resolve_at(node, 0)
}

fn resolve_at(node: Node, depth: usize) -> Result<Node, (Pos, String)> {
    if depth > MAX_DEPTH {
        return Err((
            node.pos,
            format!("the document nests more than {MAX_DEPTH} levels deep"),
        ));
    }
    let pos = node.pos;
    let kind = match node.kind {
        Kind::Seq(items) => Kind::Seq(
            items
                .into_iter()
                .map(|n| resolve_at(n, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Kind::Map(entries) => {
            let mut explicit: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
            let mut sources: Vec<Node> = Vec::new();
            for (k, v) in entries {
                if !is_merge_key(&k) {
                    explicit.push((k, resolve_at(v, depth + 1)?));
                    continue;
                }
                match v.kind {
                    Kind::Map(_) => sources.push(resolve_at(v, depth + 1)?),
                    Kind::Seq(items) => {
                        for item in items {
                            if !matches!(item.kind, Kind::Map(_)) {
                                return Err((
                                    item.pos,
                                    format!(
                                        "a merge key `<<` takes mappings, found {} in its list",
                                        item.describe()
                                    ),
                                ));
                            }
                            sources.push(resolve_at(item, depth + 1)?);
                        }
                    }
                    _ => {
                        return Err((
                            v.pos,
                            format!(
                                "a merge key `<<` takes a mapping or a list of mappings (such as *anchor), found {}",
                                v.describe()
                            ),
                        ))
                    }
                }
            }
            let mut present: HashSet<String> = explicit
                .iter()
                .filter_map(|(k, _)| key_text(k).map(str::to_string))
                .collect();
            let mut out = explicit;
            for source in sources {
                let Kind::Map(merged) = source.kind else {
                    continue;
                };
                for (k, v) in merged {
                    let new = match key_text(&k) {
                        Some(t) => present.insert(t.to_string()),
                        None => true,
                    };
                    if new {
                        out.push((k, v));
                    }
                }
            }
            Kind::Map(out)
        }
        scalar => scalar,
    };
    Ok(Node { pos, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tree;

    fn entries(node: &Node) -> Vec<(String, String)> {
        let Kind::Map(es) = &node.kind else {
            panic!("not a map: {node:?}")
        };
        es.iter()
            .map(|(k, v)| {
                let v = match &v.kind {
                    Kind::Scalar { text, .. } => text.clone(),
                    _ => "<collection>".into(),
                };
                (key_text(k).unwrap().to_string(), v)
            })
            .collect()
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        let Kind::Map(es) = &node.kind else { panic!() };
        &es.iter().find(|(k, _)| key_text(k) == Some(key)).unwrap().1
    }

    #[test]
    fn merges_follow_yaml_rules() {
        let src = "\
base: &base {a: 1, b: 2}
more: &more {b: 3, c: 4}
one:
  <<: *base
  a: 10
list:
  <<: [*base, *more]
  d: 5
nested:
  inner:
    <<: *base
quoted:
  '<<': *base
tagged:
  !!merge <<: *more
";
        let root = resolve(tree::parse(src).unwrap().unwrap()).unwrap();
        let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(entries(get(&root, "one")), kv(&[("a", "10"), ("b", "2")]));
        assert_eq!(
            entries(get(&root, "list")),
            kv(&[("d", "5"), ("a", "1"), ("b", "2"), ("c", "4")])
        );
        assert_eq!(
            entries(get(get(&root, "nested"), "inner")),
            kv(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(entries(get(&root, "quoted")), kv(&[("<<", "<collection>")]));
        assert_eq!(entries(get(&root, "tagged")), kv(&[("b", "3"), ("c", "4")]));
        // A merged entry keeps the anchored original's position.
        let Kind::Map(es) = &get(&root, "one").kind else {
            panic!()
        };
        assert_eq!(es[1].0.pos, Pos { line: 1, col: 20 });
    }

    #[test]
    fn bad_merges_are_located() {
        let cases = [
            (
                "a:\n  <<: 5\n",
                (2, 7),
                "takes a mapping or a list of mappings",
            ),
            (
                "x: &x [1]\na:\n  <<: *x\n",
                (1, 8),
                "takes mappings, found the integer 1",
            ),
            (
                "x: &x hello\na:\n  <<: *x\n",
                (1, 7),
                "found the string \"hello\"",
            ),
            (
                "x: &x {k: 1}\na:\n  <<: [*x, 3]\n",
                (3, 12),
                "takes mappings, found the integer 3",
            ),
        ];
        for (src, (line, col), want) in cases {
            let (pos, msg) = resolve(tree::parse(src).unwrap().unwrap()).unwrap_err();
            assert_eq!((pos.line, pos.col), (line, col), "{src:?}: {msg}");
            assert!(msg.contains(want), "{src:?}: {msg}");
        }
        // Deep nesting is refused by the parser itself, before any merge.
        let deep = "a: ".to_string() + &"[".repeat(240) + &"]".repeat(240);
        let err = tree::parse(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper than"), "{err:?}");
    }
}

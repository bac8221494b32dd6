//! Limits on what one pipeline may ask for, checked on the tree before
//! validation so that a small file cannot make drydock start (or plan)
//! unbounded work, and so that what the kernel would refuse at run time
//! (after the images are built, minutes later) is refused at validation.
//!
//! The walk is by key names only and tolerates any shape: a wrong shape is
//! validation's business, reported there.

use super::tree::{Kind, Node, Pos};

/// Most tiers in a pipeline.
pub const MAX_TIERS: usize = 100;
/// Most steps in one tier (they run concurrently: one container each).
pub const MAX_STEPS_PER_TIER: usize = 100;
/// Most steps in a pipeline, all tiers together.
pub const MAX_STEPS: usize = 1_000;
/// Most services in a pipeline.
pub const MAX_SERVICES: usize = 100;
/// Most entries of one `env` (or build `args`) mapping.
pub const MAX_ENV_ENTRIES: usize = 1_000;
/// Most arguments of one command.
pub const MAX_ARGS: usize = 4_096;
/// Most bytes of one container's arguments and environment together (each
/// string plus its terminating NUL and its 8-byte pointer, as the kernel
/// counts them against `ARG_MAX`, a quarter of the stack limit: 2 MiB with
/// the usual 8 MiB stack). Half of that is left for what the image and
/// drydock add.
pub const MAX_EXEC_BYTES: usize = 1 << 20;

/// Keys whose value is (part of) the command line of a container.
const ARGV_KEYS: &[&str] = &["command", "entrypoint", "script"];

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        Kind::Map(entries) => entries.iter().find_map(|(k, v)| match &k.kind {
            Kind::Scalar { text, .. } if text == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

fn len(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => items.len(),
        Kind::Map(entries) => entries.len(),
        Kind::Scalar { .. } => 1,
    }
}

/// The item at index `i` of a list or mapping value, for locating a refusal.
fn item_pos(node: &Node, i: usize) -> Pos {
    match &node.kind {
        Kind::Seq(items) => items.get(i).map_or(node.pos, |n| n.pos),
        Kind::Map(entries) => entries.get(i).map_or(node.pos, |(k, _)| k.pos),
        Kind::Scalar { .. } => node.pos,
    }
}

/// Bytes the kernel counts for one argument or environment string.
fn exec_bytes(text: &str) -> usize {
    text.len() + 1 + 8
}

struct Limits {
    errors: Vec<(Pos, String)>,
}

impl Limits {
    fn count(&mut self, node: &Node, max: usize, what: &str) {
        let n = len(node);
        if n > max {
            self.errors.push((
                item_pos(node, max),
                format!("{what} has {n} entries; drydock's limit is {max}"),
            ));
        }
    }

    /// One container: its `env` and command line.
    fn container(&mut self, node: &Node, what: &str) {
        let mut bytes = 0usize;
        if let Some(env) = get(node, "env") {
            self.count(env, MAX_ENV_ENTRIES, &format!("the env of {what}"));
            if let Kind::Map(entries) = &env.kind {
                for (k, v) in entries {
                    if let (Kind::Scalar { text: k, .. }, Kind::Scalar { text: v, .. }) =
                        (&k.kind, &v.kind)
                    {
                        bytes += exec_bytes(k) + v.len();
                    }
                }
            }
        }
        for key in ARGV_KEYS {
            let Some(argv) = get(node, key) else { continue };
            self.count(argv, MAX_ARGS, &format!("the {key} of {what}"));
            match &argv.kind {
                Kind::Seq(items) => {
                    for item in items {
                        if let Kind::Scalar { text, .. } = &item.kind {
                            bytes += exec_bytes(text);
                        }
                    }
                }
                Kind::Scalar { text, .. } => bytes += exec_bytes(text),
                Kind::Map(_) => {}
            }
        }
        if bytes > MAX_EXEC_BYTES {
            self.errors.push((
                node.pos,
                format!(
                    "the command line and environment of {what} take {} KiB; drydock's limit \
                     is {} KiB (the kernel refuses to start a process whose arguments and \
                     environment exceed ARG_MAX, 2 MiB with the usual 8 MiB stack)",
                    bytes / 1024,
                    MAX_EXEC_BYTES / 1024
                ),
            ));
        }
    }
}

/// Every limit crossed, in file order; empty when none is.
pub(crate) fn check(root: &Node) -> Vec<(Pos, String)> {
    let mut l = Limits { errors: Vec::new() };
    if let Some(args) = get(root, "build").and_then(|b| get(b, "args")) {
        l.count(args, MAX_ENV_ENTRIES, "the build args");
    }
    if let Some(services) = get(root, "services") {
        l.count(services, MAX_SERVICES, "`services`");
        if let Kind::Map(entries) = &services.kind {
            for (name, service) in entries {
                let name = match &name.kind {
                    Kind::Scalar { text, .. } => text.chars().take(60).collect(),
                    _ => String::from("?"),
                };
                l.container(service, &format!("service {name:?}"));
            }
        }
    }
    if let Some(tiers) = get(root, "tiers") {
        l.count(tiers, MAX_TIERS, "`tiers`");
        let mut total = 0usize;
        if let Kind::Seq(tiers) = &tiers.kind {
            for (t, tier) in tiers.iter().enumerate() {
                let Some(steps) = get(tier, "steps") else {
                    continue;
                };
                l.count(
                    steps,
                    MAX_STEPS_PER_TIER,
                    &format!("the steps of tier {}", t + 1),
                );
                let Kind::Seq(steps) = &steps.kind else {
                    continue;
                };
                for (s, step) in steps.iter().enumerate() {
                    total += 1;
                    if total == MAX_STEPS + 1 {
                        l.errors.push((
                            step.pos,
                            format!(
                                "the pipeline has more than {MAX_STEPS} steps (drydock's limit)"
                            ),
                        ));
                    }
                    l.container(step, &format!("step {} of tier {}", s + 1, t + 1));
                }
            }
        }
    }
    l.errors.sort_by_key(|e| e.0);
    l.errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tree::parse;

    fn errors(src: &str) -> Vec<(Pos, String)> {
        check(&parse(src).unwrap().unwrap())
    }

    #[test]
    fn counts_are_limited_where_they_are_crossed() {
        let mut src =
            String::from("tiers:\n  - name: t\n    steps:\n      - name: s\n        env:\n");
        for i in 0..1_500 {
            src.push_str(&format!("          V{i}: x\n"));
        }
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].0,
            Pos {
                line: 1_006,
                col: 11
            }
        );
        assert!(
            e[0].1.starts_with(
                "the env of step 1 of tier 1 has 1500 entries; drydock's limit is 1000"
            ),
            "{e:?}"
        );

        let tiers = format!("tiers:\n{}", "  - name: t\n".repeat(101));
        let e = errors(&tiers);
        assert_eq!(e[0].0, Pos { line: 102, col: 5 });
        assert!(e[0].1.starts_with("`tiers` has 101 entries"), "{e:?}");

        let steps = format!("tiers:\n  - steps:\n{}", "      - name: s\n".repeat(101));
        assert!(errors(&steps)[0]
            .1
            .starts_with("the steps of tier 1 has 101"));
        assert!(
            errors("tiers:\n  - steps: [{command: [a, b]}]\nservices: {db: {env: {A: b}}}\n")
                .is_empty()
        );
    }

    #[test]
    fn command_lines_the_kernel_would_refuse_are_refused() {
        // A 100 KiB argument (under the scalar limit) repeated through an
        // alias: far over ARG_MAX, refused at the step.
        let big = "a".repeat(100 * 1024);
        let src = format!(
            "x: &big {big}\ntiers:\n  - steps:\n      - name: s\n        command: [{}]\n",
            ["*big"; 12].join(", ")
        );
        let e = errors(&src);
        assert_eq!(e[0].0, Pos { line: 4, col: 9 });
        assert!(
            e[0].1
                .contains("take 1200 KiB; drydock's limit is 1024 KiB"),
            "{e:?}"
        );
    }
}

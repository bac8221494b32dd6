//! The import-circle check: no two top-level modules of a crate of this
//! workspace import each other, directly or through others (`cargo test -p
//! drydock-core --lib architecture`). A module is a file below the crate root
//! or a folder with all its files (`engine/` is one module); the crate root
//! (`lib.rs`, `main.rs`) only declares and re-exports modules and is not one.
//!
//! Written by hand because no crate reads a Rust module tree without
//! compiling it (cargo-modules needs rust-analyzer and minutes of build): it
//! reads the sources as text, follows `mod` declarations from each crate
//! root, leaves out test code (`#[cfg(test)]` modules and items), and
//! resolves every `crate::`, `super::` and `self::` path (in `use` trees and
//! in code) to the file that defines the item, following `pub use`
//! re-exports. An arrow runs from a module to each other module whose files
//! it names; a circle is a strongly connected set of two or more modules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One module of a crate: its file and what it re-exports.
#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Child modules declared in the file (`mod x;`, `mod x { … }`).
    children: BTreeSet<String>,
    /// `pub use a::b::c as d;` → `d` → absolute path `[…, c]`.
    reexports: BTreeMap<String, Vec<String>>,
    /// `pub use a::b::*;` → absolute module paths.
    globs: Vec<Vec<String>>,
    /// Every path the module's code names, absolute (from the crate root).
    uses: Vec<Vec<String>>,
}

/// Code without comments, string and char literals (their text could look
/// like paths) and without test-only code.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{1F}'), not a lifetime ('a).
            let close = if b.get(i + 1) == Some(&b'\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == b'\'')
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                // A multi-byte char: its closing quote within 5 bytes.
                (i + 2..b.len().min(i + 6))
                    .find(|&j| b[j] == b'\'')
                    .filter(|_| b.get(i + 1).is_some_and(|x| *x >= 0x80))
            };
            match close {
                Some(j) => {
                    out.push_str("' '");
                    i = j + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    strip_test_items(&out)
}

/// Removes every item marked `#[cfg(test)]` (a `mod tests { … }`, a
/// `mod fake;`, a `use`, a function).
fn strip_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at its first `;` unless a `{` comes first, then at
        // the matching `}`.
        let semi = after.find(';');
        let brace = after.find('{');
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (Some(s), None) => s + 1,
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = after.len();
                for (k, ch) in after[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The words of `code` that start at `i` when the character before is not
/// part of an identifier.
fn word_at(code: &str, i: usize, word: &str) -> bool {
    code[i..].starts_with(word)
        && (i == 0 || !code[..i].chars().next_back().is_some_and(is_ident))
        && !code[i + word.len()..].chars().next().is_some_and(is_ident)
}

/// Expands a `use` tree (`a::{b, c::{d as e, *}}`) into
/// `(path, name it is known by or "*")`.
fn expand_use(tree: &str) -> Vec<(Vec<String>, String)> {
    fn split_top(s: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    fn go(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut base = prefix.to_vec();
            base.extend(head);
            for part in split_top(inner) {
                go(&base, part, out);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut full = prefix.to_vec();
        full.extend(path.split("::").map(|s| s.trim().to_string()));
        if full.last().map(String::as_str) == Some("self") {
            full.pop();
        }
        let name = alias.unwrap_or_else(|| full.last().cloned().unwrap_or_default());
        out.push((full, name));
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// Makes `path` (as written in module `at`) absolute from the crate root;
/// `None` for paths into other crates.
fn absolute(at: &[String], path: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let mut base: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => at.to_vec(),
        name if children.contains(name) => at.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    if first == "crate" || first == "self" {
        rest = &path[1..];
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Reads the module at `path` (module path) from `file`, and its children.
fn read_module(
    modules: &mut BTreeMap<Vec<String>, Module>,
    path: Vec<String>,
    file: PathBuf,
    children_dir: PathBuf,
) {
    let Ok(src) = std::fs::read_to_string(&file) else {
        return;
    };
    let code = code_only(&src);
    let mut module = Module {
        file: file.clone(),
        ..Default::default()
    };
    // Child modules: `mod x;` (a file) and `mod x {` (inline: its code is
    // this file's, its paths are read relative to this module too).
    let mut file_children = Vec::new();
    for (i, _) in code.match_indices("mod ") {
        if !word_at(&code, i, "mod") {
            continue;
        }
        let rest = &code[i + 4..];
        let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() {
            continue;
        }
        module.children.insert(name.clone());
        if after.starts_with(';') {
            file_children.push(name);
        }
    }
    // `use` trees.
    let mut i = 0;
    while let Some(at) = code[i..].find("use ") {
        let start = i + at;
        i = start + 4;
        if !word_at(&code, start, "use") {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        let tree = &code[start + 4..start + end];
        let public = code[..start].trim_end().ends_with("pub")
            || code[..start].trim_end().ends_with(')')
                && code[..start]
                    .trim_end()
                    .rsplit_once("pub(")
                    .is_some_and(|(_, r)| !r.contains('\n'));
        for (p, name) in expand_use(tree) {
            let Some(abs) = absolute(&path, &p, &module.children) else {
                continue;
            };
            if public {
                if name == "*" {
                    let mut m = abs.clone();
                    m.pop();
                    module.globs.push(m);
                } else {
                    module.reexports.insert(name.clone(), abs.clone());
                }
            }
            let mut used = abs;
            if used.last().map(String::as_str) == Some("*") {
                used.pop();
            }
            module.uses.push(used);
        }
        i = start + end;
    }
    // Paths in code: `crate::a::b`, `super::a`, `self::a`.
    for word in ["crate", "super", "self"] {
        for (k, _) in code.match_indices(word) {
            if !word_at(&code, k, word) || !code[k + word.len()..].starts_with("::") {
                continue;
            }
            let tail: String = code[k..]
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let segs: Vec<String> = tail
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if let Some(abs) = absolute(&path, &segs, &module.children) {
                module.uses.push(abs);
            }
        }
    }
    modules.insert(path.clone(), module);
    for child in file_children {
        let flat = children_dir.join(format!("{child}.rs"));
        let nested = children_dir.join(&child).join("mod.rs");
        let (file, dir) = if flat.is_file() {
            (flat, children_dir.join(&child))
        } else {
            (nested, children_dir.join(&child))
        };
        let mut p = path.clone();
        p.push(child);
        read_module(modules, p, file, dir);
    }
}

/// The file that defines what `path` (absolute) names.
fn resolve(
    modules: &BTreeMap<Vec<String>, Module>,
    path: &[String],
    depth: u32,
) -> Option<PathBuf> {
    if depth > 16 {
        return None;
    }
    let mut at: Vec<String> = Vec::new();
    for (k, seg) in path.iter().enumerate() {
        let module = modules.get(&at)?;
        let mut child = at.clone();
        child.push(seg.clone());
        if modules.contains_key(&child) {
            at = child;
            continue;
        }
        if let Some(target) = module.reexports.get(seg) {
            let mut full = target.clone();
            full.extend(path[k + 1..].iter().cloned());
            return resolve(modules, &full, depth + 1).or(Some(module.file.clone()));
        }
        for glob in &module.globs {
            let mut full = glob.clone();
            full.extend(path[k..].iter().cloned());
            if let Some(file) = resolve(modules, &full, depth + 1) {
                if modules.get(glob).is_some_and(|g| g.file == file) || file != module.file {
                    return Some(file);
                }
            }
        }
        return Some(module.file.clone());
    }
    modules.get(&at).map(|m| m.file.clone())
}

/// The import circles of the crate whose root file is `root`: each a list of
/// arrows `a.rs -> b.rs (crate::b::Name)`.
fn circles(root: &Path) -> Vec<Vec<String>> {
    let mut modules = BTreeMap::new();
    let dir = root
        .parent()
        .expect("a crate root has a folder")
        .to_path_buf();
    read_module(&mut modules, Vec::new(), root.to_path_buf(), dir.clone());
    // Arrows between files, with one path that draws each.
    let mut arrows: BTreeMap<PathBuf, BTreeMap<PathBuf, String>> = BTreeMap::new();
    for module in modules.values() {
        for used in &module.uses {
            if let Some(target) = resolve(&modules, used, 0) {
                if target != module.file {
                    arrows
                        .entry(module.file.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| format!("crate::{}", used.join("::")));
                }
            }
        }
    }
    // The module of each file: the first segment of its module path.
    let unit_of: HashMap<&PathBuf, &str> = modules
        .iter()
        .filter_map(|(path, m)| path.first().map(|u| (&m.file, u.as_str())))
        .collect();
    let files: Vec<&str> = unit_of
        .values()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index_of: HashMap<&str, usize> = files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    // Arrows between modules, with the file arrows that draw each.
    let mut drawn: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    let name = |f: &PathBuf| {
        f.strip_prefix(dir.parent().unwrap_or(&dir))
            .unwrap_or(f)
            .display()
            .to_string()
    };
    for (from, targets) in &arrows {
        let Some(a) = unit_of.get(from).map(|u| index_of[u]) else {
            continue;
        };
        for (to, via) in targets {
            let Some(b) = unit_of.get(to).map(|u| index_of[u]) else {
                continue;
            };
            if a != b {
                drawn.entry((a, b)).or_default().push(format!(
                    "{} -> {} ({via})",
                    name(from),
                    name(to)
                ));
            }
        }
    }
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    for (a, b) in drawn.keys() {
        edges[*a].push(*b);
    }
    // Tarjan's strongly connected components.
    struct Tarjan<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.edges[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let n = files.len();
    let mut t = Tarjan {
        edges: &edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.found
        .iter()
        .map(|component| {
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let mut lines = Vec::new();
            for &a in component {
                for &b in &edges[a] {
                    if members.contains(&b) {
                        lines.extend(drawn[&(a, b)].iter().cloned());
                    }
                }
            }
            lines
        })
        .collect()
}

/// The crate roots of the workspace.
fn roots() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        "drydock-core/src/lib.rs",
        "drydock-runner/src/lib.rs",
        "drydock-cli/src/main.rs",
    ]
    .iter()
    .map(|r| crates.join(r))
    .collect()
}

#[test]
fn no_file_of_the_workspace_imports_itself_through_others() {
    let mut report = Vec::new();
    for root in roots() {
        assert!(root.is_file(), "{} is missing", root.display());
        for circle in circles(&root) {
            report.push(circle.join("\n  "));
        }
    }
    assert!(
        report.is_empty(),
        "import circles (each arrow: importer -> imported (the path that draws it)):\n  {}",
        report.join("\n\n  ")
    );
}

/// The check finds a circle where there is one, through a re-export too,
/// and none in test code or comments.
#[test]
fn the_check_sees_circles_through_reexports_and_not_in_tests() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a.rs", "use crate::b::Thing;\npub struct A;\n");
    write("b/mod.rs", "mod inner;\npub use inner::Thing;\n");
    write("b/inner.rs", "pub struct Thing(crate::a::A);\n");
    write(
        "c.rs",
        "// crate::a::A in a comment\nconst S: &str = \"crate::a::A\";\n#[cfg(test)]\nmod tests { use crate::a::A; }\npub struct C;\n",
    );
    let found = circles(&src.join("lib.rs"));
    assert_eq!(found.len(), 1, "{found:?}");
    let text = found[0].join("\n");
    assert!(
        text.contains("a.rs -> ") && text.contains("b/inner.rs"),
        "{text}"
    );
    assert!(!text.contains("c.rs"), "{text}");
    // Files of one folder module may name each other; the root is no module.
    write(
        "b/inner.rs",
        "pub struct Thing; pub fn f() { super::g() }\n",
    );
    write(
        "b/mod.rs",
        "mod inner;\npub use inner::Thing;\npub fn g() { crate::h() }\n",
    );
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub fn h() { b::g() }\n",
    );
    assert!(
        circles(&src.join("lib.rs")).is_empty(),
        "{:?}",
        circles(&src.join("lib.rs"))
    );
    // Without the arrow back, no circle.
    write("b/inner.rs", "pub struct Thing;\n");
    assert!(circles(&src.join("lib.rs")).is_empty());
}

#[test]
fn use_trees_expand() {
    let got = expand_use("super::{a, b::{c as d, *}, self}");
    let names: Vec<String> = got
        .iter()
        .map(|(p, n)| format!("{}={n}", p.join("::")))
        .collect();
    assert_eq!(
        names,
        [
            "super::a=a",
            "super::b::c=d",
            "super::b::*=*",
            "super=super"
        ]
    );
}

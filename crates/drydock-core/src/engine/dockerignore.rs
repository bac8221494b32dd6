//! A `.dockerignore` matcher with the semantics the Docker CLI applies when
//! it sends a build context to the classic builder.
//!
//! The daemon does not apply `.dockerignore`: the client filters the context.
//! This module reproduces, in order, the three pieces of Go the CLI uses:
//!
//! 1. **Reading the file** (`dockerignore.ReadAll`, moby/buildkit): a UTF-8 BOM
//!    is dropped from the first line; a line whose *first column* is `#` is a
//!    comment (`  # x` is a pattern); every other line is trimmed of
//!    whitespace and skipped if empty; a leading `!` marks an exception and the
//!    rest is trimmed again; the pattern is cleaned like Go's `filepath.Clean`
//!    (`./a/../b` is `b`, `a/` is `a`) and one leading `/` is dropped, so
//!    `/x` and `x` are the same pattern (patterns are rooted at the context).
//! 2. **Compiling the patterns** (`patternmatcher.New` and `Pattern.compile`,
//!    moby/patternmatcher): `!` alone is an error; syntax is checked like Go's
//!    `filepath.Match` (an unclosed `[`, an empty class, a dangling `\` are
//!    errors); then each pattern becomes an exact, prefix, suffix or regular
//!    expression match:
//!    * `*` matches any run of characters except `/`, `?` one character
//!      except `/`: so `*.log` matches `x.log` but not `deep/x.log`;
//!    * `**` matches any number of directories, including none: `**/x`
//!      matches `x` and `a/b/x`; `a/**/b` matches `a/b` and `a/x/y/b`;
//!      `a/**` matches everything *below* `a` (not `a` itself);
//!    * `[...]` is a character class (`[^...]` negated, `a-z` ranges; a class
//!      may match `/`) and `\c` matches `c` literally.
//! 3. **Applying them while walking** (`archive.TarWithOptions`, moby, with
//!    `patternmatcher.MatchesUsingParentResults`): patterns are evaluated in
//!    order and the last matching one wins (`!` exceptions re-include); a
//!    pattern that matched a parent directory counts as matching everything
//!    below it; an excluded directory is not descended into *unless* some
//!    exception pattern, read as a string, starts with `dir/` (so
//!    `!vendor/keep.txt` reaches into an excluded `vendor`, but `!**/keep.txt`
//!    does not, exactly as with the Docker CLI); an excluded directory that is
//!    descended into is itself not sent, only the re-included entries below.
//!
//! The CLI also always sends the Dockerfile and `.dockerignore` even when a
//! pattern excludes them (`TrimBuildFilesFromExcludes`); see
//! [`DockerIgnore::keep`], which [`crate::engine::context`] uses for that.
//!
//! Known deviations, all in patterns Docker itself mishandles: moby turns the
//! pattern into a Go regular expression without escaping `^` or the contents
//! of classes, so `a^b` in a glob, `*` or `?` inside `[...]`, POSIX classes
//! such as `[[:alpha:]]` and escapes such as `\d` take regex meanings there.
//! Here `^` outside a class and any escaped character are literal, and `*`,
//! `?` inside a class are literal class members (`filepath.Match` semantics).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The name of the ignore file at the root of a build context.
pub const DOCKERIGNORE_FILE: &str = ".dockerignore";

/// A `.dockerignore` could not be read or holds an invalid pattern.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// A pattern is malformed (the same patterns the Docker CLI rejects).
    #[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
    Invalid {
        /// 1-based line number in the file (comments and blank lines count).
        line: usize,
        /// The pattern as written on that line (trimmed).
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The `.dockerignore` exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// Path of the file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A parsed `.dockerignore`: an ordered list of exclusion patterns and `!`
/// exceptions. See the [module documentation](self) for the exact rules.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

/// Per-pattern results for a directory, passed down to its children
/// (moby's `MatchInfo`): `true` where the pattern matched the directory or
/// one of its parents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches(Vec<bool>);

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    ///
    /// An invalid pattern is an error naming its line number and text.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        Self::from_lines(read_lines(text))
    }

    /// A matcher from patterns already read from a `.dockerignore` (as
    /// BuildKit's frontend sends them: cleaned, `!` for exceptions, no
    /// comments). An invalid pattern is an error naming its 1-based index.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        Self::from_lines(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p.as_ref().to_string())),
        )
    }

    fn from_lines(lines: impl Iterator<Item = (usize, String)>) -> Result<Self, PatternError> {
        let mut out = DockerIgnore::default();
        for (line, raw) in lines {
            let err = |reason| PatternError::Invalid {
                line,
                pattern: raw.trim().to_string(),
                reason,
            };
            // patternmatcher.New: trim, skip empty, clean, split off `!`.
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let p = clean(p);
            let (exception, p) = match p.strip_prefix('!') {
                Some("") => return Err(err("illegal exclusion pattern \"!\"")),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            validate_glob(&p).map_err(err)?;
            out.has_exceptions |= exception;
            out.patterns.push(Pattern::compile(p, exception));
        }
        Ok(out)
    }

    /// Reads `.dockerignore` from the root of `context_dir`; a missing file
    /// gives an empty matcher that excludes nothing.
    pub fn load(context_dir: &Path) -> Result<Self, PatternError> {
        let path = context_dir.join(DOCKERIGNORE_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(PatternError::Read { path, source }),
        }
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the Docker CLI would leave `rel_path` out of the context.
    ///
    /// `rel_path` is slash-separated and relative to the context root (a
    /// leading `./` or `/` is ignored). Every parent component is taken to be
    /// a directory. A path below an excluded directory that the walker would
    /// not descend into is excluded; an excluded directory that it does
    /// descend into (because of an exception below it) is itself excluded.
    /// The root (`""` or `.`) is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let parts: Vec<&str> = rel_path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut parent: Option<ParentMatches> = None;
        let mut prefix = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(part);
            let (excluded, info) = self.matches(&prefix, parent.as_ref());
            if i + 1 == parts.len() {
                return excluded;
            }
            if excluded && !self.descend_into_excluded(&prefix) {
                return true;
            }
            parent = Some(info);
        }
        false
    }

    /// One step of the walk (moby's `MatchesUsingParentResults`): whether
    /// `rel_path` is excluded given its parent directory's results (`None` at
    /// the top level, or when unknown: parents are then matched from the
    /// path itself), and the results to pass to its children.
    pub fn matches(&self, rel_path: &str, parent: Option<&ParentMatches>) -> (bool, ParentMatches) {
        let parent = parent.filter(|p| p.0.len() == self.patterns.len());
        let mut excluded = false;
        let mut info = Vec::with_capacity(self.patterns.len());
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.0[i]);
            if !hit {
                // An exclusion can't change an excluded path, nor an exception
                // an included one: skip (moby does, and the results depend on it).
                if pattern.exception != excluded {
                    info.push(false);
                    continue;
                }
                hit = pattern.matches(rel_path);
                if !hit && parent.is_none() {
                    hit = parent_dirs(rel_path).any(|dir| pattern.matches(dir));
                }
            }
            info.push(hit);
            if hit {
                excluded = !pattern.exception;
            }
        }
        (excluded, ParentMatches(info))
    }

    /// Whether the walker must still look inside the excluded directory
    /// `dir_rel_path`: some exception pattern, as a string, starts with
    /// `dir/` (the Docker CLI's literal prefix check).
    pub fn descend_into_excluded(&self, dir_rel_path: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        let dir_slash = format!("{dir_rel_path}/");
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash))
    }

    /// Makes sure `rel_path` is sent: if it is excluded, appends an exception
    /// matching exactly that path (as the Docker CLI does for the Dockerfile
    /// and `.dockerignore`). Unlike the CLI, the path is taken literally, not
    /// as a pattern.
    pub fn keep(&mut self, rel_path: &str) {
        if self.is_excluded(rel_path) {
            let text = clean(rel_path);
            self.has_exceptions = true;
            self.patterns.push(Pattern {
                text,
                exception: true,
                kind: Kind::Exact,
            });
        }
    }
}

/// `dockerignore.ReadAll`: the lines that hold patterns, numbered from 1,
/// with `!` kept and the rest cleaned and rooted.
fn read_lines(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n').enumerate().filter_map(|(i, line)| {
        // bufio.ScanLines drops one trailing `\r`.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            return None;
        }
        let mut p = line.trim();
        if p.is_empty() {
            return None;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut p = if p.is_empty() {
            String::new()
        } else {
            clean(p)
        };
        if p.len() > 1 && p.starts_with('/') {
            p.remove(0);
        }
        Some((i + 1, if invert { format!("!{p}") } else { p }))
    })
}

/// Go's `filepath.Clean` for `/`-separated paths (`""` → `.`); also used
/// by the context's path resolution.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            _ => out.push(part),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The parent directories of a slash path, shortest first (`a`, `a/b` for
/// `a/b/c`).
fn parent_dirs(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The syntax check of Go's `filepath.Match` (Unix): `\` must escape
/// something; a class must be closed and non-empty; a class member must not
/// be a bare `-` or `]`.
pub(crate) fn validate_glob(p: &str) -> Result<(), &'static str> {
    const BAD: &str = "syntax error in pattern";
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next().ok_or(BAD)?;
            }
            '[' => {
                chars.next_if_eq(&'^');
                let mut members = 0;
                loop {
                    if members > 0 && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    class_char(&mut chars).ok_or(BAD)?;
                    if chars.next_if_eq(&'-').is_some() {
                        class_char(&mut chars).ok_or(BAD)?;
                    }
                    members += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One (possibly escaped) class member for [`validate_glob`] (Go's `getEsc`):
/// `None` if it is missing, a bare `-` or `]`, or the class ends right after.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let c = match chars.next()? {
        '-' | ']' => return None,
        '\\' => chars.next()?,
        c => c,
    };
    chars.peek()?;
    Some(c)
}

/// One compiled pattern (moby's `Pattern`).
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    kind: Kind,
}

/// How a pattern matches, chosen as moby's `compile` chooses its match type.
#[derive(Debug, Clone)]
enum Kind {
    /// No glob characters: the path equals the pattern.
    Exact,
    /// Literal text followed by a final `**`: the path starts with the text.
    Prefix,
    /// A leading `**` followed by literal text: the path ends with the text
    /// (or, for `**/x`, is `x`).
    Suffix,
    /// Anything else, matched like moby's anchored regular expression.
    Glob(Vec<Token>),
}

/// A piece of a [`Kind::Glob`]; comments give moby's regular expression.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// One literal character.
    Lit(char),
    /// `*`: `[^/]*`.
    Star,
    /// `?`: `[^/]`.
    One,
    /// `**` (and `**/`) inside a pattern: `(.*/)?`.
    Dirs,
    /// `**` at the end after other glob characters: `.*`.
    Rest,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    /// moby's `Pattern.compile`, producing tokens instead of a regex string.
    fn compile(text: String, exception: bool) -> Pattern {
        #[derive(PartialEq)]
        enum Detected {
            Exact,
            Prefix,
            Suffix,
            Regexp,
        }
        let mut detected = Detected::Exact;
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        let mut first = true;
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.next_if_eq(&'*').is_some() => {
                    // `**/` is treated as `**`.
                    chars.next_if_eq(&'/');
                    if chars.peek().is_none() {
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            tokens.push(Token::Rest);
                            detected = Detected::Regexp;
                        }
                    } else {
                        tokens.push(Token::Dirs);
                        detected = Detected::Regexp;
                    }
                    if first {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    detected = Detected::Regexp;
                }
                '?' => {
                    tokens.push(Token::One);
                    detected = Detected::Regexp;
                }
                '\\' => match chars.next() {
                    Some(next) => {
                        tokens.push(Token::Lit(next));
                        detected = Detected::Regexp;
                    }
                    None => tokens.push(Token::Lit('\\')),
                },
                '[' => {
                    tokens.push(parse_class(&mut chars));
                    detected = Detected::Regexp;
                }
                ']' => {
                    // A stray `]` is literal in a regex, but moby still
                    // switches to regex matching.
                    tokens.push(Token::Lit(']'));
                    detected = Detected::Regexp;
                }
                c => tokens.push(Token::Lit(c)),
            }
            first = false;
        }
        let kind = match detected {
            Detected::Exact => Kind::Exact,
            Detected::Prefix => Kind::Prefix,
            Detected::Suffix => Kind::Suffix,
            Detected::Regexp => Kind::Glob(tokens),
        };
        Pattern {
            text,
            exception,
            kind,
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/') == Some(path)
            }
            Kind::Glob(tokens) => glob_match(tokens, path),
        }
    }
}

/// Parses a class after its `[` (already validated by [`validate_glob`]).
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Token {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            break;
        }
        let Some(lo) = next_escaped(chars) else { break };
        let hi = if chars.next_if_eq(&'-').is_some() {
            next_escaped(chars).unwrap_or(lo)
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    Token::Class { negated, ranges }
}

fn next_escaped(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    match chars.next()? {
        '\\' => chars.next(),
        c => Some(c),
    }
}

/// Go's `filepath.Match(pattern, name)` on Unix: `*` matches any run of
/// characters but `/`, `?` one character but `/`, `[...]` a class, `\c` the
/// character `c`; the whole name must match. A malformed pattern matches
/// nothing (Go returns an error, which its callers here treat as no match).
pub(crate) fn path_match(pattern: &str, name: &str) -> bool {
    if validate_glob(pattern).is_err() {
        return false;
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::One,
            '[' => parse_class(&mut chars),
            '\\' => Token::Lit(chars.next().unwrap_or('\\')),
            c => Token::Lit(c),
        });
    }
    glob_match(&tokens, name)
}

/// Whether `tokens` match the whole of `path` (the anchored regex `^...$`).
///
/// Dynamic programming over (token, position), right to left: linear in
/// tokens × characters, no backtracking blow-up.
fn glob_match(tokens: &[Token], path: &str) -> bool {
    let s: Vec<char> = path.chars().collect();
    let n = s.len();
    // next[i]: tokens[j+1..] match s[i..]; starts as "no tokens left".
    let mut next: Vec<bool> = (0..=n).map(|i| i == n).collect();
    let mut cur = vec![false; n + 1];
    for token in tokens.iter().rev() {
        match token {
            Token::Star | Token::Rest => {
                // `[^/]*` or `.*` (Go's `.` does not match a newline).
                let stop = if *token == Token::Star { '/' } else { '\n' };
                cur[n] = next[n];
                for i in (0..n).rev() {
                    cur[i] = next[i] || (s[i] != stop && cur[i + 1]);
                }
            }
            Token::Dirs => {
                // `(.*/)?`: nothing, or anything up to and including a `/`.
                let mut through_slash = false;
                cur[n] = next[n];
                for i in (0..n).rev() {
                    through_slash = (s[i] == '/' && next[i + 1]) || (s[i] != '\n' && through_slash);
                    cur[i] = next[i] || through_slash;
                }
            }
            single => {
                cur[n] = false;
                for i in 0..n {
                    let ok = match single {
                        Token::Lit(c) => s[i] == *c,
                        Token::One => s[i] != '/',
                        Token::Class { negated, ranges } => {
                            ranges.iter().any(|&(lo, hi)| lo <= s[i] && s[i] <= hi) != *negated
                        }
                        _ => unreachable!("multi-character tokens handled above"),
                    };
                    cur[i] = ok && next[i + 1];
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (dockerignore text, path, excluded?)
    const CASES: &[(&str, &str, bool)] = &[
        // no patterns
        ("", "a", false),
        // exact names, and a pattern excludes everything below a matched dir
        ("a", "a", true),
        ("a", "b", false),
        ("a", "a/b/c", true),
        ("a/b", "a/b/c.txt", true),
        ("a/b", "a", false),
        ("a/b", "ab", false),
        // patterns are rooted: no match at depth
        ("*.log", "x.log", true),
        ("*.log", "deep/x.log", false),
        ("x", "d/x", false),
        // `*` and `?` don't cross `/`
        ("*", "anything", true),
        ("a*", "abc", true),
        ("a*c", "ab/c", false),
        ("a?c", "abc", true),
        ("a?c", "a/c", false),
        ("a?c", "ac", false),
        ("*/x", "d/x", true),
        ("*/x", "d/e/x", false),
        ("*/*.txt", "d/f.txt", true),
        ("*/*.txt", "f.txt", false),
        // `**` forms
        ("**/x", "x", true),
        ("**/x", "a/b/x", true),
        ("**/x", "a/bx", false),
        ("**/x", "x/inner", true),
        ("**/*.log", "a.log", true),
        ("**/*.log", "a/b/c.log", true),
        ("**/*.log", "a/b/c.txt", false),
        ("a/**", "a/x", true),
        ("a/**", "a/x/y", true),
        ("a/**", "a", false),
        ("a/**", "ab", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/yb", false),
        ("a/**/b", "b", false),
        ("a*/**", "ab/c", true),
        ("a*/**", "ab", false),
        ("**", "anything/at/all", true),
        ("a**", "abc/d", true),
        // rooted and cleaned patterns
        ("/x", "x", true),
        ("/x", "d/x", false),
        ("./a/../b", "b", true),
        ("./a/../b", "a", false),
        ("a/", "a/f", true),
        ("a//b", "a/b", true),
        ("/a/./b/", "a/b", true),
        // comments (column 1 only) and blank lines
        ("# a\nb", "a", false),
        ("# a\nb", "b", true),
        ("   \n\n\tb\t\n", "b", true),
        (" # a", " # a", false),
        (" # a", "# a", true),
        ("\u{feff}a", "a", true),
        ("a\r\nb\r\n", "b", true),
        // character classes and escapes
        ("[ab].txt", "a.txt", true),
        ("[ab].txt", "c.txt", false),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("[^a]x", "bx", true),
        ("[^a]x", "ax", false),
        ("a[/]b", "a/b", true),
        ("[\\]]", "]", true),
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("a\\?b", "a?b", true),
        ("a\\?b", "axb", false),
        ("\\[x]", "[x]", true),
        // regex metacharacters are literal
        ("a.b", "a.b", true),
        ("a.b", "axb", false),
        ("*.b", "xa.b", true),
        ("*.b", "xab", false),
        ("(a)|b+", "(a)|b+", true),
        ("*(a)", "x(a)", true),
        // `!` exceptions: last match wins
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        ("!README.md\n*.md", "README.md", true),
        ("a\n!a\na", "a", true),
        ("a\n!a", "a", false),
        ("! a", "a", false),
        ("*\n! keep", "keep", false),
        // exceptions re-include below an excluded directory
        ("vendor\n!vendor/keep.txt", "vendor/keep.txt", false),
        ("vendor\n!vendor/keep.txt", "vendor/other.txt", true),
        ("vendor\n!vendor/keep.txt", "vendor", true),
        ("vendor\n!vendor/sub", "vendor/sub/deep/f", false),
        ("vendor\n!vendor/**/*.go", "vendor/b.go", false),
        ("vendor\n!vendor/**/*.go", "vendor/b.c", true),
        ("*\n!src", "src/main.rs", false),
        ("*\n!src\nsrc/*.tmp", "src/x.tmp", true),
        // the CLI's descent check is a literal prefix: `!**/x` can't reach
        // into an excluded directory, but works outside one
        ("vendor\n!**/keep.txt", "vendor/keep.txt", true),
        ("**/*.txt\n!**/keep.txt", "d/keep.txt", false),
        ("**/*.txt\n!**/keep.txt", "d/other.txt", true),
        // ...and only into the directory the exception names: `vendor/x` is
        // itself excluded and `vendor/*/keep/` doesn't start with `vendor/x/`
        ("vendor\n!vendor/*/keep", "vendor/x/keep", true),
        ("vendor\n!vendor/**/*.go", "vendor/a/b.go", true),
        // ...and a pattern matched by a parent directory stays matched for
        // the children (MatchesUsingParentResults)
        ("a\n!a/f\na", "a/f", false),
        ("a\n!a/f\na", "a/g", true),
        // leading `./` and `/` in the queried path are ignored; root never
        ("a", "./a", true),
        ("*", "", false),
        ("*", ".", false),
    ];

    #[test]
    fn matcher_table() {
        let mut failures = Vec::new();
        for &(text, path, want) in CASES {
            let ignore = DockerIgnore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let got = ignore.is_excluded(path);
            if got != want {
                failures.push(format!(
                    "patterns {text:?}, path {path:?}: got {got}, want {want}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn invalid_patterns_name_line_and_pattern() {
        // (text, line, pattern)
        let cases = [
            ("!", 1, "!"),
            ("a\n# c\n\n!  ", 4, "!"),
            ("[", 1, "["),
            ("a\n[]", 2, "[]"),
            ("a[b", 1, "a[b"),
            ("[a-]", 1, "[a-]"),
            ("x\\", 1, "x\\"),
            ("ok\n  *.[ch  \n", 2, "*.[ch"),
        ];
        for (text, want_line, want_pattern) in cases {
            match DockerIgnore::parse(text) {
                Err(PatternError::Invalid { line, pattern, .. }) => {
                    assert_eq!(
                        (line, pattern.as_str()),
                        (want_line, want_pattern),
                        "{text:?}"
                    );
                }
                other => panic!("{text:?}: expected an invalid pattern, got {other:?}"),
            }
        }
        let msg = DockerIgnore::parse("a\n[").unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("\"[\""), "{msg}");
    }

    #[test]
    fn clean_like_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("a/", "a"),
            ("./a/../b", "b"),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("//a//b/", "/a/b"),
            ("/", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn keep_re_includes_excluded_paths() {
        let mut ignore = DockerIgnore::parse("*\nbuild").unwrap();
        for path in ["Dockerfile", "build/Dockerfile", ".dockerignore"] {
            assert!(ignore.is_excluded(path));
            ignore.keep(path);
            assert!(!ignore.is_excluded(path), "{path}");
        }
        assert!(ignore.is_excluded("build/other"));
        // A path that is not excluded adds nothing.
        let mut ignore = DockerIgnore::parse("*.log").unwrap();
        ignore.keep("Dockerfile");
        assert_eq!(ignore.patterns.len(), 1);
    }

    #[test]
    fn load_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ignore = DockerIgnore::load(dir.path()).unwrap();
        assert!(ignore.is_empty());
        fs::write(dir.path().join(DOCKERIGNORE_FILE), "target\n").unwrap();
        assert!(DockerIgnore::load(dir.path())
            .unwrap()
            .is_excluded("target/x"));
    }
}

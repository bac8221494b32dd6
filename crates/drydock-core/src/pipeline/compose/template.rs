//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?error}`,
//! `${VAR?error}` and `$$`, with the semantics of Docker Compose v2
//! (compose-go's `template` package).
//!
//! Written by hand: compose-go's rules are a regular expression plus a brace
//! counter with quirks of their own (nested defaults, the greedy match to the
//! last `}` of a line, unset variables becoming empty strings), and no crate
//! reproduces them; drydock's own pipeline interpolation
//! ([`crate::pipeline::interpolate`]) is deliberately stricter and is not the
//! same language.
//!
//! The rules, as compose-go applies them:
//! * `$$` is a literal `$`;
//! * `$NAME` and `${NAME}` (NAME matching `[_A-Za-z][_A-Za-z0-9]*`) take the
//!   variable's value, or the empty string when it is unset (compose warns);
//! * `${NAME` followed by `:-`, `-`, `:+`, `+`, `:?` or `?` takes an argument up
//!   to the matching `}`; the argument is interpolated in turn (so defaults
//!   nest: `${A:-${B}}`);
//! * a `$` followed by anything else (a digit, a space, the end) is kept;
//! * `${` not followed by a valid name and `}` or operator is an error
//!   ("invalid template").

/// A variable lookup: the value, or `None` when the variable is unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How deep `${A:-${B:-...}}` may nest (compose has no limit; drydock bounds
/// the recursion so that hostile input cannot exhaust the stack).
const MAX_NESTING: usize = 32;

/// The result of interpolating one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    /// The interpolated text.
    pub text: String,
    /// Variables that were referenced without a default and were unset (so
    /// became empty strings), in order of appearance, without repeats.
    pub unset: Vec<String>,
}

/// Interpolates `input` as Docker Compose v2 does. The error is a message
/// meant to follow a `file:line:col:` prefix.
pub(crate) fn substitute(input: &str, lookup: Lookup) -> Result<Expanded, String> {
    let mut unset = Unset::default();
    let text = expand(input, lookup, 0, &mut unset)?;
    Ok(Expanded {
        text,
        unset: unset.names,
    })
}

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() && is_name_char(bytes[i]) {
        i += 1;
    }
    i
}

/// Unset names in order of appearance, each once.
#[derive(Default)]
struct Unset {
    names: Vec<String>,
    seen: std::collections::HashSet<String>,
}

fn note_unset(unset: &mut Unset, name: &str) {
    if unset.seen.insert(name.to_string()) {
        unset.names.push(name.to_string());
    }
}

fn invalid(input: &str) -> String {
    format!(
        "invalid interpolation in {input:?}: expected $NAME, ${{NAME}}, ${{NAME:-default}}, ${{NAME-default}}, ${{NAME:+alt}}, ${{NAME:?error}} (NAME matching [A-Za-z_][A-Za-z0-9_]*), or $$ for a literal $"
    )
}

/// The index of the `}` closing the `${` at the start of `s`, counted as
/// compose-go's `getFirstBraceClosingIndex` does: every `{` opens a level and
/// skips the character after it, every `}` closes one.
fn balanced_close(s: &[u8]) -> Option<usize> {
    let mut open = 0i64;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if s[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `:-`: default when unset or empty.
    DefaultIfEmpty,
    /// `-`: default when unset.
    DefaultIfUnset,
    /// `:+`: alternative when set and not empty.
    AltIfNotEmpty,
    /// `+`: alternative when set.
    AltIfSet,
    /// `:?`: error when unset or empty.
    RequireNotEmpty,
    /// `?`: error when unset.
    RequireSet,
}

fn operator(rest: &[u8]) -> Option<(Op, usize)> {
    match rest {
        [b':', b'-', ..] => Some((Op::DefaultIfEmpty, 2)),
        [b':', b'+', ..] => Some((Op::AltIfNotEmpty, 2)),
        [b':', b'?', ..] => Some((Op::RequireNotEmpty, 2)),
        [b'-', ..] => Some((Op::DefaultIfUnset, 1)),
        [b'+', ..] => Some((Op::AltIfSet, 1)),
        [b'?', ..] => Some((Op::RequireSet, 1)),
        _ => None,
    }
}

fn expand(input: &str, lookup: Lookup, depth: usize, unset: &mut Unset) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "interpolation nested more than {MAX_NESTING} levels deep in {input:?}"
        ));
    }
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while let Some(off) = input[i..].find('$') {
        let d = i + off;
        out.push_str(&input[i..d]);
        match bytes.get(d + 1) {
            Some(b'$') => {
                out.push('$');
                i = d + 2;
            }
            Some(&c) if is_name_start(c) => {
                let end = name_end(bytes, d + 1);
                let name = &input[d + 1..end];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => note_unset(unset, name),
                }
                i = end;
            }
            Some(b'{') => {
                let name_start = d + 2;
                if !bytes.get(name_start).is_some_and(|&c| is_name_start(c)) {
                    return Err(invalid(input));
                }
                let end = name_end(bytes, name_start);
                let name = &input[name_start..end];
                if bytes.get(end) == Some(&b'}') {
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => note_unset(unset, name),
                    }
                    i = end + 1;
                    continue;
                }
                let Some((op, op_len)) = operator(&bytes[end..]) else {
                    return Err(invalid(input));
                };
                let arg_start = end + op_len;
                // compose's pattern matches greedily up to the last `}` of the
                // line, then cuts the match at the balanced closing brace.
                let line_end = input[arg_start..]
                    .find('\n')
                    .map_or(input.len(), |p| arg_start + p);
                let Some(last) = input[arg_start..line_end].rfind('}') else {
                    return Err(invalid(input));
                };
                let match_end = arg_start + last;
                let close = balanced_close(&bytes[d..=match_end]).map_or(match_end, |k| d + k);
                let arg = &input[arg_start..close];
                let value = lookup(name);
                let text = match op {
                    Op::DefaultIfEmpty => match value {
                        Some(v) if !v.is_empty() => v,
                        _ => expand(arg, lookup, depth + 1, unset)?,
                    },
                    Op::DefaultIfUnset => match value {
                        Some(v) => v,
                        None => expand(arg, lookup, depth + 1, unset)?,
                    },
                    Op::AltIfNotEmpty => match value {
                        Some(v) if !v.is_empty() => expand(arg, lookup, depth + 1, unset)?,
                        Some(v) => v,
                        None => String::new(),
                    },
                    Op::AltIfSet => match value {
                        Some(_) => expand(arg, lookup, depth + 1, unset)?,
                        None => String::new(),
                    },
                    Op::RequireNotEmpty | Op::RequireSet => match value {
                        Some(v) if op == Op::RequireSet || !v.is_empty() => v,
                        _ => {
                            let reason = expand(arg, lookup, depth + 1, unset)?;
                            return Err(if reason.is_empty() {
                                format!("required variable {name} is missing a value")
                            } else {
                                format!("required variable {name} is missing a value: {reason}")
                            });
                        }
                    },
                };
                out.push_str(&text);
                i = close + 1;
            }
            _ => {
                out.push('$');
                i = d + 1;
            }
        }
    }
    out.push_str(&input[i..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "USER" => Some("ada".into()),
            "B" => Some("bee".into()),
            _ => None,
        }
    }

    /// Expected values follow compose-go's template tests and the compose
    /// specification's interpolation section.
    #[test]
    fn expansions() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain", "plain", &[]),
            ("", "", &[]),
            ("$HOME/x", "/root/x", &[]),
            ("${HOME}/x", "/root/x", &[]),
            ("$HOME$USER", "/rootada", &[]),
            ("${HOME}${USER}", "/rootada", &[]),
            ("$NOPE", "", &["NOPE"]),
            ("a${NOPE}b$NOPE", "ab", &["NOPE"]),
            ("${NOPE:-d}", "d", &[]),
            ("${EMPTY:-d}", "d", &[]),
            ("${HOME:-d}", "/root", &[]),
            ("${NOPE-d}", "d", &[]),
            ("${EMPTY-d}", "", &[]),
            ("${HOME-d}", "/root", &[]),
            ("${NOPE:+alt}", "", &[]),
            ("${EMPTY:+alt}", "", &[]),
            ("${HOME:+alt}", "alt", &[]),
            ("${NOPE+alt}", "", &[]),
            ("${EMPTY+alt}", "alt", &[]),
            ("${HOME?no}", "/root", &[]),
            ("${EMPTY?no}", "", &[]),
            ("${HOME:?no}", "/root", &[]),
            ("${NOPE:-}", "", &[]),
            ("${NOPE:-a b:-c}", "a b:-c", &[]),
            ("${NOPE-x:-y}", "x:-y", &[]),
            ("${NOPE:-${B}}", "bee", &[]),
            ("${NOPE:-${NADA:-deep}}", "deep", &[]),
            ("${NOPE:-${NADA}}", "", &["NADA"]),
            ("${NOPE:-x}-${B:-y}", "x-bee", &[]),
            ("${NOPE:-{x}}", "{x}", &[]),
            ("${NOPE:-x}}", "x}", &[]),
            ("$$", "$", &[]),
            ("$${HOME}", "${HOME}", &[]),
            ("$$HOME", "$HOME", &[]),
            ("$$$HOME", "$/root", &[]),
            ("cost: 5$", "cost: 5$", &[]),
            ("$1 $ $-", "$1 $ $-", &[]),
            ("é${HOME}ü", "é/rootü", &[]),
            ("${home}", "", &["home"]),
            ("$HOME.d", "/root.d", &[]),
            ("${HOME}1", "/root1", &[]),
            ("$HOME1", "", &["HOME1"]),
        ];
        for (input, want, want_unset) in cases {
            let got = substitute(input, &env).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.text, *want, "{input:?}");
            assert_eq!(got.unset, *want_unset, "{input:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "${NOPE:?set it}",
                "required variable NOPE is missing a value: set it",
            ),
            ("${EMPTY:?}", "required variable EMPTY is missing a value"),
            ("${NOPE?}", "required variable NOPE is missing a value"),
            ("${NOPE:?${B} is needed}", "missing a value: bee is needed"),
            ("${", "invalid interpolation"),
            ("${}", "invalid interpolation"),
            ("${1A}", "invalid interpolation"),
            ("${A B}", "invalid interpolation"),
            ("${A:=b}", "invalid interpolation"),
            ("${HOME", "invalid interpolation"),
            ("${A:-b", "invalid interpolation"),
            ("${A:-b\n}", "invalid interpolation"),
        ];
        for (input, want) in cases {
            let err = substitute(input, &env).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let deep = "${A:-".repeat(100) + &"}".repeat(100);
        assert!(substitute(&deep, &env).unwrap_err().contains("nested"));
    }
}

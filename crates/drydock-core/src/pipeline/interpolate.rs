//! `${NAME}`, `${NAME:-default}` and `$$` in string values.

use std::collections::BTreeMap;

/// The built-in variable names a run provides.
pub const BUILTIN_VARS: [&str; 4] = [
    "DRYDOCK_GIT_SHA",
    "DRYDOCK_GIT_SHORT_SHA",
    "DRYDOCK_GIT_BRANCH",
    "DRYDOCK_RUN_ID",
];

/// The variables interpolation can see: a snapshot of the environment plus
/// the run's built-ins. A built-in wins over an environment variable of the
/// same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    env: BTreeMap<String, String>,
    builtins: BTreeMap<String, String>,
    /// See [`Vars::without_secret_sources`].
    skip_secret_sources: bool,
}

impl Vars {
    /// Variables from an explicit map (used by tests and embedders).
    pub fn new(env: BTreeMap<String, String>) -> Self {
        Vars {
            env,
            builtins: BTreeMap::new(),
            skip_secret_sources: false,
        }
    }

    /// For reading a pipeline without running it where its secrets are not
    /// at hand (`drydock plan`, `drydock ci export` on a laptop that holds
    /// no CI secret): a secret's source is checked for its form only, not
    /// for being there (an unset variable, a missing file). A run (and
    /// `drydock validate`) always checks both.
    pub fn without_secret_sources(mut self) -> Self {
        self.skip_secret_sources = true;
        self
    }

    /// Whether secret sources must be there (see [`Vars::without_secret_sources`]).
    pub fn checks_secret_sources(&self) -> bool {
        !self.skip_secret_sources
    }

    /// A snapshot of the process environment (variables that are not valid
    /// UTF-8 are skipped).
    pub fn from_process_env() -> Self {
        Vars::new(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// Adds a built-in such as `DRYDOCK_GIT_SHA` (see [`BUILTIN_VARS`]); it
    /// takes precedence over an environment variable of the same name.
    pub fn with_builtin(mut self, name: &str, value: impl Into<String>) -> Self {
        self.builtins.insert(name.to_string(), value.into());
        self
    }

    /// The value of `name`: built-ins first, then the environment.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.builtins
            .get(name)
            .or_else(|| self.env.get(name))
            .map(String::as_str)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Expands `${NAME}`, `${NAME:-default}` and `$$` in `input`.
///
/// * `${NAME:-default}` uses `default` when `NAME` is unset **or empty** (as in
///   the shell); the default is literal text (it may be empty, cannot contain
///   `}` and may not itself contain `${`).
/// * `$$` is a literal `$`; a `$` followed by anything else but `{` is kept.
/// * an unset variable without default, an unterminated `${`, or a bad name is
///   an error (the message, without location).
pub fn interpolate(input: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(end) = body_and_tail.find('}') else {
                return Err(format!(
                    "unterminated variable reference in {input:?}: `${{` without a closing `}}` (write `$$` for a literal `$`)"
                ));
            };
            let body = &body_and_tail[..end];
            rest = &body_and_tail[end + 1..];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(format!(
                    "bad variable reference `${{{body}}}`: expected ${{NAME}} or ${{NAME:-default}} with NAME matching [A-Za-z_][A-Za-z0-9_]*"
                ));
            }
            if let Some(d) = default {
                if d.contains("${") {
                    return Err(format!(
                        "bad variable reference `${{{body}`: a default cannot contain another `${{`"
                    ));
                }
            }
            match (vars.get(name), default) {
                (Some(""), Some(d)) => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "variable {name} is not set (use ${{{name}:-default}} to give a default)"
                    ))
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let env = [
            ("HOME", "/root"),
            ("EMPTY", ""),
            ("DRYDOCK_RUN_ID", "from-env"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Vars::new(env)
            .with_builtin("DRYDOCK_GIT_SHA", "abc123")
            .with_builtin("DRYDOCK_RUN_ID", "run-7")
    }

    #[test]
    fn expansions() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("${HOME}/x", "/root/x"),
            ("a${HOME}b${HOME}c", "a/rootb/rootc"),
            ("${DRYDOCK_GIT_SHA}", "abc123"),
            ("${DRYDOCK_RUN_ID}", "run-7"),
            ("${NOPE:-fallback}", "fallback"),
            ("${NOPE:-}", ""),
            ("${EMPTY}", ""),
            ("${EMPTY:-d}", "d"),
            ("${HOME:-d}", "/root"),
            ("${NOPE:-a b:-c}", "a b:-c"),
            ("$$", "$"),
            ("$${HOME}", "${HOME}"),
            ("$$$$", "$$"),
            ("cost: 5$", "cost: 5$"),
            ("$HOME", "$HOME"),
            ("a $ b", "a $ b"),
            ("$$$${HOME}", "$${HOME}"),
            ("$$${HOME}", "$/root"),
            ("é${HOME}ü", "é/rootü"),
        ];
        let v = vars();
        for (input, want) in cases {
            assert_eq!(interpolate(input, &v).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "${FOO}",
                "variable FOO is not set (use ${FOO:-default} to give a default)",
            ),
            ("x ${FOO} y", "variable FOO is not set"),
            ("${HOME", "unterminated variable reference"),
            ("${", "unterminated variable reference"),
            ("${}", "bad variable reference `${}`"),
            ("${1A}", "bad variable reference"),
            ("${A-B}", "bad variable reference"),
            ("${A:=b}", "bad variable reference"),
            ("${A B}", "bad variable reference"),
            ("${A:-${B}}", "cannot contain another"),
        ];
        let v = vars();
        for (input, want) in cases {
            let err = interpolate(input, &v).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }
}

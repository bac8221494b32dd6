//! Env files (`KEY=VALUE` lines) read as Docker Compose v2 reads them.
//!
//! Used for compose's `env_file`, for the project's `.env` next to a compose
//! file, and for the pipeline's own `env_file` key. The reference is
//! compose-go's `dotenv` package (the parser Docker Compose v2 uses); its
//! rules, which [`parse_env`] follows:
//!
//! * blank lines and lines whose first non-blank character is `#` are skipped;
//!   a UTF-8 byte-order mark at the start is ignored;
//! * `KEY=VALUE`, `KEY: VALUE` (YAML style) and `export KEY=VALUE`; blanks
//!   around the key and after `=` are ignored; a name is made of letters,
//!   digits, `_`, `.`, `-`, `[` and `]`;
//! * a `KEY` alone on its line takes its value from the environment (the
//!   lookup), and is left out when the lookup has none;
//! * unquoted values run to the end of the line; ` #` (a space, then `#`)
//!   starts a comment; trailing blanks are trimmed; `KEY=` is the empty string;
//! * `'single quotes'` are literal (only `\'` is unescaped) and may span lines;
//! * `"double quotes"` may span lines and understand `\a \b \f \n \r \t \v \\
//!   \" \$` and `\0NNN` (octal); any other backslash is kept as written;
//! * unquoted and double-quoted values are interpolated with compose's rules
//!   (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, ... see
//!   [`crate::pipeline::compose`]): a name is looked up in the environment
//!   first, then in the lines above it; an unset name becomes the empty string;
//! * a later line for the same key replaces the earlier one (the returned pairs
//!   keep file order; collect them into a map to get compose's result).
//!
//! Written by hand because no crate reads this dialect faithfully: `dotenvy`,
//! the well-kept Rust reader, refuses unquoted values with spaces, a `KEY`
//! alone and `KEY: VALUE`, treats backslashes in unquoted values as escapes,
//! knows no `${VAR:-default}`, and interpolates from the process environment
//! directly rather than through a caller's lookup.
//!
//! Where compose-go silently reads something other than what was written,
//! drydock refuses it with a located error instead: text after a closing quote
//! (`KEY="a"b`, which compose reads as a second, inherited key `b`), an empty
//! name (`=value`), a name with blanks inside, and NUL bytes or invalid UTF-8.
//! A `KEY` alone on the last line without a final newline is read as inherited
//! (compose-go mis-reads it as a value of the empty name).
//!
//! Docker Compose 1.29 (python-dotenv) differs: it interpolates only `${VAR}`
//! and `${VAR:-default}` (not `$VAR`), prefers earlier lines of the file over
//! the environment, ends unquoted values at a tab before `#` too, and knows
//! no `KEY: VALUE`. drydock follows v2.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::compose::template;
use super::error::Diagnostic;

/// The largest env file drydock reads, in bytes (1 MiB).
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// The most entries (assignments) an env file may hold.
pub const MAX_ENV_ENTRIES: usize = 10_000;

/// The result of parsing an env file with the unset variables it referenced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Parsed {
    /// `(name, value)` in file order; later duplicates win.
    pub pairs: Vec<(String, String)>,
    /// Variables referenced without a default that were unset (they became
    /// empty strings), in order, without repeats.
    pub unset: Vec<String>,
}

/// Reads the env file at `path` as Docker Compose v2 reads it (see the
/// module documentation for the rules).
///
/// `label` names the file in errors; `lookup` gives the environment: it
/// answers a `KEY` alone and is asked first when a value names `${VAR}`.
/// Returns `(name, value)` pairs in file order; later duplicates win when
/// collected into a map.
///
/// Errors are located `label:line:col` (1-based): an invalid name, an
/// unterminated quote, text after a closing quote, a bad or required-but-unset
/// interpolation, a NUL byte or invalid UTF-8. A file larger than
/// [`MAX_ENV_FILE_BYTES`] or with more than [`MAX_ENV_ENTRIES`] entries is
/// refused. A file that cannot be read (missing, a directory, no permission)
/// is reported at `label:1:1`; callers usually report it where the file is
/// named instead.
pub fn read_env_file(
    path: &Path,
    label: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, Diagnostic> {
    let bytes = read_bounded(path, label, "env file", MAX_ENV_FILE_BYTES)?;
    let source = decode(&bytes, label, "env file")?;
    parse_env(&source, label, lookup)
}

/// Parses env-file text held in memory; the rules and errors of
/// [`read_env_file`] (without the file-system ones).
pub fn parse_env(
    source: &str,
    label: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, Diagnostic> {
    parse_env_with(source, label, lookup, &|_| None).map(|p| p.pairs)
}

/// Reads a file (`what`: "env file", "compose file") of at most `limit` bytes;
/// problems are reported at `label:1:1`.
pub(crate) fn read_bounded(
    path: &Path,
    label: &str,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>, Diagnostic> {
    let at_start = |message: String| Diagnostic {
        file: label.to_string(),
        line: 1,
        col: 1,
        message,
    };
    let file = std::fs::File::open(path)
        .map_err(|e| at_start(format!("cannot read {what} {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| at_start(format!("cannot read {what} {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Err(at_start(format!(
            "cannot read {what} {}: it is a directory",
            path.display()
        )));
    }
    let too_big = || {
        at_start(format!(
            "{what} {} is larger than {limit} bytes: refusing to read it",
            path.display()
        ))
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| at_start(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// UTF-8 text without NUL bytes, or an error at the first bad byte.
pub(crate) fn decode(bytes: &[u8], label: &str, what: &str) -> Result<String, Diagnostic> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = String::from_utf8_lossy(good);
            let (line, col) = line_col(&prefix, prefix.len());
            return Err(Diagnostic {
                file: label.to_string(),
                line,
                col,
                message: format!(
                    "invalid UTF-8 (byte 0x{:02x}): {what}s must be UTF-8 text",
                    bytes[e.valid_up_to()]
                ),
            });
        }
    };
    if let Some(i) = text.find('\0') {
        let (line, col) = line_col(text, i);
        return Err(Diagnostic {
            file: label.to_string(),
            line,
            col,
            message: format!("NUL byte: {what}s must be text"),
        });
    }
    Ok(text.to_string())
}

/// 1-based line and column (in characters) of byte offset `at` in `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Go's `unicode.IsSpace` minus the line feed, as compose-go's `isSpace`.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Parses `source`; interpolation asks `lookup` first, then the lines above,
/// then `base` (compose passes the variables of earlier env files there).
pub(crate) fn parse_env_with(
    source: &str,
    label: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    base: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, Diagnostic> {
    let src = source.strip_prefix('\u{feff}').unwrap_or(source);
    // Positions are reported in the file as written (BOM included).
    let shift = source.len() - src.len();
    let err = |at: usize, message: String| {
        let (line, col) = line_col(source, at + shift);
        Diagnostic {
            file: label.to_string(),
            line,
            col,
            message,
        }
    };
    let mut out = Parsed::default();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut noted: HashSet<String> = HashSet::new();
    let mut pos = 0usize;
    loop {
        // Statement start: skip blanks, line feeds and comment lines.
        loop {
            let rest = &src[pos..];
            let trimmed = rest.trim_start();
            pos += rest.len() - trimmed.len();
            if trimmed.starts_with('#') {
                pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                break;
            }
        }
        if pos >= src.len() {
            break;
        }
        // `export` followed by blanks (Go's regexp `^export\s+`).
        let rest = &src[pos..];
        if let Some(after) = rest.strip_prefix("export") {
            if after.starts_with([' ', '\t', '\n', '\u{0c}', '\r']) {
                pos += "export".len();
                pos += src[pos..].len() - src[pos..].trim_start_matches(is_blank).len();
            }
        }
        // The name, up to `=`, `:` or the end of the line.
        let key_start = pos;
        let mut end = None;
        for (i, c) in src[pos..].char_indices() {
            match c {
                '=' | ':' | '\n' => {
                    end = Some((pos + i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if is_blank(c) || c.is_alphanumeric() => {}
                c => {
                    let line = src[key_start..].lines().next().unwrap_or("");
                    return Err(err(
                        pos + i,
                        format!(
                            "unexpected character {c:?} in variable name {line:?} (a name is made of letters, digits, _, ., -, [ and ])"
                        ),
                    ));
                }
            }
        }
        // A name alone on the last line (no final newline) is inherited.
        let (key_end, sep) = end.unwrap_or((src.len(), '\n'));
        let key = src[key_start..key_end].trim_end();
        if key.is_empty() && sep == '\n' {
            // `export` alone on its line: compose reads nothing from it.
            pos = (key_end + 1).min(src.len());
            continue;
        }
        if key.is_empty() {
            return Err(err(
                key_start,
                format!("missing variable name before `{sep}`"),
            ));
        }
        if let Some(i) = key.find(char::is_whitespace) {
            return Err(err(
                key_start + i,
                format!("variable name {key:?} cannot contain blanks"),
            ));
        }
        if out.pairs.len() >= MAX_ENV_ENTRIES {
            return Err(err(
                key_start,
                format!("more than {MAX_ENV_ENTRIES} entries: refusing to read further"),
            ));
        }
        let key = key.to_string();
        pos = (key_end + 1).min(src.len());
        if sep == '\n' {
            if let Some(value) = lookup(&key) {
                seen.insert(key.clone(), value.clone());
                out.pairs.push((key, value));
            }
            continue;
        }
        pos += src[pos..].len() - src[pos..].trim_start_matches(is_blank).len();
        let value_start = pos;
        let vars = |name: &str| {
            lookup(name)
                .or_else(|| seen.get(name).cloned())
                .or_else(|| base(name))
        };
        let interpolate = |raw: &str, unset: &mut Vec<String>, noted: &mut HashSet<String>| {
            template::substitute(raw, &vars)
                .map(|e| {
                    for n in e.unset {
                        if noted.insert(n.clone()) {
                            unset.push(n);
                        }
                    }
                    e.text
                })
                .map_err(|m| err(value_start, m))
        };
        let value = match src[pos..].chars().next() {
            Some(q @ ('"' | '\'')) => {
                let (raw, after) = quoted(src, pos, q).ok_or_else(|| {
                    err(
                        value_start,
                        format!("unterminated quoted value: the {q} opened here is never closed"),
                    )
                })?;
                pos = after;
                // Only blanks and a comment may follow the closing quote.
                pos += src[pos..].len() - src[pos..].trim_start_matches(is_blank).len();
                match src[pos..].chars().next() {
                    None | Some('\n') => {}
                    Some('#') => pos += src[pos..].find('\n').unwrap_or(src.len() - pos),
                    Some(_) => {
                        return Err(err(
                            pos,
                            format!(
                                "unexpected text after the closing {q} of {key}'s value (compose would read it as another variable); quote the whole value or start a comment with #"
                            ),
                        ))
                    }
                }
                if q == '"' {
                    interpolate(&unescape(&raw), &mut out.unset, &mut noted)?
                } else {
                    raw
                }
            }
            _ => {
                let line_end = src[pos..].find('\n').map_or(src.len(), |i| pos + i);
                let mut raw = &src[pos..line_end];
                if let Some(i) = raw.find(" #") {
                    raw = &raw[..i];
                }
                pos = line_end;
                interpolate(raw.trim_end(), &mut out.unset, &mut noted)?
            }
        };
        seen.insert(key.clone(), value.clone());
        out.pairs.push((key, value));
    }
    Ok(out)
}

/// The text between the quote `q` at byte `start` and its closing quote (as
/// compose-go collects it: `\` + the quote gives the quote, any other escape is
/// kept with its backslash) and the offset after the closing quote.
fn quoted(src: &str, start: usize, q: char) -> Option<(String, usize)> {
    let mut chars = String::new();
    let mut escape = false;
    for (i, c) in src[start + 1..].char_indices() {
        if c != q {
            if !escape && c == '\\' {
                escape = true;
                continue;
            }
            if escape {
                escape = false;
                chars.push('\\');
            }
            chars.push(c);
            continue;
        }
        if escape {
            escape = false;
            chars.push(c);
            continue;
        }
        return Some((chars, start + 1 + i + 1));
    }
    None
}

/// compose-go's `expandEscapes` for double-quoted values: `\a \b \f \n \r \t
/// \v \\ \"`, `\$` (a literal `$`, kept as `$$` for interpolation) and
/// `\0NNN` (octal); anything else, including `\c`, `\x..` and `\u....`, is kept
/// as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut cs = after.chars();
        let replaced: Option<(String, usize)> = match cs.next() {
            Some('a') => Some(("\u{07}".into(), 1)),
            Some('b') => Some(("\u{08}".into(), 1)),
            Some('f') => Some(("\u{0c}".into(), 1)),
            Some('n') => Some(("\n".into(), 1)),
            Some('r') => Some(("\r".into(), 1)),
            Some('t') => Some(("\t".into(), 1)),
            Some('v') => Some(("\u{0b}".into(), 1)),
            Some('$') => Some(("$$".into(), 1)),
            Some('"') => Some(("\"".into(), 1)),
            Some('\\') => Some(("\\".into(), 1)),
            Some('c') => Some(("\\c".into(), 1)),
            Some('0') => {
                let digits: String = after[1..]
                    .chars()
                    .take(3)
                    .take_while(char::is_ascii_digit)
                    .collect();
                let len = 1 + digits.len();
                let octal = (digits.len() == 3 && digits.chars().all(|c| c < '8'))
                    .then(|| u32::from_str_radix(&digits, 8).ok())
                    .flatten()
                    .filter(|v| *v <= 0xff)
                    .and_then(char::from_u32);
                Some(match octal {
                    Some(c) => (c.to_string(), len),
                    None => (format!("\\{}", &after[..len]), len),
                })
            }
            _ => None,
        };
        match replaced {
            Some((text, len)) => {
                out.push_str(&text);
                rest = &after[len..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "OPTION_A" => Some("5".into()),
            "FROM_ENV" => Some("env value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse_map(src: &str, lookup: &dyn Fn(&str) -> Option<String>) -> HashMap<String, String> {
        parse_env(src, "t.env", lookup)
            .unwrap_or_else(|e| panic!("{src:?}: {e}"))
            .into_iter()
            .collect()
    }

    /// One value per line; expectations from compose-go's dotenv tests
    /// (`TestParsing`, `TestExpanding`, the quoted/unquoted fixtures).
    #[test]
    fn values_as_compose_v2_reads_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("FOO=bar", "FOO", "bar"),
            ("FOO =bar", "FOO", "bar"),
            ("FOO= bar", "FOO", "bar"),
            ("FOO = bar baz ", "FOO", "bar baz"),
            ("FOO=\"bar\"", "FOO", "bar"),
            ("FOO='bar'", "FOO", "bar"),
            (r#"FOO="escaped\"bar""#, "FOO", r#"escaped"bar"#),
            (r#"FOO="\"quoted\"""#, "FOO", r#""quoted""#),
            (r#"FOO="'d'""#, "FOO", "'d'"),
            ("OPTION_A: 1", "OPTION_A", "1"),
            ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
            ("OPTION_A=1:B", "OPTION_A", "1:B"),
            ("export OPTION_B=2", "OPTION_B", "2"),
            (r"export OPTION_B='\n'", "OPTION_B", r"\n"),
            ("export exportFoo=2", "exportFoo", "2"),
            ("exportFOO=2", "exportFOO", "2"),
            ("export_FOO =2", "export_FOO", "2"),
            ("export.FOO= 2", "export.FOO", "2"),
            ("export\tOPTION_B=2", "OPTION_B", "2"),
            ("  export OPTION_B=2", "OPTION_B", "2"),
            ("export OPTION_B=\"export A\"", "OPTION_B", "export A"),
            ("export=value", "export", "value"),
            (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
            (r"FOO=a\tb", "FOO", r"a\tb"),
            (r#"FOO="a\tb""#, "FOO", "a\tb"),
            (
                r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
                "KEY",
                "Z\u{07}Z\u{08}Z\u{0c}Z\nZ\rZ\tZ\u{0b}Z\\ZSZ",
            ),
            (r#"KEY="\x07""#, "KEY", r"\x07"),
            (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
            (r#"KEY="a\cb""#, "KEY", r"a\cb"),
            (r#"KEY="it\'s""#, "KEY", r"it\'s"),
            (r#"KEY="\012""#, "KEY", r"\012"),
            (r#"KEY="\0777""#, "KEY", r"\0777"),
            ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
            ("VAR-WITH-DASHES=dashes", "VAR-WITH-DASHES", "dashes"),
            ("ARR[0]=x", "ARR[0]", "x"),
            ("FOO=foobar=", "FOO", "foobar="),
            ("FOO=bar # this is foo", "FOO", "bar"),
            ("FOO=bar #this is foo", "FOO", "bar"),
            ("FOO=bar #", "FOO", "bar"),
            (
                "FOO=123#not-an-inline-comment",
                "FOO",
                "123#not-an-inline-comment",
            ),
            ("FOO=a\t#b", "FOO", "a\t#b"),
            ("FOO= #x", "FOO", "#x"),
            (r#"FOO="bar#baz""#, "FOO", "bar#baz"),
            (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
            (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
            ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
            (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\u{07}z"),
            (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\u{07}z"),
            (r#"FOO="bar\\r\ b\az""#, "FOO", "bar\\r\\ b\u{07}z"),
            (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
            ("FOO='Let\\'s go!'", "FOO", "Let's go!"),
            ("FOO='a\\\\b'", "FOO", "a\\\\b"),
            (" KEY =value", "KEY", "value"),
            ("\tKEY=value", "KEY", "value"),
            ("KEY=", "KEY", ""),
            ("KEY=   ", "KEY", ""),
            ("KEY=''", "KEY", ""),
            ("KEY=\"\"", "KEY", ""),
            ("KEY=value\r\nOTHER=1", "KEY", "value"),
            ("KEY=\"value\"\r\nOTHER=1", "KEY", "value"),
            ("KEY=é ü", "KEY", "é ü"),
            ("\u{feff}KEY=bom", "KEY", "bom"),
            (
                "KEY='first line\nsecond line'",
                "KEY",
                "first line\nsecond line",
            ),
            ("KEY=\"a\nb\"", "KEY", "a\nb"),
            ("KEY=$FROM_ENV", "KEY", "env value"),
            ("KEY=${FROM_ENV}!", "KEY", "env value!"),
            ("KEY=\"quote $FROM_ENV\"", "KEY", "quote env value"),
            ("KEY='quote $FROM_ENV'", "KEY", "quote $FROM_ENV"),
            (r#"KEY="foo\$BAR""#, "KEY", "foo$BAR"),
            (r#"KEY="foo\${BAR}""#, "KEY", "foo${BAR}"),
            ("KEY=$$literal", "KEY", "$literal"),
            ("KEY=${NOPE:-fallback}", "KEY", "fallback"),
            ("KEY=${EMPTY-kept}", "KEY", ""),
            ("KEY=$NOPE", "KEY", ""),
            ("FROM_ENV", "FROM_ENV", "env value"),
            ("FROM_ENV\n", "FROM_ENV", "env value"),
            ("export FROM_ENV\n", "FROM_ENV", "env value"),
            // A name alone does not hide the environment from later lines
            // (in compose 1.29 it does: python-dotenv then sees no value).
            ("FROM_ENV\nX=${FROM_ENV}!", "X", "env value!"),
            ("NOT_SET\nX=${NOT_SET:-d}", "X", "d"),
        ];
        for (src, key, want) in cases {
            let got = parse_map(src, &env);
            assert_eq!(
                got.get(*key).map(String::as_str),
                Some(*want),
                "{src:?}: {got:?}"
            );
        }
    }

    #[test]
    fn whole_files() {
        // compose-go's fixtures/substitutions.env: the environment wins over
        // earlier lines when interpolating (TestSubstitutionsWithEnvFilePrecedence).
        let src = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n";
        let got = parse_env(src, "t.env", &env).unwrap();
        let want = [
            ("OPTION_A", "1"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        // Without the environment, earlier lines are used.
        let got = parse_map(src, &no_env);
        assert_eq!(got["OPTION_D"], "1_1");

        // Comments, blank lines, inherited names, duplicates (kept in order).
        let src =
            "# comment\n\n  \t# indented comment\nA=1\nNOT_SET\nFROM_ENV\nA=2\n\r\nB: 'x y'\n";
        let got = parse_env(src, "t.env", &env).unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["A", "FROM_ENV", "A", "B"]);
        assert_eq!(got[2].1, "2");
        assert_eq!(got[3].1, "x y");

        // compose-go's fixtures/quoted.env
        let src = "OPTION_A='1'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_H=\"\\n\"\nOPTION_I = \"echo 'asd'\" # Inline comment\nOPTION_J = 'first line\nsecond line\nthird line\nand so on'\nOPTION_K='Let\\'s go!'\nOPTION_Z = \"last value\"\n";
        let got = parse_map(src, &no_env);
        assert_eq!(got["OPTION_D"], "\\n");
        assert_eq!(got["OPTION_H"], "\n");
        assert_eq!(got["OPTION_I"], "echo 'asd'");
        assert_eq!(
            got["OPTION_J"],
            "first line\nsecond line\nthird line\nand so on"
        );
        assert_eq!(got["OPTION_K"], "Let's go!");
        assert_eq!(got["OPTION_Z"], "last value");
        assert_eq!(got.len(), 8);

        // Empty and comment-only files.
        for src in ["", "\n", "\r\n", "\t\t ", "# Comment", "\t # comment"] {
            assert!(parse_env(src, "t.env", &env).unwrap().is_empty(), "{src:?}");
        }
    }

    #[test]
    fn base_lookup_comes_after_earlier_lines() {
        let base = |n: &str| (n == "X" || n == "Y").then(|| format!("base-{n}"));
        let got = parse_env_with("X=file\nA=$X-$Y-$Z\n", "t.env", &no_env, &base).unwrap();
        assert_eq!(got.pairs[1].1, "file-base-Y-");
        assert_eq!(got.unset, ["Z"]);
    }

    #[test]
    fn errors_are_located() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("lol$wut", 1, 4, "unexpected character '$' in variable name"),
            ("A=1\nFOO BAR=1", 2, 4, "cannot contain blanks"),
            ("A=1\n=value", 2, 1, "missing variable name before `=`"),
            ("KEY=\"", 1, 5, "unterminated quoted value"),
            ("KEY=\"value", 1, 5, "unterminated quoted value"),
            ("KEY=\"value\\\"", 1, 5, "unterminated quoted value"),
            ("KEY=\"value'", 1, 5, "unterminated quoted value"),
            ("KEY='", 1, 5, "unterminated quoted value"),
            ("KEY='value\\'", 1, 5, "unterminated quoted value"),
            ("X=1\nKEY='value\"\nmore", 2, 5, "unterminated quoted value"),
            ("KEY=\"a\"b", 1, 8, "unexpected text after the closing \""),
            (
                "KEY='a' OTHER=b",
                1,
                9,
                "unexpected text after the closing '",
            ),
            (
                "A=1\nB=${NOPE:?is required}",
                2,
                3,
                "required variable NOPE is missing a value: is required",
            ),
            ("B=\"${1}\"", 1, 3, "invalid interpolation"),
            ("é=1\nKEY\u{7f}=2", 2, 4, "unexpected character"),
        ];
        for (src, line, col, want) in cases {
            let e = parse_env(src, "t.env", &no_env).unwrap_err();
            assert_eq!(
                (e.file.as_str(), e.line, e.col),
                ("t.env", *line, *col),
                "{src:?}: {e}"
            );
            assert!(e.message.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn files_bounds_and_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.env");
        std::fs::write(&ok, "A=1\nB=\"two\"\n").unwrap();
        assert_eq!(
            read_env_file(&ok, "ok.env", &no_env).unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two".to_string())
            ]
        );

        type Case = (&'static str, Vec<u8>, (usize, usize), &'static str);
        let cases: Vec<Case> = vec![
            ("nul.env", b"A=1\nB=x\0y\n".to_vec(), (2, 4), "NUL byte"),
            (
                "latin1.env",
                b"A=1\nB=caf\xe9\n".to_vec(),
                (2, 6),
                "invalid UTF-8 (byte 0xe9)",
            ),
            (
                "big.env",
                vec![b'#'; MAX_ENV_FILE_BYTES as usize + 1],
                (1, 1),
                "larger than 1048576 bytes",
            ),
            (
                "many.env",
                "A=1\n".repeat(MAX_ENV_ENTRIES + 1).into_bytes(),
                (MAX_ENV_ENTRIES + 1, 1),
                "more than 10000 entries",
            ),
        ];
        for (name, content, (line, col), want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let e = read_env_file(&path, name, &no_env).unwrap_err();
            assert_eq!((e.line, e.col), (line, col), "{name}: {e}");
            assert!(e.message.contains(want), "{name}: {e}");
        }

        let e = read_env_file(&dir.path().join("missing.env"), "missing.env", &no_env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("missing.env:1:1: cannot read env file"),
            "{e}"
        );
        let e = read_env_file(dir.path(), "dir", &no_env).unwrap_err();
        assert!(e.message.contains("it is a directory"), "{e}");
    }
}

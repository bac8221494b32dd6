//! Splitting a compose `command:` / `entrypoint:` string into an argv, as
//! Docker Compose v2 does (compose-go decodes a string command with
//! `github.com/mattn/go-shellwords`, default options: no variable expansion,
//! no command substitution).
//!
//! Written by hand: the Rust splitters (`shell-words`, `shlex`) follow POSIX
//! `sh`, and go-shellwords does not: a backslash escapes any character even
//! inside double quotes, `\t` and `\n` become a tab and a line feed, and `#`
//! starts no comment.
//!
//! Where go-shellwords silently drops the rest of the string (at an unquoted
//! `;`, `&`, `|`, `<` or `>`) or fails with "invalid command line string"
//! (`(`, `)`, and backquotes, which would otherwise keep blanks), drydock
//! refuses the string with a message that says what to write instead.
//! (Compose 1.29 used Python's `shlex.split`, which keeps `&&` as an argument.)

/// Splits `line` into words. The error is a message for a `file:line:col:`
/// prefix; `what` names the key (`command`, `entrypoint`).
pub(crate) fn split(line: &str, what: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut buf = String::new();
    let mut have_word = false;
    let (mut escaped, mut single, mut double) = (false, false, false);
    for c in line.chars() {
        if escaped {
            buf.push(match c {
                't' => '\t',
                'n' => '\n',
                c => c,
            });
            escaped = false;
            have_word = true;
            continue;
        }
        if c == '\\' {
            if single {
                buf.push(c);
            } else {
                escaped = true;
            }
            continue;
        }
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            if single || double {
                buf.push(c);
            } else if have_word {
                args.push(std::mem::take(&mut buf));
                have_word = false;
            }
            continue;
        }
        match c {
            '"' if !single => {
                double = !double;
                have_word = true;
                continue;
            }
            '\'' if !double => {
                single = !single;
                have_word = true;
                continue;
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' if !single && !double => {
                return Err(format!(
                    "{what} string {line:?} uses shell syntax ('{c}') that compose does not run (it splits the string into words and runs no shell): write {what} as a list, e.g. [sh, -c, \"...\"]"
                ));
            }
            _ => {}
        }
        have_word = true;
        buf.push(c);
    }
    if escaped {
        return Err(format!("{what} string {line:?} ends with a lone backslash"));
    }
    if single || double {
        let q = if single { '\'' } else { '"' };
        return Err(format!(
            "{what} string {line:?} has an unterminated {q} quote"
        ));
    }
    if have_word {
        args.push(buf);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::split;

    /// Expected words follow go-shellwords' behaviour (its test table).
    #[test]
    fn words() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            (
                "gunicorn -b 0.0.0.0:8000 app:app",
                &["gunicorn", "-b", "0.0.0.0:8000", "app:app"],
            ),
            ("  a   b\tc\nd  ", &["a", "b", "c", "d"]),
            (
                r#"sh -c "echo hi && exit 1""#,
                &["sh", "-c", "echo hi && exit 1"],
            ),
            (
                "sh -c 'echo $HOME; true'",
                &["sh", "-c", "echo $HOME; true"],
            ),
            (r#"a "" b ''"#, &["a", "", "b", ""]),
            (r#"x"y z"w"#, &["xy zw"]),
            (r"a\ b", &["a b"]),
            (r#""a\"b""#, &["a\"b"]),
            (r#""a\b""#, &["ab"]),
            (r"'a\b'", &["a\\b"]),
            (r"a\tb a\nb", &["a\tb", "a\nb"]),
            (r#""it's""#, &["it's"]),
            (r#"'say "hi"'"#, &["say \"hi\""]),
            (
                "echo # not a comment",
                &["echo", "#", "not", "a", "comment"],
            ),
            (
                "python -m pytest -k 'not slow'",
                &["python", "-m", "pytest", "-k", "not slow"],
            ),
            ("echo $HOME", &["echo", "$HOME"]),
            ("é ü", &["é", "ü"]),
        ];
        for (line, want) in cases {
            let got = split(line, "command").unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(got, *want, "{line:?}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("a && b", "uses shell syntax ('&')"),
            ("a; b", "uses shell syntax (';')"),
            ("a | b", "uses shell syntax ('|')"),
            ("a > out", "uses shell syntax ('>')"),
            ("a < in", "uses shell syntax ('<')"),
            ("echo $(date)", "uses shell syntax ('(')"),
            ("echo `date`", "uses shell syntax ('`')"),
            ("a 'b", "unterminated ' quote"),
            ("a \"b", "unterminated \" quote"),
            ("a \\", "lone backslash"),
        ];
        for (line, want) in cases {
            let err = split(line, "command").unwrap_err();
            assert!(err.contains(want), "{line:?}: {err}");
        }
    }
}

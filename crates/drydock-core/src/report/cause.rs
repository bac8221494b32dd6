//! Root causes: the few lines of a failed build's or step's log that say
//! why it failed, for failure summaries (the terminal, `step_finished`
//! events), where "exit code: 1" alone says nothing.
//!
//! [`explain`] is a pure function over the log tail. Lines are matched
//! against a table of kinds, most telling kind first (a TLS error
//! explains a pip "no matching distribution" that follows it); each kind
//! keeps its last distinct lines, the result keeps log order, and it is
//! bounded: at most [`MAX_LINES`] lines of at most [`MAX_CHARS`]
//! characters, cut around the matched words so that they stay visible.

use crate::engine::{strip_ansi, NOTE_PREFIX};

/// Most lines [`explain`] returns.
pub const MAX_LINES: usize = 5;
/// Most characters of a returned line (longer ones are cut around the
/// words that matched, with `…` where text was left out).
pub const MAX_CHARS: usize = 240;
/// Most lines of one kind.
const PER_KIND: usize = 2;

/// How a rule looks at a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// One of the needles occurs anywhere (ASCII case ignored).
    Contains,
    /// The line (trimmed at the start) begins with one of the needles.
    StartsWith,
    /// The last line of a Python traceback (handled apart).
    Traceback,
}

/// One kind of cause.
#[derive(Debug)]
struct Rule {
    kind: &'static str,
    how: How,
    needles: &'static [&'static str],
}

/// The kinds of causes, most telling first.
const RULES: &[Rule] = &[
    Rule {
        kind: "tls",
        how: How::Contains,
        needles: &[
            "certificate_verify_failed",
            "certificate verify failed",
            "ssl certificate problem",
            "certificate verification failed",
            "server certificate verification failed",
            "x509: certificate",
            "unable to get local issuer certificate",
            "self_signed_cert_in_chain",
            "self-signed certificate in certificate chain",
            "self signed certificate in certificate chain",
            "unable_to_get_issuer_cert_locally",
            "sslerror",
            "tls: failed to verify certificate",
        ],
    },
    Rule {
        kind: "pip",
        how: How::Contains,
        needles: &[
            "could not find a version that satisfies",
            "no matching distribution found",
        ],
    },
    Rule {
        kind: "apt",
        how: How::StartsWith,
        needles: &["E: "],
    },
    Rule {
        kind: "traceback",
        how: How::Traceback,
        needles: &[],
    },
    Rule {
        kind: "command",
        how: How::Contains,
        needles: &[
            "command not found",
            ": not found",
            "executable file not found",
        ],
    },
    Rule {
        kind: "npm",
        how: How::StartsWith,
        needles: &[
            "npm ERR! code",
            "npm ERR! 40",
            "npm ERR! network",
            "npm ERR! request to",
            "npm ERR! notarget",
            "npm error code",
            "npm error 40",
            "npm error network",
            "npm error request to",
            "npm error notarget",
        ],
    },
    Rule {
        kind: "curl",
        how: How::StartsWith,
        needles: &["curl: ("],
    },
    Rule {
        kind: "missing",
        how: How::Contains,
        needles: &["no such file or directory", "file not found", "not found: "],
    },
    Rule {
        kind: "permission",
        how: How::Contains,
        needles: &["permission denied", "operation not permitted"],
    },
    Rule {
        kind: "network",
        how: How::Contains,
        needles: &[
            "temporary failure in name resolution",
            "could not resolve host",
            "name or service not known",
            "no such host",
            "connection refused",
            "network is unreachable",
            "connection timed out",
            "read timed out",
        ],
    },
    Rule {
        kind: "resources",
        how: How::Contains,
        needles: &[
            "no space left on device",
            "device or resource busy",
            "out of memory",
            "cannot allocate memory",
        ],
    },
    Rule {
        kind: "generic",
        how: How::StartsWith,
        needles: &["fatal:", "error:", "ERROR:", "Error:", "FATAL"],
    },
];

/// The lines of `lines` (a log tail, oldest first) that explain a failure:
/// at most [`MAX_LINES`], in log order, each cleaned of ANSI escapes and
/// at most [`MAX_CHARS`] characters. Empty when nothing in the tail looks
/// like a cause. When a TLS error is among them, drydock's own notes about
/// the CA bundle (lines starting with [`NOTE_PREFIX`] that mention it) are
/// added, since they say why the certificate was not trusted.
pub fn explain(lines: &[String]) -> Vec<String> {
    let cleaned: Vec<String> = lines
        .iter()
        .map(|l| strip_ansi(l).trim().to_string())
        .collect();
    // (line index, rule index, needle position) of each matching line.
    let mut hits: Vec<(usize, usize, usize)> = Vec::new();
    let mut traceback = false;
    for (i, line) in cleaned.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let raw_indented = lines[i]
            .chars()
            .next()
            .is_some_and(|c| c == ' ' || c == '\t');
        if line.starts_with("Traceback (most recent call last)") {
            traceback = true;
            continue;
        }
        let lower = line.to_ascii_lowercase();
        let mut best: Option<(usize, usize)> = None;
        for (r, rule) in RULES.iter().enumerate() {
            let found = match rule.how {
                How::Contains => rule
                    .needles
                    .iter()
                    .find_map(|n| lower.find(&n.to_ascii_lowercase())),
                How::StartsWith => rule
                    .needles
                    .iter()
                    .any(|n| line.starts_with(n))
                    .then_some(0),
                How::Traceback => {
                    (traceback && !raw_indented && looks_like_exception(line)).then_some(0)
                }
            };
            if let Some(at) = found {
                best = Some((r, at));
                break;
            }
        }
        if traceback && !raw_indented && !line.starts_with("File ") {
            // The exception line ends the traceback.
            traceback = line.starts_with("During handling") || line.starts_with("The above");
        }
        if let Some((r, at)) = best {
            hits.push((i, r, at));
        }
    }
    // Per kind, the last distinct lines; kinds in table order.
    let mut chosen: Vec<(usize, usize)> = Vec::new();
    let mut tls = false;
    'rules: for (r, rule_of_kind) in RULES.iter().enumerate() {
        let mut taken: Vec<&str> = Vec::new();
        for &(i, rule, at) in hits.iter().rev() {
            if rule != r || taken.contains(&cleaned[i].as_str()) {
                continue;
            }
            if chosen.iter().any(|&(j, _)| cleaned[j] == cleaned[i]) {
                continue;
            }
            if chosen.len() >= MAX_LINES {
                break 'rules;
            }
            taken.push(&cleaned[i]);
            chosen.push((i, at));
            tls |= rule_of_kind.kind == "tls";
            if taken.len() >= PER_KIND {
                break;
            }
        }
    }
    if tls {
        for (i, line) in cleaned.iter().enumerate() {
            if chosen.len() >= MAX_LINES {
                break;
            }
            if line.starts_with(NOTE_PREFIX)
                && line.contains("CA bundle")
                && !chosen.iter().any(|&(j, _)| j == i)
            {
                chosen.push((i, NOTE_PREFIX.len()));
            }
        }
    }
    chosen.sort_by_key(|&(i, _)| i);
    chosen
        .into_iter()
        .map(|(i, at)| shorten(&cleaned[i], at))
        .collect()
}

/// `Name: message`, `Name` or `pkg.Name: message` with a name ending in
/// `Error`, `Exception`, `Exit`, `Interrupt` or `Warning`.
fn looks_like_exception(line: &str) -> bool {
    let name = line.split(':').next().unwrap_or_default().trim();
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && ["Error", "Exception", "Exit", "Interrupt", "Warning"]
            .iter()
            .any(|end| name.ends_with(end))
}

/// `line` cut to [`MAX_CHARS`] characters around byte offset `at`.
fn shorten(line: &str, at: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_CHARS {
        return line.to_string();
    }
    let at_char = line.char_indices().take_while(|(b, _)| *b < at).count();
    let keep = MAX_CHARS - 2;
    let start = at_char.saturating_sub(keep / 3).min(chars.len() - keep);
    let end = start + keep;
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    const PIP_TLS: &str = "\
Step 2/2 : RUN pip install six==1.16.0
 ---> Running in 0123
WARNING: Retrying (Retry(total=4)) after connection broken by 'SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992)'))': /simple/six/
Could not fetch URL https://pypi.org/simple/six/: There was a problem confirming the ssl certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/six/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992)'))) - skipping
ERROR: Could not find a version that satisfies the requirement six==1.16.0 (from versions: none)
ERROR: No matching distribution found for six==1.16.0
Removing intermediate container 0123";

    /// (log, lines the cause must contain, in order)
    const CASES: &[(&str, &str, &[&str])] = &[
        (
            "pip behind an intercepting proxy",
            PIP_TLS,
            &[
                "CERTIFICATE_VERIFY_FAILED",
                "CERTIFICATE_VERIFY_FAILED",
                "Could not find a version",
                "No matching distribution",
            ],
        ),
        (
            "apt",
            "Reading package lists...\nE: Unable to locate package nope\nE: Unable to locate package nope",
            &["E: Unable to locate package nope"],
        ),
        (
            "python traceback",
            "Traceback (most recent call last):\n  File \"/app/x.py\", line 1, in <module>\n    import flask\nModuleNotFoundError: No module named 'flask'\nafter",
            &["ModuleNotFoundError: No module named 'flask'"],
        ),
        (
            "chained traceback keeps the last exception",
            "Traceback (most recent call last):\n  File \"a\", line 1\nKeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a\", line 3\nRuntimeError: boom",
            &["KeyError: 'x'", "RuntimeError: boom"],
        ),
        (
            "shell",
            "+ make build\n/bin/sh: 1: make: not found",
            &["/bin/sh: 1: make: not found"],
        ),
        (
            "bash",
            "bash: line 1: pytest: command not found",
            &["pytest: command not found"],
        ),
        (
            "missing file",
            "cp: cannot stat 'requirements.txt': No such file or directory",
            &["No such file or directory"],
        ),
        (
            "npm",
            "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry.npmjs.org/nope - Not found\nnpm ERR! A complete log of this run can be found in: /root/.npm/x.log",
            &["npm ERR! code E404", "npm ERR! 404 Not Found"],
        ),
        (
            "curl",
            "  % Total    % Received\ncurl: (60) SSL certificate problem: self-signed certificate in certificate chain",
            &["curl: (60) SSL certificate problem"],
        ),
        (
            "curl dns",
            "curl: (6) Could not resolve host: example.invalid",
            &["curl: (6) Could not resolve host"],
        ),
        (
            "git",
            "Cloning into 'x'...\nfatal: unable to access 'https://example.org/x.git/': server certificate verification failed. CAfile: none CRLfile: none",
            &["server certificate verification failed"],
        ),
        (
            "apt over https",
            "Err:1 https://deb.debian.org/debian bookworm InRelease\n  Certificate verification failed: The certificate is NOT trusted.\nE: Failed to fetch https://deb.debian.org/x",
            &["Certificate verification failed", "E: Failed to fetch"],
        ),
        (
            "permission",
            "mkdir: cannot create directory '/root/x': Permission denied",
            &["Permission denied"],
        ),
        (
            "mounted bundle rewritten",
            "mv: cannot move '/etc/ssl/certs/ca-certificates.crt.new' to 'ca-certificates.crt': Device or resource busy",
            &["Device or resource busy"],
        ),
        ("nothing telling", "compiling...\nall good\nexit 1", &[]),
        ("empty", "", &[]),
    ];

    #[test]
    fn causes_are_picked_from_the_table() {
        for (name, log, want) in CASES {
            let got = explain(&lines(log));
            assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
            for (line, needle) in got.iter().zip(want.iter()) {
                assert!(line.contains(needle), "{name}: {line:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn output_is_bounded_and_keeps_the_matched_words() {
        let long = format!(
            "{}CERTIFICATE_VERIFY_FAILED{}",
            "x".repeat(1000),
            "y".repeat(1000)
        );
        let mut log: Vec<String> = (0..100).map(|i| format!("E: failure number {i}")).collect();
        log.push(long);
        for i in 0..50 {
            log.push(format!("npm ERR! {i}"));
            log.push(format!("/bin/sh: {i}: tool{i}: not found"));
            log.push(format!("curl: ({i}) error"));
        }
        let got = explain(&log);
        assert!(got.len() <= MAX_LINES, "{got:#?}");
        assert!(
            got.iter().all(|l| l.chars().count() <= MAX_CHARS),
            "{got:#?}"
        );
        let tls = got
            .iter()
            .find(|l| l.contains("CERTIFICATE_VERIFY_FAILED"))
            .expect("the TLS line is kept");
        assert!(tls.starts_with('…') && tls.ends_with('…'), "{tls}");
        // The last lines of a kind win over the first.
        assert!(got.iter().any(|l| l == "E: failure number 99"), "{got:#?}");
    }

    #[test]
    fn ansi_and_duplicates_are_cleaned_and_notes_join_tls_errors() {
        let log = lines(
            "drydock: the classic builder cannot lend the CA bundle to RUN instructions\n\
             \u{1b}[91mcurl: (60) SSL certificate problem: unable to get local issuer certificate\u{1b}[0m\n\
             curl: (60) SSL certificate problem: unable to get local issuer certificate",
        );
        let got = explain(&log);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("drydock: the classic builder"));
        assert_eq!(
            got[1],
            "curl: (60) SSL certificate problem: unable to get local issuer certificate"
        );
        // Without a TLS error the note is not a cause.
        let got = explain(&lines(
            "drydock: the CA bundle is mounted in 1 of 1 RUN instructions\nE: broken",
        ));
        assert_eq!(got, ["E: broken"]);
    }
}

//! From the bytes of a YAML file to text the parser can be trusted with.
//!
//! `yaml-rust2` reads a `char` stream and treats U+0000 as the end of input:
//! a NUL byte anywhere (`# \0` in a comment, say) silently drops the rest of
//! the file. It also knows nothing of byte order marks, and a `&str` cannot
//! hold invalid UTF-8 or UTF-16 in the first place. So every file drydock
//! reads as YAML (pipelines, deploy configs, the runner's configuration)
//! passes through here first, and every refusal has a line and column:
//!
//! - at most [`MAX_FILE_BYTES`] bytes are read ([`read_limited`]);
//! - UTF-16 and UTF-32 (with or without a byte order mark, detected as the
//!   YAML 1.2 spec, section 5.2, describes) are refused with a hint to
//!   convert: drydock reads UTF-8 only;
//! - invalid UTF-8 is refused where the first bad byte is;
//! - a leading UTF-8 byte order mark is skipped, as YAML allows; one
//!   anywhere else is refused (it would silently become part of a key);
//! - characters outside YAML's printable set (`c-printable`, YAML 1.2
//!   section 5.1: C0 controls but tab, LF and CR; DEL; C1 controls but NEL;
//!   U+FFFE and U+FFFF) are refused where they are. Escapes such as `"\0"`
//!   in double-quoted scalars are YAML and are not affected.

use std::io::Read;
use std::path::Path;

/// Largest YAML file drydock reads: 1 MiB. Pipelines, deploy configs and
/// runner configurations are a few kilobytes; this bounds the parser's time
/// and memory for whatever is pushed to a repository the runner serves.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// Reads at most [`MAX_FILE_BYTES`] + 1 bytes of `path` (one more than the
/// limit, so that [`check_bytes`] can tell an oversized file). Works on
/// pipes and devices too (`/dev/zero` is read no further).
///
/// # Errors
/// Whatever opening or reading the file gives.
pub fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks the bytes of a YAML file and returns its text, without a leading
/// byte order mark. See the module documentation for what is refused.
///
/// # Errors
/// A [`SyntaxError`] at the first problem in file order.
pub fn check_bytes(bytes: &[u8]) -> Result<&str, SyntaxError> {
    if let Some(encoding) = wide_encoding(bytes) {
        return Err(SyntaxError {
            pos: Pos::START,
            message: format!(
                "the file is encoded in {encoding}; drydock reads YAML files as UTF-8 \
                 (convert it, e.g. `iconv -f {encoding} -t UTF-8`)"
            ),
        });
    }
    let head = &bytes[..bytes.len().min(MAX_FILE_BYTES)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => {
            let good = e.valid_up_to();
            // A sequence cut by the size limit is the size's problem, not the encoding's.
            if e.error_len().is_some() || bytes.len() <= MAX_FILE_BYTES {
                // The prefix is valid UTF-8 by construction.
                let before = std::str::from_utf8(&head[..good]).unwrap_or_default();
                let text = before.strip_prefix('\u{feff}').unwrap_or(before);
                check_text_chars(text)?;
                let binary = if head.contains(&0) {
                    " (this looks like a binary file)"
                } else {
                    ""
                };
                return Err(SyntaxError {
                    pos: end_pos(text),
                    message: format!(
                        "invalid UTF-8 (byte 0x{:02x}){binary}; drydock reads YAML files as UTF-8",
                        head[good]
                    ),
                });
            }
            std::str::from_utf8(&head[..good]).unwrap_or_default()
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_chars_and_size(text, bytes.len() > MAX_FILE_BYTES)?;
    Ok(text)
}

/// Checks YAML text held in memory; returns it without a leading byte order
/// mark. See the module documentation for what is refused.
///
/// # Errors
/// A [`SyntaxError`] at the first problem in file order.
pub fn check_text(source: &str) -> Result<&str, SyntaxError> {
    let text = source.strip_prefix('\u{feff}').unwrap_or(source);
    let limit = MAX_FILE_BYTES.saturating_sub(source.len() - text.len());
    let checked = if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        &text[..cut]
    } else {
        text
    };
    check_chars_and_size(checked, text.len() > limit)?;
    Ok(text)
}

/// Checks the characters of `text`; then, when the file went on past the
/// size limit (`cut`), refuses it at the end of `text`.
fn check_chars_and_size(text: &str, cut: bool) -> Result<(), SyntaxError> {
    check_text_chars(text)?;
    if cut {
        return Err(SyntaxError {
            pos: end_pos(text),
            message: format!(
                "the file is larger than {} KiB, drydock's limit for YAML files; \
                 nothing after this point is read",
                MAX_FILE_BYTES / 1024
            ),
        });
    }
    Ok(())
}

/// The first character YAML does not allow in a stream, with its position.
fn check_text_chars(text: &str) -> Result<(), SyntaxError> {
    let mut pos = Pos::START;
    let mut after_cr = false;
    for c in text.chars() {
        match c {
            '\n' if after_cr => {}
            '\n' | '\r' => {
                pos.line += 1;
                pos.col = 1;
            }
            c if !is_printable(c) || c == '\u{feff}' => {
                let message = if c == '\u{feff}' {
                    "a byte order mark (U+FEFF) is only allowed at the very start of the file"
                        .to_string()
                } else {
                    format!(
                        "the control character {} is not allowed in YAML{}",
                        describe_char(c),
                        if c == '\0' {
                            " (a YAML parser would stop reading here)"
                        } else {
                            ""
                        }
                    )
                };
                return Err(SyntaxError { pos, message });
            }
            _ => pos.col += 1,
        }
        after_cr = c == '\r';
    }
    Ok(())
}

/// YAML 1.2 `c-printable` (section 5.1).
fn is_printable(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

fn describe_char(c: char) -> String {
    let name = match c {
        '\0' => " (NUL)",
        '\u{7}' => " (BEL)",
        '\u{8}' => " (backspace)",
        '\u{b}' => " (vertical tab)",
        '\u{c}' => " (form feed)",
        '\u{1b}' => " (escape)",
        '\u{7f}' => " (DEL)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

/// The position just after `text` (line breaks as YAML counts them: CR, LF, CRLF).
fn end_pos(text: &str) -> Pos {
    let mut pos = Pos::START;
    let mut after_cr = false;
    for c in text.chars() {
        match c {
            '\n' if after_cr => {}
            '\n' | '\r' => {
                pos.line += 1;
                pos.col = 1;
            }
            _ => pos.col += 1,
        }
        after_cr = c == '\r';
    }
    pos
}

/// UTF-16 or UTF-32, told by a byte order mark or, without one, by where the
/// NUL bytes of ASCII first characters are (YAML 1.2, section 5.2). Without
/// a byte order mark two ASCII characters are required (one for UTF-32), so
/// that a UTF-8 file that merely starts with a NUL byte is reported as such.
fn wide_encoding(bytes: &[u8]) -> Option<&'static str> {
    let ascii = |b: &u8| b.is_ascii() && *b != 0;
    match bytes {
        [0, 0, 0xfe, 0xff, ..] => Some("UTF-32BE"),
        [0xff, 0xfe, 0, 0, ..] => Some("UTF-32LE"),
        [0xfe, 0xff, ..] => Some("UTF-16BE"),
        [0xff, 0xfe, ..] => Some("UTF-16LE"),
        [0, 0, 0, b, ..] if ascii(b) => Some("UTF-32BE"),
        [b, 0, 0, 0, ..] if ascii(b) => Some("UTF-32LE"),
        [0, b, 0, c, ..] if ascii(b) && ascii(c) => Some("UTF-16BE"),
        [b, 0, c, 0, ..] if ascii(b) && ascii(c) => Some("UTF-16LE"),
        _ => None,
    }
}

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
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML syntax problem: position and message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// "Did you mean": the one of `options` closest to `word`, at most two
/// edits away (optimal string alignment distance, which counts a swap of
/// neighbours as one edit: `wbe` → `web`), for every document drydock reads.
pub(crate) fn suggest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options
        .iter()
        .map(|o| (strsim::osa_distance(word, o), *o))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn a_leading_bom_is_skipped_and_others_are_refused() {
        assert_eq!(
            check_bytes(b"\xef\xbb\xbfversion: 1\n").unwrap(),
            "version: 1\n"
        );
        assert_eq!(check_text("\u{feff}a: 1").unwrap(), "a: 1");
        let e = check_text("a: 1\nb: \u{feff}x\n").unwrap_err();
        assert_eq!(e.pos, p(2, 4));
        assert!(e.message.contains("byte order mark"), "{e:?}");
    }

    #[test]
    fn control_characters_are_refused_where_they_are() {
        let cases: &[(&[u8], Pos, &str)] = &[
            (b"a: 1\n# \0\nb: 2\n", p(2, 3), "U+0000 (NUL)"),
            (b"a: 1\r\nb: \x1b[1m\n", p(2, 4), "U+001B (escape)"),
            (b"a: 1\rb: \x07\n", p(2, 4), "U+0007"),
            (b"a: \x7f\n", p(1, 4), "U+007F (DEL)"),
            ("a: \u{9b}\n".as_bytes(), p(1, 4), "U+009B"),
            ("a: \u{ffff}\n".as_bytes(), p(1, 4), "U+FFFF"),
            (b"\x7fELF\x02\x01\x01\0\0\0", p(1, 1), "U+007F"),
        ];
        for (bytes, pos, what) in cases {
            let e = check_bytes(bytes).unwrap_err();
            assert_eq!(e.pos, *pos, "{bytes:?}: {e:?}");
            assert!(e.message.contains(what), "{bytes:?}: {e:?}");
        }
        // Tab, NEL and printable Unicode are fine; so is the escape `\0`.
        assert!(check_text("a:\t\"\\0\u{85}\u{e9}\u{1f600}\"\n").is_ok());
    }

    #[test]
    fn wide_and_invalid_encodings_are_refused_with_a_position() {
        let utf16le: Vec<u8> = "\u{feff}a: 1\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let e = check_bytes(&utf16le).unwrap_err();
        assert_eq!(e.pos, p(1, 1));
        assert!(e.message.contains("UTF-16LE"), "{e:?}");
        let utf16be_no_bom: Vec<u8> = "a: 1\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert!(check_bytes(&utf16be_no_bom)
            .unwrap_err()
            .message
            .contains("UTF-16BE"));
        assert!(check_bytes(b"\0\0\0a\0\0\0:")
            .unwrap_err()
            .message
            .contains("UTF-32BE"));
        // A UTF-8 file that starts with NUL is not taken for UTF-16.
        let e = check_bytes(b"\0version: 1\n").unwrap_err();
        assert!(e.message.contains("U+0000"), "{e:?}");

        let e = check_bytes(b"a: 1\nb: caf\xe9\n").unwrap_err();
        assert_eq!(e.pos, p(2, 7));
        assert!(e.message.contains("invalid UTF-8 (byte 0xe9)"), "{e:?}");
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let e = check_bytes(png).unwrap_err();
        assert_eq!(e.pos, p(1, 1));
        assert!(e.message.contains("invalid UTF-8"), "{e:?}");
        // A control character before the bad byte is the first problem.
        assert_eq!(check_bytes(b"\x01\xff").unwrap_err().pos, p(1, 1));
    }

    #[test]
    fn files_over_the_limit_are_refused_where_the_limit_is() {
        let mut big = "a: b\n".repeat(MAX_FILE_BYTES / 5);
        big.push_str("zzzzzzzzzz\n");
        let e = check_text(&big).unwrap_err();
        assert_eq!(e.pos, p(MAX_FILE_BYTES / 5 + 1, MAX_FILE_BYTES % 5 + 1));
        assert!(e.message.contains("larger than 1024 KiB"), "{e:?}");
        assert_eq!(check_bytes(big.as_bytes()).unwrap_err(), e);
        // A multi-byte character cut by the limit is not an encoding error.
        let mut cut = "a".repeat(MAX_FILE_BYTES - 1);
        cut.push('\u{e9}');
        assert!(check_bytes(cut.as_bytes())
            .unwrap_err()
            .message
            .contains("larger than"));
        // A control character before the limit is reported first.
        let mut zeros = vec![b'a'; 10];
        zeros.extend(std::iter::repeat_n(0u8, MAX_FILE_BYTES));
        assert_eq!(check_bytes(&zeros).unwrap_err().pos, p(1, 11));
        assert!(check_text(&"a".repeat(MAX_FILE_BYTES)).is_ok());
    }

    #[test]
    fn reads_stop_after_the_limit() {
        let bytes = read_limited(Path::new("/dev/zero")).unwrap();
        assert_eq!(bytes.len(), MAX_FILE_BYTES + 1);
        let e = check_bytes(&bytes).unwrap_err();
        assert_eq!((e.pos, e.message.contains("NUL")), (p(1, 1), true));
    }
}

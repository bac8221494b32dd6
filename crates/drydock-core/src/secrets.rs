//! Secrets of a run: their values, read when the run starts (never kept in
//! the pipeline model or the plan), and the [`Masker`] that replaces them
//! with `***` in everything drydock writes or shows.
//!
//! What is masked, for each value: the value itself; each line of a
//! multi-line value that has at least [`MIN_LINE_MASK`] characters; and its
//! base64 forms (standard and URL-safe alphabets, with and without padding,
//! of the value and of the value followed by a newline, as `echo "$S" |
//! base64` prints it), also as the 76-character lines `base64` wraps them
//! into. Masking works on whole lines (step output is assembled into lines
//! before it becomes events), so a value written in two pieces on one line is
//! masked too.

use std::path::PathBuf;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

use crate::pipeline::{SecretExpose, SecretSource, SecretSpec};

/// The replacement text.
pub const MASK: &str = "***";
/// Lines of a multi-line secret shorter than this are not masked on their
/// own (a PEM file's `-----END…` line would otherwise mask every such line).
pub const MIN_LINE_MASK: usize = 8;
/// Largest secret value read (bytes).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// One secret's value.
#[derive(Clone)]
pub struct SecretValue {
    /// Its name.
    pub name: String,
    /// How steps get it.
    pub expose: SecretExpose,
    /// The value (never printed by `Debug`).
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("expose", &self.expose)
            .field("value", &MASK)
            .finish()
    }
}

/// Reading a secret failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (any more).
    #[error("secret {name}: the environment variable {var} is not set")]
    EnvUnset {
        /// The secret.
        name: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("secret {name}: cannot read {}: {source}", path.display())]
    File {
        /// The secret.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The value is larger than [`MAX_SECRET_BYTES`].
    #[error("secret {name} is {size} bytes; secrets have at most {MAX_SECRET_BYTES}")]
    TooLarge {
        /// The secret.
        name: String,
        /// Its size.
        size: u64,
    },
}

/// Reads every secret's value from its source, with `env` looking up
/// environment variables.
///
/// # Errors
/// The first secret whose source is missing, unreadable or too large.
pub fn read_values(
    specs: &[SecretSpec],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<SecretValue>, SecretError> {
    specs
        .iter()
        .map(|spec| {
            let value = match &spec.source {
                SecretSource::Env(var) => env(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SecretError::EnvUnset {
                        name: spec.name.clone(),
                        var: var.clone(),
                    })?
                    .into_bytes(),
                SecretSource::File(path) => {
                    let file_error = |source| SecretError::File {
                        name: spec.name.clone(),
                        path: path.clone(),
                        source,
                    };
                    let size = std::fs::metadata(path).map_err(file_error)?.len();
                    if size > MAX_SECRET_BYTES {
                        return Err(SecretError::TooLarge {
                            name: spec.name.clone(),
                            size,
                        });
                    }
                    std::fs::read(path).map_err(file_error)?
                }
            };
            Ok(SecretValue {
                name: spec.name.clone(),
                expose: spec.expose,
                value,
            })
        })
        .collect()
}

/// Replaces secret values (and their base64 forms) with [`MASK`].
#[derive(Clone)]
pub struct Masker {
    matcher: AhoCorasick,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.matcher.patterns_len())
            .finish()
    }
}

impl Masker {
    /// A masker for these values; `None` when there is nothing to mask.
    pub fn new(values: &[SecretValue]) -> Option<Masker> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in values {
            let value = secret.value.as_slice();
            let trimmed = trim_newlines(value);
            if trimmed.is_empty() {
                continue;
            }
            patterns.push(trimmed.to_vec());
            if trimmed.contains(&b'\n') {
                for line in trimmed.split(|b| *b == b'\n') {
                    let line = trim_newlines(line);
                    if line.len() >= MIN_LINE_MASK {
                        patterns.push(line.to_vec());
                    }
                }
            }
            for raw in [trimmed.to_vec(), [trimmed, b"\n"].concat()] {
                for engine in [
                    &base64::engine::general_purpose::STANDARD,
                    &base64::engine::general_purpose::STANDARD_NO_PAD,
                    &base64::engine::general_purpose::URL_SAFE,
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ] {
                    let encoded = engine.encode(&raw);
                    if encoded.len() > 76 {
                        for chunk in encoded.as_bytes().chunks(76) {
                            if chunk.len() >= MIN_LINE_MASK {
                                patterns.push(chunk.to_vec());
                            }
                        }
                    }
                    patterns.push(encoded.into_bytes());
                }
            }
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Masker { matcher })
    }

    /// `text` with every secret replaced.
    pub fn mask(&self, text: &str) -> String {
        if !self.matcher.is_match(text) {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        self.matcher.replace_all_with(text, &mut out, |_, _, dst| {
            dst.push_str(MASK);
            true
        });
        out
    }

    /// `bytes` with every secret replaced (for files of any kind).
    pub fn mask_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !self.matcher.is_match(bytes) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        self.matcher
            .replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
                dst.extend_from_slice(MASK.as_bytes());
                true
            });
        Some(out)
    }

    /// A streaming masker for raw output written in chunks (see [`MaskStream`]).
    pub fn stream(&self) -> MaskStream {
        MaskStream {
            masker: self.clone(),
            pending: Vec::new(),
        }
    }

    /// Masks every file under `dir` in place (collected reports and
    /// artifacts). Files that cannot be read are left as they are.
    pub fn mask_files(&self, dir: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => self.mask_files(&path),
                Ok(t) if t.is_file() => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        if let Some(masked) = self.mask_bytes(&bytes) {
                            if let Err(e) = std::fs::write(&path, masked) {
                                tracing::warn!("masking {}: {e}", path.display());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Masks a byte stream that arrives in chunks: a secret split between two
/// chunks is still masked. Holds back the bytes that could be the start of
/// a secret (fewer than the longest pattern) until more arrive or the
/// stream ends.
#[derive(Debug)]
pub struct MaskStream {
    masker: Masker,
    pending: Vec<u8>,
}

impl MaskStream {
    /// Takes a chunk; returns the masked bytes that are safe to write now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let keep = self.masker.matcher.max_pattern_len().saturating_sub(1);
        let mut cut = self.pending.len().saturating_sub(keep);
        // A match that starts before the cut is written whole.
        for m in self.masker.matcher.find_iter(&self.pending) {
            if m.start() < cut && m.end() > cut {
                cut = m.end();
            }
        }
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        self.masker.mask_bytes(&ready).unwrap_or(ready)
    }

    /// The rest, masked, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.masker.mask_bytes(&rest).unwrap_or(rest)
    }
}

fn trim_newlines(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> SecretValue {
        SecretValue {
            name: "S".into(),
            expose: SecretExpose::Env,
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn values_and_their_base64_forms_are_masked() {
        let masker = Masker::new(&[secret("hunter2-very-secret\n")]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("hunter2-very-secret");
        let b64_nl = base64::engine::general_purpose::STANDARD.encode("hunter2-very-secret\n");
        for (input, expected) in [
            ("token=hunter2-very-secret!", "token=***!"),
            ("no secret here", "no secret here"),
            (&format!("b64 {b64}"), "b64 ***"),
            (&format!("echo|base64: {b64_nl}"), "echo|base64: ***"),
            ("hunter2-very-secrethunter2-very-secret", "******"),
        ] {
            assert_eq!(masker.mask(input), expected, "{input}");
        }
    }

    #[test]
    fn lines_of_a_multi_line_secret_are_masked_on_their_own() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nend\n";
        let masker = Masker::new(&[secret(pem)]).unwrap();
        assert_eq!(masker.mask("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "***");
        assert_eq!(masker.mask("-----BEGIN KEY-----"), "***");
        // Too short to mask alone.
        assert_eq!(masker.mask("the end"), "the end");
    }

    #[test]
    fn files_are_masked_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let report = dir.path().join("a/b/junit.xml");
        std::fs::write(&report, "<failure message=\"got s3cr3t-value\"/>").unwrap();
        std::fs::write(dir.path().join("bin"), b"\x00\x01s3cr3t-value\xff").unwrap();
        Masker::new(&[secret("s3cr3t-value")])
            .unwrap()
            .mask_files(dir.path());
        assert_eq!(
            std::fs::read_to_string(&report).unwrap(),
            "<failure message=\"got ***\"/>"
        );
        assert_eq!(
            std::fs::read(dir.path().join("bin")).unwrap(),
            b"\x00\x01***\xff"
        );
    }

    #[test]
    fn a_stream_masks_secrets_split_between_chunks() {
        let masker = Masker::new(&[secret("s3cr3t-value")]).unwrap();
        let input = b"one s3cr3t-value two s3cr3t-value three";
        // Every way of cutting the input into two chunks.
        for cut in 0..input.len() {
            let mut stream = masker.stream();
            let mut out = stream.push(&input[..cut]);
            out.extend(stream.push(&input[cut..]));
            out.extend(stream.finish());
            assert_eq!(out, b"one *** two *** three", "cut at {cut}");
        }
    }

    #[test]
    fn reading_names_the_missing_source() {
        let spec = SecretSpec {
            name: "T".into(),
            source: SecretSource::Env("NOPE".into()),
            expose: SecretExpose::Env,
        };
        let err = read_values(&[spec], |_| None).unwrap_err();
        assert!(err.to_string().contains("NOPE"), "{err}");
        let debug = format!("{:?}", secret("visible?"));
        assert!(!debug.contains("visible?"), "{debug}");
    }
}

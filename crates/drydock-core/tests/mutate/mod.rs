//! A structure-aware mutator for YAML inputs, shared by the fuzz tests of
//! drydock-core (pipelines, deploy configs) and drydock-runner (its
//! configuration, webhook bodies): proptest strategies generate a list of
//! edits (byte flips, YAML tokens, control characters, deep nesting, alias
//! bombs, duplicated and spliced ranges) applied to a seed file.
//!
//! [`run`] drives a fixed number of cases from a fixed seed (override with
//! `DRYDOCK_FUZZ_SEED` and `DRYDOCK_FUZZ_CASES`), times each case, and on a
//! failure writes the input to `target/fuzz-failures/` and names it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Tokens worth inserting: YAML syntax, limits, encodings, interpolation.
const TOKENS: &[&[u8]] = &[
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b", ",
    b"&a ",
    b"*a",
    b"&b [*a,*a,*a,*a,*a,*a,*a,*a]",
    b"? ",
    b"!!binary ",
    b"!!str ",
    b"!x ",
    b"!<tag:x> ",
    b"|",
    b">-",
    b"|0",
    b"\"",
    b"'",
    b"#",
    b"---\n",
    b"...\n",
    b"%YAML 1.2\n",
    b"%YAML 2.0\n",
    b"%TAG ! x\n",
    b"<<: *a\n",
    b"\t",
    b"\r",
    b"\r\n",
    b"\n",
    b"\0",
    b"\x01",
    b"\x1b[31m",
    b"\x7f",
    b"\xc2\x85",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xfe",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xef\xbf\xbf",
    b"${",
    b"${HOME}",
    b"${NOPE}",
    b"${X:-y}",
    b"$$",
    b"\\",
    b"\"\\0\"",
    b"\"\\x00\"",
    b"\"\\uD800\"",
    b"~",
    b"null",
    b"true",
    b"1e999",
    b"0x",
    b"-1",
    b".inf",
    b"9999999999999999999999",
    b"5m",
    b"0s",
    b"-1s",
    b"1ns",
    b"999999999h",
    b"/",
    b"..",
    b"../../..",
    b"/proc",
    b":/",
    b"a:b:c",
    b"name: ",
    b"version: 1\n",
    b"tiers:\n",
    b"steps:\n",
    b"command: ",
    b"env: ",
    b"image: ",
    b"build: ",
    b"services: ",
    b"mounts: ",
    b"timeout: ",
    b"release: ",
    b"ready: ",
    b"postgres: ",
    b"exec: ",
    b"repos:\n",
    b"url: ",
    b"state_dir: ",
    b"branches: ",
    b"deploy: ",
    b"channel: ",
    b"app: ",
    b"port: ",
    b"publish: ",
    b"\xf0\x9f\x9a\x80",
];

/// One edit of the input; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
pub enum Edit {
    /// XOR one byte.
    Flip(usize, u8),
    /// Insert a token.
    Token(usize, usize),
    /// Insert random bytes.
    Bytes(usize, Vec<u8>),
    /// Remove a range.
    Delete(usize, usize),
    /// Repeat a range.
    Repeat(usize, usize, usize),
    /// Insert a range of another seed.
    Splice(usize, usize, usize, usize),
    /// Insert deep nesting: `- ` (block), `[` or `{a: ` (flow) this many times.
    Nest(usize, u8, usize),
    /// Truncate.
    Truncate(usize),
}

/// A mutant: a seed index and the edits applied to it.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// Index into the seeds.
    pub seed: usize,
    /// The edits, in order.
    pub edits: Vec<Edit>,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Edit::Flip(i, x)),
        6 => (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Edit::Token(i, t)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Bytes(i, b)),
        2 => (any::<usize>(), 1..64usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<usize>(), 1..200usize, prop_oneof![1..10usize, 100..2_000usize])
            .prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        2 => (any::<usize>(), any::<usize>(), any::<usize>(), 1..400usize)
            .prop_map(|(i, s, f, n)| Edit::Splice(i, s, f, n)),
        1 => (any::<usize>(), 0..3u8, prop_oneof![1..70usize, 60..70usize, 200..20_000usize])
            .prop_map(|(i, k, n)| Edit::Nest(i, k, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Mutants of `seeds` seeds with 1 to 6 edits each.
pub fn mutant(seeds: usize) -> impl Strategy<Value = Mutant> {
    (0..seeds, prop::collection::vec(edit(), 1..4)).prop_map(|(seed, edits)| Mutant { seed, edits })
}

/// The bytes of a mutant.
pub fn apply(m: &Mutant, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[m.seed].clone();
    for e in &m.edits {
        let at = |i: usize, b: &Vec<u8>| if b.is_empty() { 0 } else { i % (b.len() + 1) };
        match e {
            Edit::Flip(i, x) => {
                if !b.is_empty() {
                    let i = i % b.len();
                    b[i] ^= x;
                }
            }
            Edit::Token(i, t) => {
                let i = at(*i, &b);
                let token = TOKENS[t % TOKENS.len()];
                b.splice(i..i, token.iter().copied());
            }
            Edit::Bytes(i, bytes) => {
                let i = at(*i, &b);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Repeat(i, n, k) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                let piece = b[i..end].to_vec();
                let copies: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * k)
                    .collect();
                b.splice(end..end, copies);
            }
            Edit::Splice(i, s, f, n) => {
                let other = &seeds[s % seeds.len()];
                if !other.is_empty() {
                    let from = f % other.len();
                    let end = (from + n).min(other.len());
                    let i = at(*i, &b);
                    b.splice(i..i, other[from..end].iter().copied());
                }
            }
            Edit::Nest(i, k, n) => {
                let i = at(*i, &b);
                let unit: &[u8] = match k {
                    0 => b"- ",
                    1 => b"[",
                    _ => b"{a: ",
                };
                let nest: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * n).collect();
                b.splice(i..i, nest);
            }
            Edit::Truncate(i) => {
                let i = at(*i, &b);
                b.truncate(i);
            }
        }
        // Keep mutants near the size drydock reads (1 MiB) and a bit over.
        b.truncate(1_100_000);
    }
    b
}

/// What one fuzz run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Mutants tried.
    pub cases: usize,
    /// Slowest case.
    pub max_time: Duration,
    /// Outcome label → count.
    pub outcomes: std::collections::BTreeMap<String, usize>,
    /// The slowest input.
    pub slowest: Vec<u8>,
}

/// Runs `check` on mutants of `seeds`; `check` returns an outcome label, or
/// an error for a wrong answer. Panics (with the saved input named) on a
/// wrong answer, a panic inside `check`, or a case slower than `max_time`.
pub fn run(
    name: &str,
    seeds: &[Vec<u8>],
    default_cases: usize,
    max_time: Duration,
    mut check: impl FnMut(&[u8]) -> Result<String, String>,
) -> Report {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let cases = std::env::var("DRYDOCK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let seed: u64 = std::env::var("DRYDOCK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0064_7279_646f_636b);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = mutant(seeds.len());
    let mut report = Report::default();
    for case in 0..cases {
        let m = strategy.new_tree(&mut runner).expect("a mutant").current();
        let input = apply(&m, seeds);
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        let elapsed = started.elapsed();
        if elapsed > report.max_time {
            report.max_time = elapsed;
            report.slowest = input.clone();
        }
        report.cases += 1;
        let failure = match result {
            Ok(Ok(outcome)) if elapsed <= max_time => {
                *report.outcomes.entry(outcome).or_insert(0) += 1;
                continue;
            }
            Ok(Ok(_)) => format!("took {elapsed:?} (limit {max_time:?})"),
            Ok(Err(wrong)) => wrong,
            Err(panic) => format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let saved = dir.join(format!("{name}-{seed}-{case}.yml"));
        let _ = std::fs::write(&saved, &input);
        panic!(
            "{name}: case {case} (seed {seed}, {m:?}): {failure}\n  input saved as {}",
            saved.display()
        );
    }
    println!(
        "{name}: {} mutants (seed {seed}), slowest {:?} ({} bytes), outcomes {:?}",
        report.cases,
        report.max_time,
        report.slowest.len(),
        report.outcomes
    );
    if let Ok(dir) = std::env::var("DRYDOCK_FUZZ_KEEP_SLOWEST") {
        let _ = std::fs::write(
            PathBuf::from(dir).join(format!("{name}-slowest.yml")),
            &report.slowest,
        );
    }
    report
}

/// Control characters YAML forbids in a stream (other than in escapes).
pub fn has_forbidden_byte(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
}

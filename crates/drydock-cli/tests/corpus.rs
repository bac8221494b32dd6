//! The bad-input corpus (`tests/fixtures/bad/`), each file through the real
//! `drydock validate`: no crash, no hang, exit 0 or 2 only, the expected
//! location and message, and bounded time and memory, measured per child
//! with `wait4` (peak resident set size as the kernel counts it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Longest a validation may take (the "no hang over 5 s").
const MAX_TIME: Duration = Duration::from_secs(5);
/// Largest peak resident set size of one `drydock validate`. A debug build
/// validating a 1 MiB file stays under 40 MiB; the bound leaves room for
/// release/debug and allocator differences, and is far below what the
/// unbounded parser reached (gigabytes, then an abort).
const MAX_RSS_KIB: i64 = 64 * 1024;

struct Row {
    file: String,
    exit: i32,
    location: Option<String>,
    fragment: Option<String>,
}

fn rows(dir: &Path) -> Vec<Row> {
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "bad row {line:?}");
            let opt = |s: &str| (s != "-").then(|| s.to_string());
            Row {
                file: cols[0].to_string(),
                exit: cols[1].parse().expect("exit code"),
                location: opt(cols[2]),
                fragment: opt(cols[3]),
            }
        })
        .collect()
}

struct Measured {
    code: Option<i32>,
    signal: Option<i32>,
    elapsed: Duration,
    max_rss_kib: i64,
    stdout: String,
    stderr: String,
}

/// Runs the command to its end (killing it after `limit`), with its peak RSS.
fn run_measured(mut command: Command, limit: Duration) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("drydock starts");
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; status and usage are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > limit {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    // The child is reaped: the handle must not wait for it again.
    std::mem::forget(child);
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        elapsed,
        max_rss_kib: usage.ru_maxrss,
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&std::fs::read(err).unwrap_or_default()).into_owned(),
    }
}

#[test]
fn every_corpus_file_is_answered_with_its_location_in_bounded_time_and_memory() {
    let workspace = common::workspace().canonicalize().unwrap();
    let dir = workspace.join("tests/fixtures/bad");
    let rows = rows(&dir);
    assert!(rows.len() >= 150, "the corpus has {} files", rows.len());
    let on_disk = std::fs::read_dir(dir.join("files")).unwrap().count();
    assert_eq!(
        on_disk,
        rows.len(),
        "every file has a row and every row a file"
    );

    let mut problems = Vec::new();
    let (mut max_time, mut slowest) = (Duration::ZERO, String::new());
    let (mut max_rss, mut largest) = (0, String::new());
    let mut exits = std::collections::BTreeMap::new();
    for row in &rows {
        let relative = format!("tests/fixtures/bad/files/{}", row.file);
        let mut command = Command::new(env!("CARGO_BIN_EXE_drydock"));
        command
            .args(["validate", &relative])
            .current_dir(&workspace)
            .env_remove("RUST_BACKTRACE");
        let m = run_measured(command, MAX_TIME * 2);
        *exits.entry(m.code.unwrap_or(-1)).or_insert(0) += 1;
        if m.elapsed > max_time {
            (max_time, slowest) = (m.elapsed, row.file.clone());
        }
        if m.max_rss_kib > max_rss {
            (max_rss, largest) = (m.max_rss_kib, row.file.clone());
        }
        let first = if m.code == Some(0) {
            m.stdout.lines().next().unwrap_or("")
        } else {
            m.stderr.lines().next().unwrap_or("")
        };
        let mut wrong = Vec::new();
        if m.signal.is_some() || m.stderr.contains("panicked") {
            wrong.push(format!("crashed (signal {:?})", m.signal));
        }
        if m.code != Some(row.exit) {
            wrong.push(format!("exit {:?}, expected {}", m.code, row.exit));
        }
        if !matches!(m.code, Some(0 | 2)) {
            wrong.push("validate may only exit 0 or 2".to_string());
        }
        if m.elapsed > MAX_TIME {
            wrong.push(format!("took {:?}", m.elapsed));
        }
        if m.max_rss_kib > MAX_RSS_KIB {
            wrong.push(format!("peak RSS {} KiB", m.max_rss_kib));
        }
        if let Some(location) = &row.location {
            let want = format!("error: {relative}:{location}: ");
            if !first.starts_with(&want) {
                wrong.push(format!("expected {want:?}"));
            }
        }
        if let Some(fragment) = &row.fragment {
            if !first.contains(fragment.as_str()) {
                wrong.push(format!("expected the message to contain {fragment:?}"));
            }
        }
        if !wrong.is_empty() {
            let shown: String = first.chars().take(300).collect();
            problems.push(format!("{}: {} — got: {shown}", row.file, wrong.join("; ")));
        }
    }
    println!(
        "corpus: {} files, exits {exits:?}, slowest {max_time:?} ({slowest}), \
         largest peak RSS {max_rss} KiB ({largest})",
        rows.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! What steps print, through the real engine: terminal control sequences
//! are rendered (logs, events, the failure tail), the raw bytes are kept, and
//! a flood of output is bounded in `events.ndjson` and in the step's log, as
//! `summary.json` says.

mod common;

use common::{assert_nothing_left, run_id, text, Repo};

/// Prints what people's tools print (`tput sgr0`, an OSC 8 hyperlink, a
/// window title ending in BEL, a progress bar redrawn with `\r`, backspaces),
/// then 60 MB of output, then a last line, and fails.
const SCRIPT: &str = r#"
import sys
w = sys.stdout.write
w("\x1b[1;32mgreen\x1b(B\x1b[m plain\n")
w("see \x1b]8;;http://example.com/docs\x1b\\the docs\x1b]8;;\x1b\\ here\n")
w("\x1b]0;my title\x07titled\n")
for p in range(0, 101, 20):
    w("\rprogress %3d%%" % p)
w("\n")
w("tyXX\x08\x08po\n")
line = "x" * 999 + "\n"
for _ in range(60000):
    w(line)
w("\x1b[31mfinal line\x1b[0m\n")
sys.stdout.flush()
sys.exit(3)
"#;

#[tokio::test]
async fn terminal_output_is_rendered_kept_raw_and_bounded() {
    let repo = Repo::empty_for_tests();
    let pipeline = format!(
        "version: 1\nname: output\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: drydock/python:3.11\n        network: false\n        command: [python3, -c, {}]\n",
        serde_json::to_string(SCRIPT).unwrap()
    );
    std::fs::create_dir_all(repo.path().join("pipelines")).unwrap();
    std::fs::write(repo.path().join("pipelines/output.yml"), pipeline).unwrap();
    repo.commit("output");
    let id = run_id("output");
    let out = repo
        .run(&["run", "pipelines/output.yml", "--run-id", &id], &[])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_nothing_left(&id).await;
    let results = repo.path().join(".drydock/results").join(&id);

    // The rendered log: what a terminal showed, nothing of the control.
    let log = std::fs::read_to_string(results.join("logs/t/s.log")).unwrap();
    let first: Vec<&str> = log.lines().take(5).collect();
    assert_eq!(
        first,
        [
            "green plain",
            "see the docs here",
            "titled",
            "progress 100%",
            "typo"
        ]
    );
    assert!(!log.contains('\x1b'), "no escape byte in the log");
    assert!(log
        .lines()
        .any(|l| l.contains("bytes of output left out here")));
    // The tail is kept. (Where the executor's line about the exit lands
    // depends on how fast the log stream drained: run/step.rs waits at most
    // 10 s for it after the container exits.)
    assert!(log.lines().any(|l| l == "final line"));
    assert!(log.lines().any(|l| l == "drydock: exited with code 3"));

    // The raw bytes, as written.
    let raw = std::fs::read(results.join("logs/t/s.raw")).unwrap();
    assert!(raw.starts_with(b"\x1b[1;32mgreen\x1b(B\x1b[m plain\n"));
    assert!(raw.ends_with(b"\x1b[31mfinal line\x1b[0m\n"));
    // 60,000 lines of 1,000 bytes and 214 bytes of the rest.
    assert_eq!(
        raw.len(),
        60000 * 1000 + 214,
        "every byte kept (under the 64 MiB cap)"
    );

    // events.ndjson bounded; the failure tail rendered.
    let events = std::fs::read_to_string(results.join("events.ndjson")).unwrap();
    assert!(
        events.len() < 17 << 20,
        "events.ndjson is {} bytes",
        events.len()
    );
    assert!(events.contains("is not in events.ndjson"));
    assert!(!events.contains("\\u001b"), "no escape sequence in events");
    let finished: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "step_finished")
        .unwrap();
    let tail = finished["log_tail"].as_array().unwrap();
    assert!(!tail.is_empty());
    assert!(tail.iter().all(|l| !l.as_str().unwrap().contains('\x1b')));

    // The summary says what was left out.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["truncated"], true);
    let output = &summary["steps"][0]["output"];
    assert_eq!(output["lines"], 60006);
    assert!(
        output["log_omitted_bytes"].as_u64().unwrap() > 0,
        "{output}"
    );
    assert!(
        output["events_omitted_lines"].as_u64().unwrap() > 40000,
        "{output}"
    );
    assert_eq!(output["raw_log"], "logs/t/s.raw");
    assert_eq!(output["raw_omitted_bytes"], 0);
}

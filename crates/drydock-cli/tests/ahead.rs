//! Steps started ahead of their turn (idle container, command through exec),
//! against the real engine: fresh containers, the step's identity, the
//! image's ENTRYPOINT, output and exit codes, and nothing left behind after
//! success, failure and an interrupt.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_nothing_left, run_id, text, Repo};

fn summary(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap()
}

/// The summary's record of `tier/step`.
fn record<'a>(summary: &'a serde_json::Value, tier: &str, step: &str) -> &'a serde_json::Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tier"] == tier && s["step"] == step)
        .unwrap_or_else(|| panic!("no {tier}/{step} in {summary}"))
}

fn log(run_dir: &Path, tier: &str, step: &str) -> String {
    std::fs::read_to_string(run_dir.join(format!("logs/{tier}/{step}.log"))).unwrap_or_default()
}

#[tokio::test]
async fn a_step_started_ahead_runs_as_its_own_container_would_and_leaves_nothing() {
    let repo = Repo::fixture("ahead");
    let id = run_id("ahead-pass");
    let output = repo
        .run(&["run", "pipelines/ahead.yml", "--run-id", &id], &[])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert_nothing_left(&id).await;
    let run_dir = repo.path().join(".drydock/results").join(&id);
    let summary = summary(&run_dir);
    for step in ["fresh", "identity", "entry"] {
        let record = record(&summary, "second", step);
        assert_eq!(record["status"], "passed", "{record}");
        assert_eq!(record["started_ahead"], true, "{record}");
        let timings = &record["timings"];
        for part in [
            "create_ms",
            "start_ms",
            "ready_wait_ms",
            "command_ms",
            "copy_out_ms",
        ] {
            assert!(timings[part].is_u64(), "{part} in {record}");
        }
    }
    // The writer started ahead too (while the image built).
    let writer = record(&summary, "first", "writer");
    assert_eq!(writer["started_ahead"], true, "{writer}");
    assert!(writer["timings"]["command_ms"].as_u64().unwrap() >= 2000);
    // A fresh container: the earlier step's file is not in it.
    assert!(log(&run_dir, "second", "fresh").contains("fresh-container"));
    // The step's user, working directory and environment, both streams.
    let identity = log(&run_dir, "second", "identity");
    assert!(
        identity.contains("uid=65534 pwd=/srv foo=bar"),
        "{identity}"
    );
    assert!(identity.contains("to-stderr"), "{identity}");
    // The image's ENTRYPOINT with the step's command as its arguments.
    let entry = log(&run_dir, "second", "entry");
    assert!(entry.contains("entry-says: hello"), "{entry}");
    // An image without a shell cannot idle: its step runs as before.
    let no_shell = record(&summary, "second", "no-shell");
    assert_eq!(no_shell["status"], "passed", "{no_shell}");
    assert_eq!(no_shell["started_ahead"], false, "{no_shell}");
    assert!(log(&run_dir, "second", "no-shell").contains("no-shell-ok"));
}

#[tokio::test]
async fn a_failing_step_started_ahead_fails_fast_and_leaves_nothing() {
    let repo = Repo::fixture("ahead");
    let id = run_id("ahead-fail");
    let output = repo
        .run(&["run", "pipelines/ahead-fail.yml", "--run-id", &id], &[])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("exited with code 3"), "{all}");
    assert_nothing_left(&id).await;
    let run_dir = repo.path().join(".drydock/results").join(&id);
    let summary = summary(&run_dir);
    let bad = record(&summary, "second", "bad");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["started_ahead"], true, "{bad}");
    assert!(log(&run_dir, "second", "bad").contains("boom"));
    // A missing program and a timeout, in steps started ahead.
    assert!(
        all.contains("no-such-command") && all.contains("cannot be started"),
        "{all}"
    );
    assert!(all.contains("timed out after 2s"), "{all}");
    let stuck = log(&run_dir, "second", "stuck");
    assert!(stuck.contains("got-term"), "{stuck}");
    for (step, status) in [("missing", "failed"), ("stuck", "timed_out")] {
        let record = record(&summary, "second", step);
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["started_ahead"], true, "{record}");
    }
    let third = summary["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "third")
        .unwrap();
    assert_eq!(third["status"], "skipped", "{third}");
}

#[tokio::test]
async fn an_interrupt_while_a_step_started_ahead_runs_leaves_nothing() {
    let repo = Repo::fixture("ahead");
    let id = run_id("ahead-int");
    let child = repo
        .drydock(&[
            "run",
            "pipelines/ahead-cancel.yml",
            "--run-id",
            &id,
            "--stop-grace",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the long step runs (its exec started).
    let events = repo
        .path()
        .join(".drydock/results")
        .join(&id)
        .join("events.ndjson");
    let began = Instant::now();
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("step_started") && l.contains("\"long\""))
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the long step never started: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("drydock stops promptly after a signal")
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    assert_nothing_left(&id).await;
}

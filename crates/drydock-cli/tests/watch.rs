//! `drydock watch` against the real engine: a warm tier re-runs on save and
//! leaves nothing behind after SIGINT.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_nothing_left, engine, run_id, text, Repo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// Waits for the next stdout line that starts with `mark` (`✔`/`✘`).
async fn next_result(lines: &mut Lines<BufReader<ChildStdout>>, stderr: &Mutex<String>) -> String {
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with('✔') || line.starts_with('✘') {
                return line;
            }
        }
        panic!(
            "drydock watch ended early; stderr:\n{}",
            stderr.lock().unwrap()
        );
    };
    match tokio::time::timeout(Duration::from_secs(180), wait).await {
        Ok(line) => line,
        Err(_) => panic!(
            "no step result within 180 s; stderr:\n{}",
            stderr.lock().unwrap()
        ),
    }
}

/// Writes `text` to `path` the way editors often do: a new file renamed over the old one.
fn save(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-save");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn watch_reruns_on_save_rebuilds_on_a_build_input_and_cleans_up_on_sigint() {
    let repo = Repo::fixture("watch");
    let id = run_id("watch");
    let mut child = repo
        .drydock(&["watch", "pipeline.yml", "--run-id", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let err_task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match err_pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // The initial run, in the tier with a test step (not the first tier).
    let first = next_result(&mut lines, &stderr).await;
    assert!(
        first.starts_with("✔ unit/check ") && first.ends_with(" 2 passed"),
        "{first}"
    );
    assert!(stderr.lock().unwrap().contains("tier unit"));

    // Warm objects exist while watching, all labelled with the run id.
    let live = engine()
        .await
        .labelled(&format!("drydock.run={id}"))
        .await
        .unwrap();
    for kind in ["container", "network", "volume"] {
        assert!(
            live.iter().any(|o| o.kind == kind),
            "a {kind} expected: {live:?}"
        );
    }

    // pass → fail → pass: each run sees the saved content.
    let calc = repo.path().join("app/src/calc.py");
    save(&calc, "def add(a, b):\n    return a - b\n");
    let failed = next_result(&mut lines, &stderr).await;
    assert!(
        failed.starts_with("✘ unit/check ")
            && failed.ends_with(" 2 failed: test_add, test_add_negative"),
        "{failed}"
    );
    save(&calc, "def add(a, b):\n    return a + b\n");
    let passed = next_result(&mut lines, &stderr).await;
    assert!(passed.ends_with(" 2 passed"), "{passed}");

    // A file the dev build copies: the image is rebuilt, the step re-runs.
    save(&repo.path().join("app/deps.txt"), "# changed\n");
    let again = next_result(&mut lines, &stderr).await;
    assert!(again.ends_with(" 2 passed"), "{again}");
    {
        let err = stderr.lock().unwrap();
        assert!(err.contains("the build dev reads a saved file"), "{err}");
        assert!(err.contains("rebuilt dev"), "{err}");
    }

    // SIGINT: exit 130 and nothing of the run left.
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("drydock watch did not stop within 30 s of SIGINT")
        .unwrap();
    let _ = err_task.await;
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopped; removed"), "{err}");
    let left = engine()
        .await
        .labelled(&format!("drydock.run={id}"))
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}\n{err}");
    assert_nothing_left(&id).await;
}

#[tokio::test]
async fn watch_refuses_an_unknown_tier_or_step_with_exit_2() {
    let repo = Repo::fixture("watch");
    for (args, needle) in [
        (&["--tier", "nope"][..], "no tier \"nope\""),
        (
            &["--tier", "unit", "--step", "nope"][..],
            "no step \"nope\"",
        ),
    ] {
        let id = run_id("watch-bad");
        let mut all = vec!["watch", "pipeline.yml", "--run-id", &id];
        all.extend_from_slice(args);
        let output = repo.run(&all, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains(needle), "{}", text(&output));
        assert_nothing_left(&id).await;
    }
}

#[tokio::test]
async fn watch_without_an_engine_exits_3() {
    let repo = Repo::fixture("watch");
    let output = repo
        .run(
            &["watch", "pipeline.yml"],
            &[("DOCKER_HOST", "unix:///tmp/drydock-no-engine-here.sock")],
        )
        .await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
}

/// A tier with a service: the service is ready on the session's network
/// before the step runs; SIGTERM ends the session like Ctrl-C (exit 130,
/// nothing of the run left).
#[tokio::test]
async fn watch_starts_the_tiers_services_and_cleans_up_on_sigterm() {
    let repo = Repo::fixture("watch");
    let id = run_id("watch-term");
    let mut child = repo
        .drydock(&["watch", "pipeline.yml", "--tier", "net", "--run-id", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The step has no JUnit report: the line gives the exit code.
    let first = next_result(&mut lines, &stderr).await;
    assert!(
        first.starts_with("✔ net/reach-web ") && first.ends_with(" exit 0"),
        "{first}"
    );
    let live = engine()
        .await
        .labelled(&format!("drydock.run={id}"))
        .await
        .unwrap();
    let roles: Vec<&str> = live
        .iter()
        .filter(|o| o.kind == "container")
        .filter_map(|o| o.labels.get("drydock.role").map(String::as_str))
        .collect();
    assert!(
        roles.contains(&"service") && roles.contains(&"step"),
        "{live:?}"
    );
    // SAFETY: sending SIGTERM to our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("drydock watch did not stop within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("service web ready"),
        "{}",
        text(&output)
    );
    assert_nothing_left(&id).await;
}

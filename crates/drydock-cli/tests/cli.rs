//! The `drydock` binary against the real engine, in throw-away repositories.

mod common;

use std::time::{Duration, Instant};

use common::{assert_nothing_left, engine, run_id, text, Repo};

/// (pipeline, extra environment, exit code, phrases the output must hold)
type BadInput<'a> = (&'a str, &'a [(&'a str, &'a str)], i32, &'a [&'a str]);

/// Each kind of bad input: one clear message naming what and where, the right
/// exit code, and nothing left in the engine.
#[tokio::test]
async fn bad_input_gets_one_clear_error_the_right_exit_code_and_leaves_nothing() {
    let repo = Repo::fixture("tiny");
    // (pipeline, extra env, exit code, what stderr/stdout must say)
    let cases: &[BadInput] = &[
        (
            "pipelines/bad-syntax.yml",
            &[],
            2,
            &[
                "pipelines/bad-syntax.yml:9:18:",
                "expected a duration",
                "5 minutes",
            ],
        ),
        (
            "pipelines/bad-dockerfile.yml",
            &[],
            2,
            &["pipelines/bad-dockerfile.yml:5:15:", "Dockerfile.missing"],
        ),
        (
            "pipelines/bad-context.yml",
            &[],
            2,
            &["bad-context.yml:4:12:", "outside the repository"],
        ),
        (
            "pipelines/does-not-exist.yml",
            &[],
            2,
            &["does-not-exist.yml", "cannot read"],
        ),
        (
            "pipelines/bad-image.yml",
            &[],
            3,
            &["drydock-test/no-such-image:1 is not in the engine"],
        ),
        (
            "pipelines/bad-image.yml",
            &[("DOCKER_HOST", "unix:///tmp/drydock-no-engine-here.sock")],
            3,
            &["cannot reach the Docker Engine at unix:///tmp/drydock-no-engine-here.sock"],
        ),
        (
            "pipelines/bad-command.yml",
            &[],
            1,
            &["no-such-command", "cannot be started", "skipped"],
        ),
        (
            "pipelines/killed.yml",
            &[],
            1,
            &["killed by SIGKILL (exit 137), not by the OOM killer"],
        ),
        (
            "pipelines/bad-sidecar.yml",
            &[],
            3,
            &[
                "service db",
                "not ready after 8s",
                "password authentication failed",
            ],
        ),
    ];
    for (pipeline, env, code, says) in cases {
        let id = run_id("bad");
        let output = repo.run(&["run", pipeline, "--run-id", &id], env).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(*code), "{pipeline}: {all}");
        for phrase in *says {
            assert!(
                all.contains(phrase),
                "{pipeline}: expected {phrase:?} in:\n{all}"
            );
        }
        assert!(!all.contains("panicked"), "{pipeline}: {all}");
        assert_nothing_left(&id).await;
    }
}

/// A reader that goes away (`drydock plan --json | head -0`, or of stderr):
/// the command ends as it would have, never with a panic (Rust's `println!`
/// and `eprintln!` panic on a broken pipe).
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let repo = Repo::fixture("tiny");
    for args in [
        &["plan", "pipelines/tiny.yml", "--json"][..],
        &["plan", "pipelines/tiny.yml"],
        &["validate", "pipelines/tiny.yml", "--json"],
        &["schema", "pipeline"],
        &["completions", "bash"],
        &["man"],
        &["--help"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(args)
            .current_dir(repo.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command writes (it is still starting).
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(output.status.code(), Some(0)),
            "{args:?}: {:?} {stderr}",
            output.status
        );
    }
    // stderr closed: an invalid pipeline still exits 2, not with a panic.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["validate", "pipelines/bad-syntax.yml"])
        .current_dir(repo.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            drop(child.stderr.take());
            child.wait()
        })
        .unwrap();
    assert_eq!(status.code(), Some(2), "{status:?}");
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_lists_every_command() {
    let repo = Repo::fixture("tiny");
    let output = repo.run(&["run"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = repo
        .run(&["run", "pipelines/tiny.yml", "--run-id", "bad id!"], &[])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let help = repo.run(&["--help"], &[]).await;
    let help_text = String::from_utf8_lossy(&help.stdout);
    for command in [
        "run", "images", "gc", "releases", "rollback", "promote", "push",
    ] {
        assert!(
            help_text.contains(command),
            "{command} missing from:\n{help_text}"
        );
    }
}

/// A green run builds, runs steps with a sidecar, collects JUnit, tags the
/// release; a second commit releases again; rollback points the channel back
/// and the ledger shows exactly that history.
#[tokio::test]
async fn green_runs_release_and_rollback_moves_the_channel_back() {
    let repo = Repo::fixture("tiny");
    let engine = engine().await;
    let first = run_id("green1");
    let results = repo.path().join(".drydock/results");
    let output = repo
        .run(&["run", "pipelines/tiny.yml", "--run-id", &first], &[])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_nothing_left(&first).await;

    // Results: logs of every step, a merged JUnit report, a summary with test counts.
    let run_dir = results.join(&first);
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<testsuite name="test/check/check""#) && junit.contains(r#"tests="2""#),
        "{junit}"
    );
    let log = std::fs::read_to_string(run_dir.join("logs/test/check.log")).unwrap();
    assert!(log.contains("PASS world"), "{log}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "passed");
    let staging_a = engine
        .image("drydock-test/tiny:staging")
        .await
        .unwrap()
        .expect("staging tag");
    assert!(engine
        .image(&format!("drydock-test/tiny:{first}"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        staging_a.user, "app",
        "the production target runs as its own user"
    );

    // A source change makes a new image and a second release.
    std::fs::write(
        repo.path().join("app/greet.py"),
        std::fs::read_to_string(repo.path().join("app/greet.py")).unwrap() + "\n# changed\n",
    )
    .unwrap();
    repo.commit("change");
    let second = run_id("green2");
    let output = repo
        .run(
            &["run", "pipelines/tiny.yml", "--run-id", &second, "--json"],
            &[],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is a JSON event"))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert!(events.iter().any(|e| e["event"] == "step_finished"
        && e["step"] == "check"
        && e["tests"]["tests"] == 2));
    let staging_b = engine
        .image("drydock-test/tiny:staging")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(staging_a.id, staging_b.id);

    let rollback = repo.run(&["rollback", "staging"], &[]).await;
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    let staging_now = engine
        .image("drydock-test/tiny:staging")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        staging_now.id, staging_a.id,
        "rollback points the channel at the previous image"
    );

    let releases = repo.run(&["releases", "staging", "--json"], &[]).await;
    assert_eq!(releases.status.code(), Some(0), "{}", text(&releases));
    let history: Vec<serde_json::Value> = serde_json::from_slice(&releases.stdout).unwrap();
    let actions: Vec<(&str, &str)> = history
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["image_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("release", staging_a.id.as_str()),
            ("release", staging_b.id.as_str()),
            ("rollback", staging_a.id.as_str())
        ]
    );
    // Image collection never offers an image the ledger's recent history references.
    let gc = repo
        .run(&["gc", "--images", "--keep", "3", "--dry-run"], &[])
        .await;
    assert_eq!(gc.status.code(), Some(0), "{}", text(&gc));
    let listed = String::from_utf8_lossy(&gc.stdout);
    for kept in [&staging_a.id, &staging_b.id] {
        let short = &kept.trim_start_matches("sha256:")[..12];
        assert!(!listed.contains(short), "gc offered {short}:\n{listed}");
    }

    // Promote moves the tested image by id, and the ledger says where it came from.
    let promote = repo
        .run(
            &["promote", "staging", "prod-test", "--reason", "tested"],
            &[],
        )
        .await;
    assert_eq!(promote.status.code(), Some(0), "{}", text(&promote));
    let promoted = engine
        .image("drydock-test/tiny:prod-test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(promoted.id, staging_a.id);
    let releases = repo.run(&["releases", "prod-test", "--json"], &[]).await;
    let history: Vec<serde_json::Value> = serde_json::from_slice(&releases.stdout).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0]["action"].as_str(), history[0]["reason"].as_str()),
        (Some("promote"), Some("tested"))
    );
    assert_eq!(history[0]["run_id"].as_str(), Some(first.as_str()));
    let _ = engine
        .remove_image("drydock-test/tiny:prod-test", false)
        .await;

    let unknown = repo.run(&["rollback", "nowhere"], &[]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));

    // An uncommitted file in the build context: the release is not the
    // commit, so it is tagged and recorded as `<sha>-dirty`.
    let head = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    // A results folder of its own inside the repository is not a change.
    let clean = run_id("clean");
    let output = repo
        .run(
            &[
                "run",
                "pipelines/tiny.yml",
                "--run-id",
                &clean,
                "--results",
                "./own-results/../own-results",
            ],
            &[],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        !text(&output).contains("not committed"),
        "{}",
        text(&output)
    );
    let _ = engine
        .remove_image(&format!("drydock-test/tiny:{clean}"), true)
        .await;
    std::fs::write(repo.path().join("app/untracked.txt"), "not committed\n").unwrap();
    let dirty = run_id("dirty");
    let output = repo
        .run(&["run", "pipelines/tiny.yml", "--run-id", &dirty], &[])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("changes that are not committed"),
        "{}",
        text(&output)
    );
    let releases = repo.run(&["releases", "staging", "--json"], &[]).await;
    let staging: Vec<serde_json::Value> = serde_json::from_slice(&releases.stdout).unwrap();
    let last = staging.last().unwrap();
    assert_eq!(last["run_id"].as_str(), Some(dirty.as_str()));
    assert_eq!(
        last["git_sha"].as_str(),
        Some(format!("{head}-dirty").as_str())
    );
    assert!(engine
        .image(&format!("drydock-test/tiny:{head}-dirty"))
        .await
        .unwrap()
        .is_some());
    for tag in [format!("{head}-dirty"), dirty.clone()] {
        let _ = engine
            .remove_image(&format!("drydock-test/tiny:{tag}"), true)
            .await;
    }

    let shas: Vec<String> = history
        .iter()
        .filter_map(|e| e["git_sha"].as_str().map(str::to_string))
        .collect();
    let tags = ["staging", first.as_str(), second.as_str()]
        .into_iter()
        .chain(shas.iter().map(String::as_str));
    for tag in tags {
        let _ = engine
            .remove_image(&format!("drydock-test/tiny:{tag}"), true)
            .await;
    }
}

/// A failing test stops the run at its tier: exit 1, later tiers skipped,
/// the failed test named, and a re-run of unchanged source reuses the build.
#[tokio::test]
async fn a_failing_test_stops_the_run_and_unchanged_source_is_not_rebuilt() {
    let repo = Repo::fixture("tiny");
    for attempt in ["red1", "red2"] {
        let id = run_id(attempt);
        let output = repo
            .run(
                &["run", "pipelines/tiny.yml", "--run-id", &id],
                &[("BREAK", "1")],
            )
            .await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(1), "{all}");
        assert!(
            all.contains("check::greet_x"),
            "the failed test is named: {all}"
        );
        assert!(
            all.contains("run-production") && all.contains("skipped"),
            "{all}"
        );
        if attempt == "red2" {
            assert!(
                all.contains("unchanged, reused"),
                "an unchanged build is reused: {all}"
            );
        }
        assert_nothing_left(&id).await;
    }
}

async fn wait_for_step_container(id: &str) {
    let engine = engine().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = engine
            .labelled(&format!("drydock.run={id}"))
            .await
            .unwrap()
            .into_iter()
            .filter(|l| {
                l.kind == "container"
                    && l.labels.get("drydock.role").map(String::as_str) == Some("step")
            })
            .count();
        if found > 0 {
            // Give the step a moment to be started, not only created.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the step container never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGINT and SIGTERM mid-step: exit 130 and nothing left behind.
#[tokio::test]
async fn an_interrupted_run_exits_130_and_removes_everything() {
    let repo = Repo::fixture("tiny");
    for (signal, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let id = run_id(name);
        let child = repo
            .drydock(&[
                "run",
                "pipelines/slow.yml",
                "--run-id",
                &id,
                "--stop-grace",
                "2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_step_container(&id).await;
        let pid = child.id().unwrap() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, signal) };
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("drydock stops promptly after a signal")
            .unwrap();
        assert_eq!(output.status.code(), Some(130), "{}", text(&output));
        assert_nothing_left(&id).await;
    }
}

/// `drydock gc --all` refuses to remove the objects of a run that is still
/// alive, naming it, unless `--force` is given. (Scoped with `--run` to this
/// test's own run: other runs share the engine.)
#[tokio::test]
async fn gc_all_refuses_objects_of_live_runs_unless_forced() {
    let repo = Repo::fixture("tiny");
    let id = run_id("live");
    let mut child = repo
        .drydock(&["run", "pipelines/slow.yml", "--run-id", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_step_container(&id).await;
    let engine = engine().await;
    let before = engine.labelled(&format!("drydock.run={id}")).await.unwrap();

    let refused = repo.run(&["gc", "--all", "--run", &id], &[]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("refusing to remove"), "{said}");
    assert!(said.contains(&id), "the run is named: {said}");
    assert!(said.contains("--force"), "{said}");
    let after = engine.labelled(&format!("drydock.run={id}")).await.unwrap();
    assert_eq!(after.len(), before.len(), "nothing was removed");

    // Plain gc leaves live runs alone, silently.
    let plain = repo.run(&["gc", "--run", &id], &[]).await;
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain));
    assert!(!engine
        .labelled(&format!("drydock.run={id}"))
        .await
        .unwrap()
        .is_empty());

    let forced = repo
        .run(&["gc", "--all", "--force", "--run", &id], &[])
        .await;
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the run ends once its step is gone")
        .unwrap();
    assert_ne!(status.code(), Some(0));
    assert_nothing_left(&id).await;
}

/// SIGKILL leaves labelled leftovers; `drydock gc` removes them.
#[tokio::test]
async fn a_killed_run_leaves_labelled_leftovers_that_gc_removes() {
    let repo = Repo::fixture("tiny");
    let id = run_id("kill");
    let mut child = repo
        .drydock(&["run", "pipelines/slow.yml", "--run-id", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_step_container(&id).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let engine = engine().await;
    let left = engine.labelled(&format!("drydock.run={id}")).await.unwrap();
    assert!(left.iter().any(|l| l.kind == "container"), "{left:?}");
    assert!(left.iter().any(|l| l.kind == "network"), "{left:?}");

    // Scoped to this test's run: other runs share the engine.
    let dry = repo.run(&["gc", "--dry-run", "--run", &id], &[]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains(&id),
        "{}",
        text(&dry)
    );
    assert_eq!(
        engine
            .labelled(&format!("drydock.run={id}"))
            .await
            .unwrap()
            .len(),
        left.len()
    );

    let gc = repo.run(&["gc", "--run", &id], &[]).await;
    assert_eq!(gc.status.code(), Some(0), "{}", text(&gc));
    assert_nothing_left(&id).await;
}

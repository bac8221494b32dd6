//! The pipeline controls (needs, when, retry, allow_failure, matrix) and
//! secrets, run by the `drydock` binary against the real engine.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{assert_nothing_left, engine, run_id, text, Repo};

fn events(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn position(events: &[serde_json::Value], event: &str, step: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == event && e["step"] == step)
        .unwrap_or_else(|| panic!("no {event} of {step}"))
}

fn finished<'a>(events: &'a [serde_json::Value], step: &str) -> &'a serde_json::Value {
    &events[position(events, "step_finished", step)]
}

fn status_of(events: &[serde_json::Value], step: &str) -> String {
    events
        .iter()
        .find(|e| {
            (e["event"] == "step_finished" || e["event"] == "step_skipped") && e["step"] == step
        })
        .map(|e| {
            if e["event"] == "step_skipped" {
                "skipped".to_string()
            } else {
                e["status"].as_str().unwrap_or_default().to_string()
            }
        })
        .unwrap_or_else(|| panic!("{step} never ended"))
}

fn log_lines(events: &[serde_json::Value], step: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "log" && e["step"] == step)
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn needs_matrix_retry_allow_failure_and_when_on_the_real_engine() {
    let repo = Repo::fixture("controls");
    let id = run_id("controls");
    let output = repo
        .run(
            &["run", "pipelines/controls.yml", "--json", "--run-id", &id],
            &[("CONTROLS_ID", id.as_str())],
        )
        .await;
    assert_nothing_left(&id).await;
    // The flaky step's attempt counter lives in this run's own pipeline cache.
    let engine = engine().await;
    let caches = engine
        .labelled(&format!("drydock.cache=controls-{id}"))
        .await
        .unwrap();
    assert_eq!(caches.len(), 1, "{caches:?}");
    engine.remove_leftovers(&caches).await.unwrap();

    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let events = events(&output);

    // needs: `early` starts before the unrelated slow step of the first tier ends.
    assert!(
        position(&events, "step_started", "early") < position(&events, "step_finished", "slow"),
        "{all}"
    );
    // matrix: four named steps, each with its variables.
    for (python, db) in [
        ("3.11", "15"),
        ("3.11", "16"),
        ("3.12", "15"),
        ("3.12", "16"),
    ] {
        let step = format!("grid [PYTHON={python}, DB={db}]");
        assert_eq!(status_of(&events, &step), "passed", "{step}: {all}");
        assert!(
            log_lines(&events, &step).contains(&format!("python={python} db={db}")),
            "{step}: {all}"
        );
    }
    // retry: failed once, passed on the second attempt: flaky, both logs kept.
    let retrying = &events[position(&events, "step_retrying", "flaky")];
    assert_eq!(retrying["attempt"], 1);
    let flaky = finished(&events, "flaky");
    assert_eq!(flaky["status"], "flaky", "{all}");
    assert_eq!(flaky["attempts"], 2);
    let logs = log_lines(&events, "flaky");
    assert!(logs.contains(&"attempt 1".to_string()) && logs.contains(&"attempt 2".to_string()));
    let results = repo.path().join(".drydock/results").join(&id);
    let kept: String = files(&results.join("logs"))
        .iter()
        .filter(|p| p.to_string_lossy().contains("flaky"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        kept.contains("attempt 1") && kept.contains("attempt 2"),
        "both attempts' logs in the results: {kept}"
    );
    // allow_failure: failed, a warning; the run passed.
    let optional = finished(&events, "optional");
    assert_eq!(optional["status"], "failed");
    assert_eq!(optional["allowed_failure"], true);
    // The summary counts both; junit.xml marks the flaky step in Surefire's
    // rerun form (a passed case with a <flakyFailure>).
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    let names = |key: &str| -> Vec<String> {
        summary[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        names("flaky_steps").iter().any(|s| s.ends_with("/flaky")),
        "{summary}"
    );
    assert!(
        names("allowed_failures")
            .iter()
            .any(|s| s.ends_with("/optional")),
        "{summary}"
    );
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    let flaky_case = junit
        .split("<testcase")
        .find(|case| case.contains(r#"name="flaky""#))
        .unwrap_or_else(|| panic!("no flaky case: {junit}"));
    assert!(
        flaky_case.contains("<flakyFailure") && !flaky_case.contains("<failure"),
        "{junit}"
    );
    // when: nothing failed, so on_failure is skipped and always runs.
    assert_eq!(status_of(&events, "on-failure"), "skipped");
    assert_eq!(status_of(&events, "always"), "passed");

    // The terminal says the same.
    let id2 = run_id("controls-term");
    let output = repo
        .run(&["run", "pipelines/failing.yml", "--run-id", &id2], &[])
        .await;
    assert_nothing_left(&id2).await;
    let terminal = text(&output);
    assert_eq!(output.status.code(), Some(1), "{terminal}");
    for says in [
        "skipped: an earlier failure",
        "on-failure",
        "always",
        "broken",
    ] {
        assert!(terminal.contains(says), "{says:?} in {terminal}");
    }
}

#[tokio::test]
async fn after_a_failure_on_failure_and_always_run() {
    let repo = Repo::fixture("controls");
    let id = run_id("failing");
    let output = repo
        .run(
            &["run", "pipelines/failing.yml", "--json", "--run-id", &id],
            &[],
        )
        .await;
    assert_nothing_left(&id).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let events = events(&output);
    assert_eq!(status_of(&events, "broken"), "failed");
    assert_eq!(status_of(&events, "skipped"), "skipped");
    assert_eq!(status_of(&events, "on-failure"), "passed");
    assert_eq!(status_of(&events, "always"), "passed");
}

#[tokio::test]
async fn an_always_step_runs_after_sigint_and_the_run_still_exits_130() {
    let repo = Repo::fixture("controls");
    let id = run_id("interrupted");
    let child = repo
        .drydock(&[
            "run",
            "pipelines/interrupted.yml",
            "--json",
            "--run-id",
            &id,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the long step to run.
    let engine = engine().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = engine
            .labelled(&format!("drydock.run={id}"))
            .await
            .unwrap()
            .iter()
            .any(|l| l.kind == "container");
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("drydock ends after the interrupt")
        .unwrap();
    assert_nothing_left(&id).await;
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let events = events(&output);
    assert_eq!(status_of(&events, "sleeper"), "cancelled");
    assert_eq!(status_of(&events, "always"), "passed", "{}", text(&output));
    assert!(log_lines(&events, "always").contains(&"always ran after the interrupt".to_string()));
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "run_finished");
    assert_eq!(finished["cancel_reason"], "signal");
}

#[tokio::test]
async fn a_secret_never_appears_in_output_events_logs_reports_or_labels() {
    let repo = Repo::fixture("controls");
    // This test's own build image: built fresh, so that the build's use of
    // the secret is seen.
    let image = "drydock-build/controls-secrets:app";
    let _ = engine().await.remove_image(image, true).await;
    let token = format!("tok-{}-zq9x", std::process::id());
    let forms = [
        token.clone(),
        base64::engine::general_purpose::STANDARD.encode(&token),
        base64::engine::general_purpose::STANDARD.encode(format!("{token}\n")),
    ];
    for json in [true, false] {
        let id = run_id(if json { "secret-json" } else { "secret-term" });
        let mut args = vec!["run", "pipelines/secrets.yml", "--run-id", id.as_str()];
        if json {
            args.push("--json");
        }
        let child = repo
            .drydock(&args)
            .env("DRYDOCK_TEST_TOKEN", &token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // While the step runs: its container's labels hold no secret.
        let engine = engine().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = false;
        while !seen && std::time::Instant::now() < deadline {
            for object in engine.labelled(&format!("drydock.run={id}")).await.unwrap() {
                seen |= object.kind == "container";
                for (k, v) in &object.labels {
                    assert!(!forms.iter().any(|f| v.contains(f) || k.contains(f)));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "the step container was seen");
        let output = child.wait_with_output().await.unwrap();
        assert_nothing_left(&id).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(1), "{all}");
        assert!(
            all.contains("***"),
            "the secret is masked, not dropped: {all}"
        );
        for form in &forms {
            assert!(!all.contains(form.as_str()), "{form} in the output:\n{all}");
        }
        let results = repo.path().join(".drydock/results").join(&id);
        let every = files(&results);
        // The build used the secret: its log says so, masked.
        let build_log: String = every
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".log"))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        assert!(build_log.contains("build sees ***"), "{build_log}");
        assert!(every.iter().any(|p| p.ends_with("events.ndjson")));
        assert!(every.iter().any(|p| p.ends_with("junit.xml")));
        assert!(every.iter().any(|p| p.ends_with("artifact.txt")));
        for file in every {
            let bytes = std::fs::read(&file).unwrap();
            let content = String::from_utf8_lossy(&bytes);
            for form in &forms {
                assert!(
                    !content.contains(form.as_str()),
                    "{form} in {}:\n{content}",
                    file.display()
                );
            }
        }
    }
    // No layer's history, the image config or its labels hold it.
    for args in [vec!["history", "--no-trunc", image], vec!["inspect", image]] {
        let out = std::process::Command::new("docker")
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}");
        let seen = String::from_utf8_lossy(&out.stdout);
        for form in &forms {
            assert!(
                !seen.contains(form.as_str()),
                "{form} in docker {args:?}:\n{seen}"
            );
        }
    }
    // The classic builder cannot mount secrets: the build is refused, saying why.
    let id = run_id("secret-classic");
    let output = repo
        .drydock(&["run", "pipelines/secrets.yml", "--run-id", id.as_str()])
        .env("DRYDOCK_TEST_TOKEN", &token)
        .env("DRYDOCK_BUILDER", "classic")
        .output()
        .await
        .unwrap();
    assert_nothing_left(&id).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("only BuildKit can do"), "{all}");
    let engine = engine().await;
    let _ = engine.remove_image(image, true).await;
}

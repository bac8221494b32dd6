//! Real repositories as they are: ordinary Flask + PostgreSQL projects
//! (`tests/fixtures/repos/*`) with only a pipeline file added, run by the
//! `drydock` binary against the real engine.

mod common;

use std::path::Path;

use common::{assert_nothing_left, engine, run_id, text, Repo};
use drydock_core::engine::{ContainerSpec, Engine};

/// The events of a `--json` run.
fn events(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (tier, status) of every `tier_finished` event.
fn tiers(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "tier_finished")
        .map(|e| {
            (
                e["tier"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// (step, status) of every finished or skipped step.
fn steps(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e["event"].as_str() {
            Some("step_finished") => Some((
                e["step"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            )),
            Some("step_skipped") => Some((
                e["step"].as_str().unwrap_or_default().to_string(),
                "skipped".to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Runs a pipeline of the repository with `--json`; returns the output and its events.
async fn run(
    repo: &Repo,
    pipeline: &str,
    id: &str,
) -> (std::process::Output, Vec<serde_json::Value>) {
    let output = repo
        .run(&["run", pipeline, "--json", "--run-id", id], &[])
        .await;
    let events = events(&output);
    assert_nothing_left(id).await;
    (output, events)
}

/// Whether `path` exists in `image` (a container is created, never started, then removed).
async fn image_has(engine: &Engine, image: &str, path: &str, id: &str) -> bool {
    let spec = ContainerSpec {
        name: format!("drydock-{id}-probe"),
        image: image.to_string(),
        labels: drydock_core::engine::labels::RunLabels::for_this_process(id, "tests")
            .with_role("test"),
        ..Default::default()
    };
    let container = engine.create_container(&spec).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    let found = engine
        .copy_out(&container, path, dest.path())
        .await
        .unwrap();
    engine.remove_container(&container).await.unwrap();
    found
}

fn junit_tests(events: &[serde_json::Value], step: &str) -> u64 {
    events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == step)
        .and_then(|e| e["tests"]["tests"].as_u64())
        .unwrap_or(0)
}

/// (a) A Dockerfile with one unnamed stage, built as `docker build .` would;
/// lint then tests against PostgreSQL; the second run reuses the build and
/// no image holds the results folder; a lint error stops the run at lint.
#[tokio::test]
async fn an_unnamed_stage_dockerfile_runs_lint_then_tests_and_a_lint_error_stops_at_lint() {
    let repo = Repo::fixture("repos/notes");
    let engine = engine().await;

    let id = run_id("notes1");
    let (output, events) = run(&repo, "pipelines/ci.yml", &id).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        tiers(&events),
        pairs(&[("lint", "passed"), ("test", "passed")])
    );
    assert!(junit_tests(&events, "pytest") >= 9, "{}", text(&output));
    assert!(
        repo.path()
            .join(".drydock/results")
            .join(&id)
            .join("summary.json")
            .is_file(),
        "results go to .drydock/results by default"
    );

    // Nothing changed: the build is reused, and the image holds no results.
    let id2 = run_id("notes2");
    let (output, events) = run(&repo, "pipelines/ci.yml", &id2).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let builds: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["step"] == "build app")
        .collect();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["reused"], true, "{}", text(&output));
    let image = "drydock-build/notes:app";
    assert!(image_has(&engine, image, "/usr/src/app/notes/app.py", &id2).await);
    assert!(!image_has(&engine, image, "/usr/src/app/.drydock", &id2).await);
    assert_nothing_left(&id2).await;
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "the results folder is git-ignored"
    );

    // A lint error: exit 1 at lint, the tests never run.
    let module = repo.path().join("notes/text.py");
    let source = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, format!("import os\n{source}")).unwrap();
    repo.commit("an unused import");
    let id3 = run_id("notes3");
    let (output, events) = run(&repo, "pipelines/ci.yml", &id3).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(
        tiers(&events),
        pairs(&[("lint", "failed"), ("test", "skipped")])
    );
    assert!(steps(&events).contains(&("pytest".to_string(), "skipped".to_string())));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("F401"), "{}", text(&output));
}

/// (e) `script:` steps: each line echoed, run in order in one shell.
#[tokio::test]
async fn script_steps_run_each_line_in_one_shell() {
    let repo = Repo::fixture("repos/notes");
    let id = run_id("script");
    let (output, events) = run(&repo, "pipelines/script.yml", &id).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log" && e["step"] == "lint-and-test")
        .filter_map(|e| e["line"].as_str())
        .collect();
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("{wanted:?} not in {lines:#?}"))
    };
    assert!(position("$ flake8 notes tests") < position("$ pytest -q tests"));
    assert!(position("max length 500") < position("all checks passed"));
}

/// (b) + (c): a production image with an ENTRYPOINT, its lint and tests run
/// through `entrypoint`; a PostgreSQL service built from the repository's
/// db/Dockerfile, whose init SQL creates the database the tests use; the
/// tests read .env.test.
#[tokio::test]
async fn an_entrypoint_image_and_a_database_built_from_the_repository() {
    let repo = Repo::fixture("repos/orders");
    let id = run_id("orders");
    let (output, events) = run(&repo, "pipelines/ci.yml", &id).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // Steps of one tier end in any order.
    let mut ended = steps(&events);
    ended.sort();
    assert_eq!(
        ended,
        pairs(&[
            ("build app", "passed"),
            ("build db", "passed"),
            ("flake8", "passed"),
            ("gunicorn-config", "passed"),
            ("pytest", "passed"),
        ])
    );
    assert_eq!(junit_tests(&events, "pytest"), 5);

    // The same lint step without `entrypoint`: the image's ENTRYPOINT
    // (gunicorn) runs with flake8's arguments; the failure says so.
    let pipeline = std::fs::read_to_string(repo.path().join("pipelines/ci.yml"))
        .unwrap()
        .replace(
            "entrypoint: [flake8]\n        command: [orders, tests]",
            "command: [flake8, orders, tests]",
        );
    assert!(pipeline.contains("command: [flake8, orders, tests]"));
    std::fs::write(repo.path().join("pipelines/no-entrypoint.yml"), pipeline).unwrap();
    let id = run_id("orders-noep");
    let (output, events) = run(&repo, "pipelines/no-entrypoint.yml", &id).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let flake8 = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "flake8")
        .unwrap();
    let error = flake8["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"the image's ENTRYPOINT ["gunicorn"] ran with the step's `command`"#)
            && error.contains("entrypoint: []"),
        "{error}"
    );
}

/// (d) Services and environment taken from the repository's docker-compose.yml.
#[tokio::test]
async fn services_from_the_compose_file() {
    let repo = Repo::fixture("repos/orders");
    let id = run_id("compose");
    let (output, events) = run(&repo, "pipelines/compose.yml", &id).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(tiers(&events), pairs(&[("test", "passed")]));
}

/// An unknown stage is refused at validation (exit 2, the stages listed),
/// by `validate` and by `run`, before any container starts.
#[tokio::test]
async fn a_stage_the_dockerfile_lacks_is_refused_before_anything_starts() {
    let repo = Repo::fixture("repos/notes");
    let pipeline = "version: 1\nname: notes\nbuild:\n  context: .\ntiers:\n  - name: build\n    build: [app]\n";
    std::fs::write(repo.path().join("pipelines/v1.yml"), pipeline).unwrap();
    for args in [
        vec!["validate", "pipelines/v1.yml"],
        vec!["run", "pipelines/v1.yml", "--run-id", &run_id("stage")],
    ] {
        let output = repo.run(&args, &[]).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(2), "{all}");
        for says in [
            "pipelines/v1.yml:7:13:",
            "unknown build `app`",
            "an unnamed stage (line 1, FROM drydock/python:3.11)",
        ] {
            assert!(all.contains(says), "{says:?} missing in {all}");
        }
    }
    assert_nothing_left(&run_id("stage")).await;
    assert!(!Path::new(&repo.path().join(".drydock/results"))
        .join(run_id("stage"))
        .exists());
}

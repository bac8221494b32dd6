//! Step results reused when nothing changed, against the real engine: a
//! replayed step is marked in the events, summary.json, junit.xml and the
//! terminal, and no container is created for it; a change to what its key
//! holds (a mounted file, the command, the environment), `--no-reuse` or a
//! failure runs it again; `drydock gc --results` empties the store. Each
//! test has its own repository and state folder (`DRYDOCK_STATE_DIR`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{assert_nothing_left, engine, run_id, text, Repo};
use futures::StreamExt;
use serde_json::Value;

/// What one run showed.
struct Run {
    id: String,
    code: Option<i32>,
    events: Vec<Value>,
    summary: Value,
    junit: String,
    dir: PathBuf,
    /// Names of the containers the engine created for the run.
    created: Vec<String>,
    output: String,
}

impl Run {
    fn finished(&self, step: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("no step_finished for {step}: {}", self.output))
    }

    /// The run a step was replayed from, or `None` when it ran (checked
    /// to agree between the event, summary.json and container creation).
    fn reused_from(&self, step: &str) -> Option<String> {
        let event = self.finished(step);
        let from = event["reused_from"].as_str().map(str::to_string);
        assert_eq!(event["reused"], from.is_some(), "{event}");
        let record = self.summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap();
        assert_eq!(record["reused_from"].as_str(), from.as_deref(), "{record}");
        let container = self
            .created
            .iter()
            .any(|name| name.ends_with(&format!("-{step}")));
        assert_eq!(
            container,
            from.is_none(),
            "{step}: a container is created exactly when it runs: {:?}",
            self.created
        );
        from
    }
}

/// Runs `drydock run PIPELINE --json` with a fresh run id, and collects
/// what it showed and which containers the engine created for it.
async fn run(repo: &Repo, pipeline: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let id = run_id(name);
    let since = now();
    let mut all = vec!["run", pipeline, "--run-id", &id, "--json"];
    all.extend_from_slice(args);
    let output = repo.run(&all, env).await;
    let until = now();
    assert_nothing_left(&id).await;
    let shown = text(&output);
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let dir = repo.path().join(".drydock/results").join(&id);
    let summary = serde_json::from_slice(
        &std::fs::read(dir.join("summary.json"))
            .unwrap_or_else(|e| panic!("summary.json: {e}: {shown}")),
    )
    .unwrap();
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    roxmltree::Document::parse(&junit)
        .unwrap_or_else(|e| panic!("junit.xml invalid: {e}\n{junit}"));
    Run {
        created: created_containers(&id, &since, &until).await,
        id,
        code: output.status.code(),
        events,
        summary,
        junit,
        dir,
        output: shown,
    }
}

/// Seconds since the epoch, with nanoseconds (the engine's event time format).
fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// The names of the containers labelled with the run that the engine
/// created between `since` and `until` (its event log).
async fn created_containers(run: &str, since: &str, until: &str) -> Vec<String> {
    let docker = engine().await.reconnect().unwrap();
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["create".to_string()]),
        ("label".to_string(), vec![format!("drydock.run={run}")]),
    ]);
    let options = bollard::query_parameters::EventsOptions {
        since: Some(since.to_string()),
        until: Some(until.to_string()),
        filters: Some(filters),
    };
    docker
        .events(Some(options))
        .filter_map(|e| async move { e.ok()?.actor?.attributes?.get("name").cloned() })
        .collect()
        .await
}

#[tokio::test]
async fn unchanged_steps_are_replayed_and_any_change_to_their_key_runs_them() {
    let repo = Repo::fixture("reuse");
    let first = run(&repo, "pipeline.yml", "ru1", &[], &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.output);
    assert_eq!(first.reused_from("unit"), None);
    assert_eq!(first.reused_from("other"), None);
    assert!(
        !first.junit.contains("drydock.reused_from"),
        "{}",
        first.junit
    );

    // Nothing changed: both replayed, from the first run, with its files.
    let second = run(&repo, "pipeline.yml", "ru2", &[], &[]).await;
    assert_eq!(second.code, Some(0), "{}", second.output);
    assert_eq!(second.reused_from("unit"), Some(first.id.clone()));
    assert_eq!(second.reused_from("other"), Some(first.id.clone()));
    assert_eq!(
        second.finished("unit")["tests"]["tests"],
        2,
        "{}",
        second.output
    );
    assert_eq!(second.summary["outcome"], "passed");
    let report = |run: &Run| {
        std::fs::read_to_string(run.dir.join("artifacts/test/unit/report.txt")).unwrap()
    };
    assert_eq!(report(&second), report(&first), "the stored collected file");
    assert!(second.dir.join("artifacts/test/unit/junit.xml").is_file());
    let log = std::fs::read_to_string(second.dir.join("logs/test/unit.log")).unwrap();
    assert!(
        log.contains("hello from unit") && log.contains("version 1"),
        "the stored output is replayed: {log}"
    );
    assert!(
        log.contains(&format!("reused from run {}", first.id)),
        "{log}"
    );
    let property = format!(
        r#"<property name="drydock.reused_from" value="{}"/>"#,
        first.id
    );
    assert!(second.junit.contains(&property), "{}", second.junit);
    assert!(
        second
            .junit
            .contains(&format!("drydock: reused from run {}", first.id)),
        "the step without a report of its own says so too: {}",
        second.junit
    );
    let logs: Vec<&Value> = second
        .events
        .iter()
        .filter(|e| e["event"] == "log" && e["step"] == "unit")
        .collect();
    assert!(
        logs.iter().any(|e| e["line"] == "hello from unit"),
        "log events replayed: {logs:?}"
    );

    // A file the mounted folder's .dockerignore excludes changes nothing.
    std::fs::write(repo.path().join("src/debug.log"), "noise\n").unwrap();
    let ignored = run(&repo, "pipeline.yml", "ru3", &[], &[]).await;
    assert_eq!(ignored.reused_from("unit"), Some(first.id.clone()));

    // A one-line change in a mounted file: only the step that mounts it runs.
    std::fs::write(repo.path().join("src/code.txt"), "version 2\n").unwrap();
    let changed = run(&repo, "pipeline.yml", "ru4", &[], &[]).await;
    assert_eq!(changed.code, Some(0), "{}", changed.output);
    assert_eq!(changed.reused_from("unit"), None);
    assert_eq!(changed.reused_from("other"), Some(first.id.clone()));
    let after = run(&repo, "pipeline.yml", "ru5", &[], &[]).await;
    assert_eq!(after.reused_from("unit"), Some(changed.id.clone()));

    // Another environment value.
    let env = run(&repo, "pipeline.yml", "ru6", &[], &[("GREETING", "bye")]).await;
    assert_eq!(env.reused_from("unit"), None);
    assert_eq!(env.reused_from("other"), Some(first.id.clone()));

    // Another command.
    let file = repo.path().join("pipeline.yml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        yaml.replace(
            "command: [cat, /other/data.txt]",
            "command: [cat, /other/data.txt, /other/data.txt]",
        ),
    )
    .unwrap();
    let command = run(&repo, "pipeline.yml", "ru7", &[], &[]).await;
    assert_eq!(command.reused_from("other"), None);
    assert_eq!(command.reused_from("unit"), Some(changed.id.clone()));

    // --no-reuse runs everything.
    let forced = run(&repo, "pipeline.yml", "ru8", &["--no-reuse"], &[]).await;
    assert_eq!(forced.code, Some(0), "{}", forced.output);
    assert_eq!(forced.reused_from("unit"), None);
    assert_eq!(forced.reused_from("other"), None);

    // The terminal says it too.
    let id = run_id("ru9");
    let output = repo
        .run(&["run", "pipeline.yml", "--run-id", &id], &[])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("(reused from run {})", forced.id)),
        "{}",
        text(&output)
    );
    assert_nothing_left(&id).await;
}

#[tokio::test]
async fn failed_steps_run_again_and_gc_results_empties_the_store() {
    let repo = Repo::fixture("reuse");
    let failed = run(&repo, "fail.yml", "rf1", &[], &[]).await;
    assert_eq!(failed.code, Some(1), "{}", failed.output);
    let again = run(&repo, "fail.yml", "rf2", &[], &[]).await;
    assert_eq!(again.code, Some(1), "{}", again.output);
    assert_eq!(again.reused_from("broken"), None, "a failure is not reused");

    let green = run(&repo, "pipeline.yml", "rf3", &[], &[]).await;
    assert_eq!(green.code, Some(0), "{}", green.output);
    let store = repo.state.path().join("results");
    let stored = std::fs::read_dir(&store).unwrap().count();
    assert_eq!(stored, 2, "one entry per passed step, none for the failure");

    // Scoped to a run that does not exist: only the results are removed.
    let gc = repo
        .run(&["gc", "--results", "--run", &run_id("none")], &[])
        .await;
    assert_eq!(gc.status.code(), Some(0), "{}", text(&gc));
    assert!(
        text(&gc).contains("removing 2 stored step results"),
        "{}",
        text(&gc)
    );
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
    let fresh = run(&repo, "pipeline.yml", "rf4", &[], &[]).await;
    assert_eq!(fresh.reused_from("unit"), None);
    assert_eq!(fresh.reused_from("other"), None);
}

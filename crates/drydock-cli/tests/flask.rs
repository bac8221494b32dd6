//! The acceptance run: the sample product's whole pipeline, green, inside
//! containers; then a deliberately broken unit test stops it at the first
//! unit tier. The slowest tests of the suite.

mod common;

use common::{assert_nothing_left, engine, run_id, text, Repo};
use drydock_core::engine::{ContainerSpec, Engine};

const PRODUCT: &[&str] = &["pipelines/flask-api.yml", "images/flask-api"];

/// Whether `path` exists in `image`, looked up by copying it out of a created
/// (never started) container.
async fn image_has(engine: &Engine, image: &str, path: &str, owner: &str) -> bool {
    let spec = ContainerSpec {
        name: format!("drydock-{owner}-inspect"),
        image: image.to_string(),
        command: Some(vec!["true".to_string()]),
        labels: drydock_core::engine::labels::RunLabels::for_this_process(owner, "flask-tests")
            .with_role("test"),
        ..Default::default()
    };
    let id = engine.create_container(&spec).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    let found = engine.copy_out(&id, path, dest.path()).await;
    engine.remove_container(&id).await.unwrap();
    found.unwrap()
}

fn summary(repo: &Repo, id: &str) -> serde_json::Value {
    let path = repo
        .path()
        .join(".drydock/results")
        .join(id)
        .join("summary.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn tier_statuses(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_flask_pipeline_passes_in_containers_and_a_broken_unit_test_stops_it_at_the_unit_tier()
{
    let repo = Repo::from_workspace(PRODUCT);
    let engine = engine().await;
    // The pipeline's pip cache outlives runs: remove it at the end only if
    // this test made it.
    let caches_before = engine.labelled("drydock.cache=flask-api").await.unwrap();
    let id = run_id("flask");
    let channel = format!("test-{id}");
    let env = [("DRYDOCK_CHANNEL", channel.as_str())];

    let output = repo
        .run(&["run", "pipelines/flask-api.yml", "--run-id", &id], &env)
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_nothing_left(&id).await;
    let green = summary(&repo, &id);
    let statuses = tier_statuses(&green);
    assert_eq!(
        statuses.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        [
            "pre-build",
            "build",
            "image",
            "integration",
            "e2e",
            "report"
        ]
    );
    assert!(statuses.iter().all(|(_, s)| s == "passed"), "{statuses:?}");
    for tier in green["tiers"].as_array().unwrap() {
        if tier["name"] != "build" && tier["name"] != "report" {
            assert!(
                tier["tests"]["tests"].as_u64().unwrap() > 0,
                "tier {} ran no test",
                tier["name"]
            );
            assert_eq!(tier["tests"]["failures"], 0);
        }
    }
    let perf = repo
        .path()
        .join(".drydock/results")
        .join(&id)
        .join("artifacts/e2e/perf/perf.json");
    assert!(perf.is_file(), "the load test's figures are collected");
    let db_log = repo
        .path()
        .join(".drydock/results")
        .join(&id)
        .join("artifacts/report/db-log/db.log");
    let db_log = std::fs::read_to_string(&db_log).unwrap_or_default();
    assert!(
        db_log.contains("database system is ready"),
        "the database log is kept: {db_log}"
    );

    // The production image: non-root, no test tools, no build-time CA.
    let production = format!("flask-api:{id}");
    let info = engine
        .image(&production)
        .await
        .unwrap()
        .expect("the release is tagged by run id");
    assert!(
        !info.user.is_empty() && info.user != "root" && info.user != "0",
        "user {:?}",
        info.user
    );
    let site = "/opt/venv/lib/python3.11/site-packages";
    for (path, expected) in [
        (format!("{site}/flask"), true),
        (format!("{site}/pytest"), false),
        (format!("{site}/flake8"), false),
        ("/tmp/build".to_string(), false),
        ("/.drydock-trust".to_string(), false),
    ] {
        assert_eq!(
            image_has(&engine, &production, &path, &id).await,
            expected,
            "{path} in {production}"
        );
    }

    // A broken unit test and an unused import: exit 1 at the first unit
    // tier (flake8 and the unit tests both fail), later tiers skipped.
    std::fs::write(
        repo.path()
            .join("images/flask-api/tests/unit/test_deliberately_broken.py"),
        "import os\n\n\ndef test_deliberately_broken():\n    assert 1 + 1 == 3\n",
    )
    .unwrap();
    repo.commit("break a unit test");
    let broken = run_id("flask-broken");
    let output = repo
        .run(
            &["run", "pipelines/flask-api.yml", "--run-id", &broken],
            &env,
        )
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("test_deliberately_broken"),
        "{}",
        text(&output)
    );
    assert_nothing_left(&broken).await;
    let red = summary(&repo, &broken);
    assert_eq!(
        tier_statuses(&red),
        [
            ("pre-build".to_string(), "failed".to_string()),
            ("build".to_string(), "skipped".to_string()),
            ("image".to_string(), "skipped".to_string()),
            ("integration".to_string(), "skipped".to_string()),
            ("e2e".to_string(), "skipped".to_string()),
            // `when: always`: the database log is kept after a failure too.
            ("report".to_string(), "passed".to_string()),
        ]
    );

    // The merged JUnit report has flake8's failure as a test case (flake8
    // writes no report of its own), beside the failed unit test, and the
    // skipped steps as skipped cases.
    let junit = std::fs::read_to_string(
        repo.path()
            .join(".drydock/results")
            .join(&broken)
            .join("junit.xml"),
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let case = |classname: &str, name: &str| {
        doc.descendants().find(|n| {
            n.has_tag_name("testcase")
                && n.attribute("classname") == Some(classname)
                && n.attribute("name") == Some(name)
        })
    };
    let flake8 = case("pre-build", "flake8").expect("flake8 is a test case");
    let failure = flake8
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("flake8's case failed");
    assert!(
        failure.text().unwrap_or_default().contains("F401"),
        "the failure holds flake8's last lines: {junit}"
    );
    assert!(junit.contains("test_deliberately_broken"), "{junit}");
    let skipped = case("image", "unit").expect("a skipped step is a case");
    assert!(skipped.children().any(|n| n.has_tag_name("skipped")));
    let root = doc.root_element();
    assert!(root.attribute("failures").unwrap().parse::<u64>().unwrap() >= 2);

    let caches: Vec<_> = engine
        .labelled("drydock.cache=flask-api")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| !caches_before.iter().any(|b| b.id == c.id))
        .collect();
    engine.remove_leftovers(&caches).await.unwrap();

    let sha = green_sha(&repo);
    for tag in [id.as_str(), channel.as_str(), sha.as_str()] {
        let _ = engine
            .remove_image(&format!("flask-api:{tag}"), false)
            .await;
    }
}

fn green_sha(repo: &Repo) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD~1"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

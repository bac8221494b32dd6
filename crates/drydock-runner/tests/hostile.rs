//! Hostile input through the runner: every file of the bad-input corpus
//! (`tests/fixtures/bad/`) as the pipeline of a commit; the runner records
//! each run (errored with the located reason, or passed for the valid ones)
//! and keeps serving. Also: GitHub's form-encoded deliveries, and a run
//! whose runner died during it `max_attempts` times is given up on (it ends
//! `errored`) rather than run again.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use drydock_runner::config::Config;
use drydock_runner::store::{
    Claimer, ExpiryPolicy, NewRun, RunFilter, RunKind, RunState, SqliteStore, Store,
};
use drydock_runner::web::hmac_sha256;
use drydock_runner::Runner;

struct Row {
    file: String,
    exit: i32,
    location: Option<String>,
}

fn corpus() -> Vec<Row> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad");
    std::fs::read_to_string(dir.join("EXPECTED.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                file: c[0].to_string(),
                exit: c[1].parse().unwrap(),
                location: (c[2] != "-").then(|| c[2].to_string()),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_is_recorded_and_the_runner_keeps_serving() {
    let origin = Origin::new();
    let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad/files");
    let rows = corpus();
    // One commit per corpus file on a branch nobody watches: runs are queued
    // by hand, one per commit, all in one runner.
    let mut shas = Vec::new();
    git(&origin.work(), &["checkout", "-q", "-b", "corpus"]);
    for row in &rows {
        let bytes = std::fs::read(files.join(&row.file)).unwrap();
        std::fs::write(origin.work().join("pipelines/ci.yml"), bytes).unwrap();
        shas.push(origin.commit(&row.file));
    }
    git(&origin.work(), &["push", "-q", "origin", "corpus"]);
    git(&origin.work(), &["checkout", "-q", "main"]);

    let state = tempfile::tempdir().unwrap();
    // A run whose runner died during it twice already (two lost attempts),
    // and once more now: its third attempt's lease has run out.
    let crashed = {
        let path = state.path().join("runner.sqlite");
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .unwrap()
            .unwrap();
        let run = store
            .enqueue(NewRun {
                repo: "app".into(),
                branch: "main".into(),
                sha: origin.head("main"),
                kind: RunKind::Branch,
                trigger: "test".into(),
                retry_of: None,
            })
            .await
            .unwrap();
        let dying = Claimer {
            runner: "dying".into(),
            owner: "dying#1".into(),
            lease: Duration::from_millis(1),
        };
        let policy = ExpiryPolicy {
            max_attempts: 3,
            requeue: true,
        };
        for _ in 0..2 {
            store.claim(&dying).await.unwrap().expect("claimed");
            tokio::time::sleep(Duration::from_millis(5)).await;
            store.expire_leases(&policy).await.unwrap();
        }
        store.claim(&dying).await.unwrap().expect("claimed");
        run.id
    };
    let text = origin.config(state.path(), "off", "");
    let config = Config::parse(
        &text,
        &state.path().join("runner.yml"),
        &|name| match name {
            "DRYDOCK_TEST_HOOK_SECRET" => Some(SECRET.to_string()),
            "DRYDOCK_TEST_API_TOKEN" => Some(TOKEN.to_string()),
            _ => None,
        },
    )
    .unwrap();
    let runner = Runner::start(config).await.unwrap();
    let shared = runner.shared().clone();
    let addr = runner.addr();

    let crashed_run = shared.store.get(&crashed).await.unwrap().unwrap();
    assert_eq!(crashed_run.state, RunState::Errored, "{crashed_run:?}");
    assert!(
        crashed_run
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("gave up after 3 lost attempts"),
        "{crashed_run:?}"
    );

    let started = Instant::now();
    let mut ids = Vec::new();
    for sha in &shas {
        let run = shared
            .enqueue(NewRun {
                repo: "app".into(),
                branch: "corpus".into(),
                sha: sha.clone(),
                kind: RunKind::Branch,
                trigger: "corpus".into(),
                retry_of: None,
            })
            .await
            .unwrap();
        ids.push(run.id);
    }

    // GitHub's form content type, signed over the raw body, while the corpus runs.
    let feature = origin.push_branch("feature/form", "main", "x.txt", "x", "form");
    let payload = format!(
        r#"{{"ref":"refs/heads/feature/form","after":"{feature}","repository":{{"name":"app"}}}}"#
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload)
        .finish();
    let signature = format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
    );
    let reply = http(
        addr,
        "POST",
        "/hooks/github",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "form-1"),
            ("X-Hub-Signature-256", &signature),
        ],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.json()["queued"].is_string(), "{}", reply.body);

    loop {
        let pending = shared
            .store
            .list(&RunFilter {
                limit: 10_000,
                ..RunFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|r| !r.state.is_finished())
            .count();
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{pending} runs pending"
        );
        // Serving all along.
        let reply = http(addr, "GET", "/api/runs?limit=1", &[], b"");
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut problems = Vec::new();
    for (row, id) in rows.iter().zip(&ids) {
        let run = shared.store.get(id).await.unwrap().unwrap();
        let reason = run.reason.clone().unwrap_or_default();
        let ok = match row.exit {
            0 => run.state == RunState::Passed,
            _ => {
                // Located in the pipeline file; where exactly, as in the corpus
                // unless the file refers to repository paths this repository lacks.
                let prefix = "invalid pipeline: pipelines/ci.yml:";
                let located = reason.starts_with(prefix)
                    && reason[prefix.len()..]
                        .split(':')
                        .take(2)
                        .all(|n| n.parse::<usize>().is_ok_and(|n| n > 0));
                let bytes = std::fs::read(files.join(&row.file)).unwrap();
                let uses_paths = String::from_utf8_lossy(&bytes).contains("tests/fixtures")
                    || row.file.starts_with("mount");
                let exact = match (&row.location, uses_paths) {
                    (Some(at), false) => reason.starts_with(&format!("{prefix}{at}:")),
                    _ => true,
                };
                run.state == RunState::Errored && located && exact
            }
        };
        if !ok {
            problems.push(format!("{}: {:?} {reason:.300}", row.file, run.state));
        }
    }
    let reply = http(addr, "GET", "/", &[], b"");
    assert_eq!(reply.status, 200, "the status page still answers");
    println!(
        "runner corpus: {} commits recorded in {:?}",
        rows.len(),
        started.elapsed()
    );
    runner.stop().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let _ = Arc::strong_count(&shared);
}

//! Runner operations against the real engine and real git: commit statuses
//! posted to a loopback server that implements the GitHub and GitLab
//! commit-status endpoints' contract (and an outage of it), `/metrics`
//! parsed by the Python `prometheus-client` package's OpenMetrics parser,
//! `/healthz`, `/readyz`, read-auth and the results download.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use common::*;
use drydock_runner::config::Config;
use drydock_runner::store::{Run, RunFilter, RunState, Store};
use drydock_runner::Runner;
use serde_json::{json, Value};

const FORGE_TOKEN: &str = "forge-token-7c1e55a0b9";

/// One request the fake forge received.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    auth: Option<String>,
    private_token: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Forge {
    calls: Arc<Mutex<Vec<Call>>>,
    outage: Arc<AtomicBool>,
}

/// The contract both forges document: the token header, a JSON body with
/// a known `state`, `target_url`, `description` and `context`/`name`; 201
/// with the status. An outage answers 503 to everything (and records).
async fn forge_status(
    State(forge): State<Forge>,
    headers: HeaderMap,
    uri: Uri,
    body: String,
) -> (StatusCode, String) {
    let text = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // As sent (percent-encoded), not decoded.
    let path = uri.path().to_string();
    let kind = if path.starts_with("/repos/") {
        "repos"
    } else {
        "projects"
    };
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    forge.calls.lock().unwrap().push(Call {
        path: path.clone(),
        auth: text("authorization"),
        private_token: text("private-token"),
        body: body.clone(),
    });
    if forge.outage.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"message\":\"down\"}".into(),
        );
    }
    let (allowed, authorized, name_key): (&[&str], bool, &str) = if kind == "repos" {
        (
            &["pending", "success", "failure", "error"],
            text("authorization") == Some(format!("Bearer {FORGE_TOKEN}")),
            "context",
        )
    } else {
        (
            &["pending", "running", "success", "failed", "canceled"],
            text("private-token").as_deref() == Some(FORGE_TOKEN),
            "name",
        )
    };
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"message\":\"Bad credentials\"}".into(),
        );
    }
    let state_ok = body["state"].as_str().is_some_and(|s| allowed.contains(&s));
    let fields_ok = body["target_url"].is_string()
        && body["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() <= 140)
        && body[name_key].is_string();
    if !state_ok
        || !fields_ok
        || !text("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "{\"message\":\"Validation Failed\"}".into(),
        );
    }
    (
        StatusCode::CREATED,
        json!({ "id": 1, "state": body["state"] }).to_string(),
    )
}

async fn start_forge() -> (Forge, SocketAddr) {
    let forge = Forge::default();
    // GitHub: /repos/{owner}/{repo}/statuses/{sha};
    // GitLab: /api/v4/projects/{id}/statuses/{sha}.
    let app = axum::Router::new()
        .route("/{*rest}", post(forge_status))
        .with_state(forge.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (forge, addr)
}

async fn start(origin: &Origin, state: &Path, top: &str, repo_extra: &str) -> Runner {
    let text = format!("{top}{}", origin.config(state, "300ms", repo_extra));
    let config = Config::parse(&text, &state.join("runner.yml"), &|name| match name {
        "DRYDOCK_TEST_HOOK_SECRET" => Some(SECRET.to_string()),
        "DRYDOCK_TEST_API_TOKEN" => Some(TOKEN.to_string()),
        "DRYDOCK_TEST_FORGE_TOKEN" => Some(FORGE_TOKEN.to_string()),
        _ => None,
    })
    .unwrap();
    Runner::start(config).await.unwrap()
}

async fn finished(store: &Arc<dyn Store>, sha: &str) -> Run {
    let start = Instant::now();
    loop {
        let runs = store
            .list(&RunFilter {
                limit: 1000,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        if let Some(run) = runs
            .into_iter()
            .find(|r| r.state.is_finished() && r.sha == sha)
        {
            return run;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "run of {sha} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The calls for `sha`, once the last one has state `last`.
async fn statuses(forge: &Forge, sha: &str, last: &str) -> Vec<Call> {
    let start = Instant::now();
    loop {
        let calls: Vec<Call> = forge
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.ends_with(&format!("/statuses/{sha}")))
            .cloned()
            .collect();
        if calls.last().is_some_and(|c| c.body["state"] == last) {
            return calls;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no final {last} status for {sha}: {calls:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let path = path.to_string();
    let token = token.map(|t| format!("Bearer {t}"));
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| vec![("Authorization", t)])
            .unwrap_or_default();
        http(addr, "GET", &path, &headers, b"")
    })
    .await
    .unwrap()
}

/// `/metrics` through prometheus-client's OpenMetrics parser: every sample
/// as (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, Value, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.type])
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics (prometheus-client installed by scripts/ensure-python-tools.sh?):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, Value, f64, String)> = serde_json::from_slice(&out.stdout).unwrap();
    samples.into_iter().map(|(n, l, v, _)| (n, l, v)).collect()
}

fn sample(samples: &[(String, Value, f64)], name: &str, labels: Value) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == labels)
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no sample {name} {labels}: {samples:?}"))
}

const GREEN_WITH_JUNIT: &str = "version: 1\nname: runner-fixture\ntiers:\n  - name: check\n    steps:\n      - name: probe\n        image: drydock/debian:bookworm\n        network: false\n        junit: /results/junit.xml\n        command: ['sh', '-c', 'mkdir -p /results; echo \"<testsuite name=\\\"s\\\" tests=\\\"2\\\" failures=\\\"0\\\"><testcase classname=\\\"pkg\\\" name=\\\"adds\\\"/><testcase classname=\\\"pkg\\\" name=\\\"subtracts\\\"/></testsuite>\" > /results/junit.xml']\n";

/// GitHub statuses for a green and a red run, with read-auth on: the API
/// needs the token, probes do not; /metrics parses and counts the runs;
/// the results folder and the JUnit report download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_statuses_metrics_probes_and_results() {
    let (forge, forge_addr) = start_forge().await;
    let origin = Origin::new();
    origin.write("pipelines/ci.yml", GREEN_WITH_JUNIT);
    let green = origin.commit("green with a JUnit report");
    git(&origin.work(), &["push", "-q", "origin", "main"]);
    let state = tempfile::tempdir().unwrap();
    let runner = start(
        &origin,
        state.path(),
        "read_auth: true\npublic_url: https://ci.example.test/\n",
        &format!("    forge: {{ kind: github, api: 'http://{forge_addr}', project: owner/app, token: {{ env: DRYDOCK_TEST_FORGE_TOKEN }} }}\n"),
    )
    .await;
    let addr = runner.addr();
    let store = runner.shared().store.clone();

    // Probes answer without the token.
    let health = get(addr, "/healthz", None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["store"]["ok"], true);
    assert_eq!(ready.json()["engine"]["ok"], true);

    // Green: pending (queued), pending (running), success.
    let run = finished(&store, &green).await;
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    let calls = statuses(&forge, &green, "success").await;
    let states: Vec<&str> = calls
        .iter()
        .map(|c| c.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "pending", "success"], "{calls:#?}");
    for call in &calls {
        assert_eq!(call.path, format!("/repos/owner/app/statuses/{green}"));
        assert_eq!(
            call.auth.as_deref(),
            Some(&*format!("Bearer {FORGE_TOKEN}"))
        );
        assert_eq!(call.body["context"], "drydock");
        assert_eq!(
            call.body["target_url"],
            format!("https://ci.example.test/runs/{}", run.id)
        );
    }
    assert_eq!(calls[0].body["description"], "queued (poll)", "{calls:#?}");
    let description = calls[2].body["description"].as_str().unwrap();
    assert!(
        description.starts_with("passed: check ✓") && description.contains("(2/2 tests)"),
        "{description}"
    );

    // Red: pending then failure.
    origin.write("pipelines/ci.yml", &pipeline(r#"["false"]"#));
    let red = origin.commit("red");
    git(&origin.work(), &["push", "-q", "origin", "main"]);
    let red_run = finished(&store, &red).await;
    assert_eq!(red_run.state, RunState::Failed, "{red_run:?}");
    let calls = statuses(&forge, &red, "failure").await;
    let states: Vec<&str> = calls
        .iter()
        .map(|c| c.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "pending", "failure"], "{calls:#?}");
    assert!(calls[2].body["description"]
        .as_str()
        .unwrap()
        .starts_with("failed: check ✗"));

    // Read-auth: reading needs the token; a wrong one is refused too.
    for path in [
        "/api/runs",
        "/",
        "/metrics",
        &format!("/api/runs/{}/junit.xml", run.id),
    ] {
        assert_eq!(get(addr, path, None).await.status, 401, "{path}");
        assert_eq!(
            get(addr, path, Some("wrong-token-123")).await.status,
            401,
            "{path}"
        );
        assert_eq!(get(addr, path, Some(TOKEN)).await.status, 200, "{path}");
    }

    // Results: the merged JUnit report, the listing, one file, no escape.
    let junit = get(
        addr,
        &format!("/api/runs/{}/junit.xml", run.id),
        Some(TOKEN),
    )
    .await;
    assert!(junit.body.contains("subtracts"), "{}", junit.body);
    let listing = get(addr, &format!("/api/runs/{}/results", run.id), Some(TOKEN)).await;
    let files: Vec<String> = listing.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "junit.xml",
        "summary.json",
        "run.log",
        "logs/check/probe.log",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} not in {files:?}"
        );
    }
    let summary = get(
        addr,
        &format!("/api/runs/{}/results/summary.json", run.id),
        Some(TOKEN),
    )
    .await;
    assert_eq!(summary.json()["outcome"], "passed", "{}", summary.body);
    for bad in [
        "../../runner.sqlite",
        "..%2F..%2Frunner.sqlite",
        "logs/../../x",
        "nosuch.txt",
    ] {
        let reply = get(
            addr,
            &format!("/api/runs/{}/results/{bad}", run.id),
            Some(TOKEN),
        )
        .await;
        assert!(
            reply.status == 400 || reply.status == 404,
            "{bad}: {}",
            reply.status
        );
    }
    let none = get(addr, "/api/runs/nosuch/junit.xml", Some(TOKEN)).await;
    assert_eq!(none.status, 404);

    // /metrics: a real OpenMetrics parser reads it; the runs are counted.
    let metrics = get(addr, "/metrics", Some(TOKEN)).await;
    assert_eq!(metrics.status, 200);
    let samples = parse_metrics(&metrics.body);
    let outcome = |o: &str| json!({ "outcome": o });
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_runs_finished_total",
            outcome("passed")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_runs_finished_total",
            outcome("failed")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_run_duration_seconds_count",
            json!({})
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_run_duration_seconds_bucket",
            json!({ "le": "+Inf" })
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_queue_runs",
            json!({ "state": "queued" })
        ),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_queue_runs",
            json!({ "state": "running" })
        ),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_engine_errors_total",
            json!({ "op": "run" })
        ),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_forge_statuses_total",
            json!({ "forge": "github", "result": "posted" })
        ),
        6.0
    );

    // A webhook with a wrong signature is counted as unauthorized.
    let reply = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "POST",
            "/hooks/github",
            &[
                ("X-Hub-Signature-256", "sha256=00"),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        )
    })
    .await
    .unwrap();
    assert_eq!(reply.status, 401);
    let samples = parse_metrics(&get(addr, "/metrics", Some(TOKEN)).await.body);
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_webhook_deliveries_total",
            json!({ "hook": "github", "result": "unauthorized" })
        ),
        1.0
    );
    runner.stop().await;
}

/// GitLab: an outage of the forge (503 to everything) never fails or
/// blocks the run (the posts are retried, then given up); once it is back,
/// pending, running, failed land with the PRIVATE-TOKEN header on the
/// project's URL-encoded path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_statuses_and_a_forge_outage() {
    let (forge, forge_addr) = start_forge().await;
    forge.outage.store(true, Ordering::SeqCst);
    let origin = Origin::new();
    let green = origin.head("main");
    let state = tempfile::tempdir().unwrap();
    let runner = start(
        &origin,
        state.path(),
        "",
        &format!("    forge: {{ kind: gitlab, api: 'http://{forge_addr}/api/v4', project: group/app, token: {{ env: DRYDOCK_TEST_FORGE_TOKEN }}, context: drydock/ci }}\n"),
    )
    .await;
    let addr = runner.addr();
    let store = runner.shared().store.clone();

    let started = Instant::now();
    let run = finished(&store, &green).await;
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Each status was tried 4 times, then given up.
    let start = Instant::now();
    let samples = loop {
        let samples = parse_metrics(&get(addr, "/metrics", None).await.body);
        let failed = |s: &[(String, Value, f64)]| {
            s.iter()
                .find(|(n, l, _)| {
                    n == "drydock_runner_forge_statuses_total"
                        && *l == json!({ "forge": "gitlab", "result": "failed" })
                })
                .map(|(_, _, v)| *v)
        };
        if failed(&samples) == Some(3.0) {
            break samples;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{samples:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        sample(
            &samples,
            "drydock_runner_forge_statuses_total",
            json!({ "forge": "gitlab", "result": "retried" })
        ),
        9.0
    );
    assert_eq!(
        forge.calls.lock().unwrap().len(),
        12,
        "3 statuses × 4 attempts"
    );

    // The forge is back: a red run reports pending, running, failed.
    forge.outage.store(false, Ordering::SeqCst);
    origin.write("pipelines/ci.yml", &pipeline(r#"["false"]"#));
    let red = origin.commit("red");
    git(&origin.work(), &["push", "-q", "origin", "main"]);
    let red_run = finished(&store, &red).await;
    assert_eq!(red_run.state, RunState::Failed);
    let calls = statuses(&forge, &red, "failed").await;
    let states: Vec<&str> = calls
        .iter()
        .map(|c| c.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "running", "failed"], "{calls:#?}");
    for call in &calls {
        assert_eq!(
            call.path,
            format!("/api/v4/projects/group%2Fapp/statuses/{red}")
        );
        assert_eq!(call.private_token.as_deref(), Some(FORGE_TOKEN));
        assert_eq!(call.auth, None);
        assert_eq!(call.body["name"], "drydock/ci");
        assert_eq!(
            call.body["target_url"],
            format!("http://{addr}/runs/{}", red_run.id)
        );
    }

    // The token is in no log of the run and no API answer.
    let log = std::fs::read_to_string(
        state
            .path()
            .join("results")
            .join(&red_run.id)
            .join("run.log"),
    )
    .unwrap();
    assert!(!log.contains(FORGE_TOKEN));
    let api = get(addr, &format!("/api/runs/{}", red_run.id), None).await;
    assert!(!api.body.contains(FORGE_TOKEN));
    runner.stop().await;
}

/// `/readyz` follows the store: 200 while the PostgreSQL store answers, 503
/// naming the store once its server is gone (the engine still ok), while
/// `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store() {
    let pg = tokio::task::block_in_place(common::pg::Postgres::start);
    let url = tokio::task::block_in_place(|| pg.create_database("ready"));
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let text = origin.config(state.path(), "off", "").replace(
        "listen: 127.0.0.1:0\n",
        &format!("listen: 127.0.0.1:0\nstore: {url}\n"),
    );
    let config = Config::parse(&text, &state.path().join("runner.yml"), &|n| {
        n.starts_with("DRYDOCK_TEST_").then(|| TOKEN.to_string())
    })
    .unwrap();
    let runner = Runner::start(config).await.unwrap();
    let addr = runner.addr();
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    tokio::task::block_in_place(|| drop(pg));
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["ready"], false);
    assert_eq!(body["store"]["ok"], false);
    assert!(body["store"]["error"].is_string(), "{body}");
    assert_eq!(body["engine"]["ok"], true);
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    let _ = tokio::time::timeout(Duration::from_secs(30), runner.stop()).await;
}

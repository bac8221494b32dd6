//! The runner against real git repositories and the real engine.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use drydock_runner::config::Config;
use drydock_runner::store::{Run, RunFilter, RunKind, RunState, Store};
use drydock_runner::web::hmac_sha256;
use drydock_runner::Runner;

async fn start(origin: &Origin, state: &Path, poll: &str, extra: &str) -> Runner {
    let text = origin.config(state, poll, extra);
    let config = Config::parse(&text, &state.join("runner.yml"), &|name| match name {
        "DRYDOCK_TEST_HOOK_SECRET" => Some(SECRET.to_string()),
        "DRYDOCK_TEST_API_TOKEN" => Some(TOKEN.to_string()),
        _ => None,
    })
    .unwrap();
    Runner::start(config).await.unwrap()
}

/// Waits (without blocking the runtime) for a finished run matching `pred`.
async fn finished(store: &Arc<dyn Store>, what: &str, pred: impl Fn(&Run) -> bool) -> Run {
    let start = Instant::now();
    loop {
        let runs = store
            .list(&RunFilter {
                limit: 1000,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        if let Some(run) = runs.into_iter().find(|r| r.state.is_finished() && pred(r)) {
            return run;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {:#?}",
            store.list(&RunFilter::default()).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll → run → the central branch fast-forwarded (and merged) on green;
/// hostile branch names and commit messages are data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_run_and_land_green_candidates() {
    let pwned = Path::new("/tmp/pwned");
    let _ = std::fs::remove_file(pwned);
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let runner = start(&origin, state.path(), "300ms", "").await;
    let store = runner.shared().store.clone();
    let main0 = origin.head("main");

    // The first poll sees main and runs it.
    let run = finished(&store, "main", |r| r.branch == "main" && r.sha == main0).await;
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    assert_eq!(run.kind, RunKind::Branch);
    let summary = run.summary.unwrap();
    assert_eq!(summary.tiers.len(), 1);
    assert_eq!(summary.steps[0].step, "probe");

    // A candidate on top of main, with a hostile name and message: fast-forward.
    let hostile = "ready/$(touch${IFS}/tmp/pwned)";
    let cand = origin.push_branch(
        hostile,
        "origin/main",
        "a.txt",
        "a",
        "add a; $(touch /tmp/pwned) `touch /tmp/pwned` ;rm -rf /tmp/nothing",
    );
    let pushed = chrono_ms();
    let run = finished(&store, "hostile candidate", |r| r.branch == hostile).await;
    eprintln!(
        "poll (300ms interval): push → run start {} ms",
        run.started_ms.unwrap() - pushed
    );
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    assert_eq!(run.tested_sha.as_deref(), Some(cand.as_str()));
    assert!(
        run.reason.as_deref().unwrap().contains("fast-forwarded"),
        "{run:?}"
    );
    assert_eq!(
        origin.head("main"),
        cand,
        "main fast-forwarded to the candidate"
    );

    // A candidate made from the old main: tested (and landed) as a merge commit.
    let other = origin.push_branch("ready/other", &main0, "b.txt", "b", "add b");
    let run = finished(&store, "merge candidate", |r| r.branch == "ready/other").await;
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    let merged = origin.head("main");
    assert_eq!(run.tested_sha.as_deref(), Some(merged.as_str()));
    assert_eq!(run.base_sha.as_deref(), Some(cand.as_str()));
    let parents = git(
        &origin.bare(),
        &["rev-list", "--parents", "-n", "1", &merged],
    );
    assert_eq!(parents, format!("{merged} {cand} {other}"));
    assert!(run.reason.unwrap().contains("merged"));

    assert!(
        !pwned.exists(),
        "a branch name or commit message was run by a shell"
    );
    runner.stop().await;
    assert!(runner_worktrees_empty(state.path()));
}

fn chrono_ms() -> i64 {
    drydock_runner::store::now_ms()
}

fn runner_worktrees_empty(state: &Path) -> bool {
    std::fs::read_dir(state.join("worktrees"))
        .unwrap()
        .next()
        .is_none()
}

/// A red candidate leaves main untouched and says why; a commit without a
/// pipeline file and an invalid pipeline are errored runs, and the runner
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_candidate_and_broken_commits() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let main0 = origin.head("main");
    let red = origin.push_branch(
        "ready/red",
        "origin/main",
        "pipelines/ci.yml",
        &pipeline(r#"["false"]"#),
        "break it",
    );
    git(&origin.work(), &["rm", "-q", "pipelines/ci.yml"]);
    let nopipe = origin.commit("no pipeline");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/feature/nopipe"],
    );
    origin.push_branch(
        "feature/invalid",
        &main0,
        "pipelines/ci.yml",
        "version: 1\nname: x\ntiers:\n  - name: t\n    stepz: []\n",
        "invalid",
    );

    let runner = start(&origin, state.path(), "300ms", "").await;
    let store = runner.shared().store.clone();
    let run = finished(&store, "red", |r| r.branch == "ready/red").await;
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert_eq!(run.sha, red);
    let reason = run.reason.unwrap();
    assert!(reason.contains("not landed: main left at"), "{reason}");
    assert_eq!(
        origin.head("main"),
        main0,
        "a red run leaves main untouched"
    );

    let run = finished(&store, "no pipeline", |r| r.sha == nopipe).await;
    assert_eq!(run.state, RunState::Errored);
    assert!(run
        .reason
        .unwrap()
        .contains("no pipeline file pipelines/ci.yml"));
    let run = finished(&store, "invalid", |r| r.branch == "feature/invalid").await;
    assert_eq!(run.state, RunState::Errored);
    let reason = run.reason.unwrap();
    assert!(
        reason.starts_with("invalid pipeline: pipelines/ci.yml:4:5: "),
        "{reason}"
    );

    // A repository that cannot be fetched: errored, and the runner still serves.
    std::fs::rename(origin.bare(), origin.dir.path().join("gone.git")).unwrap();
    let again = runner
        .shared()
        .enqueue(drydock_runner::store::NewRun {
            repo: "app".into(),
            branch: "main".into(),
            sha: main0.clone(),
            kind: RunKind::Branch,
            trigger: "test".into(),
            retry_of: None,
        })
        .await
        .unwrap();
    let run = finished(&store, "unfetchable", |r| r.id == again.id).await;
    assert_eq!(run.state, RunState::Errored);
    assert!(run.reason.unwrap().contains("cannot fetch"));
    let reply = tokio::task::spawn_blocking({
        let addr = runner.addr();
        move || http(addr, "GET", "/api/runs", &[], b"")
    })
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    runner.stop().await;
}

fn github(addr: std::net::SocketAddr, body: &[u8], sig: Option<String>, delivery: &str) -> Reply {
    let mut headers = vec![
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("Content-Type", "application/json"),
    ];
    let sig_value;
    if let Some(s) = sig {
        sig_value = s;
        headers.push(("X-Hub-Signature-256", sig_value.as_str()));
    }
    http(addr, "POST", "/hooks/github", &headers, body)
}

fn sign(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), body))
    )
}

/// Webhooks with good, bad and replayed signatures; the API, log, cancel and
/// rerun; the secret never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_and_api() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let runner = start(&origin, state.path(), "off", "").await;
    let addr = runner.addr();
    let store = runner.shared().store.clone();
    let sha = origin.head("main");
    let body = serde_json::json!({
        "ref": "refs/heads/main", "after": sha,
        "repository": { "name": "app", "full_name": "acme/app", "clone_url": "https://example.invalid/acme/app.git" }
    })
    .to_string();
    let body = body.as_bytes().to_vec();

    let replies = tokio::task::spawn_blocking({
        let body = body.clone();
        move || {
            let missing = github(addr, &body, None, "d-1");
            let wrong = github(
                addr,
                &body,
                Some(format!("sha256={}", "0".repeat(64))),
                "d-2",
            );
            let sent = (Instant::now(), chrono_ms());
            let good = github(addr, &body, Some(sign(&body)), "d-3");
            let replay = github(addr, &body, Some(sign(&body)), "d-3");
            let big = vec![b' '; 100_000];
            let too_big = github(addr, &big, Some(sign(&big)), "d-4");
            let junk = b"{not json".to_vec();
            let malformed = github(addr, &junk, Some(sign(&junk)), "d-5");
            (missing, wrong, good, replay, too_big, malformed, sent)
        }
    })
    .await
    .unwrap();
    let (missing, wrong, good, replay, too_big, malformed, sent) = replies;
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(good.status, 202, "{}", good.body);
    let id = good.json()["queued"].as_str().unwrap().to_string();
    assert_eq!(replay.status, 200);
    assert!(replay.body.contains("replayed"), "{}", replay.body);
    assert_eq!(too_big.status, 413);
    assert_eq!(malformed.status, 400);

    let run = finished(&store, "webhook run", |r| r.id == id).await;
    assert_eq!(run.state, RunState::Passed, "{run:?}");
    eprintln!(
        "webhook: request → run start {} ms",
        run.started_ms.unwrap() - sent.1
    );
    assert_eq!(
        store.list(&RunFilter::default()).await.unwrap().len(),
        1,
        "the replay queued nothing"
    );

    // GitLab: token header.
    let feature = origin.push_branch("feature/gl", "origin/main", "c.txt", "c", "c");
    let gl_body = serde_json::json!({
        "ref": "refs/heads/feature/gl", "after": feature,
        "project": { "name": "app", "path_with_namespace": "acme/app" }
    })
    .to_string();
    let (gl_bad, gl_good, api) = tokio::task::spawn_blocking({
        let id = id.clone();
        move || {
            let h = |token: &'static str| {
                vec![
                    ("X-Gitlab-Event", "Push Hook"),
                    ("X-Gitlab-Token", token),
                    ("X-Gitlab-Event-UUID", "u-1"),
                ]
            };
            let bad = http(
                addr,
                "POST",
                "/hooks/gitlab",
                &h("wrong-token-123"),
                gl_body.as_bytes(),
            );
            let good = http(
                addr,
                "POST",
                "/hooks/gitlab",
                &h(SECRET),
                gl_body.as_bytes(),
            );
            let api = vec![
                http(addr, "GET", "/api/runs", &[], b""),
                http(addr, "GET", &format!("/api/runs/{id}"), &[], b""),
                http(addr, "GET", &format!("/api/runs/{id}/log"), &[], b""),
                http(addr, "GET", "/", &[], b""),
                http(addr, "GET", &format!("/runs/{id}"), &[], b""),
                http(addr, "GET", "/badge/app/main.svg", &[], b""),
                http(addr, "POST", &format!("/api/runs/{id}/rerun"), &[], b""),
                http(
                    addr,
                    "POST",
                    &format!("/api/runs/{id}/rerun"),
                    &[("Authorization", &format!("Bearer {TOKEN}"))],
                    b"",
                ),
            ];
            (bad, good, api)
        }
    })
    .await
    .unwrap();
    assert_eq!(gl_bad.status, 401);
    assert_eq!(gl_good.status, 202, "{}", gl_good.body);
    let detail = api[1].json();
    assert_eq!(detail["state"], "passed");
    assert_eq!(detail["summary"]["tiers"][0]["name"], "check");
    assert_eq!(detail["summary"]["steps"][0]["status"], "passed");
    assert!(
        api[2].body.contains("check/probe passed"),
        "{}",
        api[2].body
    );
    assert!(api[3].body.contains(&id));
    assert!(api[5].body.contains("passing"));
    assert_eq!(api[6].status, 401, "rerun without a token");
    assert_eq!(api[7].status, 202, "{}", api[7].body);
    let rerun = api[7].json()["queued"].as_str().unwrap().to_string();
    let run = finished(&store, "rerun", |r| r.id == rerun).await;
    assert_eq!(run.state, RunState::Passed);
    finished(&store, "gitlab run", |r| r.branch == "feature/gl").await;

    // The secrets appear nowhere: API, page, run logs, results.
    for reply in &api {
        assert!(!reply.body.contains(SECRET) && !reply.body.contains(TOKEN));
    }
    let mut files = vec![state.path().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            if p.ends_with("git") {
                continue;
            }
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&p) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET) && !text.contains(TOKEN),
                "secret in {}",
                p.display()
            );
        }
    }
    runner.stop().await;
}

/// Loads `url` in Debian's chromium (headless) and returns the rendered DOM.
fn browser_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium is installed (scripts/ensure-engine.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status page as a person sees it in a real browser: runs, per-tier and
/// per-step state and durations, failed tests from JUnit, logs; a hostile
/// branch name shows as text and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_headless_browser() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let failing = "version: 1\nname: runner-fixture\ntiers:\n  - name: check\n    steps:\n      - name: probe\n        image: drydock/debian:bookworm\n        network: false\n        junit: /results/junit.xml\n        command: ['sh', '-c', 'mkdir -p /results; echo \"<testsuite name=\\\"s\\\" tests=\\\"2\\\" failures=\\\"1\\\"><testcase classname=\\\"pkg\\\" name=\\\"adds_numbers\\\"/><testcase classname=\\\"pkg\\\" name=\\\"divides_by_zero\\\"><failure message=\\\"boom\\\"/></testcase></testsuite>\" > /results/junit.xml; echo visible-log-line; exit 1']\n  - name: later\n    steps:\n      - name: never\n        image: drydock/debian:bookworm\n        command: ['true']\n";
    let hostile = "feature/<script>document.title='pwned'</script>";
    origin.push_branch(
        hostile,
        "origin/main",
        "pipelines/ci.yml",
        failing,
        "red with junit",
    );
    let runner = start(&origin, state.path(), "300ms", "").await;
    let store = runner.shared().store.clone();
    let red = finished(&store, "red run", |r| r.branch == hostile).await;
    assert_eq!(red.state, RunState::Failed, "{red:?}");
    let green = finished(&store, "main", |r| r.branch == "main").await;
    assert_eq!(green.state, RunState::Passed);

    let base = format!("http://{}", runner.addr());
    let (index, page) = tokio::task::spawn_blocking({
        let base = base.clone();
        let id = red.id.clone();
        move || {
            (
                browser_dom(&format!("{base}/")),
                browser_dom(&format!("{base}/runs/{id}")),
            )
        }
    })
    .await
    .unwrap();
    // The run list: both runs, their states, the branch as text.
    assert!(
        index.contains(&red.id) && index.contains(&green.id),
        "{index}"
    );
    assert!(index.contains("failed") && index.contains("passed"));
    assert!(
        index.contains("feature/&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{index}"
    );
    assert!(!index.contains("<title>pwned</title>"));
    // The run: tiers and steps with state and duration, failed tests, the log.
    assert!(
        page.contains("<td id=\"state\" class=\"failed\">failed</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>check</td><td class=\"failed\">failed</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>later</td><td>never</td><td class=\"skipped\">skipped</td>"),
        "{page}"
    );
    assert!(page.contains("1 passed, 1 failed"), "{page}");
    assert!(page.contains("divides_by_zero"), "{page}");
    assert!(page.contains("[check/probe] visible-log-line"), "{page}");
    assert!(!page.contains(SECRET) && !index.contains(SECRET));
    assert!(!page.contains("<title>pwned</title>"));
    runner.stop().await;
}

/// The central branch moves while a candidate is tested: the green result
/// does not land; the candidate is tested again on top of the new head and
/// that tested merge is what lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_moved_during_the_test_retests_on_top() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let cand = origin.push_branch(
        "ready/slow",
        "origin/main",
        "pipelines/ci.yml",
        &pipeline(r#"["sleep", "3"]"#),
        "slow",
    );
    let runner = start(&origin, state.path(), "300ms", "").await;
    let store = runner.shared().store.clone();
    // Wait until the candidate is being tested on top of main, then move main.
    let start = Instant::now();
    let first = loop {
        let runs = store.list(&RunFilter::default()).await.unwrap();
        if let Some(r) = runs.into_iter().find(|r| {
            r.branch == "ready/slow" && r.state == RunState::Running && r.base_sha.is_some()
        }) {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moved = origin.push_branch("main", "origin/main", "d.txt", "d", "someone else landed");
    let first = finished(&store, "first candidate run", |r| r.id == first.id).await;
    assert_eq!(first.state, RunState::Passed, "{first:?}");
    let reason = first.reason.unwrap();
    assert!(
        reason.contains("main moved from") && reason.contains("queued again"),
        "{reason}"
    );
    let retest = finished(&store, "retest", |r| {
        r.retry_of.as_deref() == Some(first.id.as_str())
    })
    .await;
    assert_eq!(retest.state, RunState::Passed, "{retest:?}");
    assert_eq!(retest.base_sha.as_deref(), Some(moved.as_str()));
    let landed = origin.head("main");
    assert_eq!(
        retest.tested_sha.as_deref(),
        Some(landed.as_str()),
        "what landed is what was tested"
    );
    let parents = git(
        &origin.bare(),
        &["rev-list", "--parents", "-n", "1", &landed],
    );
    assert_eq!(parents, format!("{landed} {moved} {cand}"));
    runner.stop().await;
}

/// A run past the per-run timeout fails and says so; a run cancelled through
/// the API ends cancelled; neither leaves a container behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_cancel() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    origin.push_branch(
        "feature/slow",
        "origin/main",
        "pipelines/ci.yml",
        &pipeline(r#"["sleep", "60"]"#),
        "slow",
    );
    origin.push_branch(
        "feature/cancel",
        "origin/main",
        "pipelines/ci.yml",
        &pipeline(r#"["sleep", "60"]"#),
        "slow too",
    );
    let text = origin
        .config(state.path(), "300ms", "")
        .replace("run_timeout: 2m", "run_timeout: 4s")
        .replace("concurrency: 2", "concurrency: 3");
    let config = Config::parse(&text, &state.path().join("runner.yml"), &|n| {
        (n.starts_with("DRYDOCK_TEST_")).then(|| TOKEN.to_string())
    })
    .unwrap();
    let runner = Runner::start(config).await.unwrap();
    let store = runner.shared().store.clone();
    let addr = runner.addr();
    let start = Instant::now();
    let to_cancel = loop {
        let runs = store.list(&RunFilter::default()).await.unwrap();
        if let Some(r) = runs
            .into_iter()
            .find(|r| r.branch == "feature/cancel" && r.state == RunState::Running)
        {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Follow its log live while it runs: the stream ends when the run does.
    let follow = {
        let id = to_cancel.id.clone();
        tokio::task::spawn_blocking(move || {
            http(addr, "GET", &format!("/api/runs/{id}/log"), &[], b"")
        })
    };
    // Cancel once its step runs (a container of the run exists).
    let engine = drydock_core::engine::Engine::connect().await.unwrap();
    let started = Instant::now();
    while !engine
        .labelled(&format!("drydock.run={}", to_cancel.id))
        .await
        .unwrap()
        .iter()
        .any(|l| l.kind == "container")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = to_cancel.id.clone();
    let reply = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "POST",
            &format!("/api/runs/{id}/cancel"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let cancelled = finished(&store, "cancelled run", |r| r.id == to_cancel.id).await;
    assert_eq!(cancelled.state, RunState::Cancelled, "{cancelled:?}");
    let streamed = follow.await.unwrap().body;
    assert!(streamed.contains("check/probe started"), "{streamed}");
    assert!(
        streamed.contains("cancelled: cancelled through the API"),
        "{streamed}"
    );
    let slow = finished(&store, "timed-out run", |r| r.branch == "feature/slow").await;
    assert_eq!(slow.state, RunState::Failed, "{slow:?}");
    assert_eq!(slow.reason.as_deref(), Some("timed out after 4s"));
    for run in [&cancelled, &slow] {
        assert!(
            containers_of(&run.id).is_empty(),
            "{} left containers",
            run.id
        );
    }
    runner.stop().await;
}

/// Several candidates queue in order: one at a time, each tested on top of
/// what the previous one landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_queue_in_order() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let a = origin.push_branch("ready/a", "origin/main", "a.txt", "a", "a");
    let b = origin.push_branch("ready/b", "origin/main", "b.txt", "b", "b");
    let runner = start(&origin, state.path(), "300ms", "").await;
    let store = runner.shared().store.clone();
    let ra = finished(&store, "ready/a", |r| r.branch == "ready/a").await;
    let rb = finished(&store, "ready/b", |r| {
        r.branch == "ready/b" && r.tested_sha.is_some()
    })
    .await;
    let (first, second) = if ra.seq < rb.seq { (ra, rb) } else { (rb, ra) };
    assert_eq!(first.state, RunState::Passed, "{first:?}");
    assert_eq!(second.state, RunState::Passed, "{second:?}");
    assert!(
        first.finished_ms.unwrap() <= second.started_ms.unwrap(),
        "candidates overlapped"
    );
    assert_eq!(
        second.base_sha, first.tested_sha,
        "the second is tested on top of the first"
    );
    let main = origin.head("main");
    assert_eq!(second.tested_sha.as_deref(), Some(main.as_str()));
    let tree = git(&origin.bare(), &["ls-tree", "--name-only", &main]);
    assert!(tree.contains("a.txt") && tree.contains("b.txt"), "{tree}");
    let _ = (a, b);
    runner.stop().await;
}

/// A run whose task panics ends `errored` with the panic's message instead
/// of staying `running`, and its repository's next candidate is tested and
/// lands (the merge queue does not stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_ends_errored_and_the_queue_goes_on() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    origin.push_branch("ready/boom", "origin/main", "a.txt", "a", "a");
    let b = origin.push_branch("ready/b", "origin/main", "b.txt", "b", "b");
    let text = origin.config(state.path(), "off", "");
    let config = Config::parse(&text, &state.path().join("runner.yml"), &|n| {
        n.starts_with("DRYDOCK_TEST_").then(|| TOKEN.to_string())
    })
    .unwrap();
    let executor: drydock_runner::exec::Executor = Arc::new(|shared, run, lease| {
        Box::pin(async move {
            if run.branch == "ready/boom" {
                panic!("boom in {}", run.id);
            }
            drydock_runner::exec::execute(shared, run, lease).await
        })
    });
    let runner = Runner::start_with(config, executor).await.unwrap();
    let store = runner.shared().store.clone();
    let mut ids = Vec::new();
    for branch in ["ready/boom", "ready/b"] {
        let run = runner
            .shared()
            .enqueue(drydock_runner::store::NewRun {
                repo: "app".into(),
                branch: branch.into(),
                sha: origin.head(branch),
                kind: RunKind::Candidate,
                trigger: "test".into(),
                retry_of: None,
            })
            .await
            .unwrap();
        ids.push(run.id);
    }
    let boom = finished(&store, "the panicked run", |r| r.id == ids[0]).await;
    assert_eq!(boom.state, RunState::Errored, "{boom:?}");
    let reason = boom.reason.unwrap();
    assert!(
        reason.contains("panicked: boom in") && reason.contains(&ids[0]),
        "{reason}"
    );
    let next = finished(&store, "the next candidate", |r| r.id == ids[1]).await;
    assert_eq!(next.state, RunState::Passed, "{next:?}");
    assert!(next.reason.unwrap().contains("fast-forwarded"));
    assert_eq!(origin.head("main"), b);
    assert_eq!(store.count(RunState::Running).await.unwrap(), 0);
    assert!(runner.shared().running.lock().unwrap().is_empty());
    runner.stop().await;
}

/// Two runners sharing one PostgreSQL queue: a cancel asked at one runner
/// stops the run the other runs (the request is persisted and reaches the
/// worker through the store), which ends `cancelled` with its containers
/// gone; both runners' APIs show the run with the runner that ran it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_asked_at_one_runner_stops_the_run_at_another() {
    let pg = tokio::task::block_in_place(common::pg::Postgres::start);
    let url = tokio::task::block_in_place(|| pg.create_database("pair"));
    let origin = Origin::new();
    origin.push_branch(
        "feature/slow",
        "origin/main",
        "pipelines/ci.yml",
        &pipeline(r#"["sleep", "60"]"#),
        "slow",
    );
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |state: &Path, name: &str, poll: &str| {
        let text = origin.config(state, poll, "").replace(
            "listen: 127.0.0.1:0\n",
            &format!("listen: 127.0.0.1:0\nstore: {url}\nname: {name}\nlease: 3s\n"),
        );
        Config::parse(&text, &state.join("runner.yml"), &|n| {
            n.starts_with("DRYDOCK_TEST_").then(|| TOKEN.to_string())
        })
        .unwrap()
    };
    // `a` polls and runs; `b` only serves (concurrency 0 is not allowed, so
    // it starts once `a` has claimed the run).
    let a = Runner::start(start(state_a.path(), "a", "300ms"))
        .await
        .unwrap();
    let store = a.shared().store.clone();
    let begun = Instant::now();
    let run = loop {
        let runs = store.list(&RunFilter::default()).await.unwrap();
        if let Some(r) = runs
            .into_iter()
            .find(|r| r.branch == "feature/slow" && r.state == RunState::Running)
        {
            break r;
        }
        assert!(begun.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b = Runner::start(start(state_b.path(), "b", "off"))
        .await
        .unwrap();
    assert_eq!(run.runner.as_deref(), Some("a"));
    let log = state_a.path().join("results").join(&run.id).join("run.log");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("check/probe started")
    {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (addr_b, id) = (b.addr(), run.id.clone());
    let (reply, seen_at_b) = tokio::task::spawn_blocking(move || {
        let seen = http(addr_b, "GET", &format!("/api/runs/{id}"), &[], b"");
        let reply = http(
            addr_b,
            "POST",
            &format!("/api/runs/{id}/cancel"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            b"",
        );
        (reply, seen)
    })
    .await
    .unwrap();
    assert_eq!(seen_at_b.json()["runner"], "a", "{}", seen_at_b.body);
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()["state"], "running");
    let cancelled = finished(&store, "the cancelled run", |r| r.id == run.id).await;
    assert_eq!(cancelled.state, RunState::Cancelled, "{cancelled:?}");
    assert_eq!(
        cancelled.reason.as_deref(),
        Some("cancelled through the API")
    );
    assert!(containers_of(&run.id).is_empty(), "containers left");
    b.stop().await;
    a.stop().await;
    drop(store);
    tokio::task::block_in_place(move || drop(pg));
}

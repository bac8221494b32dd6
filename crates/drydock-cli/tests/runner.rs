//! `drydock runner` as a process: kill -9 mid-run, restart, nothing lost or
//! leaked; and (ignored by default) the 1,000-queued-runs measurement.

#[path = "../../drydock-runner/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A `drydock runner` child process and everything it wrote to stderr.
struct RunnerProcess {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl RunnerProcess {
    fn start(config: &Path) -> RunnerProcess {
        Self::start_on(config, None)
    }

    /// A runner on `store` (a PostgreSQL address), else on SQLite.
    fn start_on(config: &Path, store: Option<&str>) -> RunnerProcess {
        Self::start_with(config, store, &[])
    }

    /// [`RunnerProcess::start_on`] with extra environment variables.
    fn start_with(config: &Path, store: Option<&str>, env: &[(&str, &str)]) -> RunnerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drydock"));
        cmd.envs(env.iter().copied());
        if let Some(store) = store {
            cmd.env("DRYDOCK_RUNNER_STORE", store);
        }
        let mut child = cmd
            .args(["runner", "--config"])
            .arg(config)
            .env("DRYDOCK_TEST_HOOK_SECRET", SECRET)
            .env("DRYDOCK_TEST_API_TOKEN", TOKEN)
            .env("DRYDOCK_STATE_DIR", config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drydock runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("runner did not start: {}", stderr.lock().unwrap()))
            .parse()
            .unwrap();
        RunnerProcess {
            child,
            addr,
            stderr,
        }
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        let reply = http(self.addr, "GET", "/api/runs?limit=1000", &[], b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["runs"].as_array().unwrap().clone()
    }

    fn terminate(mut self) -> String {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let s = self.stderr.lock().unwrap().clone();
        s
    }
}

fn write_config(origin: &Origin, state: &Path, extra: &str) -> std::path::PathBuf {
    let path = state.join("runner.yml");
    std::fs::write(&path, origin.config(state, "500ms", "") + extra).unwrap();
    path
}

#[test]
fn kill_9_mid_run_then_restart_loses_nothing_and_leaks_nothing() {
    let origin = Origin::new();
    origin.write("pipelines/ci.yml", &pipeline(r#"["sleep", "4"]"#));
    origin.commit("slow");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let state = tempfile::tempdir().unwrap();
    let config = write_config(&origin, state.path(), "");

    let mut first = RunnerProcess::start(&config);
    // Wait until the run's step container exists, then kill -9.
    let (id, leaked) = wait_for(
        "a running run with a container",
        Duration::from_secs(60),
        || {
            let runs = first.runs();
            let run = runs.iter().find(|r| r["state"] == "running")?;
            let id = run["id"].as_str()?.to_string();
            let containers = containers_of(&id);
            (!containers.is_empty()).then_some((id, containers))
        },
    );
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert!(!leaked.is_empty());
    assert!(
        !containers_of(&id).is_empty(),
        "the kill left the step container behind"
    );
    let log1 = first.stderr.lock().unwrap().clone();

    // Restart: the dead process's lease expires at once, its containers are
    // reaped, and the run is reclaimed as its second attempt and passes.
    let restarted = Instant::now();
    let second = RunnerProcess::start(&config);
    let reaped_after = wait_for(
        "the dead run's containers gone",
        Duration::from_secs(60),
        || containers_of(&id).is_empty().then(|| restarted.elapsed()),
    );
    let retry = wait_for("the reclaimed run to pass", Duration::from_secs(90), || {
        let runs = second.runs();
        let run = runs.iter().find(|r| r["id"] == id.as_str())?.clone();
        (run["state"] != "queued" && run["state"] != "running").then_some(run)
    });
    assert_eq!(retry["state"], "passed", "{retry}");
    assert_eq!(retry["sha"], origin.head("main").as_str());
    assert_eq!(retry["attempt"], 2, "{retry}");
    assert_eq!(retry["lost"], 1, "{retry}");
    assert!(containers_of(&format!("{id}-a2")).is_empty());
    let detail = http(second.addr, "GET", &format!("/api/runs/{id}"), &[], b"").json();
    let outcomes: Vec<&str> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("running"))
        .collect();
    assert_eq!(outcomes, ["lost", "passed"], "{detail}");
    eprintln!(
        "kill -9 mid-run: restart reaped the dead run's containers in {} ms; attempt 2 of {} passed",
        reaped_after.as_millis(),
        id
    );
    // A rejected webhook is logged, without the secret.
    let rejected = http(
        second.addr,
        "POST",
        "/hooks/github",
        &[("X-Hub-Signature-256", "sha256=00")],
        b"{}",
    );
    assert_eq!(rejected.status, 401);
    let page = http(second.addr, "GET", "/", &[], b"");

    // SIGTERM mid-run: the run is stopped, its containers removed, and it
    // goes back to the queue (released: not a lost attempt) for the next start.
    origin.write("later.txt", "x");
    let sha = origin.commit("another slow one");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let stopped = wait_for("the new commit running", Duration::from_secs(60), || {
        let runs = second.runs();
        let run = runs
            .iter()
            .find(|r| r["sha"] == sha.as_str() && r["state"] == "running")?;
        let id = run["id"].as_str()?.to_string();
        (!containers_of(&id).is_empty()).then_some(id)
    });
    let log2 = second.terminate();
    assert!(
        containers_of(&stopped).is_empty(),
        "SIGTERM left containers"
    );
    let store =
        drydock_runner::store::SqliteStore::open(&state.path().join("runner.sqlite")).unwrap();
    use drydock_runner::store::{RunState, Store};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = rt.block_on(store.get(&stopped)).unwrap().unwrap();
    assert_eq!(run.state, RunState::Queued, "{run:?}");
    assert_eq!((run.attempt, run.lost), (1, 0), "{run:?}");
    assert!(run
        .reason
        .unwrap()
        .contains("stopped during attempt 1; queued again"));
    let attempts = rt.block_on(store.attempts(&stopped)).unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("released"));
    assert!(log2.contains("webhook rejected"), "{log2}");
    for text in [&log1, &log2, &page.body] {
        assert!(!text.contains(SECRET) && !text.contains(TOKEN));
    }
    assert!(std::fs::read_dir(state.path().join("worktrees"))
        .unwrap()
        .next()
        .is_none());
}

/// A secret printed by a step (whole, split across two writes, base64, in a
/// JUnit report and a collected file) and used in a build never appears in
/// what the runner serves or writes: API, pages, badge, its log, its state
/// folder (store, results).
#[test]
fn a_secret_never_appears_in_the_runner_api_pages_logs_or_state() {
    use base64::Engine as _;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/controls");
    let origin = Origin::new();
    for (from, to) in [
        ("pipelines/secrets.yml", "pipelines/ci.yml"),
        ("secret-app/Dockerfile", "secret-app/Dockerfile"),
    ] {
        origin.write(to, &std::fs::read_to_string(fixture.join(from)).unwrap());
    }
    origin.commit("a step that prints its secret");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let sha = origin.head("main");
    let state = tempfile::tempdir().unwrap();
    let config = write_config(&origin, state.path(), "");
    let token = format!("tok-{}-runner-q7w", std::process::id());
    let forms = [
        token.clone(),
        base64::engine::general_purpose::STANDARD.encode(&token),
        base64::engine::general_purpose::STANDARD.encode(format!("{token}\n")),
    ];
    let runner = RunnerProcess::start_with(&config, None, &[("DRYDOCK_TEST_TOKEN", &token)]);
    let run = wait_for("the run to finish", Duration::from_secs(240), || {
        let runs = runner.runs();
        let run = runs.iter().find(|r| r["sha"] == sha.as_str())?.clone();
        (run["state"] != "queued" && run["state"] != "running").then_some(run)
    });
    assert_eq!(run["state"], "failed", "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let mut served = Vec::new();
    for path in [
        "/".to_string(),
        format!("/runs/{id}"),
        "/api/runs?limit=100".to_string(),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/log"),
        "/badge/app/main.svg".to_string(),
    ] {
        let reply = http(runner.addr, "GET", &path, &[], b"");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        served.push((path, reply.body));
    }
    let log = &served[4].1;
    assert!(log.contains("token is ***"), "the secret is masked: {log}");
    served.push(("the runner's log".into(), runner.terminate()));
    let mut stack = vec![state.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                served.push((path.display().to_string(), text));
            }
        }
    }
    assert!(served.iter().any(|(p, _)| p.ends_with("events.ndjson")));
    for (what, text) in &served {
        for form in &forms {
            assert!(!text.contains(form.as_str()), "{form} in {what}:\n{text}");
        }
    }
    assert!(containers_of(&id).is_empty());
    let _ = Command::new("docker")
        .args(["rmi", "-f", "drydock-build/controls-secrets:app"])
        .output();
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn invalid_configuration_is_located_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.yml");
    std::fs::write(
        &path,
        "repos:\n  - name: app\n    url: /nowhere\n    integrate: squash\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["runner", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:16: `integrate`: expected fast-forward or merge",
            path.display()
        )),
        "{stderr}"
    );
}

/// A second runner on the same state folder is refused (exit 3, saying
/// which process holds it); the first keeps serving.
#[test]
fn a_second_runner_on_the_same_state_folder_is_refused() {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(&origin, state.path(), "");
    let first = RunnerProcess::start(&config);
    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["runner", "--config"])
        .arg(&config)
        .env("DRYDOCK_TEST_HOOK_SECRET", SECRET)
        .env("DRYDOCK_TEST_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the state folder {} is in use by another runner (pid {})",
            state.path().display(),
            first.child.id()
        )),
        "{stderr}"
    );
    wait_for(
        "the first runner still serving",
        Duration::from_secs(60),
        || (!first.runs().is_empty()).then_some(()),
    );
    first.terminate();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn timed(addr: SocketAddr, path: &str) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let r = http(addr, "GET", path, &[], b"");
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
        len = r.body.len();
    }
    times.sort();
    (times[times.len() / 2], len)
}

/// 1,000 queued runs on SQLite: the runner's memory and API latency
/// (prints figures).
#[test]
#[ignore = "measurement: cargo test -p drydock-cli --test runner -- --ignored --nocapture"]
fn queue_of_1000_runs() {
    measure_queue_of_1000_runs(None, "sqlite");
}

/// The same on PostgreSQL (a throw-away server on this machine).
#[test]
#[ignore = "measurement: cargo test -p drydock-cli --test runner -- --ignored --nocapture"]
fn queue_of_1000_runs_on_postgres() {
    let pg = common::pg::Postgres::start();
    let url = pg.create_database("measure");
    measure_queue_of_1000_runs(Some(&url), "postgres");
}

fn measure_queue_of_1000_runs(store: Option<&str>, label: &str) {
    let origin = Origin::new();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(&origin, state.path(), "");
    let runner = RunnerProcess::start_on(&config, store);
    let pid = runner.child.id();
    let first = wait_for("the first run", Duration::from_secs(60), || {
        runner
            .runs()
            .first()
            .and_then(|r| r["id"].as_str().map(String::from))
    });
    // Push → run start, by polling (interval 500 ms) and by webhook.
    let started = |sha: &str| -> i64 {
        wait_for("the pushed commit's run", Duration::from_secs(60), || {
            runner
                .runs()
                .iter()
                .find(|r| r["sha"] == sha && !r["started_ms"].is_null())
                .and_then(|r| r["started_ms"].as_i64())
        })
    };
    let mut poll = Vec::new();
    for i in 0..5 {
        let sha = origin.push_branch(
            &format!("feature/p{i}"),
            "origin/main",
            "p.txt",
            &i.to_string(),
            "p",
        );
        let pushed = drydock_runner::store::now_ms();
        poll.push(started(&sha) - pushed);
        std::thread::sleep(Duration::from_millis(1700));
    }
    let mut hook = Vec::new();
    for i in 0..5 {
        let sha = origin.push_branch(
            &format!("feature/w{i}"),
            "origin/main",
            "w.txt",
            &i.to_string(),
            "w",
        );
        let body = serde_json::json!({"ref": format!("refs/heads/feature/w{i}"), "after": sha, "repository": {"name": "app"}}).to_string();
        let sig = format!(
            "sha256={}",
            hex_encode(&drydock_runner::web::hmac_sha256(
                SECRET.as_bytes(),
                body.as_bytes()
            ))
        );
        let sent = drydock_runner::store::now_ms();
        let r = http(
            runner.addr,
            "POST",
            "/hooks/github",
            &[
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", &format!("m-{i}")),
            ],
            body.as_bytes(),
        );
        assert!(r.status == 202, "{}", r.body);
        hook.push(started(&sha) - sent);
        std::thread::sleep(Duration::from_millis(1700));
    }
    eprintln!("{label}: push → run start (ms): poll every 500 ms {poll:?}; webhook {hook:?}");
    let idle = rss_kib(pid);
    let (lat_idle, _) = timed(runner.addr, "/api/runs?limit=100");
    let auth = format!("Bearer {TOKEN}");
    let t = Instant::now();
    for _ in 0..1000 {
        let r = http(
            runner.addr,
            "POST",
            &format!("/api/runs/{first}/rerun"),
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 202);
    }
    let enqueue = t.elapsed();
    let queued = runner
        .runs()
        .iter()
        .filter(|r| r["state"] == "queued")
        .count();
    let full = rss_kib(pid);
    let (lat_list, len_list) = timed(runner.addr, "/api/runs?limit=100");
    let (lat_all, len_all) = timed(runner.addr, "/api/runs?limit=1000");
    let (lat_one, _) = timed(runner.addr, &format!("/api/runs/{first}"));
    let (lat_page, len_page) = timed(runner.addr, "/");
    let (lat_badge, _) = timed(runner.addr, "/badge/app/main.svg");
    eprintln!(
        "{label}: 1,000 reruns queued in {} ms ({queued} still queued when measured)",
        enqueue.as_millis()
    );
    eprintln!("{label}: runner RSS: {idle} KiB idle, {full} KiB with the queue full");
    eprintln!("{label}: median latency: /api/runs?limit=100 {lat_idle:?} (empty) → {lat_list:?} ({len_list} B); limit=1000 {lat_all:?} ({len_all} B); /api/runs/ID {lat_one:?}; / {lat_page:?} ({len_page} B); badge {lat_badge:?}");
    runner.terminate();
}

/// Deploy on green: a green run of the central branch releases to the
/// repository's channel (recorded in the ledger); other branches never release.
#[test]
fn deploy_on_green_of_the_central_branch_only() {
    let origin = Origin::new();
    let name = format!("drydock-runner-test/deploy-{}", std::process::id());
    let pipeline_name = format!("runner-deploy-{}", std::process::id());
    origin.write(
        "app/Dockerfile",
        "FROM drydock/debian:bookworm AS production\nRUN echo built > /built\n",
    );
    origin.write(
        "pipelines/ci.yml",
        &format!("{}build:\n  context: app\nrelease:\n  target: production\n  name: {name}\n  channel: ignored\n", pipeline(r#"["true"]"#).replace("tiers:\n  - name: check\n", "tiers:\n  - name: check\n    build: [production]\n").replace("name: runner-fixture", &format!("name: {pipeline_name}"))),
    );
    origin.commit("releasable");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let feature = origin.push_branch("feature/x", "origin/main", "f.txt", "f", "feature");
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("runner.yml");
    std::fs::write(
        &path,
        origin.config(state.path(), "500ms", "    deploy: testing\n"),
    )
    .unwrap();
    let runner = RunnerProcess::start(&path);
    let runs = wait_for("main and feature runs", Duration::from_secs(120), || {
        let runs = runner.runs();
        let done = |b: &str| {
            runs.iter()
                .any(|r| r["branch"] == b && r["finished_ms"].is_i64())
        };
        (done("main") && done("feature/x")).then_some(runs)
    });
    let log = runner.terminate();
    let main = runs.iter().find(|r| r["branch"] == "main").unwrap();
    let feat = runs.iter().find(|r| r["branch"] == "feature/x").unwrap();
    assert_eq!(main["state"], "passed", "{main}\n{log}");
    assert_eq!(feat["state"], "passed", "{feat}");
    let main_tags = main["summary"]["released"].as_array().unwrap();
    assert!(
        main_tags
            .iter()
            .any(|t| *t == format!("{name}:testing").as_str()),
        "{main}"
    );
    assert!(
        feat["summary"]["released"].as_array().unwrap().is_empty(),
        "{feat}"
    );
    let ledger = drydock_core::release::Ledger::open(&state.path().join("ledger.sqlite")).unwrap();
    let history = ledger.history(&name, "testing").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].git_sha.as_deref(), main["sha"].as_str());
    assert_ne!(main["sha"], feature.as_str());
    // Remove the images this test built and tagged.
    let label = format!("label=drydock.pipeline={pipeline_name}");
    let out = Command::new("docker")
        .args(["images", "-q", "--filter", &label])
        .output()
        .unwrap();
    for id in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = Command::new("docker").args(["rmi", "-f", id]).output();
    }
}

/// Untags every `<repository>:<tag>` of the given repositories when
/// dropped (after a failed assertion too). Untag only: an image built from
/// the same content may be shared with another test's tags (the build cache),
/// so removing by image id or label would touch what is not this test's.
struct Untag(Vec<String>);

impl Drop for Untag {
    fn drop(&mut self) {
        let Ok(out) = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            return;
        };
        for reference in String::from_utf8_lossy(&out.stdout).lines() {
            if self
                .0
                .iter()
                .any(|r| reference.starts_with(&format!("{r}:")))
            {
                let _ = Command::new("docker").args(["rmi", reference]).output();
            }
        }
    }
}

/// A runner serving two repositories whose products both release to a
/// channel named `staging` (issue 16, kind 10): each green central run
/// releases its own product's channel; the ledger, the channel tags and the
/// run summaries keep them apart.
#[test]
fn two_repositories_releasing_to_one_channel_name_stay_apart() {
    let pid = std::process::id();
    let origins = [Origin::new(), Origin::new()];
    let names = [
        format!("drydock-runner-test/two-a-{pid}"),
        format!("drydock-runner-test/two-b-{pid}"),
    ];
    let pipelines = [format!("runner-two-a-{pid}"), format!("runner-two-b-{pid}")];
    let cleanup = Untag(
        names
            .iter()
            .cloned()
            .chain(pipelines.iter().map(|p| format!("drydock-build/{p}")))
            .collect(),
    );
    for i in 0..2 {
        origins[i].write(
            "app/Dockerfile",
            &format!(
                "FROM drydock/debian:bookworm AS production\nRUN echo {} > /product\n",
                names[i]
            ),
        );
        origins[i].write(
            "pipelines/ci.yml",
            &format!(
                "version: 1\nname: {}\nbuild:\n  context: app\ntiers:\n  - name: package\n    build: [production]\nrelease:\n  target: production\n  name: {}\n  channel: ignored\n",
                pipelines[i], names[i]
            ),
        );
        origins[i].commit("releasable");
        git(
            &origins[i].work(),
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
    }
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("runner.yml");
    let second = format!(
        "    deploy: staging\n  - name: other\n    url: {}\n    branches: [main]\n    poll: 500ms\n    deploy: staging\n",
        origins[1].bare().display()
    );
    std::fs::write(&path, origins[0].config(state.path(), "500ms", &second)).unwrap();
    let runner = RunnerProcess::start(&path);
    let runs = wait_for("both repositories' runs", Duration::from_secs(120), || {
        let runs = runner.runs();
        let done = |repo: &str| {
            runs.iter()
                .any(|r| r["repo"] == repo && r["finished_ms"].is_i64())
        };
        (done("app") && done("other")).then_some(runs)
    });
    let log = runner.terminate();
    let ledger = drydock_core::release::Ledger::open(&state.path().join("ledger.sqlite")).unwrap();
    assert_eq!(
        ledger.products_of("staging").unwrap(),
        names.to_vec(),
        "{log}"
    );
    let mut images = Vec::new();
    for (i, repo) in ["app", "other"].into_iter().enumerate() {
        let run = runs.iter().find(|r| r["repo"] == repo).unwrap();
        assert_eq!(run["state"], "passed", "{run}\n{log}");
        let released = run["summary"]["released"].as_array().unwrap();
        assert!(
            released
                .iter()
                .any(|t| *t == format!("{}:staging", names[i]).as_str()),
            "{run}"
        );
        assert!(
            released
                .iter()
                .all(|t| t.as_str().unwrap().starts_with(&names[i])),
            "{run}"
        );
        let history = ledger.history(&names[i], "staging").unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].git_sha.as_deref(), run["sha"].as_str());
        assert_eq!(history[0].name, names[i]);
        let tag = Command::new("docker")
            .args([
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                &format!("{}:staging", names[i]),
            ])
            .output()
            .unwrap();
        let tagged = String::from_utf8_lossy(&tag.stdout).trim().to_string();
        assert_eq!(tagged, history[0].image_id, "{}", names[i]);
        images.push(tagged);
    }
    assert_ne!(images[0], images[1]);
    drop(cleanup);
}

/// The release is fenced by the lease: an attempt whose run was taken from
/// it while its release was under way (held before the commit point with
/// `DRYDOCK_TEST_RELEASE_PAUSE`, the lease stolen in the store) records
/// nothing and leaves the channel tag; the run is reclaimed, and the attempt
/// that holds the lease releases it, once.
#[test]
fn a_stale_attempt_releases_nothing() {
    let pid = std::process::id();
    let origin = Origin::new();
    let name = format!("drydock-runner-test/fenced-{pid}");
    let pipeline_name = format!("runner-fenced-{pid}");
    let cleanup = Untag(vec![name.clone(), format!("drydock-build/{pipeline_name}")]);
    origin.write(
        "app/Dockerfile",
        "FROM drydock/debian:bookworm AS production\nRUN echo fenced > /fenced\n",
    );
    origin.write(
        "pipelines/ci.yml",
        &format!(
            "version: 1\nname: {pipeline_name}\nbuild:\n  context: app\ntiers:\n  - name: package\n    build: [production]\nrelease:\n  target: production\n  name: {name}\n  channel: ignored\n"
        ),
    );
    origin.commit("releasable");
    git(
        &origin.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let sha = origin.head("main");
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("runner.yml");
    std::fs::write(
        &path,
        origin.config(state.path(), "500ms", "    deploy: staging\n") + "lease: 2s\n",
    )
    .unwrap();
    let runner = RunnerProcess::start_with(
        &path,
        None,
        &[(drydock_core::release::TEST_PAUSE_VAR, "before-commit:3000")],
    );
    // The first attempt's release is under way (its sha tag exists, the
    // commit point is 3 s away): take its lease.
    let sha_tag = format!("{name}:{sha}");
    let tagged = || {
        Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", &sha_tag])
            .output()
            .unwrap()
            .status
            .success()
    };
    wait_for(
        "the first attempt's release",
        Duration::from_secs(60),
        || tagged().then_some(()),
    );
    let store = rusqlite::Connection::open(state.path().join("runner.sqlite")).unwrap();
    store.busy_timeout(Duration::from_secs(5)).unwrap();
    let stolen = store
        .execute(
            "UPDATE runs SET owner = 'thief' WHERE state = 'running' AND sha = ?1 AND attempt = 1",
            [&sha],
        )
        .unwrap();
    assert_eq!(stolen, 1, "the first attempt was not running");
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = runner.runs();
        if let Some(run) = runs
            .iter()
            .find(|r| r["sha"] == sha.as_str() && r["state"] == "passed")
        {
            break run.clone();
        }
        if Instant::now() > deadline {
            let log = runner.terminate();
            panic!("no released attempt in 60 s: {runs:#?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = runner.terminate();
    let ledger = drydock_core::release::Ledger::open(&state.path().join("ledger.sqlite")).unwrap();
    let history = ledger.history(&name, "staging").unwrap();
    let run_id = run["id"].as_str().unwrap();
    assert_eq!(history.len(), 1, "{history:?}\n{log}");
    assert_ne!(
        history[0].run_id.as_deref(),
        Some(run_id),
        "the stale first attempt recorded its release: {history:?}"
    );
    assert!(
        history[0]
            .run_id
            .as_deref()
            .is_some_and(|r| r.starts_with(&format!("{run_id}-a"))),
        "{history:?}"
    );
    drop(cleanup);
}

/// `GET /` of the deployed test app over a fresh connection: its version.
fn app_version(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|body| body.trim().strip_prefix("version "))
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected response {response:?}"))
}

/// Objects labelled `drydock.deploy=<channel>` (containers and networks).
fn deploy_objects(channel: &str) -> Vec<String> {
    let label = format!("label=drydock.deploy={channel}");
    let mut out = Vec::new();
    for args in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
    ] {
        let o = Command::new("docker").args(&args).output().unwrap();
        out.extend(String::from_utf8_lossy(&o.stdout).lines().map(String::from));
    }
    out
}

/// Even when the test fails: the runner (our child) is killed, the channel
/// undeployed and the image tags the test's pipeline made removed.
struct DeployCleanup {
    channel: String,
    image: String,
    runner_pid: Option<u32>,
}

impl Drop for DeployCleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.runner_pid.take() {
            // SAFETY: killing our own child process, by its id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(["undeploy", &self.channel, "--product", &self.image])
            .output();
        // Untag (never `rmi -f` an id: a cached build shares its image with
        // other tests' tags).
        if let Ok(out) = Command::new("docker")
            .args([
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                &self.image,
            ])
            .output()
        {
            for reference in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("docker").args(["rmi", reference]).output();
            }
        }
    }
}

/// Deploy on green with a deploy config: each green run of the central
/// branch releases the app and deploys it from its worktree (the code of
/// `drydock deploy`); the new version answers on the channel's address. A
/// version that fails its health check leaves the run `passed`, with
/// `deploy: failed` and the reason, and the previous version serving.
#[test]
fn deploy_on_green_deploys_each_green_central_commit() {
    let pid = std::process::id();
    let channel = format!("rd-{pid}");
    let pipeline_name = format!("runner-deploy-app-{pid}");
    let name = format!("drydock-runner-test/deploy-app-{pid}");
    let mut cleanup = DeployCleanup {
        channel: channel.clone(),
        image: name.clone(),
        runner_pid: None,
    };
    let publish = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{publish}").parse().unwrap();

    let origin = Origin::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/deploy-app");
    for file in ["app/Dockerfile", "app/server.py"] {
        origin.write(file, &std::fs::read_to_string(fixture.join(file)).unwrap());
    }
    origin.write("app/VERSION", "A\n");
    origin.write(
        "pipelines/ci.yml",
        &format!(
            "version: 1\nname: {pipeline_name}\nbuild:\n  context: app\ntiers:\n  - name: build\n    build: [production]\nrelease:\n  target: production\n  name: {name}\n  channel: ignored\n"
        ),
    );
    origin.write(
        &format!("deploy/{channel}.yml"),
        &format!(
            "version: 1\nname: {name}\nchannel: {channel}\napp:\n  port: 8000\n  publish: {publish}\n  ready: {{ timeout: 30s }}\n  drain: 5s\n  stop_grace: 2s\n"
        ),
    );
    let sha_a = origin.commit("version A");
    git(&origin.work(), &["push", "-q", "origin", "main"]);

    let state = tempfile::tempdir().unwrap();
    let config = write_config(
        &origin,
        state.path(),
        &format!("    deploy: {{ channel: {channel}, config: deploy/{channel}.yml }}\n"),
    );
    let runner = RunnerProcess::start(&config);
    cleanup.runner_pid = Some(runner.child.id());
    let finished_run = |sha: &str| {
        wait_for(
            &format!("the run of {sha}"),
            Duration::from_secs(240),
            || {
                runner
                    .runs()
                    .into_iter()
                    .find(|r| r["sha"] == sha && r["finished_ms"].is_i64() && r["branch"] == "main")
            },
        )
    };

    // ----- A: released and deployed --------------------------------------------
    let run_a = finished_run(&sha_a);
    let detail = |run: &serde_json::Value| {
        let id = run["id"].as_str().unwrap();
        let log = http(runner.addr, "GET", &format!("/api/runs/{id}/log"), &[], b"").body;
        format!("{run:#}\n{log}")
    };
    assert_eq!(run_a["state"], "passed", "{}", detail(&run_a));
    let deploy_a = &run_a["summary"]["deploy"];
    assert_eq!(deploy_a["outcome"], "live", "{}", detail(&run_a));
    assert_eq!(deploy_a["channel"], channel.as_str());
    assert_eq!(
        deploy_a["address"],
        format!("http://127.0.0.1:{publish}").as_str()
    );
    assert_eq!(app_version(addr).as_deref(), Ok("A"));

    // ----- B: the new version replaces A -----------------------------------------
    origin.write("app/VERSION", "B\n");
    let sha_b = origin.commit("version B");
    git(&origin.work(), &["push", "-q", "origin", "main"]);
    let run_b = finished_run(&sha_b);
    assert_eq!(run_b["state"], "passed", "{}", detail(&run_b));
    assert_eq!(
        run_b["summary"]["deploy"]["outcome"],
        "live",
        "{}",
        detail(&run_b)
    );
    assert_eq!(app_version(addr).as_deref(), Ok("B"));

    // ----- C: green tests, broken app: the run passes, the deploy failed ---------
    origin.write("app/VERSION", "C-broken\n");
    let sha_c = origin.commit("version C (unhealthy)");
    git(&origin.work(), &["push", "-q", "origin", "main"]);
    let run_c = finished_run(&sha_c);
    assert_eq!(run_c["state"], "passed", "{}", detail(&run_c));
    let deploy_c = &run_c["summary"]["deploy"];
    assert_eq!(deploy_c["outcome"], "failed", "{}", detail(&run_c));
    let why = deploy_c["reason"].as_str().unwrap();
    assert!(
        why.contains("health") && why.contains("previous version keeps serving"),
        "{why}"
    );
    assert!(
        run_c["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("deploy to {channel} failed:")),
        "{run_c}"
    );
    assert_eq!(app_version(addr).as_deref(), Ok("B"));
    let page = http(
        runner.addr,
        "GET",
        &format!("/runs/{}", run_c["id"].as_str().unwrap()),
        &[],
        b"",
    );
    assert!(
        page.body
            .contains("id=\"deploy-outcome\" class=\"failed\">failed<"),
        "{}",
        page.body
    );

    let log = runner.terminate();
    cleanup.runner_pid = None;

    // ----- the ledger: three releases, each with its deploy attempt --------------
    let ledger = drydock_core::release::Ledger::open(&state.path().join("ledger.sqlite")).unwrap();
    let history = ledger.history(&name, &channel).unwrap();
    assert_eq!(history.len(), 3, "{history:#?}\n{log}");
    let deployments = ledger.deployments(&name, &channel).unwrap();
    let story: Vec<(i64, &str)> = deployments
        .iter()
        .map(|d| (d.entry_id, d.outcome.as_str()))
        .collect();
    assert_eq!(
        story,
        vec![
            (history[0].id, "live"),
            (history[1].id, "live"),
            (history[2].id, "failed")
        ],
        "{deployments:#?}"
    );
    assert_eq!(
        deployments[0].detail.as_deref(),
        Some(format!("runner run {}", run_a["id"].as_str().unwrap()).as_str())
    );

    // ----- undeploy: nothing of the channel is left --------------------------------
    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["undeploy", &channel, "--product", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(deploy_objects(&channel), Vec::<String>::new());
    assert!(
        app_version(addr).is_err(),
        "the stable address still answers"
    );
}

/// `drydock runner --config conf/runner.yml`, the README's invocation, from
/// another folder, with relative `state_dir` and repository `url`: both are
/// relative to the configuration's folder, and runs work (every path handed
/// to git is absolute).
#[test]
fn relative_paths_in_the_configuration_work_from_any_folder() {
    let origin = Origin::new();
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::os::unix::fs::symlink(origin.bare(), root.path().join("origin.git")).unwrap();
    std::fs::write(
        conf.join("runner.yml"),
        "listen: 127.0.0.1:0\nstate_dir: state\nrun_timeout: 2m\nrepos:\n  - name: app\n    url: ../origin.git\n    poll: 300ms\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["runner", "--config", "conf/runner.yml"])
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drydock runs");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap());
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("runner did not start: {}", stderr.lock().unwrap()))
        .parse()
        .unwrap();
    let run = wait_for("the main run to finish", Duration::from_secs(120), || {
        let reply = http(addr, "GET", "/api/runs?limit=10", &[], b"");
        let runs = reply.json()["runs"].as_array()?.clone();
        runs.into_iter()
            .find(|r| r["state"] != "queued" && r["state"] != "running")
    });
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(run["state"], "passed", "{run}\n{}", stderr.lock().unwrap());
    assert!(conf.join("state/runner.sqlite").is_file());
    assert!(!root.path().join("state").exists());
}

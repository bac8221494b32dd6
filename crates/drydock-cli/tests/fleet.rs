//! A runner fleet under chaos: `drydock runner` processes sharing one queue
//! (PostgreSQL, or one runner on SQLite for comparison), commits pushed to
//! two repositories (branch commits and merge-queue candidates, one of them
//! red) and announced by webhooks to any live runner, while runners are
//! killed with SIGKILL and restarted at random moments.
//!
//! At the end every commit has exactly one final result (and the expected
//! one), no candidate landed twice or out of order, no run was finished by
//! two runners (the API's attempts and the runners' logs agree), every
//! runner's API shows the whole fleet's runs with the runner that ran each,
//! and nothing labelled by the runs is left in the engine. The time from
//! push to final state is printed (median, max).
//!
//! The PostgreSQL fleet (30 commits, 3 runners, about 40 s here) runs in the
//! normal suite; the same workload on one runner with SQLite is a
//! measurement, for comparison:
//!
//! ```text
//! cargo test -p drydock-cli --test fleet -- --ignored --nocapture
//! ```
//!
//! `DRYDOCK_CHAOS_SEED=<n>` replays a run's random choices (printed).

#[path = "../../drydock-runner/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::*;
use serde_json::Value;

/// xorshift64*: enough randomness for choosing moments and victims.
struct Rng(u64);

impl Rng {
    fn new() -> (Rng, u64) {
        let seed = std::env::var("DRYDOCK_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// One `drydock runner` process; its stderr is kept (all incarnations of
/// a runner append to the same log).
struct Process {
    child: Child,
    addr: SocketAddr,
}

fn start_runner(
    config: &Path,
    store: Option<&str>,
    name: &str,
    log: &Arc<Mutex<String>>,
) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drydock"));
    cmd.args(["runner", "--config"])
        .arg(config)
        .args(["--name", name])
        .env("DRYDOCK_TEST_HOOK_SECRET", SECRET)
        .env("DRYDOCK_TEST_API_TOKEN", TOKEN)
        .env("DRYDOCK_STATE_DIR", config.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = store {
        // As an operator would: the address (which may hold a password) in
        // the environment, not on the command line.
        cmd.env("DRYDOCK_RUNNER_STORE", url);
    }
    let mut child = cmd.spawn().expect("drydock runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
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
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr.parse().unwrap(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runner {name} did not start: {}", log.lock().unwrap());
        }
    };
    Process { child, addr }
}

/// One HTTP request that may fail (the runner may have just been killed).
fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    Some((status, body))
}

/// The `Location` of a 307 answer to `GET path`.
fn redirect(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let head = raw.split("\r\n\r\n").next()?;
    if !head.starts_with("HTTP/1.1 307") {
        return None;
    }
    head.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(str::to_string)
}

/// The runners of the fleet: each slot is a name, a config, a log and the
/// live process (none while it is down).
struct Fleet {
    names: Vec<String>,
    configs: Vec<PathBuf>,
    logs: Vec<Arc<Mutex<String>>>,
    live: Vec<Option<Process>>,
    store: Option<String>,
}

impl Fleet {
    fn live_addrs(&self) -> Vec<SocketAddr> {
        self.live.iter().flatten().map(|p| p.addr).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in self.live.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A commit the test pushed, and what its run must end as.
#[derive(Debug, Clone)]
struct Pushed {
    repo: String,
    branch: String,
    sha: String,
    candidate: bool,
    green: bool,
    pushed_ms: i64,
}

/// What the chaos did, and what came of it.
struct Outcome {
    commits: usize,
    candidates: usize,
    kills: usize,
    kills_mid_run: usize,
    lost_attempts: u32,
    /// Workers that found their run reclaimed (their lease had expired
    /// while they lived: a stall longer than the lease) and stopped.
    stale_stopped: usize,
    runs: usize,
    push_to_final_ms: Vec<i64>,
    wall: Duration,
}

struct Chaos {
    /// `None`: one runner on SQLite.
    postgres: bool,
    runners: usize,
    /// Per repository.
    features: usize,
    /// Per repository; the second is red.
    candidates: usize,
    min_kills: usize,
    timeout: Duration,
}

fn repo_config(state: &Path, origins: &[(&str, &Origin)]) -> String {
    let mut text = format!(
        "listen: 127.0.0.1:0\nstate_dir: {}\nconcurrency: 2\nrun_timeout: 2m\nstop_grace: 1s\nlease: 3s\nmax_attempts: 10\nwebhook_secret: {{ env: DRYDOCK_TEST_HOOK_SECRET }}\napi_token: {{ env: DRYDOCK_TEST_API_TOKEN }}\nrepos:\n",
        state.display()
    );
    for (name, origin) in origins {
        text.push_str(&format!(
            "  - name: {name}\n    url: {}\n    branches: [main, 'feature/*']\n    candidates: ['ready/*']\n    poll: off\n",
            origin.bare().display()
        ));
    }
    text
}

/// Removes whatever the engine still holds of these runs (on failure
/// only: the test asserts there is nothing).
fn remove_engine_objects(engine_ids: &[String]) {
    for id in engine_ids {
        let label = format!("label=drydock.run={id}");
        for (list, rm) in [
            (vec!["ps", "-aq", "--filter", &label], vec!["rm", "-f"]),
            (
                vec!["network", "ls", "-q", "--filter", &label],
                vec!["network", "rm"],
            ),
            (
                vec!["volume", "ls", "-q", "--filter", &label],
                vec!["volume", "rm", "-f"],
            ),
        ] {
            let out = Command::new("docker").args(&list).output().unwrap();
            for obj in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("docker").args(&rm).arg(obj).output();
            }
        }
    }
}

fn engine_objects(engine_id: &str) -> Vec<String> {
    let label = format!("label=drydock.run={engine_id}");
    let mut out = Vec::new();
    for args in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let o = Command::new("docker").args(&args).output().unwrap();
        out.extend(String::from_utf8_lossy(&o.stdout).lines().map(String::from));
    }
    out
}

/// The engine ids among `ids` that still label a container, network or
/// volume (three listings, whatever the number of ids).
fn engine_leftovers(ids: &[String]) -> Vec<String> {
    let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut left = Vec::new();
    for args in [
        vec!["ps", "-a"],
        vec!["network", "ls"],
        vec!["volume", "ls"],
    ] {
        let out = Command::new("docker")
            .args(&args)
            .args([
                "--filter",
                "label=drydock.run",
                "--format",
                "{{.Label \"drydock.run\"}}",
            ])
            .output()
            .unwrap();
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| ids.contains(l.trim()))
                .map(String::from),
        );
    }
    left
}

fn engine_ids(run: &Value) -> Vec<String> {
    let id = run["id"].as_str().unwrap();
    let attempts = run["attempt"].as_u64().unwrap_or(1).max(1);
    (1..=attempts)
        .map(|a| {
            if a == 1 {
                id.to_string()
            } else {
                format!("{id}-a{a}")
            }
        })
        .collect()
}

/// Runs at the end, also when the test fails: stops the chaos thread,
/// kills the runners (our children, by pid), and, on failure, removes what
/// the runs left in the engine (by their run ids, read from the store).
struct Cleanup {
    abort: Arc<std::sync::atomic::AtomicBool>,
    killer: Option<std::thread::JoinHandle<()>>,
    fleet: Arc<Mutex<Fleet>>,
    pg: Option<Arc<Postgres>>,
    sqlite: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.abort.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(killer) = self.killer.take() {
            let _ = killer.join();
        }
        {
            let mut f = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
            for p in f.live.iter_mut().flatten() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            for slot in f.live.iter_mut() {
                *slot = None;
            }
        }
        if !std::thread::panicking() {
            return;
        }
        let mut ids = Vec::new();
        if let Some(pg) = &self.pg {
            let rows = pg.psql("fleet", "SELECT id || ' ' || attempt FROM runs");
            for line in rows.lines() {
                if let Some((id, n)) = line.split_once(' ') {
                    let n: u64 = n.parse().unwrap_or(1);
                    ids.extend(engine_ids(&serde_json::json!({"id": id, "attempt": n})));
                }
            }
        }
        if let Some(path) = &self.sqlite {
            if let Ok(store) = drydock_runner::store::SqliteStore::open(path) {
                use drydock_runner::store::Store;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let filter = drydock_runner::store::RunFilter {
                    limit: 10_000,
                    ..Default::default()
                };
                if let Ok(runs) = rt.block_on(store.list(&filter)) {
                    for r in runs {
                        ids.extend(engine_ids(
                            &serde_json::json!({"id": r.id, "attempt": r.attempt}),
                        ));
                    }
                }
            }
        }
        remove_engine_objects(&ids);
    }
}

/// Removes terminal colour sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn median(v: &[i64]) -> i64 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn chaos(setup: Chaos) -> Outcome {
    let started = Instant::now();
    let (rng, seed) = Rng::new();
    let rng = Arc::new(Mutex::new(rng));
    let label = if setup.postgres { "postgres" } else { "sqlite" };
    eprintln!("chaos ({label}, {} runner(s)): seed {seed}", setup.runners);
    let pg = setup.postgres.then(|| {
        let pg = Arc::new(Postgres::start());
        pg.create_database("fleet");
        pg
    });
    let origins = [("app", Origin::new()), ("lib", Origin::new())];
    let root = tempfile::tempdir().unwrap();
    eprintln!("chaos: state folders in {}", root.path().display());
    let mut fleet = Fleet {
        names: Vec::new(),
        configs: Vec::new(),
        logs: Vec::new(),
        live: Vec::new(),
        store: pg.as_ref().map(|pg| pg.url("fleet")),
    };
    for i in 1..=setup.runners {
        let name = format!("r{i}");
        let state = root.path().join(&name);
        std::fs::create_dir_all(&state).unwrap();
        let config = state.join("runner.yml");
        let pairs: Vec<(&str, &Origin)> = origins.iter().map(|(n, o)| (*n, o)).collect();
        std::fs::write(&config, repo_config(&state, &pairs)).unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let process = start_runner(&config, fleet.store.as_deref(), &name, &log);
        fleet.names.push(name);
        fleet.configs.push(config);
        fleet.logs.push(log);
        fleet.live.push(Some(process));
    }
    let fleet = Arc::new(Mutex::new(fleet));

    // The chaos: kill a random runner with SIGKILL at random moments and
    // start it again, while commits are pushed and until it happened at
    // least `min_kills` times.
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let stop = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let killer = {
        let (fleet, rng, stop, abort, counts) = (
            fleet.clone(),
            rng.clone(),
            stop.clone(),
            abort.clone(),
            counts.clone(),
        );
        let min_kills = setup.min_kills;
        std::thread::spawn(move || loop {
            let pause = rng.lock().unwrap().millis(1500, 4000);
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if abort.load(SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if abort.load(SeqCst) || (stop.load(SeqCst) && counts.lock().unwrap().0 >= min_kills) {
                return;
            }
            let victim = {
                let f = fleet.lock().unwrap();
                rng.lock().unwrap().below(f.live.len() as u64) as usize
            };
            // Is it running something right now?
            let (addr, name) = {
                let f = fleet.lock().unwrap();
                (
                    f.live[victim].as_ref().map(|p| p.addr),
                    f.names[victim].clone(),
                )
            };
            let busy = addr
                .and_then(|a| try_http(a, "GET", "/api/runs?state=running&limit=1000", &[], b""))
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                .is_some_and(|v| {
                    v["runs"]
                        .as_array()
                        .is_some_and(|runs| runs.iter().any(|r| r["runner"] == name.as_str()))
                });
            {
                let mut f = fleet.lock().unwrap();
                if let Some(mut p) = f.live[victim].take() {
                    p.child.kill().unwrap(); // SIGKILL
                    p.child.wait().unwrap();
                    let mut c = counts.lock().unwrap();
                    c.0 += 1;
                    c.1 += busy as usize;
                    eprintln!("chaos: killed {name}{}", if busy { " mid-run" } else { "" });
                }
            }
            let down = rng.lock().unwrap().millis(200, 1500);
            std::thread::sleep(down);
            if abort.load(SeqCst) {
                return;
            }
            let (config, store, log) = {
                let f = fleet.lock().unwrap();
                (
                    f.configs[victim].clone(),
                    f.store.clone(),
                    f.logs[victim].clone(),
                )
            };
            let process = start_runner(&config, store.as_deref(), &name, &log);
            fleet.lock().unwrap().live[victim] = Some(process);
        })
    };
    let mut cleanup = Cleanup {
        abort: abort.clone(),
        killer: Some(killer),
        fleet: fleet.clone(),
        pg: pg.clone(),
        sqlite: (!setup.postgres).then(|| root.path().join("r1/runner.sqlite")),
    };

    // The pushes: branch commits and candidates, interleaved across the two
    // repositories, each announced to a random live runner.
    let mut plan = Vec::new();
    for (repo, _) in &origins {
        for i in 0..setup.features {
            plan.push((repo.to_string(), format!("feature/f{i}"), false, true));
        }
        for i in 0..setup.candidates {
            plan.push((repo.to_string(), format!("ready/c{i}"), true, i != 1));
        }
    }
    // Shuffle, keeping each repository's candidates in their order.
    let mut order: Vec<usize> = (0..plan.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.lock().unwrap().below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut seen_candidates: HashMap<String, usize> = HashMap::new();
    let mut pushed: Vec<Pushed> = Vec::new();
    for (n, idx) in order.iter().enumerate() {
        let (repo, _, candidate, green) = &plan[*idx];
        let branch = if *candidate {
            let k = seen_candidates.entry(repo.clone()).or_default();
            *k += 1;
            format!("ready/c{}", *k - 1)
        } else {
            plan[*idx].1.clone()
        };
        // Candidate c0 is the red one, whatever the shuffle made of the order.
        // The second candidate of each repository is red, whatever the
        // shuffle made of the order.
        let green = if *candidate {
            branch != "ready/c1"
        } else {
            *green
        };
        let origin = &origins.iter().find(|(r, _)| r == repo).unwrap().1;
        let sha = if green {
            origin.push_branch(
                &branch,
                "origin/main",
                &format!("{n}.txt"),
                &n.to_string(),
                &format!("commit {n}"),
            )
        } else {
            origin.push_branch(
                &branch,
                "origin/main",
                "pipelines/ci.yml",
                &pipeline(r#"["false"]"#),
                "red",
            )
        };
        let pushed_ms = drydock_runner::store::now_ms();
        let body = serde_json::json!({
            "ref": format!("refs/heads/{branch}"), "after": sha,
            "repository": { "name": repo }
        })
        .to_string();
        let sig = format!(
            "sha256={}",
            hex_encode(&drydock_runner::web::hmac_sha256(
                SECRET.as_bytes(),
                body.as_bytes()
            ))
        );
        let delivery = format!("chaos-{n}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let addrs = fleet.lock().unwrap().live_addrs();
            let reply = if addrs.is_empty() {
                None
            } else {
                let addr = addrs[rng.lock().unwrap().below(addrs.len() as u64) as usize];
                try_http(
                    addr,
                    "POST",
                    "/hooks/github",
                    &[
                        ("X-Hub-Signature-256", &sig),
                        ("X-GitHub-Delivery", &delivery),
                        ("X-GitHub-Event", "push"),
                    ],
                    body.as_bytes(),
                )
            };
            match reply {
                // Queued, or queued by an earlier try cut short.
                Some((202, text)) if text.contains("queued") || text.contains("already seen") => {
                    break
                }
                Some((200, text)) if text.contains("replayed") => break,
                Some((status, text)) if status != 503 => panic!("webhook: {status} {text}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "no runner took the webhook");
            std::thread::sleep(Duration::from_millis(200));
        }
        pushed.push(Pushed {
            repo: repo.clone(),
            branch,
            sha,
            candidate: *candidate,
            green,
            pushed_ms,
        });
        let pause = rng.lock().unwrap().millis(100, 600);
        std::thread::sleep(pause);
    }

    stop.store(true, SeqCst);

    // Wait until every commit has a final result.
    let final_of = |runs: &[Value], p: &Pushed| -> Vec<Value> {
        let of: Vec<&Value> = runs
            .iter()
            .filter(|r| {
                r["repo"] == p.repo.as_str()
                    && r["branch"] == p.branch.as_str()
                    && r["sha"] == p.sha.as_str()
            })
            .collect();
        // Not superseded by a retest.
        of.iter()
            .filter(|r| {
                let id = r["id"].as_str().unwrap();
                !runs.iter().any(|o| o["retry_of"] == id)
            })
            .map(|r| (*r).clone())
            .collect()
    };
    let deadline = Instant::now() + setup.timeout;
    loop {
        let addrs = fleet.lock().unwrap().live_addrs();
        let runs = addrs
            .first()
            .and_then(|a| try_http(*a, "GET", "/api/runs?limit=1000", &[], b""))
            .and_then(|(s, body)| {
                (s == 200)
                    .then(|| serde_json::from_str::<Value>(&body).ok())
                    .flatten()
            });
        if let Some(runs) = runs.and_then(|v| v["runs"].as_array().cloned()) {
            let done = pushed.iter().all(|p| {
                let f = final_of(&runs, p);
                f.len() == 1 && f[0]["finished_ms"].is_i64()
            }) && !runs
                .iter()
                .any(|r| r["state"] == "queued" || r["state"] == "running");
            if done {
                break;
            }
            if Instant::now() > deadline {
                panic!("timed out; runs: {runs:#?}");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if let Some(killer) = cleanup.killer.take() {
        killer.join().expect("the chaos thread");
    }
    let (kills, kills_mid_run) = *counts.lock().unwrap();
    // The kills after the work ended may have interrupted nothing; let any
    // reclaim settle, then read the final view again from every runner.
    std::thread::sleep(Duration::from_millis(500));
    let wall = started.elapsed();

    // ---- Every runner shows the whole fleet, with the runner of each run.
    let addrs: Vec<SocketAddr> = fleet.lock().unwrap().live_addrs();
    assert_eq!(addrs.len(), setup.runners);
    let mut views = Vec::new();
    for addr in &addrs {
        let reply = http(*addr, "GET", "/api/runs?limit=1000", &[], b"");
        let v: Value = reply.json();
        let mut ids: Vec<String> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        views.push(ids);
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "runners disagree on the runs"
    );
    let runs: Vec<Value> = http(addrs[0], "GET", "/api/runs?limit=1000", &[], b"").json()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(views[0].len(), runs.len());
    let names: HashSet<String> = fleet.lock().unwrap().names.iter().cloned().collect();
    for run in &runs {
        assert!(
            names.contains(run["runner"].as_str().unwrap_or("")),
            "{run}"
        );
    }
    let page = http(addrs[addrs.len() - 1], "GET", "/", &[], b"").body;
    for name in &names {
        assert!(
            page.contains(&format!("<td class=\"runner\">{name}")),
            "the page names {name}"
        );
    }
    // A run's log stays on the machine that ran it: another runner sends
    // people there.
    let asked = fleet.lock().unwrap().names[0].clone();
    if let Some(run) = runs.iter().find(|r| r["runner"] != asked.as_str()) {
        let id = run["id"].as_str().unwrap();
        let location = redirect(addrs[0], &format!("/api/runs/{id}/log"))
            .unwrap_or_else(|| panic!("{asked} does not redirect the log of {id}"));
        let target: SocketAddr = location
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let log = http(target, "GET", &format!("/api/runs/{id}/log"), &[], b"");
        assert_eq!(log.status, 200);
        assert!(
            log.body.contains(&format!(
                "attempt {} by runner {}",
                run["attempt"],
                run["runner"].as_str().unwrap()
            )),
            "{}",
            log.body
        );
    }

    // ---- Every commit: exactly one final result, the expected one.
    let mut push_to_final = Vec::new();
    for p in &pushed {
        let finals = final_of(&runs, p);
        assert_eq!(finals.len(), 1, "{p:?}: {finals:#?}");
        let run = &finals[0];
        let want = if p.green { "passed" } else { "failed" };
        assert_eq!(run["state"], want, "{p:?}: {run:#}");
        push_to_final.push(run["finished_ms"].as_i64().unwrap() - p.pushed_ms);
        let reason = run["reason"].as_str().unwrap_or("");
        if p.candidate && p.green {
            assert!(reason.contains("landed:"), "{p:?}: {run:#}");
        }
        if p.candidate && !p.green {
            assert!(reason.contains("not landed"), "{run:#}");
        }
    }

    // ---- No run finished by two runners: one attempt ended with a state,
    // the last one, by the run's runner; at most one `run finished` line in
    // all the runners' logs.
    let mut lost_attempts = 0;
    let mut all_engine_ids = Vec::new();
    let mut finished_lines: HashMap<String, usize> = HashMap::new();
    let mut stale_stopped = 0;
    if let Ok(dir) = std::env::var("DRYDOCK_CHAOS_LOGS") {
        let f = fleet.lock().unwrap();
        for (name, log) in f.names.iter().zip(&f.logs) {
            let _ = std::fs::write(
                Path::new(&dir).join(format!("{label}-{name}.log")),
                &*log.lock().unwrap(),
            );
        }
    }
    for log in &fleet.lock().unwrap().logs {
        let text = strip_ansi(&log.lock().unwrap());
        stale_stopped += text.matches("lease lost: the run was reclaimed").count();
        for line in text.lines().filter(|l| l.contains("run finished")) {
            if let Some(id) = line
                .split("run=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
            {
                *finished_lines.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let detail: Value = http(addrs[0], "GET", &format!("/api/runs/{id}"), &[], b"").json();
        let attempts = detail["attempts"].as_array().unwrap();
        let ended: Vec<&Value> = attempts
            .iter()
            .filter(|a| {
                !matches!(
                    a["outcome"].as_str(),
                    Some("lost") | Some("released") | None
                )
            })
            .collect();
        assert_eq!(ended.len(), 1, "{id}: {attempts:#?}");
        assert_eq!(ended[0]["attempt"], run["attempt"], "{id}: {attempts:#?}");
        assert_eq!(ended[0]["runner"], run["runner"], "{id}");
        // At most one runner logged finishing it (a runner killed right after
        // recording may not have written its line).
        assert!(
            finished_lines.get(id).copied().unwrap_or(0) <= 1,
            "{id}: finished by two runners (logs)"
        );
        lost_attempts += attempts.iter().filter(|a| a["outcome"] == "lost").count() as u32;
        all_engine_ids.extend(engine_ids(run));
    }

    // ---- Candidates landed once each, in queue order; the red one never.
    for (repo, origin) in &origins {
        let mut queue: Vec<&Value> = runs
            .iter()
            .filter(|r| r["repo"] == *repo && r["kind"] == "candidate" && r["retry_of"].is_null())
            .collect();
        queue.sort_by_key(|r| r["seq"].as_i64());
        let expected: Vec<String> = queue
            .iter()
            .filter(|r| {
                pushed
                    .iter()
                    .any(|p| p.sha == r["sha"].as_str().unwrap() && p.green)
            })
            .map(|r| r["sha"].as_str().unwrap().to_string())
            .collect();
        let history = git(
            &origin.bare(),
            &[
                "rev-list",
                "--first-parent",
                "--reverse",
                "--parents",
                "main",
            ],
        );
        let candidate_shas: HashSet<&str> = pushed
            .iter()
            .filter(|p| p.candidate)
            .map(|p| p.sha.as_str())
            .collect();
        let mut landed = Vec::new();
        for line in history.lines() {
            let shas: Vec<&str> = line.split_whitespace().collect();
            // A fast-forward lands the candidate itself; a merge its second parent.
            let commit = shas[0];
            if candidate_shas.contains(commit) {
                landed.push(commit.to_string());
            } else if shas.len() == 3 && candidate_shas.contains(shas[2]) {
                landed.push(shas[2].to_string());
            }
        }
        assert_eq!(landed, expected, "{repo}: landed once each, in queue order");
    }

    // ---- Nothing of the runs left in the engine; no worktree left.
    // Leftovers of lost attempts are swept again a few seconds after they
    // were lost (the engine may finish creating a container after the
    // runner that asked for it died): give that time.
    let settle = Instant::now() + Duration::from_secs(20);
    while Instant::now() < settle && !engine_leftovers(&all_engine_ids).is_empty() {
        std::thread::sleep(Duration::from_millis(500));
    }
    for id in &all_engine_ids {
        let left = engine_objects(id);
        if !left.is_empty() {
            let detail = Command::new("docker")
                .args([
                    "inspect",
                    "--format",
                    "{{.Name}} {{.State.Status}} {{.Created}} {{json .Config.Labels}}",
                ])
                .args(&left)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let f = fleet.lock().unwrap();
            let logs: Vec<String> = f
                .logs
                .iter()
                .flat_map(|l| {
                    strip_ansi(&l.lock().unwrap())
                        .lines()
                        .filter(|line| line.contains(id.split("-a").next().unwrap_or(id)))
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "{id} left objects in the engine: {detail}\n{}",
                logs.join("\n")
            );
        }
    }
    {
        let mut f = fleet.lock().unwrap();
        for p in f.live.iter_mut().flatten() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
            let _ = p.child.wait();
        }
        for slot in f.live.iter_mut() {
            *slot = None;
        }
        for config in &f.configs {
            let worktrees = config.parent().unwrap().join("worktrees");
            assert!(std::fs::read_dir(worktrees).unwrap().next().is_none());
        }
    }
    drop(cleanup);
    Outcome {
        commits: pushed.len(),
        candidates: pushed.iter().filter(|p| p.candidate).count(),
        kills,
        kills_mid_run,
        lost_attempts,
        stale_stopped,
        runs: runs.len(),
        push_to_final_ms: push_to_final,
        wall,
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn report(what: &str, o: &Outcome) {
    let by_kind: BTreeMap<&str, usize> = BTreeMap::from([
        ("commits", o.commits),
        ("candidates", o.candidates),
        ("runs", o.runs),
    ]);
    eprintln!(
        "{what}: {by_kind:?}; {} SIGKILLs ({} mid-run), {} attempts lost and reclaimed, {} live workers fenced off; push → final: median {} ms, max {} ms; wall {:.1} s",
        o.kills,
        o.kills_mid_run,
        o.lost_attempts,
        o.stale_stopped,
        median(&o.push_to_final_ms),
        o.push_to_final_ms.iter().max().unwrap(),
        o.wall.as_secs_f64()
    );
}

/// The fleet: 3 runners on PostgreSQL, 30 commits across 2 repositories
/// (10 candidates, 2 of them red), at least 5 SIGKILLs (about 40 s here,
/// so it is part of the normal suite).
#[test]
fn fleet_of_3_on_postgres_survives_sigkills() {
    let o = chaos(Chaos {
        postgres: true,
        runners: 3,
        features: 10,
        candidates: 5,
        min_kills: 5,
        timeout: Duration::from_secs(600),
    });
    report("fleet: 3 runners on PostgreSQL", &o);
    assert!(o.kills >= 5);
}

/// The same 30 commits for one runner on SQLite, killed and restarted at
/// least 5 times, for comparison.
#[test]
#[ignore = "measurement: cargo test -p drydock-cli --test fleet -- --ignored --nocapture"]
fn one_runner_on_sqlite() {
    let o = chaos(Chaos {
        postgres: false,
        runners: 1,
        features: 10,
        candidates: 5,
        min_kills: 5,
        timeout: Duration::from_secs(900),
    });
    report("one runner on SQLite", &o);
    assert!(o.kills >= 5);
}

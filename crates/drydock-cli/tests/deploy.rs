//! `drydock deploy` against the real engine: a version switch under live
//! traffic drops nothing, a broken version is rolled back automatically, a
//! rollback redeploys, and the ledger tells exactly that story.
//!
//! The load is bounded and on loopback only: 4 threads, one request each
//! every 10 ms, at most 60 s or 24 000 requests per phase.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{engine, text, Repo};

/// The product the fixture releases (`release.name` of `deploy-app`).
const PRODUCT: &str = "drydock-test/deploy-app";
const THREADS: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);
const MAX_PHASE: Duration = Duration::from_secs(60);
const MAX_REQUESTS: usize = 24_000;

/// One request's result.
#[derive(Debug, Clone)]
struct Sample {
    latency: Duration,
    /// `Ok(version)` for a 200 with a version body, `Err(what)` otherwise.
    answer: Result<String, String>,
}

/// `GET /` over a fresh connection (HTTP/1.0: the server closes).
fn get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
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
    let status = response.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(format!("status line {status:?}"));
    }
    response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|body| body.trim().strip_prefix("version "))
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected response {response:?}"))
}

/// Bounded load against `addr` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..THREADS)
            .map(|_| {
                let stop = stop.clone();
                let samples = samples.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < MAX_PHASE
                        && samples.lock().unwrap().len() < MAX_REQUESTS
                    {
                        let t = Instant::now();
                        let answer = get(addr);
                        samples.lock().unwrap().push(Sample {
                            latency: t.elapsed(),
                            answer,
                        });
                        std::thread::sleep(PAUSE);
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        Report::of(samples)
    }
}

/// What the load saw during one phase.
#[derive(Debug)]
struct Report {
    requests: usize,
    failures: Vec<String>,
    max: Duration,
    p99: Duration,
    p50: Duration,
    /// Versions answered, in order of first appearance, with counts.
    versions: Vec<(String, usize)>,
    last: Option<String>,
}

impl Report {
    fn of(samples: Vec<Sample>) -> Report {
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        let mut versions: Vec<(String, usize)> = Vec::new();
        for s in &samples {
            if let Ok(v) = &s.answer {
                match versions.iter_mut().find(|(name, _)| name == v) {
                    Some((_, n)) => *n += 1,
                    None => versions.push((v.clone(), 1)),
                }
            }
        }
        Report {
            requests: samples.len(),
            failures: samples
                .iter()
                .filter_map(|s| s.answer.clone().err())
                .collect(),
            max: latencies.last().copied().unwrap_or_default(),
            p99: pct(0.99),
            p50: pct(0.50),
            last: samples.iter().rev().find_map(|s| s.answer.clone().ok()),
            versions,
        }
    }

    fn print(&self, phase: &str) {
        eprintln!(
            "switch-over gap [{phase}]: {} requests, {} failed, max {} ms, p99 {} ms, p50 {} ms, versions {:?}",
            self.requests,
            self.failures.len(),
            self.max.as_millis(),
            self.p99.as_millis(),
            self.p50.as_millis(),
            self.versions
        );
    }
}

/// Removes the channel's deploy (and the ghost channel's) even when the test fails.
struct Guard {
    channels: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let channels = self.channels.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let engine = engine().await;
                // This test's deploys only: its product's channels.
                for channel in channels {
                    let channel = drydock_core::release::ChannelRef::new(PRODUCT, channel);
                    if let Ok(objects) =
                        drydock_core::deploy::channel_objects(&engine, &channel.channel).await
                    {
                        let scope =
                            drydock_core::deploy::Scope::resolve(&channel, objects, |_, _| None);
                        let _ = drydock_core::deploy::undeploy(&engine, &scope, false).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A free port on 127.0.0.1 (bound and released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn deploy_config(channel: &str, publish: u16, extra: &str) -> String {
    format!(
        "version: 1
name: drydock-test/deploy-app
channel: {channel}
app:
  port: 8000
  publish: {publish}
  env: {{ GREETING: hello }}
  ready: {{ timeout: 30s }}
  drain: 10s
  stop_grace: 5s
{extra}"
    )
}

async fn release(repo: &Repo, channel: &str, version: &str) {
    std::fs::write(repo.path().join("app/VERSION"), format!("{version}\n")).unwrap();
    repo.commit(&format!("version {version}"));
    let out = repo
        .run(
            &["run", "pipelines/app.yml"],
            &[("DRYDOCK_CHANNEL", channel)],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "release {version}: {}",
        text(&out)
    );
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn deploys_switch_without_failed_requests_and_roll_back() {
    let repo = Repo::fixture("deploy-app");
    let pid = std::process::id();
    let channel = format!("test-{pid}");
    let ghost = format!("test-{pid}-ghost");
    let _guard = Guard {
        channels: vec![channel.clone(), ghost.clone()],
    };
    let publish = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{publish}").parse().unwrap();
    std::fs::create_dir_all(repo.path().join("deploy")).unwrap();
    std::fs::write(
        repo.path().join(format!("deploy/{channel}.yml")),
        deploy_config(&channel, publish, ""),
    )
    .unwrap();

    // ----- unknown channel: clear error, exit 1, nothing created -------------
    let out = repo.run(&["deploy", &channel], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("unknown channel"), "{}", text(&out));

    // ----- A ---------------------------------------------------------------------
    release(&repo, &channel, "A").await;
    let out = repo.run(&["deploy", &channel], &[]).await;
    assert_eq!(out.status.code(), Some(0), "deploy A: {}", text(&out));
    assert_eq!(get(addr).as_deref(), Ok("A"));
    // The sweep leaves deploys alone, even though the app container inherits
    // the run labels of the (dead) run that built its image: not even
    // `gc --all --force` would pick them. Asked as a dry run, so that this
    // test removes nothing it did not create (other runs share the engine).
    let deploy_objects = engine()
        .await
        .labelled(&format!("drydock.deploy={channel}"))
        .await
        .unwrap();
    assert!(!deploy_objects.is_empty());
    let out = repo
        .run(&["gc", "--all", "--force", "--dry-run"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "gc: {}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    for object in &deploy_objects {
        let short = &object.id[..object.id.len().min(12)];
        assert!(
            !listed.contains(short),
            "gc would remove {short}:\n{listed}"
        );
    }
    assert_eq!(get(addr).as_deref(), Ok("A"));

    // ----- B under load: nothing fails ------------------------------------------
    release(&repo, &channel, "B").await;
    let load = Load::start(addr);
    std::thread::sleep(Duration::from_millis(500));
    let out = repo.run(&["deploy", &channel], &[]).await;
    std::thread::sleep(Duration::from_millis(500));
    let b = load.finish();
    b.print("deploy A→B");
    assert_eq!(out.status.code(), Some(0), "deploy B: {}", text(&out));
    assert!(b.failures.is_empty(), "failed requests: {:?}", b.failures);
    assert!(b.requests > 50, "too little load: {b:?}");
    assert_eq!(b.last.as_deref(), Some("B"), "{b:?}");
    assert!(
        b.versions.iter().all(|(v, _)| v == "A" || v == "B"),
        "{b:?}"
    );

    // ----- broken C: refused, B keeps serving, nothing fails -------------------
    release(&repo, &channel, "C-broken").await;
    let load = Load::start(addr);
    let out = repo.run(&["deploy", &channel], &[]).await;
    std::thread::sleep(Duration::from_millis(300));
    let c = load.finish();
    c.print("failed deploy of C");
    assert_eq!(out.status.code(), Some(1), "deploy C: {}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("health check failed") && err.contains("previous version keeps serving"),
        "{err}"
    );
    assert!(c.failures.is_empty(), "failed requests: {:?}", c.failures);
    assert_eq!(c.versions, vec![("B".to_string(), c.requests)], "{c:?}");
    let status = repo.run(&["deploy", &channel, "--status"], &[]).await;
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status_text.contains("← live"), "{status_text}");
    assert!(status_text.contains("not what runs"), "{status_text}");

    // ----- bad input: clear errors, right exit codes, nothing changed ---------
    let out = repo
        .run(&["rollback", &channel, "--to", "deadbeefdead"], &[])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("deadbeefdead"), "{}", text(&out));
    let bad = repo.path().join("deploy/bad.yml");
    std::fs::write(
        &bad,
        deploy_config(&channel, publish, "").replace(
            "  env: { GREETING: hello }",
            "  env: { DATABASE_URL: \"postgresql://u:p@db:5432/x\" }",
        ),
    )
    .unwrap();
    let out = repo
        .run(&["deploy", &channel, "--config", "deploy/bad.yml"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("deploy/bad.yml:7:")
            && stderr(&out).contains("`db`, which is not a service"),
        "{}",
        text(&out)
    );
    // An image deleted behind the ledger's back (a ledger entry naming an
    // image the engine does not have).
    {
        let mut ledger =
            drydock_core::release::Ledger::open(&repo.state.path().join("ledger.sqlite")).unwrap();
        ledger
            .record(drydock_core::release::NewEntry::release(
                ghost.as_str(),
                "drydock-test/deploy-app",
                format!("sha256:{}", "0".repeat(64)),
                None,
                None,
            ))
            .unwrap();
    }
    std::fs::write(
        repo.path().join(format!("deploy/{ghost}.yml")),
        deploy_config(&ghost, free_port(), ""),
    )
    .unwrap();
    let out = repo.run(&["deploy", &ghost], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not in the engine") && stderr(&out).contains("nothing changed"),
        "{}",
        text(&out)
    );
    let engine = engine().await;
    assert!(
        engine
            .labelled(&format!("drydock.deploy={ghost}"))
            .await
            .unwrap()
            .is_empty(),
        "a refused deploy created objects"
    );
    assert_eq!(get(addr).as_deref(), Ok("B"));

    // ----- rollback: C → B (live already), then B → A under load ----------------
    let load = Load::start(addr);
    let out = repo.run(&["rollback", &channel], &[]).await;
    assert_eq!(out.status.code(), Some(0), "rollback to B: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already live"),
        "{}",
        text(&out)
    );
    let out = repo.run(&["rollback", &channel], &[]).await;
    std::thread::sleep(Duration::from_millis(500));
    let r = load.finish();
    r.print("rollbacks C→B (no-op), B→A");
    assert_eq!(out.status.code(), Some(0), "rollback to A: {}", text(&out));
    assert!(r.failures.is_empty(), "failed requests: {:?}", r.failures);
    assert_eq!(r.last.as_deref(), Some("A"), "{r:?}");

    // ----- the ledger tells exactly that story -------------------------------
    let out = repo.run(&["releases", &channel, "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let story: Vec<(String, Vec<String>)> = history
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["deployments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["outcome"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let s = |a: &str, d: &[&str]| (a.to_string(), d.iter().map(|x| x.to_string()).collect());
    assert_eq!(
        story,
        vec![
            s("release", &["live", "live"]), // A, then A again by the last rollback
            s("release", &["live", "unchanged"]), // B, then the rollback C→B
            s("release", &["failed"]),       // C
            s("rollback", &[]),
            s("rollback", &[]),
        ],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let restores: Vec<i64> = history[3..]
        .iter()
        .map(|e| e["restores"].as_i64().unwrap())
        .collect();
    assert_eq!(
        restores,
        vec![
            history[1]["id"].as_i64().unwrap(),
            history[0]["id"].as_i64().unwrap()
        ]
    );
    let out = repo.run(&["releases", &channel], &[]).await;
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));

    // ----- undeploy: nothing of the channel is left ------------------------------
    let out = repo.run(&["undeploy", &channel], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        engine
            .labelled(&format!("drydock.deploy={channel}"))
            .await
            .unwrap()
            .is_empty(),
        "undeploy left objects behind"
    );
    assert!(get(addr).is_err(), "the stable address still answers");
}

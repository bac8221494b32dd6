//! A frozen engine: drydock talks to the real engine through a small TCP
//! proxy that the test freezes mid-run (no byte passes either way, the
//! connections stay open, as a SIGSTOPped engine looks).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{engine, run_id, sweep_run, text, Repo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy in front of the engine's socket that can be frozen.
struct Proxy {
    port: u16,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (er, ew) = engine.into_split();
                    tokio::join!(pump(cr, ew, flag.clone()), pump(er, cw, flag));
                });
            }
        });
        Proxy { port, frozen, task }
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes one way, holding them while frozen.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = match tokio::time::timeout(Duration::from_millis(200), from.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => continue,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Starts the long pipeline through the proxy and waits for its step to run.
async fn start_run(repo: &Repo, proxy: &Proxy, id: &str) -> tokio::process::Child {
    let child = repo
        .drydock(&["run", "pipelines/frozen.yml", "--json", "--run-id", id])
        .env("DOCKER_HOST", proxy.host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let engine = engine().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine
        .labelled(&format!("drydock.run={id}"))
        .await
        .unwrap()
        .iter()
        .any(|l| l.kind == "container")
    {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child
}

fn last_event(output: &std::process::Output) -> serde_json::Value {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_frozen_engine_is_reported_within_a_bounded_time_and_exits_3() {
    let repo = Repo::fixture("controls");
    let proxy = Proxy::start().await;
    let id = run_id("frozen");
    let child = start_run(&repo, &proxy, &id).await;
    proxy.freeze(true);
    let frozen_at = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("drydock gives up on a frozen engine by itself")
        .unwrap();
    let took = frozen_at.elapsed();
    proxy.freeze(false);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(3), "{all}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {all}");
    assert!(all.contains("has not answered"), "{all}");
    assert!(all.contains("drydock gc"), "{all}");
    let last = last_event(&output);
    assert_eq!(last["event"], "run_finished", "{all}");
    assert_eq!(last["outcome"], "errored");
    // The engine was frozen during teardown: the test removes what the run left.
    sweep_run(&id).await;
    eprintln!("frozen engine detected after {took:?}");
}

#[tokio::test]
async fn a_second_signal_exits_within_2s_whatever_the_engine_does() {
    let repo = Repo::fixture("controls");
    let proxy = Proxy::start().await;
    let id = run_id("frozen-sig");
    let child = start_run(&repo, &proxy, &id).await;
    proxy.freeze(true);
    let pid = child.id().unwrap() as i32;
    // SAFETY: signals to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    unsafe { libc::kill(pid, libc::SIGINT) };
    let second = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("drydock exits after a second signal")
        .unwrap();
    let took = second.elapsed();
    proxy.freeze(false);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(130), "{all}");
    assert!(took < Duration::from_millis(2500), "took {took:?}: {all}");
    let last = last_event(&output);
    assert_eq!(last["event"], "run_finished", "{all}");
    assert_eq!(last["cancel_reason"], "second_signal");
    sweep_run(&id).await;
    eprintln!("exited {took:?} after the second signal");
}

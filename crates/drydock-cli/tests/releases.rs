//! Releases against the real engine and git: a release is one step for the
//! user whatever signal comes when (issue 16, kind 7), and a channel belongs
//! to a product (kind 10). Every test names its products after its process
//! id and removes only the tags, builds and run objects it made.
//!
//! The interrupt test hits the release's windows deterministically with
//! `DRYDOCK_TEST_RELEASE_PAUSE` (`drydock_core::release::TEST_PAUSE_VAR`),
//! which only makes the release pause at a point: `before-commit` (tags
//! made, nothing recorded) or `after-record` (recorded, channel tag not
//! moved yet); the signals are sent once the pause is reached, seen from the
//! outside (the run's immutable tag exists; the ledger holds the entry).

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{assert_nothing_left, engine, run_id, sweep_run, text, Repo};
use drydock_core::release::{self, ChannelRef, Ledger};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Removes every local tag of the given image repositories, and the build
/// tags of the given pipelines, when dropped (after a failed assertion too).
struct Tags {
    repositories: Vec<String>,
    pipelines: Vec<String>,
}

impl Drop for Tags {
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            return;
        };
        let mine: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|r| {
                self.repositories
                    .iter()
                    .any(|n| r.starts_with(&format!("{n}:")))
                    || self
                        .pipelines
                        .iter()
                        .any(|p| r.starts_with(&format!("drydock-build/{p}:")))
            })
            .map(str::to_string)
            .collect();
        // Untag only: an image id may be shared with other tests' tags.
        for reference in mine {
            let _ = std::process::Command::new("docker")
                .args(["rmi", &reference])
                .output();
        }
    }
}

/// The image the tag points to, if any.
async fn tag_image(reference: &str) -> Option<String> {
    engine().await.image(reference).await.unwrap().map(|i| i.id)
}

/// Writes a releasing pipeline (a build, a sidecar the teardown stops, one
/// short step; with `lean`, the build alone) for `product`'s channel
/// `staging` into `repo`.
fn releasing_repo(repo: &Repo, pipeline: &str, product: &str, lean: bool) {
    let yaml = if lean {
        format!(
            "version: 1
name: {pipeline}
build: {{context: app}}
tiers:
  - name: package
    build: [production]
release:
  target: production
  name: {product}
  channel: staging
"
        )
    } else {
        format!(
            "version: 1
name: {pipeline}
build: {{context: app}}
services:
  idle:
    image: drydock/debian:bookworm
    command: [sleep, \"300\"]
tiers:
  - name: package
    build: [production]
  - name: check
    services: [idle]
    steps:
      - name: marker
        build: production
        command: [cat, /marker]
release:
  target: production
  name: {product}
  channel: staging
"
        )
    };
    let files = [
        ("pipelines/rel.yml".to_string(), yaml),
        (
            "app/Dockerfile".to_string(),
            "FROM drydock/debian:bookworm AS production\nCOPY marker /marker\n".to_string(),
        ),
    ];
    for (path, content) in files {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Where the signals come (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// Tags made, nothing recorded, the process held there for 4 s.
    BeforeCommit,
    /// The entry recorded, the channel tag not moved, held there for 4 s.
    AfterRecord,
    /// After the `released` event, while the sidecar is torn down: one
    /// signal.
    TeardownOnce,
    /// The same, two signals.
    TeardownTwice,
    /// Two signals as soon as the last tier ends, with no pause: the
    /// release may or may not have happened, the report must say which.
    LastTierDone,
}

/// What one interrupted run did.
struct Interrupted {
    code: Option<i32>,
    stderr: String,
    events: Vec<serde_json::Value>,
    /// Seconds from the second signal (or the only one) to the exit.
    after_signal: Duration,
}

/// Starts `drydock run` in `repo` for run `id`, sends the signals at
/// `moment` (two are 10 ms apart) and waits for the exit (at most 60 s).
async fn interrupt_at(
    repo: &Repo,
    id: &str,
    product: &str,
    ledger: &std::path::Path,
    moment: Moment,
) -> Interrupted {
    let mut command = repo.drydock(&[
        "run",
        "pipelines/rel.yml",
        "--run-id",
        id,
        "--json",
        "--stop-grace",
        "1",
    ]);
    match moment {
        Moment::BeforeCommit => {
            command.env(release::TEST_PAUSE_VAR, "before-commit:4000");
        }
        Moment::AfterRecord => {
            command.env(release::TEST_PAUSE_VAR, "after-record:4000");
        }
        _ => {}
    }
    let mut child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let signal = || {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGINT) };
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    let mut signalled: Option<std::time::Instant> = None;
    let run_tag = format!("{product}:{id}");
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            let last_tier_done = event["event"] == "tier_finished" && event["tier"] == "check";
            let released = event["event"] == "released";
            events.push(event);
            if signalled.is_some() {
                continue;
            }
            let now = match moment {
                Moment::BeforeCommit if last_tier_done => {
                    // The release tags the run id first, then pauses.
                    wait_until(|| async { tag_image(&run_tag).await.is_some() }).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    true
                }
                Moment::AfterRecord if last_tier_done => {
                    wait_until(|| async { release::released_by_run(ledger, id).is_some() }).await;
                    true
                }
                Moment::TeardownOnce | Moment::TeardownTwice => released,
                Moment::LastTierDone => last_tier_done,
                _ => false,
            };
            if now {
                signal();
                if moment != Moment::TeardownOnce {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    signal();
                }
                signalled = Some(std::time::Instant::now());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the run ends within 60 s");
    let output = child.wait_with_output().await.unwrap();
    Interrupted {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        events,
        after_signal: signalled.expect("the signals were sent").elapsed(),
    }
}

/// Polls `check` every 10 ms for at most 20 s.
async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the window never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two Ctrl-C 10 ms apart at each moment of a green run's release, and
/// signals during the teardown after it. Each run either released — exit 0,
/// no "interrupted", `run_finished` (when written) `passed`, the ledger
/// records it — or released nothing — exit 130, no entry, no `released`
/// event, the channel tag where it was. The channel tag is never ahead of
/// the ledger; one left behind (the process cut between recording and
/// moving it) is re-pointed by the next command that reads the channel. A
/// rollback then goes to the image the channel really served before.
#[tokio::test]
async fn signals_at_release_time_never_split_tag_and_ledger() {
    let pid = std::process::id();
    let pipeline = format!("rel-signal-{pid}");
    let product = format!("drydock-test/rel-signal-{pid}");
    let _tags = Tags {
        repositories: vec![product.clone()],
        pipelines: vec![pipeline.clone()],
    };
    let repo = Repo::empty_for_tests();
    releasing_repo(&repo, &pipeline, &product, false);
    let ledger_path = repo.state.path().join("ledger.sqlite");
    let staging = ChannelRef::new(&product, "staging").tag();

    // A first, undisturbed release: what the channel serves to begin with.
    std::fs::write(repo.path().join("app/marker"), "0\n").unwrap();
    repo.commit("release 0");
    let first = run_id("sig0");
    let out = repo
        .run(
            &[
                "run",
                "pipelines/rel.yml",
                "--run-id",
                &first,
                "--stop-grace",
                "1",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_nothing_left(&first).await;
    let served0 = tag_image(&staging).await.unwrap();

    // (where, whether the run must release; `None`: either, reported so)
    let moments = [
        (Moment::BeforeCommit, Some(false)),
        (Moment::AfterRecord, Some(true)),
        (Moment::TeardownOnce, Some(true)),
        (Moment::TeardownTwice, Some(true)),
        (Moment::LastTierDone, None),
    ];
    let mut served = served0.clone();
    let mut releases_made = 1;
    for (i, (moment, must_release)) in moments.into_iter().enumerate() {
        std::fs::write(repo.path().join("app/marker"), format!("{}\n", i + 1)).unwrap();
        repo.commit(&format!("release {}", i + 1));
        let id = run_id(&format!("sig{}", i + 1));
        let run = interrupt_at(&repo, &id, &product, &ledger_path, moment).await;
        let what = format!(
            "{moment:?}, run {id}: exit {:?} {:.1?} after the signal\n{}",
            run.code, run.after_signal, run.stderr
        );
        eprintln!("{what}");
        let ledger = Ledger::open(&ledger_path).unwrap();
        let entry = ledger.release_of_run(&id).unwrap();
        let finished = run.events.iter().find(|e| e["event"] == "run_finished");
        let releases = entry.is_some();
        if let Some(must) = must_release {
            assert_eq!(releases, must, "{what}");
        }
        if releases {
            releases_made += 1;
            assert_eq!(run.code, Some(0), "{what}");
            let entry = entry.unwrap_or_else(|| panic!("exit 0 without a release: {what}"));
            if let Some(f) = finished {
                assert_eq!(f["outcome"], "passed", "{what}");
            }
            assert!(!run.stderr.contains("interrupted"), "{what}");
            assert!(run.stderr.contains("it passed"), "{what}");
            served = entry.image_id.clone();
        } else {
            assert_eq!(run.code, Some(130), "{what}");
            assert!(entry.is_none(), "exit 130 but released: {what}");
            if let Some(f) = finished {
                assert_eq!(f["outcome"], "interrupted", "{what}");
            }
            assert!(
                run.events.iter().all(|e| e["event"] != "released"),
                "{what}"
            );
        }
        // Two signals: out within 2 s of the second (kind 6), whatever the
        // release was doing.
        if moment != Moment::TeardownOnce {
            assert!(run.after_signal < Duration::from_millis(3000), "{what}");
        }

        // Never a tag ahead of the ledger; cut after recording, the tag is
        // still on the image before.
        let tagged = tag_image(&staging).await.unwrap();
        let current = ledger.current(&product, "staging").unwrap().unwrap();
        assert_eq!(current.image_id, served, "{what}");
        if moment == Moment::AfterRecord {
            assert_ne!(
                tagged, current.image_id,
                "the pause should have cut the tag move: {what}"
            );
            let history = ledger.history(&product, "staging").unwrap();
            assert_eq!(
                Some(&tagged),
                history.iter().rev().nth(1).map(|e| &e.image_id),
                "{what}"
            );
        } else {
            assert_eq!(tagged, current.image_id, "{what}");
        }
        // The next reader puts it right, and says so.
        let out = repo.run(&["releases", "staging"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(tag_image(&staging).await.unwrap(), served, "{what}");
        if moment == Moment::AfterRecord {
            assert!(text(&out).contains("re-pointed"), "{}", text(&out));
        }
        // A second signal hurries the teardown: remove what this run left.
        sweep_run(&id).await;
    }

    // The rollback goes to the image served before the last release,
    // skipping nothing.
    let history = Ledger::open(&ledger_path)
        .unwrap()
        .history(&product, "staging")
        .unwrap();
    assert_eq!(history.len(), releases_made, "{history:?}");
    let before_last = history[history.len() - 2].image_id.clone();
    let out = repo.run(&["rollback", "staging"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tag_image(&staging).await.unwrap(), before_last);
    assert_ne!(before_last, served);
}

/// `drydock …` in `dir` with the machine's state folder `state`.
async fn drydock_in(dir: &std::path::Path, state: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(args)
        .current_dir(dir)
        .env("DRYDOCK_STATE_DIR", state)
        .env_remove("DRYDOCK_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// Two products with a channel of the same name, `staging`, released on one
/// machine (one state folder, one ledger): each repository's `drydock
/// releases staging` lists only its own images, `deploy staging --status`
/// points to its own image, a rollback in A goes to A's previous image
/// (never B's) and leaves B's channel alone; where nothing tells the
/// product, the commands refuse with exit 2 naming both; `--product` picks.
#[tokio::test]
async fn two_products_with_one_channel_name_stay_apart() {
    let pid = std::process::id();
    let products = [
        format!("drydock-test/rel-a-{pid}"),
        format!("drydock-test/rel-b-{pid}"),
    ];
    let pipelines = [format!("rel-a-{pid}"), format!("rel-b-{pid}")];
    let _tags = Tags {
        repositories: products.to_vec(),
        pipelines: pipelines.to_vec(),
    };
    let machine = tempfile::tempdir().unwrap();
    let state = machine.path();
    let repos = [Repo::empty_for_tests(), Repo::empty_for_tests()];
    for i in 0..2 {
        releasing_repo(&repos[i], &pipelines[i], &products[i], true);
    }
    // A releases a1, B releases b1, A releases a2.
    let mut images = Vec::new();
    for (i, marker) in [(0, "a1"), (1, "b1"), (0, "a2")] {
        let repo = &repos[i];
        std::fs::write(repo.path().join("app/marker"), format!("{marker}\n")).unwrap();
        repo.commit(marker);
        let id = run_id(&format!("two-{marker}"));
        let out = drydock_in(
            repo.path(),
            state,
            &["run", "pipelines/rel.yml", "--run-id", &id],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{marker}: {}", text(&out));
        assert_nothing_left(&id).await;
        let tag = ChannelRef::new(&products[i], "staging").tag();
        images.push(tag_image(&tag).await.unwrap());
    }
    let (a1, b1, a2) = (images[0].clone(), images[1].clone(), images[2].clone());
    assert!(a1 != b1 && a2 != b1 && a1 != a2);

    // Each repository lists its own history only.
    for (i, expected) in [(0, vec![&a1, &a2]), (1, vec![&b1])] {
        let out = drydock_in(repos[i].path(), state, &["releases", "staging", "--json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let history = json(&out);
        let history = history.as_array().unwrap();
        assert!(
            history.iter().all(|e| e["name"] == products[i].as_str()),
            "{history:?}"
        );
        let listed: Vec<&str> = history
            .iter()
            .map(|e| e["image_id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
        assert_eq!(listed, expected, "repository {i}");
        // The status names its own product's current image.
        let out = drydock_in(
            repos[i].path(),
            state,
            &["deploy", "staging", "--status", "--json"],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let status = json(&out);
        assert_eq!(
            status["ledger_current"]["name"],
            products[i].as_str(),
            "{status}"
        );
        assert_eq!(
            status["ledger_current"]["image_id"],
            *expected.last().unwrap(),
            "{status}"
        );
    }

    // Outside both repositories, nothing tells which product: exit 2,
    // naming both, for every command that reads the channel; --product picks.
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        vec!["releases", "staging"],
        vec!["deploy", "staging", "--status"],
        vec!["rollback", "staging"],
    ] {
        let out = drydock_in(elsewhere.path(), state, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            stderr.contains(&products[0]) && stderr.contains(&products[1]),
            "{args:?}: {}",
            text(&out)
        );
    }
    let out = drydock_in(
        elsewhere.path(),
        state,
        &["releases", "staging", "--product", &products[1], "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out).as_array().unwrap().len(), 1);

    // A's rollback goes to A's previous image, never B's, and leaves B
    // alone; a rollback "to" B's run is refused and moves nothing.
    let b_run = run_id("two-b1");
    let out = drydock_in(
        repos[0].path(),
        state,
        &["rollback", "staging", "--to", &b_run],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let a_tag = ChannelRef::new(&products[0], "staging").tag();
    let b_tag = ChannelRef::new(&products[1], "staging").tag();
    assert_eq!(tag_image(&a_tag).await.unwrap(), a2);
    let out = drydock_in(repos[0].path(), state, &["rollback", "staging"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tag_image(&a_tag).await.unwrap(), a1);
    assert_eq!(tag_image(&b_tag).await.unwrap(), b1);
    let ledger = Ledger::open(&state.join("ledger.sqlite")).unwrap();
    let current = ledger.current(&products[0], "staging").unwrap().unwrap();
    assert_eq!(
        (current.image_id.as_str(), current.name.as_str()),
        (a1.as_str(), products[0].as_str())
    );
    assert_eq!(
        ledger
            .current(&products[1], "staging")
            .unwrap()
            .unwrap()
            .image_id,
        b1
    );
}

/// A ledger written before products (schema version 1, where two products
/// shared `staging`) is migrated by the first command that opens it, every
/// entry kept: each product then sees its own history, and the channel is
/// ambiguous until a product is named.
#[tokio::test]
async fn a_version_1_ledger_is_migrated_by_the_cli_keeping_its_entries() {
    let machine = tempfile::tempdir().unwrap();
    let path = machine.path().join("ledger.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../../tests/fixtures/ledger/v1.sql"))
            .unwrap();
    }
    let count = |path: &std::path::Path| -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    };
    let before = count(&path);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = drydock_in(elsewhere.path(), machine.path(), &["releases", "staging"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flask-api") && stderr.contains("other-app"),
        "{stderr}"
    );
    for (product, ids) in [("flask-api", vec![1, 3]), ("other-app", vec![2, 4])] {
        let out = drydock_in(
            elsewhere.path(),
            machine.path(),
            &["releases", "staging", "--product", product, "--json"],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let listed: Vec<i64> = json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, ids, "{product}");
    }
    assert_eq!(count(&path), before, "the migration lost or added entries");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, drydock_core::release::SCHEMA_VERSION as i64);
}

/// Removes the given products' deploys of `staging` when dropped.
struct Deploys(Vec<String>);

impl Drop for Deploys {
    fn drop(&mut self) {
        let products = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let engine = engine().await;
                for product in products {
                    let channel = ChannelRef::new(&product, "staging");
                    if let Ok(objects) =
                        drydock_core::deploy::channel_objects(&engine, &channel.channel).await
                    {
                        // This product's objects only (never `--unowned`).
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

/// `GET /` of a deployed `deploy-app` over a fresh connection: its version.
fn version_at(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two products deploy their `staging` on one machine, side by side: each
/// serves its own version behind its own address, `deploy --status` in each
/// repository shows its own live image, a release and a rollback of A
/// redeploy A only (B keeps serving its version), and undeploying A leaves
/// B serving.
#[tokio::test]
async fn two_products_deploy_their_staging_side_by_side() {
    let pid = std::process::id();
    let products = [
        format!("drydock-test/dep-a-{pid}"),
        format!("drydock-test/dep-b-{pid}"),
    ];
    let _tags = Tags {
        repositories: products.to_vec(),
        pipelines: vec![format!("dep-a-{pid}"), format!("dep-b-{pid}")],
    };
    let _deploys = Deploys(products.to_vec());
    let machine = tempfile::tempdir().unwrap();
    let state = machine.path();
    let repos = [Repo::fixture("deploy-app"), Repo::fixture("deploy-app")];
    let ports = [free_port(), free_port()];
    for i in 0..2 {
        let pipeline = repos[i].path().join("pipelines/app.yml");
        let yaml = std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace("drydock-test/deploy-app", &products[i])
            .replace(
                "name: deploy-app",
                &format!("name: dep-{}-{pid}", ["a", "b"][i]),
            );
        std::fs::write(&pipeline, yaml).unwrap();
        std::fs::create_dir_all(repos[i].path().join("deploy")).unwrap();
        std::fs::write(
            repos[i].path().join("deploy/staging.yml"),
            format!(
                "version: 1\nname: {}\nchannel: staging\napp:\n  port: 8000\n  publish: {}\n  ready: {{ timeout: 30s }}\n  drain: 1s\n  stop_grace: 2s\n",
                products[i], ports[i]
            ),
        )
        .unwrap();
    }
    let release = |i: usize, version: &'static str| {
        let repo = &repos[i];
        async move {
            std::fs::write(repo.path().join("app/VERSION"), format!("{version}\n")).unwrap();
            repo.commit(version);
            let out = drydock_in(repo.path(), state, &["run", "pipelines/app.yml"]).await;
            assert_eq!(
                out.status.code(),
                Some(0),
                "release {version}: {}",
                text(&out)
            );
        }
    };
    let deploy = |i: usize| {
        let repo = &repos[i];
        async move {
            let out = drydock_in(repo.path(), state, &["deploy", "staging"]).await;
            assert_eq!(out.status.code(), Some(0), "deploy {i}: {}", text(&out));
        }
    };
    release(0, "a1").await;
    release(1, "b1").await;
    deploy(0).await;
    deploy(1).await;
    assert_eq!(version_at(ports[0]).as_deref(), Ok("a1"));
    assert_eq!(version_at(ports[1]).as_deref(), Ok("b1"));
    let ledger = Ledger::open(&state.join("ledger.sqlite")).unwrap();
    for i in 0..2 {
        let out = drydock_in(
            repos[i].path(),
            state,
            &["deploy", "staging", "--status", "--json"],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let status = json(&out);
        let current = ledger.current(&products[i], "staging").unwrap().unwrap();
        let live: Vec<&serde_json::Value> = status["apps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["live"] == true)
            .collect();
        assert_eq!(live.len(), 1, "{status}");
        assert_eq!(live[0]["image_id"], current.image_id.as_str(), "{status}");
        assert_eq!(
            status["ledger_current"]["name"],
            products[i].as_str(),
            "{status}"
        );
    }

    // A moves on and back; B is never touched.
    release(0, "a2").await;
    deploy(0).await;
    assert_eq!(version_at(ports[0]).as_deref(), Ok("a2"));
    let out = drydock_in(repos[0].path(), state, &["rollback", "staging"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(version_at(ports[0]).as_deref(), Ok("a1"));
    assert_eq!(version_at(ports[1]).as_deref(), Ok("b1"));
    assert_eq!(ledger.history(&products[1], "staging").unwrap().len(), 1);
    assert_eq!(
        ledger.deployments(&products[1], "staging").unwrap().len(),
        1
    );

    // Undeploying A leaves B serving.
    let out = drydock_in(repos[0].path(), state, &["undeploy", "staging"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(version_at(ports[0]).is_err());
    assert_eq!(version_at(ports[1]).as_deref(), Ok("b1"));
}

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

use std::process::Stdio;
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

    let moments = [
        (Moment::BeforeCommit, false),
        (Moment::AfterRecord, true),
        (Moment::TeardownOnce, true),
        (Moment::TeardownTwice, true),
    ];
    let mut served = served0.clone();
    for (i, (moment, releases)) in moments.into_iter().enumerate() {
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
        if releases {
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
    assert_eq!(history.len(), 4, "{history:?}");
    let before_last = history[history.len() - 2].image_id.clone();
    let out = repo.run(&["rollback", "staging"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tag_image(&staging).await.unwrap(), before_last);
    assert_ne!(before_last, served);
}

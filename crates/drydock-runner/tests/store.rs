//! The queue semantics of both stores, against real databases: SQLite files
//! and a throw-away PostgreSQL server (tests/common/pg.rs). Each case runs
//! on both stores unless it is about one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg::Postgres;
use drydock_runner::store::{
    Cancel, Claimer, Ending, ExpiryPolicy, Heartbeat, NewRun, PgStore, RunFilter, RunKind,
    RunState, RunnerInfo, SqliteStore, Store, StoreEvent,
};
use drydock_runner::{StartError, StateLock};

/// A store of either kind and what keeps it alive (fields drop in order:
/// the store and its connections before the server).
struct Fixture {
    store: Arc<dyn Store>,
    kind: &'static str,
    _dir: tempfile::TempDir,
    pg: Option<Postgres>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.sqlite");
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .unwrap()
            .unwrap();
        Fixture {
            store: Arc::new(store),
            kind: "sqlite",
            _dir: dir,
            pg: None,
        }
    }

    async fn postgres() -> Fixture {
        // On this thread: the server is tied to the thread that started it.
        let pg = tokio::task::block_in_place(Postgres::start);
        let url = tokio::task::block_in_place(|| pg.create_database("runner"));
        let store = PgStore::connect(&url).await.unwrap();
        Fixture {
            store: Arc::new(store),
            kind: "postgres",
            _dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
        }
    }

    /// Another store on the same database (another runner), PostgreSQL only.
    async fn second(&self) -> Arc<dyn Store> {
        let url = self.pg.as_ref().unwrap().url("runner");
        Arc::new(PgStore::connect(&url).await.unwrap())
    }

    async fn both() -> [Fixture; 2] {
        [Fixture::sqlite().await, Fixture::postgres().await]
    }
}

fn new(repo: &str, branch: &str, kind: RunKind) -> NewRun {
    NewRun {
        repo: repo.into(),
        branch: branch.into(),
        sha: "a".repeat(40),
        kind,
        trigger: "test".into(),
        retry_of: None,
    }
}

fn claimer(name: &str, lease_ms: u64) -> Claimer {
    Claimer {
        runner: name.into(),
        owner: format!("{name}#{}", drydock_runner::store::random_hex(8)),
        lease: Duration::from_millis(lease_ms),
    }
}

fn ending(state: RunState, reason: &str) -> Ending {
    Ending {
        state,
        reason: Some(reason.into()),
        summary: None,
    }
}

const POLICY: ExpiryPolicy = ExpiryPolicy {
    max_attempts: 3,
    requeue: true,
};

/// Queue order; candidates of a repository one at a time; claim sets
/// runner, attempt and lease; fenced finish; heads and deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_order_claims_and_fenced_finish() {
    for f in Fixture::both().await {
        let store = &f.store;
        let k = f.kind;
        let c1 = store
            .enqueue(new("app", "ready/a", RunKind::Candidate))
            .await
            .unwrap();
        let c2 = store
            .enqueue(new("app", "ready/b", RunKind::Candidate))
            .await
            .unwrap();
        let b = store
            .enqueue(new("app", "main", RunKind::Branch))
            .await
            .unwrap();
        let other = store
            .enqueue(new("lib", "ready/x", RunKind::Candidate))
            .await
            .unwrap();
        assert_eq!(c1.state, RunState::Queued);
        assert_eq!(c1.attempt, 0);
        let r1 = claimer("r1", 30_000);
        let (run, lease) = store.claim(&r1).await.unwrap().unwrap();
        assert_eq!(run.id, c1.id, "{k}");
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.runner.as_deref(), Some("r1"));
        assert_eq!(run.attempt, 1);
        assert_eq!(lease.attempt, 1);
        assert!(run.lease_until_ms.unwrap() > run.started_ms.unwrap() + 20_000);
        // c2 waits for c1: the branch run and the other repository go first.
        let (next, lb) = store.claim(&r1).await.unwrap().unwrap();
        assert_eq!(next.id, b.id, "{k}");
        let (next, lo) = store.claim(&r1).await.unwrap().unwrap();
        assert_eq!(next.id, other.id, "{k}");
        assert!(store.claim(&r1).await.unwrap().is_none(), "{k}");
        assert_eq!(
            store
                .heartbeat(&lease, Duration::from_secs(30), None)
                .await
                .unwrap(),
            Heartbeat::Held {
                cancel_requested: false
            }
        );
        assert!(store
            .set_tested(&lease, &"b".repeat(40), &"c".repeat(40))
            .await
            .unwrap());
        let done = store
            .finish(&lease, &ending(RunState::Passed, "landed"), None)
            .await
            .unwrap();
        assert!(done.recorded);
        let again = store
            .finish(&lease, &ending(RunState::Failed, "again"), None)
            .await
            .unwrap();
        assert!(!again.recorded, "{k}: a run finishes once");
        let c1 = store.get(&c1.id).await.unwrap().unwrap();
        assert_eq!(c1.state, RunState::Passed);
        assert_eq!(c1.tested_sha.as_deref(), Some("c".repeat(40).as_str()));
        assert!(c1.owner.is_none() && c1.lease_until_ms.is_none());
        // c2 is claimable now; finishing with a retest queues it in the same step.
        let (next, l2) = store.claim(&r1).await.unwrap().unwrap();
        assert_eq!(next.id, c2.id, "{k}");
        let mut retest = new("app", "ready/b", RunKind::Candidate);
        retest.retry_of = Some(c2.id.clone());
        let done = store
            .finish(&l2, &ending(RunState::Passed, "not landed"), Some(retest))
            .await
            .unwrap();
        let queued = done.queued.unwrap();
        assert_eq!(queued.retry_of.as_deref(), Some(c2.id.as_str()));
        assert_eq!(queued.state, RunState::Queued);
        for l in [lb, lo] {
            assert!(
                store
                    .finish(&l, &ending(RunState::Failed, "x"), None)
                    .await
                    .unwrap()
                    .recorded
            );
        }
        let attempts = store.attempts(&c1.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].runner, "r1");
        assert_eq!(attempts[0].outcome.as_deref(), Some("passed"));

        let mut seen = new("app", "main", RunKind::Branch);
        assert!(store.observe_head(seen.clone()).await.unwrap().is_some());
        assert!(store.observe_head(seen.clone()).await.unwrap().is_none());
        seen.sha = "b".repeat(40);
        assert!(store.observe_head(seen).await.unwrap().is_some());
        assert_eq!(
            store.head("app", "main").await.unwrap(),
            Some("b".repeat(40))
        );
        assert!(!store.delivery_seen("d1").await.unwrap());
        assert!(store.first_delivery("d1").await.unwrap());
        assert!(!store.first_delivery("d1").await.unwrap());
        assert!(store.delivery_seen("d1").await.unwrap());
        let listed = store
            .list(&RunFilter {
                branch: Some("ready/b".into()),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{k}");
        assert_eq!(store.count(RunState::Passed).await.unwrap(), 2, "{k}");
    }
}

/// A lease that is not renewed expires; any runner reclaims the run as its
/// next attempt; the stale worker can neither renew, record nor finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_reclaim_and_stale_worker_fenced() {
    for f in Fixture::both().await {
        let store = &f.store;
        let k = f.kind;
        let run = store
            .enqueue(new("app", "ready/a", RunKind::Candidate))
            .await
            .unwrap();
        let later = store
            .enqueue(new("app", "ready/b", RunKind::Candidate))
            .await
            .unwrap();
        let (a, b) = (claimer("a", 300), claimer("b", 30_000));
        let (_, stale) = store.claim(&a).await.unwrap().unwrap();
        // Renewed: held, and nothing expires.
        assert!(matches!(
            store
                .heartbeat(&stale, Duration::from_millis(300), None)
                .await
                .unwrap(),
            Heartbeat::Held { .. }
        ));
        assert!(
            store.expire_leases(&POLICY).await.unwrap().is_empty(),
            "{k}"
        );
        // No heartbeat for longer than the lease: expired, queued again, in its place.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let expired = store.expire_leases(&POLICY).await.unwrap();
        assert_eq!(expired.len(), 1, "{k}");
        assert_eq!(expired[0].state, RunState::Queued);
        assert_eq!(expired[0].lost, 1);
        let reason = expired[0].reason.clone().unwrap();
        assert!(
            reason.contains("attempt 1 lost: runner a stopped renewing its lease"),
            "{k}: {reason}"
        );
        assert!(store.expire_leases(&POLICY).await.unwrap().is_empty());
        // The next candidate still waits: the reclaimed one is first.
        let (again, fresh) = store.claim(&b).await.unwrap().unwrap();
        assert_eq!(again.id, run.id, "{k}");
        assert_eq!(again.attempt, 2);
        assert_eq!(again.runner.as_deref(), Some("b"));
        assert!(store.claim(&b).await.unwrap().is_none(), "{k}: {later:?}");
        // The stale worker: lost, and none of its writes land.
        assert_eq!(
            store
                .heartbeat(&stale, Duration::from_secs(30), None)
                .await
                .unwrap(),
            Heartbeat::Lost
        );
        assert!(!store.set_tested(&stale, "x", "y").await.unwrap());
        assert!(!store.release(&stale, "stopping").await.unwrap());
        let late = store
            .finish(
                &stale,
                &ending(RunState::Passed, "stale"),
                Some(new("app", "ready/a", RunKind::Candidate)),
            )
            .await
            .unwrap();
        assert!(!late.recorded && late.queued.is_none(), "{k}");
        assert!(
            store
                .finish(&fresh, &ending(RunState::Failed, "red"), None)
                .await
                .unwrap()
                .recorded
        );
        let run = store.get(&run.id).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.reason.as_deref(), Some("red"));
        let attempts: Vec<(u32, String, Option<String>)> = store
            .attempts(&run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.attempt, a.runner, a.outcome))
            .collect();
        assert_eq!(
            attempts,
            vec![
                (1, "a".into(), Some("lost".into())),
                (2, "b".into(), Some("failed".into()))
            ],
            "{k}"
        );
        // Now the next candidate goes.
        assert_eq!(store.claim(&b).await.unwrap().unwrap().0.id, later.id);
    }
}

/// `max_attempts` ends the re-queue loop with the reason; with re-queuing
/// off an expired run ends `interrupted`; a released run (its runner
/// stopped) goes back to the queue without counting as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_requeue_off_and_release() {
    for f in Fixture::both().await {
        let store = &f.store;
        let k = f.kind;
        let policy = ExpiryPolicy {
            max_attempts: 2,
            requeue: true,
        };
        let run = store
            .enqueue(new("app", "main", RunKind::Branch))
            .await
            .unwrap();
        let c = claimer("crashy", 1);
        // A graceful stop: back in the queue, not lost.
        let (_, lease) = store.claim(&c).await.unwrap().unwrap();
        assert!(store
            .release(&lease, "runner crashy stopped")
            .await
            .unwrap());
        let released = store.get(&run.id).await.unwrap().unwrap();
        assert_eq!(released.state, RunState::Queued, "{k}");
        assert_eq!((released.attempt, released.lost), (1, 0));
        for round in 1..=2 {
            let (claimed, _) = store.claim(&c).await.unwrap().unwrap();
            assert_eq!(claimed.id, run.id);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let expired = store.expire_leases(&policy).await.unwrap();
            assert_eq!(expired.len(), 1);
            let want = if round < 2 {
                RunState::Queued
            } else {
                RunState::Errored
            };
            assert_eq!(expired[0].state, want, "{k} round {round}");
        }
        let ended = store.get(&run.id).await.unwrap().unwrap();
        let reason = ended.reason.unwrap();
        assert!(
            reason.starts_with("gave up after 2 lost attempts")
                && reason.contains("runner crashy")
                && reason.contains("max_attempts is 2"),
            "{k}: {reason}"
        );
        assert!(ended.finished_ms.is_some());
        assert!(store.claim(&c).await.unwrap().is_none());
        let outcomes: Vec<Option<String>> = store
            .attempts(&run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [Some("released"), Some("lost"), Some("lost")].map(|s| s.map(String::from))
        );

        let off = ExpiryPolicy {
            max_attempts: 3,
            requeue: false,
        };
        let run = store
            .enqueue(new("app", "main", RunKind::Branch))
            .await
            .unwrap();
        store.claim(&c).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let expired = store.expire_leases(&off).await.unwrap();
        assert_eq!(expired[0].id, run.id);
        assert_eq!(expired[0].state, RunState::Interrupted, "{k}");
        assert!(expired[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("requeue_interrupted is off"));
    }
}

/// Cancelling a queued run while a runner claims it, many times over: the
/// run is either cancelled and never claimed, or claimed and its cancel is
/// a request its worker sees at the next heartbeat. Never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_of_a_queued_run_racing_a_claim() {
    for f in Fixture::both().await {
        let k = f.kind;
        let claimers: Vec<Arc<dyn Store>> = if f.pg.is_some() {
            vec![f.second().await, f.second().await]
        } else {
            vec![f.store.clone(), f.store.clone()]
        };
        let (mut cancelled, mut requested) = (0, 0);
        for i in 0..200 {
            let run = f
                .store
                .enqueue(new("app", &format!("feature/{i}"), RunKind::Branch))
                .await
                .unwrap();
            let claims = claimers.iter().enumerate().map(|(n, store)| {
                let store = store.clone();
                let c = claimer(&format!("r{n}"), 30_000);
                tokio::spawn(async move { store.claim(&c).await.unwrap() })
            });
            let cancel = {
                let store = f.store.clone();
                let id = run.id.clone();
                tokio::spawn(async move { store.cancel(&id).await.unwrap() })
            };
            let claims: Vec<_> = futures::future::join_all(claims)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            let cancel = cancel.await.unwrap();
            let got: Vec<_> = claims.into_iter().flatten().collect();
            assert!(got.len() <= 1, "{k}: claimed twice");
            let now = f.store.get(&run.id).await.unwrap().unwrap();
            match (cancel, got.first()) {
                (Cancel::Cancelled, None) => {
                    cancelled += 1;
                    assert_eq!(now.state, RunState::Cancelled);
                    assert_eq!(now.attempt, 0, "{k}: a cancelled run was claimed");
                }
                (Cancel::Requested, Some((claimed, lease))) => {
                    requested += 1;
                    assert_eq!(claimed.id, run.id);
                    assert_eq!(
                        f.store
                            .heartbeat(lease, Duration::from_secs(30), None)
                            .await
                            .unwrap(),
                        Heartbeat::Held {
                            cancel_requested: true
                        },
                        "{k}"
                    );
                    f.store
                        .finish(lease, &ending(RunState::Cancelled, "cancelled"), None)
                        .await
                        .unwrap();
                }
                other => panic!("{k}: cancel and claim both won: {other:?}"),
            }
        }
        eprintln!("{k}: 200 races: {cancelled} cancelled before a claim, {requested} claimed first (cancel requested)");
        assert_eq!(f.store.count(RunState::Queued).await.unwrap(), 0);
        assert_eq!(
            f.store.cancel("no-such-run").await.unwrap(),
            Cancel::NotFound
        );
    }
}

/// Three runners claiming at once from one PostgreSQL queue: every run is
/// claimed exactly once (SKIP LOCKED), and never two candidates of one
/// repository at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_postgres_take_each_run_once() {
    let f = Fixture::postgres().await;
    for i in 0..60 {
        let kind = if i % 3 == 0 {
            RunKind::Candidate
        } else {
            RunKind::Branch
        };
        f.store
            .enqueue(new(
                if i % 2 == 0 { "app" } else { "lib" },
                &format!("ready/{i}"),
                kind,
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for n in 0..3 {
        let store = f.second().await;
        tasks.push(tokio::spawn(async move {
            let c = claimer(&format!("r{n}"), 30_000);
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 50 {
                match store.claim(&c).await.unwrap() {
                    Some((run, lease)) => {
                        idle = 0;
                        // Candidates: nobody else runs one of this repository.
                        if run.kind == RunKind::Candidate {
                            let running = store
                                .list(&RunFilter {
                                    repo: Some(run.repo.clone()),
                                    state: Some(RunState::Running),
                                    limit: 1000,
                                    ..RunFilter::default()
                                })
                                .await
                                .unwrap();
                            let candidates = running
                                .iter()
                                .filter(|r| r.kind == RunKind::Candidate)
                                .count();
                            assert_eq!(candidates, 1, "two candidates of {} running", run.repo);
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        assert!(
                            store
                                .finish(&lease, &ending(RunState::Passed, "ok"), None)
                                .await
                                .unwrap()
                                .recorded
                        );
                        mine.push(run.id);
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(unique.len(), 60, "a run was claimed twice");
    assert_eq!(f.store.count(RunState::Passed).await.unwrap(), 60);
}

/// PostgreSQL wake-ups: a run queued by one runner's store wakes another's
/// subscribers (LISTEN/NOTIFY); a cancel request names the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifies_queue_changes_and_cancel_requests() {
    let f = Fixture::postgres().await;
    let other = f.second().await;
    let mut events = other.subscribe().expect("PostgreSQL tells");
    // The first event says the listener is connected.
    let first = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    assert_eq!(first.unwrap().unwrap(), StoreEvent::QueueChanged);
    let run = f
        .store
        .enqueue(new("app", "main", RunKind::Branch))
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert_eq!(woke.unwrap().unwrap(), StoreEvent::QueueChanged);
    let (_, lease) = f.store.claim(&claimer("r", 30_000)).await.unwrap().unwrap();
    // The claim itself may wake others; skip those.
    assert_eq!(other.cancel(&run.id).await.unwrap(), Cancel::Requested);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a cancel event")
            .unwrap();
        if event == StoreEvent::CancelRequested(run.id.clone()) {
            break;
        }
    }
    assert_eq!(
        f.store
            .heartbeat(&lease, Duration::from_secs(30), None)
            .await
            .unwrap(),
        Heartbeat::Held {
            cancel_requested: true
        }
    );
    assert!(f
        .store
        .describe()
        .starts_with("postgres://drydock@127.0.0.1:"));
    assert!(f.store.describe().ends_with("/runner"));
}

/// Runner names: a live runner elsewhere keeps its name; a runner whose
/// heartbeat is older than a lease, or one of the same host and state
/// folder (dead: it held the folder's lock), is taken over; the runs a dead
/// process of a runner held expire at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_names_are_unique_in_the_fleet() {
    for f in Fixture::both().await {
        let store = &f.store;
        let k = f.kind;
        let me = |owner: &str, host: &str| RunnerInfo {
            name: "build-1".into(),
            owner: owner.into(),
            host: host.into(),
            url: Some("http://127.0.0.1:1".into()),
            pid: Some(1),
            started_ms: 0,
            seen_ms: 0,
        };
        let lease = Duration::from_millis(500);
        assert!(store
            .register_runner(&me("o1", "h1:/s"), lease)
            .await
            .unwrap()
            .is_ok());
        let taken = store
            .register_runner(&me("o2", "h2:/s"), lease)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(taken.host, "h1:/s", "{k}");
        // Same host and folder: the previous process is dead; taken over.
        let run = store
            .enqueue(new("app", "main", RunKind::Branch))
            .await
            .unwrap();
        let old = drydock_runner::store::Claimer {
            runner: "build-1".into(),
            owner: "o1".into(),
            lease: Duration::from_secs(600),
        };
        store.claim(&old).await.unwrap().unwrap();
        assert!(store
            .register_runner(&me("o3", "h1:/s"), lease)
            .await
            .unwrap()
            .is_ok());
        assert!(!store.touch_runner("build-1", "o1").await.unwrap());
        assert!(store.touch_runner("build-1", "o3").await.unwrap());
        let mine = store.expire_runner("build-1", "o3").await.unwrap();
        assert_eq!(mine.len(), 1, "{k}");
        assert_eq!((mine[0].id.as_str(), mine[0].attempt), (run.id.as_str(), 1));
        let expired = store.expire_leases(&POLICY).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, run.id);
        // A silent runner elsewhere: its name is free after a lease.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(store
            .register_runner(&me("o4", "h2:/s"), lease)
            .await
            .unwrap()
            .is_ok());
        let runners = store.runners().await.unwrap();
        assert_eq!(runners.len(), 1);
        assert_eq!(runners[0].host, "h2:/s");
    }
}

/// A second runner on the same state folder is refused, saying which
/// process holds it; once the first goes, the folder is free.
#[test]
fn state_folder_lock_refuses_a_second_runner() {
    let dir = tempfile::tempdir().unwrap();
    let first = StateLock::acquire(dir.path()).unwrap();
    match StateLock::acquire(dir.path()) {
        Err(e @ StartError::Locked { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("is in use by another runner")
                    && text.contains(&format!("pid {}", std::process::id())),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(first);
    StateLock::acquire(dir.path()).unwrap();
}

/// A database made by the release before migrations (its schema and rows,
/// tests/fixtures/runner/store-0.1.0.sql) opens, is migrated with its data
/// kept, and the run it left `running` is reclaimed as its next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrates_the_release_schema_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.sqlite");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/runner/store-0.1.0.sql");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&std::fs::read_to_string(fixture).unwrap())
            .unwrap();
    }
    for _ in 0..2 {
        // Twice: migrating is idempotent.
        let p = path.clone();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&p))
            .await
            .unwrap()
            .unwrap();
        let runs = store
            .list(&RunFilter {
                limit: 100,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(runs.len(), 3);
        let passed = runs.iter().find(|r| r.state == RunState::Passed).unwrap();
        assert_eq!(passed.id, "20250101-120000-aaaaaaaa");
        assert_eq!(passed.summary.as_ref().unwrap().pipeline, "ci");
        assert_eq!(passed.attempt, 1);
        assert_eq!(
            store.head("app", "main").await.unwrap().as_deref(),
            Some("1111111111111111111111111111111111111111")
        );
        assert!(!store.first_delivery("github:d-1").await.unwrap());
    }
    let store = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .unwrap()
            .unwrap(),
    );
    let expired = store.expire_leases(&POLICY).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, "20250101-120100-bbbbbbbb");
    assert_eq!(expired[0].state, RunState::Queued);
    // The reclaimed run keeps its place in the queue, ahead of the queued one.
    let c = claimer("r", 30_000);
    let (first, _) = store.claim(&c).await.unwrap().unwrap();
    let (second, _) = store.claim(&c).await.unwrap().unwrap();
    assert_eq!(first.id, "20250101-120100-bbbbbbbb");
    assert_eq!(first.attempt, 2);
    assert_eq!(second.id, "20250101-120200-cccccccc");
    assert_eq!(second.attempt, 1);
}

/// Runners starting together on a fresh PostgreSQL database migrate it once
/// (advisory lock); a later start finds it current.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migrations_under_concurrent_starts() {
    let pg = tokio::task::block_in_place(Postgres::start);
    let url = tokio::task::block_in_place(|| pg.create_database("fresh"));
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
    });
    for r in futures::future::join_all(starts).await {
        r.unwrap().unwrap();
    }
    let store = PgStore::connect(&url).await.unwrap();
    store
        .enqueue(new("app", "main", RunKind::Branch))
        .await
        .unwrap();
    drop(store);
    let versions = tokio::task::block_in_place(|| {
        pg.psql(
            "fresh",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM refinery_schema_history",
        )
    });
    assert_eq!(versions, "1");
    tokio::task::block_in_place(move || drop(pg));
}

//! The runner's durable state: the run queue, the run history, the branch
//! heads already seen, the webhook deliveries already handled, and the
//! runners sharing them.
//!
//! [`Store`] is the interface the rest of the runner uses, with two
//! implementations: [`SqliteStore`] (the default: one machine, an embedded
//! database in the state folder, nothing to set up) and [`PgStore`]
//! (PostgreSQL: a fleet of runners on several machines sharing one queue).
//! Both have the same queue semantics:
//!
//! - **Claiming** a queued run sets its runner, owner (the runner process's
//!   instance token), attempt (+1) and lease expiry in one statement, and
//!   returns the [`Lease`], the fencing token of every later write of that
//!   attempt. Candidates of one repository are claimed one at a time, in
//!   queue order, across the whole fleet.
//! - A **heartbeat** extends the lease while the run lives and carries its
//!   live progress; it says when a cancel was requested, or when the lease
//!   was lost (the run was reclaimed).
//! - A run whose lease **expired** (its runner died or lost the store) is
//!   queued again by whichever runner sees it first ([`Store::expire_leases`])
//!   and claimed as its next attempt; after `max_attempts` attempts lost this
//!   way it ends `errored` with the reason.
//! - **Finishing** (and recording the tested commit) is fenced by owner and
//!   attempt: a stale worker's writes change nothing.
//! - **Cancelling** a queued run is one conditional update; a running run
//!   gets a persisted request that its worker sees at its next heartbeat.
//!
//! Store calls never block the async runtime: SQLite calls run on the
//! blocking pool (`spawn_blocking`), PostgreSQL has an async driver
//! (`tokio-postgres` with a `deadpool` pool). Both schemas are versioned
//! with `refinery` migrations (`migrations/sqlite`, `migrations/postgres` in
//! this crate), applied when the store is opened.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use drydock_core::events::{Status, TestCounts};
use serde::{Deserialize, Serialize};

/// A store error: the database could not be opened, migrated, read or
/// written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite.
    #[error("run database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL.
    #[error("run database (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("run database (PostgreSQL): no connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A schema migration failed.
    #[error("run database: migrating the schema failed: {0}")]
    Migration(#[from] refinery::Error),
    /// The task running a SQLite call died.
    #[error("run database: the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Anything else, said in words (a bad store address, a schema newer
    /// than this runner).
    #[error("run database: {0}")]
    Other(String),
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Every tier passed.
    Passed,
    /// A step failed or timed out.
    Failed,
    /// It could not run: unreachable repository, no or invalid pipeline file,
    /// engine trouble, an internal error, or every attempt was lost.
    Errored,
    /// Its runner stopped (or died) while it ran and it was not queued again
    /// (`requeue_interrupted: false`).
    Interrupted,
    /// Cancelled through the API.
    Cancelled,
}

impl RunState {
    /// Every state, in the order above.
    pub const ALL: [RunState; 7] = [
        RunState::Queued,
        RunState::Running,
        RunState::Passed,
        RunState::Failed,
        RunState::Errored,
        RunState::Interrupted,
        RunState::Cancelled,
    ];

    /// The lower-case word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
            RunState::Errored => "errored",
            RunState::Interrupted => "interrupted",
            RunState::Cancelled => "cancelled",
        }
    }

    /// The state a stored word names (an unknown word reads as `errored`).
    pub fn parse(s: &str) -> RunState {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .unwrap_or(RunState::Errored)
    }

    /// True once the run has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A commit of a watched branch, run as is.
    Branch,
    /// A candidate for the central branch (merge queue): tested on top of the
    /// central branch, which moves to the tested commit when it passes.
    Candidate,
}

impl RunKind {
    fn as_str(self) -> &'static str {
        match self {
            RunKind::Branch => "branch",
            RunKind::Candidate => "candidate",
        }
    }

    fn parse(s: &str) -> RunKind {
        if s == "candidate" {
            RunKind::Candidate
        } else {
            RunKind::Branch
        }
    }
}

/// One tier of a finished (or running) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierSummary {
    /// Tier name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Wall time.
    pub duration_ms: u64,
    /// Test counts.
    pub tests: TestCounts,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Tier name.
    pub tier: String,
    /// Step name.
    pub step: String,
    /// How it ended.
    pub status: Status,
    /// Wall time.
    pub duration_ms: u64,
    /// JUnit counts, when it had a report.
    pub tests: Option<TestCounts>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a run did, tier by tier and step by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Tiers in order.
    pub tiers: Vec<TierSummary>,
    /// Steps in the order they finished.
    pub steps: Vec<StepSummary>,
    /// Test counts over the run.
    pub tests: TestCounts,
    /// Failed test cases named by JUnit reports (`tier/step: case`).
    pub failed_tests: Vec<String>,
    /// Tags applied by a release (deploy on green).
    pub released: Vec<String>,
    /// What the deploy after the release did (deploy on green with a
    /// deploy config); `None` when nothing was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySummary>,
}

impl From<&drydock_core::report::Summary> for RunSummary {
    /// The live summary of a run from the summary core folds from its
    /// events (the one builder, [`drydock_core::report::SummaryBuilder`]):
    /// steps that ran in the order they ended, then the skipped ones; a
    /// step's error followed by its `cause:` lines. No deploy yet.
    fn from(s: &drydock_core::report::Summary) -> Self {
        RunSummary {
            pipeline: s.pipeline.clone(),
            tiers: s
                .tiers
                .iter()
                .map(|t| TierSummary {
                    name: t.name.clone(),
                    status: t.status,
                    duration_ms: t.duration_ms,
                    tests: t.tests,
                })
                .collect(),
            steps: s
                .steps
                .iter()
                .map(|r| StepSummary {
                    tier: r.tier.clone(),
                    step: r.step.clone(),
                    status: r.status,
                    duration_ms: r.duration_ms,
                    tests: r.tests,
                    error: r.error.clone().map(|e| {
                        std::iter::once(e)
                            .chain(r.cause.iter().map(|c| format!("cause: {c}")))
                            .collect::<Vec<_>>()
                            .join("\n")
                    }),
                })
                .chain(s.skipped.iter().map(|k| StepSummary {
                    tier: k.tier.clone(),
                    step: k.step.clone(),
                    status: Status::Skipped,
                    duration_ms: 0,
                    tests: None,
                    error: k.reason.clone(),
                }))
                .collect(),
            tests: s.tests,
            failed_tests: s.failed_tests.clone(),
            released: s.released.clone(),
            deploy: None,
        }
    }
}

/// The deploy a green run of the central branch made after releasing.
/// A failed deploy does not change the run's state (the tests passed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySummary {
    /// The channel deployed.
    pub channel: String,
    /// `live` (switched to the new version), `unchanged` (it was live
    /// already) or `failed` (not deployed; what ran before keeps serving).
    pub outcome: String,
    /// Why it failed; for `live`/`unchanged`, what went live where.
    pub reason: Option<String>,
    /// The channel's stable address.
    pub address: Option<String>,
    /// The ledger entry deployed (when the deploy ran).
    pub entry_id: Option<i64>,
    /// The app container serving (live / unchanged).
    pub container: Option<String>,
    /// Wall time of the deploy.
    pub duration_ms: u64,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Run id (also the `drydock.run` label of its first attempt's
    /// containers; see [`engine_run_id`]).
    pub id: String,
    /// Queue order.
    pub seq: i64,
    /// Repository name (from the configuration).
    pub repo: String,
    /// Branch the commit was seen on.
    pub branch: String,
    /// The commit.
    pub sha: String,
    /// Plain branch run or merge-queue candidate.
    pub kind: RunKind,
    /// Where it is.
    pub state: RunState,
    /// Why it ended the way it did (errors, gate decisions), or why it is
    /// queued again, for people.
    pub reason: Option<String>,
    /// What made it: `poll`, `webhook:github`, `rerun of …`, `retest after …`.
    pub trigger: String,
    /// The run this one repeats (a re-run, or a candidate's retest).
    pub retry_of: Option<String>,
    /// Milliseconds since the epoch (PostgreSQL: by the database's clock).
    pub created_ms: i64,
    /// When a worker took it (the latest attempt).
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The central branch's commit a candidate was tested on top of.
    pub base_sha: Option<String>,
    /// The commit actually tested (a candidate merged onto the central branch).
    pub tested_sha: Option<String>,
    /// Tiers, steps and tests (live progress while it runs).
    pub summary: Option<RunSummary>,
    /// The runner that runs it, or ran its latest attempt (configured
    /// `name`).
    pub runner: Option<String>,
    /// Attempts so far (claims): 0 while never claimed.
    pub attempt: u32,
    /// Attempts lost: their runner stopped renewing the lease.
    pub lost: u32,
    /// Until when the current attempt's lease holds (running runs).
    pub lease_until_ms: Option<i64>,
    /// The current attempt's last heartbeat.
    pub heartbeat_ms: Option<i64>,
    /// A cancel was requested through the API while it ran.
    pub cancel_requested: bool,
    /// The runner process holding the lease (its instance token).
    #[serde(skip)]
    pub owner: Option<String>,
}

/// A run to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Repository name.
    pub repo: String,
    /// Branch.
    pub branch: String,
    /// Commit.
    pub sha: String,
    /// Kind.
    pub kind: RunKind,
    /// What made it.
    pub trigger: String,
    /// The run it repeats.
    pub retry_of: Option<String>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this repository.
    pub repo: Option<String>,
    /// Only this branch.
    pub branch: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Only finished runs.
    pub finished: bool,
    /// At most this many (newest first); 0 means 100.
    pub limit: usize,
}

/// The fencing token of one attempt of a run: every write of the worker
/// running it names it, and changes nothing once the run was reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// The runner process holding it (instance token).
    pub owner: String,
    /// The attempt (1 for the first claim).
    pub attempt: u32,
}

/// The runner claiming runs.
#[derive(Debug, Clone)]
pub struct Claimer {
    /// Runner name (shown).
    pub runner: String,
    /// This process's instance token.
    pub owner: String,
    /// How long a lease holds without a heartbeat.
    pub lease: Duration,
}

/// What becomes of runs whose lease expired.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    /// Attempts a run may lose before it ends `errored` (at least 1).
    pub max_attempts: u32,
    /// Queue an expired run again (otherwise it ends `interrupted`).
    pub requeue: bool,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is held (and was extended).
    Held {
        /// A cancel was requested through the API.
        cancel_requested: bool,
    },
    /// The run is no longer this attempt's: it was reclaimed or ended.
    Lost,
}

/// How a run ended, as its worker records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// The final state.
    pub state: RunState,
    /// Why (for people).
    pub reason: Option<String>,
    /// Tiers, steps and tests.
    pub summary: Option<RunSummary>,
}

/// What a fenced finish did.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The run ended as asked (false: the lease was lost; nothing changed).
    pub recorded: bool,
    /// The run queued in the same transaction (a candidate's retest).
    pub queued: Option<Run>,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The run was queued: it is cancelled and will never run.
    Cancelled,
    /// The run is running: its worker stops it at its next heartbeat.
    Requested,
    /// The run had already ended.
    Ended,
    /// No such run.
    NotFound,
}

/// One claim of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The run.
    pub run_id: String,
    /// 1, 2, …
    pub attempt: u32,
    /// The runner that claimed it.
    pub runner: String,
    /// When.
    pub claimed_ms: i64,
    /// When it ended (finished, lost or released).
    pub ended_ms: Option<i64>,
    /// How: a run state word (`passed`, …), `lost` (the lease expired) or
    /// `released` (the runner stopped and queued it again); `None` while it
    /// runs.
    pub outcome: Option<String>,
}

/// A runner sharing the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    /// Its name (unique in the fleet).
    pub name: String,
    /// The live process's instance token.
    #[serde(skip)]
    pub owner: String,
    /// Where it runs: `hostname:state folder`.
    pub host: String,
    /// Its HTTP address (where its run logs are served).
    pub url: Option<String>,
    /// Its process id.
    pub pid: Option<u32>,
    /// When this process registered.
    pub started_ms: i64,
    /// Its last heartbeat.
    pub seen_ms: i64,
}

/// What a store tells its runners as it happens (PostgreSQL's
/// `LISTEN/NOTIFY`; SQLite has one runner, which needs no telling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A run may have become claimable: try to claim.
    QueueChanged,
    /// A cancel was requested for this running run.
    CancelRequested(String),
}

/// The runner's durable state (see the module documentation for the queue
/// semantics). Every method is async and never blocks the runtime.
#[async_trait]
pub trait Store: Send + Sync {
    /// What the store is, for people: `sqlite <path>` or
    /// `postgres://user@host:port/db` (never a password).
    fn describe(&self) -> String;

    /// Queues a run; returns it.
    async fn enqueue(&self, new: NewRun) -> StoreResult<Run>;

    /// Records the head of a branch and, when it changed (a new commit),
    /// queues `new` in the same transaction; returns the queued run.
    async fn observe_head(&self, new: NewRun) -> StoreResult<Option<Run>>;

    /// Claims the oldest claimable queued run (candidates of a repository
    /// one at a time, in queue order, fleet-wide) for `claimer`: state
    /// `running`, runner, owner, attempt + 1 and lease expiry set in one
    /// statement. Returns the run and the attempt's [`Lease`].
    async fn claim(&self, claimer: &Claimer) -> StoreResult<Option<(Run, Lease)>>;

    /// Runs whose lease expired: queued again (attempts lost + 1), or ended
    /// `errored` once `max_attempts` attempts were lost, or `interrupted`
    /// when re-queuing is off. Returns the runs changed, as they are now.
    async fn expire_leases(&self, policy: &ExpiryPolicy) -> StoreResult<Vec<Run>>;

    /// Extends the lease by `lease` from now and records live progress
    /// (when given). Fenced by the lease.
    async fn heartbeat(
        &self,
        lease: &Lease,
        duration: Duration,
        progress: Option<&RunSummary>,
    ) -> StoreResult<Heartbeat>;

    /// Records the commit a candidate is tested as (fenced; false when the
    /// lease was lost).
    async fn set_tested(
        &self,
        lease: &Lease,
        base_sha: &str,
        tested_sha: &str,
    ) -> StoreResult<bool>;

    /// Ends a running run (fenced) and, in the same transaction, queues
    /// `then` (a candidate's retest).
    async fn finish(
        &self,
        lease: &Lease,
        ending: &Ending,
        then: Option<NewRun>,
    ) -> StoreResult<Finished>;

    /// The runner is stopping: the run goes back to the queue, in its place
    /// (fenced; the attempt does not count as lost).
    async fn release(&self, lease: &Lease, reason: &str) -> StoreResult<bool>;

    /// Cancels a queued run (one conditional update), or records a cancel
    /// request for a running one.
    async fn cancel(&self, id: &str) -> StoreResult<Cancel>;

    /// One run.
    async fn get(&self, id: &str) -> StoreResult<Option<Run>>;

    /// Runs, newest first.
    async fn list(&self, filter: &RunFilter) -> StoreResult<Vec<Run>>;

    /// How many runs are in a state.
    async fn count(&self, state: RunState) -> StoreResult<u64>;

    /// The attempts of a run, in order.
    async fn attempts(&self, id: &str) -> StoreResult<Vec<Attempt>>;

    /// The last head seen.
    async fn head(&self, repo: &str, branch: &str) -> StoreResult<Option<String>>;

    /// Records a webhook delivery id; false when it was seen before (a replay).
    async fn first_delivery(&self, id: &str) -> StoreResult<bool>;

    /// Whether a webhook delivery id was recorded.
    async fn delivery_seen(&self, id: &str) -> StoreResult<bool>;

    /// Registers this runner process under its name. Refused (`Err` with
    /// the runner holding the name) while another live process — one on
    /// another host or state folder that beat less than `lease` ago — holds
    /// it. A previous process of the same host and state folder is dead
    /// (the state folder is locked), so its name is taken over.
    async fn register_runner(
        &self,
        me: &RunnerInfo,
        lease: Duration,
    ) -> StoreResult<Result<(), RunnerInfo>>;

    /// This runner's heartbeat; false when another process took its name.
    async fn touch_runner(&self, name: &str, owner: &str) -> StoreResult<bool>;

    /// Runs still held by a previous (dead) process of this runner: their
    /// leases expire now, so that they are reclaimed at once. Returns them
    /// (as they were: their `attempt` is the one the dead process ran).
    async fn expire_runner(&self, name: &str, owner: &str) -> StoreResult<Vec<Run>>;

    /// The runners sharing the store, by name.
    async fn runners(&self) -> StoreResult<Vec<RunnerInfo>>;

    /// Events as they happen, when the store can tell (PostgreSQL);
    /// `None`: poll.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>>;
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh run id: `YYYYMMDD-HHMMSS-xxxxxxxx` (UTC, random hex), valid as
/// a label value and an image tag.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        &drydock_core::run::new_run_id()[..15],
        random_hex(8)
    )
}

/// `n` random hex digits (time, a counter and the process id, hashed).
pub fn random_hex(n: usize) -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let digest = hex::encode(h.finalize());
    digest[..n.min(digest.len())].to_string()
}

/// The run id an attempt uses on the engine (its containers' `drydock.run`
/// label and names): the run id for the first attempt, `<run id>-a<N>`
/// after, so that a reclaimed run never shares container names or labels
/// with a lost attempt still on the same engine.
pub fn engine_run_id(run_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        run_id.to_string()
    } else {
        format!("{run_id}-a{attempt}")
    }
}

/// What an expired run becomes, and why: queued again, or ended after its
/// last allowed attempt, or ended because re-queuing is off. Shared by both
/// stores so that they say the same.
pub(crate) fn expiry(run: &Run, policy: &ExpiryPolicy) -> (RunState, String) {
    let lost = run.lost + 1;
    let who = run.runner.as_deref().unwrap_or("?");
    if lost >= policy.max_attempts.max(1) {
        (
            RunState::Errored,
            format!(
                "gave up after {lost} lost attempt{s}: each time the runner running it \
                 stopped renewing its lease (last: runner {who}, attempt {attempt}); \
                 max_attempts is {max}",
                s = if lost == 1 { "" } else { "s" },
                attempt = run.attempt,
                max = policy.max_attempts,
            ),
        )
    } else if !policy.requeue {
        (
            RunState::Interrupted,
            format!(
                "interrupted: runner {who} stopped renewing its lease during attempt {}; \
                 not queued again (requeue_interrupted is off)",
                run.attempt
            ),
        )
    } else {
        (
            RunState::Queued,
            format!(
                "attempt {} lost: runner {who} stopped renewing its lease; queued again \
                 ({lost} of {} attempts lost)",
                run.attempt, policy.max_attempts
            ),
        )
    }
}

fn summary_json(summary: Option<&RunSummary>) -> Option<String> {
    summary.map(|s| serde_json::to_string(s).unwrap_or_default())
}

fn parse_summary(text: Option<String>) -> Option<RunSummary> {
    text.and_then(|s| serde_json::from_str(&s).ok())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(lost: u32) -> Run {
        Run {
            id: "r".into(),
            seq: 1,
            repo: "app".into(),
            branch: "main".into(),
            sha: "a".repeat(40),
            kind: RunKind::Branch,
            state: RunState::Running,
            reason: None,
            trigger: "test".into(),
            retry_of: None,
            created_ms: 0,
            started_ms: Some(0),
            finished_ms: None,
            base_sha: None,
            tested_sha: None,
            summary: None,
            runner: Some("b1".into()),
            attempt: lost + 1,
            lost,
            lease_until_ms: Some(0),
            heartbeat_ms: Some(0),
            cancel_requested: false,
            owner: Some("b1#x".into()),
        }
    }

    #[test]
    fn what_an_expired_lease_becomes() {
        let policy = |max_attempts, requeue| ExpiryPolicy {
            max_attempts,
            requeue,
        };
        let cases = [
            (
                0,
                policy(3, true),
                RunState::Queued,
                "attempt 1 lost: runner b1",
            ),
            (
                1,
                policy(3, true),
                RunState::Queued,
                "(2 of 3 attempts lost)",
            ),
            (
                2,
                policy(3, true),
                RunState::Errored,
                "gave up after 3 lost attempts",
            ),
            (
                0,
                policy(1, true),
                RunState::Errored,
                "gave up after 1 lost attempt:",
            ),
            (
                0,
                policy(0, true),
                RunState::Errored,
                "gave up after 1 lost attempt:",
            ),
            (
                0,
                policy(3, false),
                RunState::Interrupted,
                "requeue_interrupted is off",
            ),
        ];
        for (lost, policy, state, text) in cases {
            let (got, reason) = expiry(&running(lost), &policy);
            assert_eq!(got, state, "{lost} {policy:?}");
            assert!(reason.contains(text), "{reason}");
        }
    }

    #[test]
    fn engine_ids_per_attempt() {
        assert_eq!(
            engine_run_id("20260101-000000-abcd1234", 1),
            "20260101-000000-abcd1234"
        );
        assert_eq!(
            engine_run_id("20260101-000000-abcd1234", 0),
            "20260101-000000-abcd1234"
        );
        assert_eq!(
            engine_run_id("20260101-000000-abcd1234", 3),
            "20260101-000000-abcd1234-a3"
        );
        let id = new_run_id();
        assert_eq!(id.len(), 24, "{id}");
        assert_ne!(id, new_run_id());
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), s);
        }
    }
}

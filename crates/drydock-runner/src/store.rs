//! The runner's durable state: the run queue, the run history, the branch
//! heads already seen and the webhook deliveries already handled.
//!
//! [`Store`] is the small interface the rest of the runner uses;
//! [`SqliteStore`] implements it on an embedded SQLite database in WAL mode.
//! Every state change is one transaction, so a runner killed at any moment
//! finds on restart exactly the runs that were queued or running.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use drydock_core::events::{Status, TestCounts};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// A store error (the database could not be read or written).
#[derive(Debug, thiserror::Error)]
#[error("run database: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

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
    /// engine trouble.
    Errored,
    /// The runner stopped (or died) while it ran.
    Interrupted,
    /// Cancelled through the API.
    Cancelled,
}

impl RunState {
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

    fn parse(s: &str) -> RunState {
        match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "passed" => RunState::Passed,
            "failed" => RunState::Failed,
            "interrupted" => RunState::Interrupted,
            "cancelled" => RunState::Cancelled,
            _ => RunState::Errored,
        }
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
    /// Run id (also the `drydock.run` label of its containers).
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
    /// Why it ended the way it did (errors, gate decisions), for people.
    pub reason: Option<String>,
    /// What made it: `poll`, `webhook:github`, `rerun of …`, `restart after …`.
    pub trigger: String,
    /// The run this one repeats (re-queued after an interruption, re-run, retest).
    pub retry_of: Option<String>,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    /// When a worker took it.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The central branch's commit a candidate was tested on top of.
    pub base_sha: Option<String>,
    /// The commit actually tested (a candidate merged onto the central branch).
    pub tested_sha: Option<String>,
    /// Tiers, steps and tests.
    pub summary: Option<RunSummary>,
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

/// The runner's durable state.
pub trait Store: Send + Sync {
    /// Queues a run; returns it.
    fn enqueue(&self, new: NewRun) -> StoreResult<Run>;
    /// Moves the oldest runnable queued run to `running` and returns it.
    /// Candidate runs of a repository run one at a time, in queue order.
    fn claim_next(&self) -> StoreResult<Option<Run>>;
    /// Records the commit a candidate is tested as.
    fn set_tested(&self, id: &str, base_sha: &str, tested_sha: &str) -> StoreResult<()>;
    /// Records the summary of a running run (progress) without ending it.
    fn set_summary(&self, id: &str, summary: &RunSummary) -> StoreResult<()>;
    /// Ends a run (only a queued or running run changes).
    fn finish(
        &self,
        id: &str,
        state: RunState,
        reason: Option<&str>,
        summary: Option<&RunSummary>,
    ) -> StoreResult<bool>;
    /// Replaces the reason of a run.
    fn set_reason(&self, id: &str, reason: &str) -> StoreResult<()>;
    /// One run.
    fn get(&self, id: &str) -> StoreResult<Option<Run>>;
    /// Runs, newest first.
    fn list(&self, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// How many runs are in a state.
    fn count(&self, state: RunState) -> StoreResult<u64>;
    /// At start-up: marks every `running` run `interrupted` and returns them.
    fn interrupt_running(&self, reason: &str) -> StoreResult<Vec<Run>>;
    /// Records the head of a branch and, when it changed (a new commit),
    /// queues `new` in the same transaction; returns the queued run.
    fn observe_head(&self, new: NewRun) -> StoreResult<Option<Run>>;
    /// The last head seen.
    fn head(&self, repo: &str, branch: &str) -> StoreResult<Option<String>>;
    /// Records a webhook delivery id; false when it was seen before (a replay).
    fn first_delivery(&self, id: &str) -> StoreResult<bool>;
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
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = drydock_core::run::new_run_id();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let digest = hex::encode(h.finalize());
    // drydock-core's id is `YYYYMMDD-HHMMSS-xxxx`: keep the time, widen the random part.
    format!("{}-{}", &base[..15], &digest[..8])
}

/// [`Store`] on SQLite (WAL, busy timeout).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    trigger TEXT NOT NULL,
    retry_of TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    base_sha TEXT,
    tested_sha TEXT,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state, seq);
CREATE INDEX IF NOT EXISTS runs_branch ON runs(repo, branch, seq);
CREATE TABLE IF NOT EXISTS heads (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repo, branch)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
);
";

const COLUMNS: &str = "seq, id, repo, branch, sha, kind, state, reason, trigger, retry_of, \
                       created_ms, started_ms, finished_ms, base_sha, tested_sha, summary";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    let summary: Option<String> = row.get(15)?;
    Ok(Run {
        seq: row.get(0)?,
        id: row.get(1)?,
        repo: row.get(2)?,
        branch: row.get(3)?,
        sha: row.get(4)?,
        kind: if row.get::<_, String>(5)? == "candidate" {
            RunKind::Candidate
        } else {
            RunKind::Branch
        },
        state: RunState::parse(&row.get::<_, String>(6)?),
        reason: row.get(7)?,
        trigger: row.get(8)?,
        retry_of: row.get(9)?,
        created_ms: row.get(10)?,
        started_ms: row.get(11)?,
        finished_ms: row.get(12)?,
        base_sha: row.get(13)?,
        tested_sha: row.get(14)?,
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

fn insert(conn: &Connection, new: &NewRun) -> StoreResult<String> {
    let id = new_run_id();
    conn.execute(
        "INSERT INTO runs (id, repo, branch, sha, kind, state, trigger, retry_of, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)",
        params![
            id,
            new.repo,
            new.branch,
            new.sha,
            new.kind.as_str(),
            new.trigger,
            new.retry_of,
            now_ms()
        ],
    )?;
    Ok(id)
}

impl SqliteStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_with(conn: &Connection, id: &str) -> StoreResult<Option<Run>> {
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?)
    }
}

impl Store for SqliteStore {
    fn enqueue(&self, new: NewRun) -> StoreResult<Run> {
        let conn = self.conn();
        let id = insert(&conn, &new)?;
        Ok(Self::get_with(&conn, &id)?.expect("just inserted"))
    }

    fn claim_next(&self) -> StoreResult<Option<Run>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let next: Option<String> = tx
            .query_row(
                "SELECT id FROM runs AS q WHERE state = 'queued' AND NOT (
                     kind = 'candidate' AND EXISTS (
                         SELECT 1 FROM runs AS r WHERE r.repo = q.repo AND r.kind = 'candidate'
                         AND (r.state = 'running' OR (r.state = 'queued' AND r.seq < q.seq))))
                 ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = next else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE runs SET state = 'running', started_ms = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        let run = Self::get_with(&tx, &id)?;
        tx.commit()?;
        Ok(run)
    }

    fn set_tested(&self, id: &str, base_sha: &str, tested_sha: &str) -> StoreResult<()> {
        self.conn().execute(
            "UPDATE runs SET base_sha = ?2, tested_sha = ?3 WHERE id = ?1",
            params![id, base_sha, tested_sha],
        )?;
        Ok(())
    }

    fn set_summary(&self, id: &str, summary: &RunSummary) -> StoreResult<()> {
        let json = serde_json::to_string(summary).unwrap_or_default();
        self.conn().execute(
            "UPDATE runs SET summary = ?2 WHERE id = ?1",
            params![id, json],
        )?;
        Ok(())
    }

    fn finish(
        &self,
        id: &str,
        state: RunState,
        reason: Option<&str>,
        summary: Option<&RunSummary>,
    ) -> StoreResult<bool> {
        let json = summary.map(|s| serde_json::to_string(s).unwrap_or_default());
        let changed = self.conn().execute(
            "UPDATE runs SET state = ?2, reason = COALESCE(?3, reason),
                 summary = COALESCE(?4, summary), finished_ms = ?5
             WHERE id = ?1 AND state IN ('queued', 'running')",
            params![id, state.as_str(), reason, json, now_ms()],
        )?;
        Ok(changed > 0)
    }

    fn set_reason(&self, id: &str, reason: &str) -> StoreResult<()> {
        self.conn().execute(
            "UPDATE runs SET reason = ?2 WHERE id = ?1",
            params![id, reason],
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> StoreResult<Option<Run>> {
        Self::get_with(&self.conn(), id)
    }

    fn list(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let conn = self.conn();
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs
             WHERE (?1 IS NULL OR repo = ?1) AND (?2 IS NULL OR branch = ?2)
               AND (?3 IS NULL OR state = ?3)
               AND (?4 = 0 OR state NOT IN ('queued', 'running'))
             ORDER BY seq DESC LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.repo,
                filter.branch,
                filter.state.map(RunState::as_str),
                filter.finished as i64,
                limit as i64
            ],
            from_row,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn count(&self, state: RunState) -> StoreResult<u64> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM runs WHERE state = ?1",
            [state.as_str()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    fn interrupt_running(&self, reason: &str) -> StoreResult<Vec<Run>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ids: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT id FROM runs WHERE state = 'running' ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE runs SET state = 'interrupted', reason = ?1, finished_ms = ?2
             WHERE state = 'running'",
            params![reason, now_ms()],
        )?;
        let mut runs = Vec::new();
        for id in ids {
            runs.extend(Self::get_with(&tx, &id)?);
        }
        tx.commit()?;
        Ok(runs)
    }

    fn observe_head(&self, new: NewRun) -> StoreResult<Option<Run>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "INSERT INTO heads (repo, branch, sha) VALUES (?1, ?2, ?3)
             ON CONFLICT(repo, branch) DO UPDATE SET sha = excluded.sha WHERE sha <> excluded.sha",
            params![new.repo, new.branch, new.sha],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let id = insert(&tx, &new)?;
        let run = Self::get_with(&tx, &id)?;
        tx.commit()?;
        Ok(run)
    }

    fn head(&self, repo: &str, branch: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT sha FROM heads WHERE repo = ?1 AND branch = ?2",
                [repo, branch],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn first_delivery(&self, id: &str) -> StoreResult<bool> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO deliveries (id, received_ms) VALUES (?1, ?2)",
            params![id, now_ms()],
        )?;
        Ok(inserted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn queue_order_candidates_one_at_a_time_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        let c1 = store
            .enqueue(new("app", "ready/a", RunKind::Candidate))
            .unwrap();
        let c2 = store
            .enqueue(new("app", "ready/b", RunKind::Candidate))
            .unwrap();
        let b = store.enqueue(new("app", "main", RunKind::Branch)).unwrap();
        assert_eq!(store.claim_next().unwrap().unwrap().id, c1.id);
        // c2 waits for c1: the branch run goes first.
        assert_eq!(store.claim_next().unwrap().unwrap().id, b.id);
        assert!(store.claim_next().unwrap().is_none());
        assert!(store.finish(&c1.id, RunState::Passed, None, None).unwrap());
        assert!(!store.finish(&c1.id, RunState::Failed, None, None).unwrap());
        assert_eq!(store.claim_next().unwrap().unwrap().id, c2.id);
        drop(store);

        // Reopened: the running runs are found and interrupted.
        let store = SqliteStore::open(&path).unwrap();
        let interrupted = store.interrupt_running("runner restarted").unwrap();
        let ids: Vec<_> = interrupted.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [c2.id.as_str(), b.id.as_str()]);
        assert_eq!(
            store.get(&b.id).unwrap().unwrap().state,
            RunState::Interrupted
        );
        assert_eq!(store.count(RunState::Running).unwrap(), 0);

        let mut seen = new("app", "main", RunKind::Branch);
        assert!(store.observe_head(seen.clone()).unwrap().is_some());
        assert!(store.observe_head(seen.clone()).unwrap().is_none());
        seen.sha = "b".repeat(40);
        assert!(store.observe_head(seen).unwrap().is_some());
        assert!(store.first_delivery("d1").unwrap());
        assert!(!store.first_delivery("d1").unwrap());
        let listed = store
            .list(&RunFilter {
                branch: Some("ready/b".into()),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1);
    }
}

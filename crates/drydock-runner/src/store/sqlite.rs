//! [`Store`] on an embedded SQLite database (WAL, busy timeout): the
//! default, for one runner on one machine.
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool
//! (`spawn_blocking`), so the async runtime never waits on the disk. Every
//! change that reads before it writes is one `BEGIN IMMEDIATE` transaction
//! (the write lock is taken first, so two writers never both read a stale
//! queue), and the claim itself is one `UPDATE … RETURNING`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::*;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// [`Store`] on SQLite.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const COLUMNS: &str = "seq, id, repo, branch, sha, kind, state, reason, trigger, retry_of, \
                       created_ms, started_ms, finished_ms, base_sha, tested_sha, summary, \
                       runner, owner, attempt, lost, lease_until_ms, heartbeat_ms, cancel_requested";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        seq: row.get(0)?,
        id: row.get(1)?,
        repo: row.get(2)?,
        branch: row.get(3)?,
        sha: row.get(4)?,
        kind: RunKind::parse(&row.get::<_, String>(5)?),
        state: RunState::parse(&row.get::<_, String>(6)?),
        reason: row.get(7)?,
        trigger: row.get(8)?,
        retry_of: row.get(9)?,
        created_ms: row.get(10)?,
        started_ms: row.get(11)?,
        finished_ms: row.get(12)?,
        base_sha: row.get(13)?,
        tested_sha: row.get(14)?,
        summary: parse_summary(row.get(15)?),
        runner: row.get(16)?,
        owner: row.get(17)?,
        attempt: row.get::<_, i64>(18)?.max(0) as u32,
        lost: row.get::<_, i64>(19)?.max(0) as u32,
        lease_until_ms: row.get(20)?,
        heartbeat_ms: row.get(21)?,
        cancel_requested: row.get::<_, i64>(22)? != 0,
    })
}

fn get_with(conn: &Connection, id: &str) -> rusqlite::Result<Option<Run>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

fn insert(conn: &Connection, new: &NewRun) -> rusqlite::Result<Run> {
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
    get_with(conn, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The fence of every write of a worker: the run is running, held by this
/// owner, in this attempt.
const FENCE: &str = "id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 'running'";

impl SqliteStore {
    /// Opens (creating) the database at `path` and migrates its schema to
    /// this version (a database of the first release, which had no
    /// migration history, included). Blocking: call it before the runtime
    /// serves, or from `spawn_blocking`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        embedded::migrations::runner().run(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await?;
        Ok(result?)
    }
}

fn immediate(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    async fn enqueue(&self, new: NewRun) -> StoreResult<Run> {
        self.call(move |conn| insert(conn, &new)).await
    }

    async fn observe_head(&self, new: NewRun) -> StoreResult<Option<Run>> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx.execute(
                "INSERT INTO heads (repo, branch, sha) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repo, branch) DO UPDATE SET sha = excluded.sha
                 WHERE sha <> excluded.sha",
                params![new.repo, new.branch, new.sha],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let run = insert(&tx, &new)?;
            tx.commit()?;
            Ok(Some(run))
        })
        .await
    }

    async fn claim(&self, claimer: &Claimer) -> StoreResult<Option<(Run, Lease)>> {
        let claimer = claimer.clone();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let now = now_ms();
            let run = tx
                .query_row(
                    &format!(
                        "UPDATE runs SET state = 'running', runner = ?1, owner = ?2,
                             attempt = attempt + 1, lease_until_ms = ?3, heartbeat_ms = ?4,
                             started_ms = ?4, cancel_requested = 0
                         WHERE id = (
                             SELECT id FROM runs AS q WHERE q.state = 'queued' AND NOT (
                                 q.kind = 'candidate' AND EXISTS (
                                     SELECT 1 FROM runs AS r
                                     WHERE r.repo = q.repo AND r.kind = 'candidate'
                                       AND (r.state = 'running'
                                            OR (r.state = 'queued' AND r.seq < q.seq))))
                             ORDER BY q.seq LIMIT 1)
                           AND state = 'queued'
                         RETURNING {COLUMNS}"
                    ),
                    params![
                        claimer.runner,
                        claimer.owner,
                        now + millis(claimer.lease),
                        now
                    ],
                    from_row,
                )
                .optional()?;
            let Some(run) = run else {
                return Ok(None);
            };
            tx.execute(
                "INSERT OR REPLACE INTO attempts (run_id, attempt, runner, owner, claimed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.id, run.attempt, claimer.runner, claimer.owner, now],
            )?;
            tx.commit()?;
            let lease = Lease {
                run_id: run.id.clone(),
                owner: claimer.owner.clone(),
                attempt: run.attempt,
            };
            Ok(Some((run, lease)))
        })
        .await
    }

    async fn expire_leases(&self, policy: &ExpiryPolicy) -> StoreResult<Vec<Run>> {
        let policy = *policy;
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let now = now_ms();
            let expired: Vec<Run> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {COLUMNS} FROM runs WHERE state = 'running'
                       AND (lease_until_ms IS NULL OR lease_until_ms < ?1) ORDER BY seq"
                ))?;
                let rows = stmt.query_map([now], from_row)?;
                rows.collect::<Result<_, _>>()?
            };
            let mut changed = Vec::new();
            for run in expired {
                let (state, reason) = expiry(&run, &policy);
                let finished = state.is_finished().then_some(now);
                tx.execute(
                    "UPDATE runs SET state = ?2, reason = ?3, lost = lost + 1, owner = NULL,
                         lease_until_ms = NULL, finished_ms = ?4
                     WHERE id = ?1 AND state = 'running'",
                    params![run.id, state.as_str(), reason, finished],
                )?;
                tx.execute(
                    "UPDATE attempts SET ended_ms = ?3, outcome = 'lost'
                     WHERE run_id = ?1 AND attempt = ?2 AND outcome IS NULL",
                    params![run.id, run.attempt, now],
                )?;
                changed.extend(get_with(&tx, &run.id)?);
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        duration: Duration,
        progress: Option<&RunSummary>,
    ) -> StoreResult<Heartbeat> {
        let lease = lease.clone();
        let json = summary_json(progress);
        self.call(move |conn| {
            let now = now_ms();
            let cancel: Option<i64> = conn
                .query_row(
                    &format!(
                        "UPDATE runs SET lease_until_ms = ?4, heartbeat_ms = ?5,
                             summary = COALESCE(?6, summary)
                         WHERE {FENCE} RETURNING cancel_requested"
                    ),
                    params![
                        lease.run_id,
                        lease.owner,
                        lease.attempt,
                        now + millis(duration),
                        now,
                        json
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match cancel {
                Some(c) => Heartbeat::Held {
                    cancel_requested: c != 0,
                },
                None => Heartbeat::Lost,
            })
        })
        .await
    }

    async fn set_tested(
        &self,
        lease: &Lease,
        base_sha: &str,
        tested_sha: &str,
    ) -> StoreResult<bool> {
        let (lease, base, tested) = (lease.clone(), base_sha.to_string(), tested_sha.to_string());
        self.call(move |conn| {
            let n = conn.execute(
                &format!("UPDATE runs SET base_sha = ?4, tested_sha = ?5 WHERE {FENCE}"),
                params![lease.run_id, lease.owner, lease.attempt, base, tested],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn finish(
        &self,
        lease: &Lease,
        ending: &Ending,
        then: Option<NewRun>,
    ) -> StoreResult<Finished> {
        let (lease, ending) = (lease.clone(), ending.clone());
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let now = now_ms();
            let n = tx.execute(
                &format!(
                    "UPDATE runs SET state = ?4, reason = ?5, summary = COALESCE(?6, summary),
                         finished_ms = ?7, owner = NULL, lease_until_ms = NULL
                     WHERE {FENCE}"
                ),
                params![
                    lease.run_id,
                    lease.owner,
                    lease.attempt,
                    ending.state.as_str(),
                    ending.reason,
                    summary_json(ending.summary.as_ref()),
                    now
                ],
            )?;
            if n == 0 {
                return Ok(Finished {
                    recorded: false,
                    queued: None,
                });
            }
            tx.execute(
                "UPDATE attempts SET ended_ms = ?3, outcome = ?4 WHERE run_id = ?1 AND attempt = ?2",
                params![lease.run_id, lease.attempt, now, ending.state.as_str()],
            )?;
            let queued = match then {
                Some(new) => Some(insert(&tx, &new)?),
                None => None,
            };
            tx.commit()?;
            Ok(Finished {
                recorded: true,
                queued,
            })
        })
        .await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> StoreResult<bool> {
        let (lease, reason) = (lease.clone(), reason.to_string());
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let n = tx.execute(
                &format!(
                    "UPDATE runs SET state = 'queued', reason = ?4, owner = NULL,
                         lease_until_ms = NULL
                     WHERE {FENCE}"
                ),
                params![lease.run_id, lease.owner, lease.attempt, reason],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_ms = ?3, outcome = 'released'
                 WHERE run_id = ?1 AND attempt = ?2 AND outcome IS NULL",
                params![lease.run_id, lease.attempt, now_ms()],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn cancel(&self, id: &str) -> StoreResult<Cancel> {
        let id = id.to_string();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let cancelled = tx.execute(
                "UPDATE runs SET state = 'cancelled', finished_ms = ?2,
                     reason = 'cancelled through the API before it started'
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now_ms()],
            )?;
            let outcome = if cancelled > 0 {
                Cancel::Cancelled
            } else if tx.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
                [&id],
            )? > 0
            {
                Cancel::Requested
            } else if get_with(&tx, &id)?.is_some() {
                Cancel::Ended
            } else {
                Cancel::NotFound
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Run>> {
        let id = id.to_string();
        self.call(move |conn| get_with(conn, &id)).await
    }

    async fn list(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let filter = filter.clone();
        self.call(move |conn| {
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
            rows.collect()
        })
        .await
    }

    async fn count(&self, state: RunState) -> StoreResult<u64> {
        self.call(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = ?1",
                [state.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
        })
        .await
    }

    async fn attempts(&self, id: &str) -> StoreResult<Vec<Attempt>> {
        let id = id.to_string();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT run_id, attempt, runner, claimed_ms, ended_ms, outcome FROM attempts
                 WHERE run_id = ?1 ORDER BY attempt",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(Attempt {
                    run_id: r.get(0)?,
                    attempt: r.get::<_, i64>(1)?.max(0) as u32,
                    runner: r.get(2)?,
                    claimed_ms: r.get(3)?,
                    ended_ms: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn head(&self, repo: &str, branch: &str) -> StoreResult<Option<String>> {
        let (repo, branch) = (repo.to_string(), branch.to_string());
        self.call(move |conn| {
            conn.query_row(
                "SELECT sha FROM heads WHERE repo = ?1 AND branch = ?2",
                [repo, branch],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn first_delivery(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.call(move |conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO deliveries (id, received_ms) VALUES (?1, ?2)",
                params![id, now_ms()],
            )?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn delivery_seen(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.call(move |conn| {
            conn.query_row("SELECT 1 FROM deliveries WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
        .await
    }

    async fn register_runner(
        &self,
        me: &RunnerInfo,
        lease: Duration,
    ) -> StoreResult<Result<(), RunnerInfo>> {
        let me = me.clone();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let now = now_ms();
            let taken = tx.execute(
                "INSERT INTO runners (name, owner, host, url, pid, started_ms, seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, host = excluded.host,
                     url = excluded.url, pid = excluded.pid, started_ms = excluded.started_ms,
                     seen_ms = excluded.seen_ms
                 WHERE runners.host = excluded.host OR runners.seen_ms < ?7",
                params![
                    me.name,
                    me.owner,
                    me.host,
                    me.url,
                    me.pid,
                    now,
                    now - millis(lease)
                ],
            )?;
            let outcome = if taken > 0 {
                Ok(())
            } else {
                Err(runner_with(&tx, &me.name)?.unwrap_or(me))
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn touch_runner(&self, name: &str, owner: &str) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE runners SET seen_ms = ?3 WHERE name = ?1 AND owner = ?2",
                params![name, owner, now_ms()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn expire_runner(&self, name: &str, owner: &str) -> StoreResult<Vec<Run>> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "UPDATE runs SET lease_until_ms = 0
                 WHERE state = 'running' AND (runner = ?1 OR runner IS NULL)
                   AND (owner IS NULL OR owner <> ?2)
                 RETURNING {COLUMNS}"
            ))?;
            let rows = stmt.query_map(params![name, owner], from_row)?;
            rows.collect()
        })
        .await
    }

    async fn runners(&self) -> StoreResult<Vec<RunnerInfo>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, owner, host, url, pid, started_ms, seen_ms FROM runners ORDER BY name",
            )?;
            let rows = stmt.query_map([], runner_from_row)?;
            rows.collect()
        })
        .await
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }
}

fn runner_from_row(r: &Row<'_>) -> rusqlite::Result<RunnerInfo> {
    Ok(RunnerInfo {
        name: r.get(0)?,
        owner: r.get(1)?,
        host: r.get(2)?,
        url: r.get(3)?,
        pid: r.get::<_, Option<i64>>(4)?.map(|p| p.max(0) as u32),
        started_ms: r.get(5)?,
        seen_ms: r.get(6)?,
    })
}

fn runner_with(conn: &Connection, name: &str) -> rusqlite::Result<Option<RunnerInfo>> {
    conn.query_row(
        "SELECT name, owner, host, url, pid, started_ms, seen_ms FROM runners WHERE name = ?1",
        [name],
        runner_from_row,
    )
    .optional()
}

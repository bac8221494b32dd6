//! [`Store`] on PostgreSQL: one queue and history shared by a fleet of
//! runners on several machines.
//!
//! - Async all the way: `tokio-postgres` through a `deadpool` pool.
//! - Claiming takes the oldest claimable run with `FOR UPDATE SKIP LOCKED`,
//!   so runners claiming at once never wait on, nor take, the same row.
//! - Times are the database server's (`drydock_now_ms()`), so leases mean
//!   the same to runners whose clocks differ.
//! - Wake-ups: a trigger notifies `drydock_queue` whenever a run becomes
//!   queued or stops running; a cancel request notifies `drydock_cancel`
//!   with the run id. Each store keeps one `LISTEN` connection (reconnected
//!   when it drops) and hands the notifications to whoever subscribed
//!   ([`Store::subscribe`]); runners poll as well, so a lost notification
//!   only costs a poll.
//! - Migrations (`migrations/postgres`) run under an advisory lock, so
//!   runners starting together migrate once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::*;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Advisory lock key held while migrating ("drydock" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x64_72_79_64_6f_63_6b;

/// [`Store`] on PostgreSQL.
pub struct PgStore {
    pool: Pool,
    described: String,
    events: broadcast::Sender<StoreEvent>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// `postgres://user@host:port/db`: the address without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}{}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn from_row(row: &Row) -> Run {
    Run {
        seq: row.get("seq"),
        id: row.get("id"),
        repo: row.get("repo"),
        branch: row.get("branch"),
        sha: row.get("sha"),
        kind: RunKind::parse(row.get("kind")),
        state: RunState::parse(row.get("state")),
        reason: row.get("reason"),
        trigger: row.get("trigger"),
        retry_of: row.get("retry_of"),
        created_ms: row.get("created_ms"),
        started_ms: row.get("started_ms"),
        finished_ms: row.get("finished_ms"),
        base_sha: row.get("base_sha"),
        tested_sha: row.get("tested_sha"),
        summary: parse_summary(row.get("summary")),
        runner: row.get("runner"),
        owner: row.get("owner"),
        attempt: row.get::<_, i32>("attempt").max(0) as u32,
        lost: row.get::<_, i32>("lost").max(0) as u32,
        lease_until_ms: row.get("lease_until_ms"),
        heartbeat_ms: row.get("heartbeat_ms"),
        cancel_requested: row.get("cancel_requested"),
    }
}

fn runner_from_row(r: &Row) -> RunnerInfo {
    RunnerInfo {
        name: r.get("name"),
        owner: r.get("owner"),
        host: r.get("host"),
        url: r.get("url"),
        pid: r.get::<_, Option<i32>>("pid").map(|p| p.max(0) as u32),
        started_ms: r.get("started_ms"),
        seen_ms: r.get("seen_ms"),
    }
}

async fn insert<C: GenericClient>(client: &C, new: &NewRun) -> StoreResult<Run> {
    let row = client
        .query_one(
            "INSERT INTO runs (id, repo, branch, sha, kind, state, trigger, retry_of, created_ms)
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, drydock_now_ms())
             RETURNING *",
            &[
                &new_run_id(),
                &new.repo,
                &new.branch,
                &new.sha,
                &new.kind.as_str(),
                &new.trigger,
                &new.retry_of,
            ],
        )
        .await?;
    Ok(from_row(&row))
}

/// The fence of every write of a worker ($1 run id, $2 owner, $3 attempt).
const FENCE: &str = "id = $1 AND owner = $2 AND attempt = $3 AND state = 'running'";

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, or the
    /// `key=value` form libpq reads), migrates the schema and starts
    /// listening for wake-ups. TLS is not supported: use a private network
    /// or a local socket (`host=/run/postgresql`).
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid PostgreSQL address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("drydock-runner");
        let described = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| StoreError::Other(format!("cannot make the connection pool: {e}")))?;
        migrate(&pool).await?;
        let (events, _) = broadcast::channel(64);
        let listener = tokio::spawn(listen(config, events.clone()));
        Ok(PgStore {
            pool,
            described,
            events,
            listener,
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = embedded::migrations::runner()
        .run_async(&mut **client)
        .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked?;
    Ok(())
}

/// Keeps a `LISTEN` connection and forwards its notifications; reconnects
/// every 2 s while the server is away (each reconnection also announces a
/// queue change, in case one was missed meanwhile).
async fn listen(config: tokio_postgres::Config, events: broadcast::Sender<StoreEvent>) {
    let mut failing = false;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let event = if n.channel() == "drydock_cancel" {
                                    StoreEvent::CancelRequested(n.payload().to_string())
                                } else {
                                    StoreEvent::QueueChanged
                                };
                                if tx.send(event).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("store: the LISTEN connection failed: {e}");
                                break;
                            }
                        }
                    }
                });
                match client
                    .batch_execute("LISTEN drydock_queue; LISTEN drydock_cancel")
                    .await
                {
                    Ok(()) => {
                        if failing {
                            tracing::info!("store: listening for wake-ups again");
                        }
                        failing = false;
                        let _ = events.send(StoreEvent::QueueChanged);
                        while let Some(event) = rx.recv().await {
                            let _ = events.send(event);
                        }
                    }
                    Err(e) => tracing::warn!("store: cannot LISTEN: {e}"),
                }
                driver.abort();
            }
            Err(e) if !failing => {
                tracing::warn!(
                    "store: cannot connect to listen for wake-ups (polling meanwhile): {e}"
                );
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        self.described.clone()
    }

    async fn enqueue(&self, new: NewRun) -> StoreResult<Run> {
        let client = self.client().await?;
        insert(&client, &new).await
    }

    async fn observe_head(&self, new: NewRun) -> StoreResult<Option<Run>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "INSERT INTO heads (repo, branch, sha) VALUES ($1, $2, $3)
                 ON CONFLICT (repo, branch) DO UPDATE SET sha = EXCLUDED.sha
                 WHERE heads.sha <> EXCLUDED.sha",
                &[&new.repo, &new.branch, &new.sha],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let run = insert(&tx, &new).await?;
        tx.commit().await?;
        Ok(Some(run))
    }

    async fn claim(&self, claimer: &Claimer) -> StoreResult<Option<(Run, Lease)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "WITH next AS (
                     SELECT q.id FROM runs AS q
                     WHERE q.state = 'queued' AND NOT (q.kind = 'candidate' AND EXISTS (
                         SELECT 1 FROM runs AS r
                         WHERE r.repo = q.repo AND r.kind = 'candidate'
                           AND (r.state = 'running' OR (r.state = 'queued' AND r.seq < q.seq))))
                     ORDER BY q.seq LIMIT 1
                     FOR UPDATE OF q SKIP LOCKED)
                 UPDATE runs SET state = 'running', runner = $1, owner = $2,
                     attempt = runs.attempt + 1, lease_until_ms = drydock_now_ms() + $3,
                     heartbeat_ms = drydock_now_ms(), started_ms = drydock_now_ms(),
                     cancel_requested = false
                 FROM next WHERE runs.id = next.id AND runs.state = 'queued'
                 RETURNING runs.*",
                &[&claimer.runner, &claimer.owner, &millis(claimer.lease)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let run = from_row(&row);
        tx.execute(
            "INSERT INTO attempts (run_id, attempt, runner, owner, claimed_ms)
             VALUES ($1, $2, $3, $4, drydock_now_ms())
             ON CONFLICT (run_id, attempt) DO NOTHING",
            &[
                &run.id,
                &(run.attempt as i32),
                &claimer.runner,
                &claimer.owner,
            ],
        )
        .await?;
        tx.commit().await?;
        let lease = Lease {
            run_id: run.id.clone(),
            owner: claimer.owner.clone(),
            attempt: run.attempt,
        };
        Ok(Some((run, lease)))
    }

    async fn expire_leases(&self, policy: &ExpiryPolicy) -> StoreResult<Vec<Run>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let expired: Vec<Run> = tx
            .query(
                "SELECT * FROM runs WHERE state = 'running'
                   AND (lease_until_ms IS NULL OR lease_until_ms < drydock_now_ms())
                 ORDER BY seq FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?
            .iter()
            .map(from_row)
            .collect();
        let mut changed = Vec::new();
        for run in expired {
            let (state, reason) = expiry(&run, policy);
            let row = tx
                .query_opt(
                    "UPDATE runs SET state = $2, reason = $3, lost = lost + 1, owner = NULL,
                         lease_until_ms = NULL,
                         finished_ms = CASE WHEN $4 THEN drydock_now_ms() END
                     WHERE id = $1 AND state = 'running'
                     RETURNING *",
                    &[&run.id, &state.as_str(), &reason, &state.is_finished()],
                )
                .await?;
            tx.execute(
                "UPDATE attempts SET ended_ms = drydock_now_ms(), outcome = 'lost'
                 WHERE run_id = $1 AND attempt = $2 AND outcome IS NULL",
                &[&run.id, &(run.attempt as i32)],
            )
            .await?;
            changed.extend(row.as_ref().map(from_row));
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        duration: Duration,
        progress: Option<&RunSummary>,
    ) -> StoreResult<Heartbeat> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE runs SET lease_until_ms = drydock_now_ms() + $4,
                         heartbeat_ms = drydock_now_ms(), summary = COALESCE($5, summary)
                     WHERE {FENCE} RETURNING cancel_requested"
                ),
                &[
                    &lease.run_id,
                    &lease.owner,
                    &(lease.attempt as i32),
                    &millis(duration),
                    &summary_json(progress),
                ],
            )
            .await?;
        Ok(match row {
            Some(row) => Heartbeat::Held {
                cancel_requested: row.get(0),
            },
            None => Heartbeat::Lost,
        })
    }

    async fn set_tested(
        &self,
        lease: &Lease,
        base_sha: &str,
        tested_sha: &str,
    ) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                &format!("UPDATE runs SET base_sha = $4, tested_sha = $5 WHERE {FENCE}"),
                &[
                    &lease.run_id,
                    &lease.owner,
                    &(lease.attempt as i32),
                    &base_sha,
                    &tested_sha,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn finish(
        &self,
        lease: &Lease,
        ending: &Ending,
        then: Option<NewRun>,
    ) -> StoreResult<Finished> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE runs SET state = $4, reason = $5, summary = COALESCE($6, summary),
                         finished_ms = drydock_now_ms(), owner = NULL, lease_until_ms = NULL
                     WHERE {FENCE}"
                ),
                &[
                    &lease.run_id,
                    &lease.owner,
                    &(lease.attempt as i32),
                    &ending.state.as_str(),
                    &ending.reason,
                    &summary_json(ending.summary.as_ref()),
                ],
            )
            .await?;
        if n == 0 {
            return Ok(Finished {
                recorded: false,
                queued: None,
            });
        }
        tx.execute(
            "UPDATE attempts SET ended_ms = drydock_now_ms(), outcome = $3
             WHERE run_id = $1 AND attempt = $2",
            &[
                &lease.run_id,
                &(lease.attempt as i32),
                &ending.state.as_str(),
            ],
        )
        .await?;
        let queued = match then {
            Some(new) => Some(insert(&tx, &new).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(Finished {
            recorded: true,
            queued,
        })
    }

    async fn release(&self, lease: &Lease, reason: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE runs SET state = 'queued', reason = $4, owner = NULL,
                         lease_until_ms = NULL
                     WHERE {FENCE}"
                ),
                &[
                    &lease.run_id,
                    &lease.owner,
                    &(lease.attempt as i32),
                    &reason,
                ],
            )
            .await?;
        tx.execute(
            "UPDATE attempts SET ended_ms = drydock_now_ms(), outcome = 'released'
             WHERE run_id = $1 AND attempt = $2 AND outcome IS NULL",
            &[&lease.run_id, &(lease.attempt as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn cancel(&self, id: &str) -> StoreResult<Cancel> {
        let client = self.client().await?;
        let cancelled = client
            .execute(
                "UPDATE runs SET state = 'cancelled', finished_ms = drydock_now_ms(),
                     reason = 'cancelled through the API before it started'
                 WHERE id = $1 AND state = 'queued'",
                &[&id],
            )
            .await?;
        if cancelled > 0 {
            return Ok(Cancel::Cancelled);
        }
        let requested = client
            .execute(
                "UPDATE runs SET cancel_requested = true WHERE id = $1 AND state = 'running'",
                &[&id],
            )
            .await?;
        if requested > 0 {
            client
                .execute("SELECT pg_notify('drydock_cancel', $1)", &[&id])
                .await?;
            return Ok(Cancel::Requested);
        }
        let exists = client
            .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&id])
            .await?;
        Ok(if exists.is_some() {
            Cancel::Ended
        } else {
            Cancel::NotFound
        })
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Run>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT * FROM runs WHERE id = $1", &[&id])
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    async fn list(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let client = self.client().await?;
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let statement = client
            .prepare_cached(
                "SELECT * FROM runs
                 WHERE ($1::TEXT IS NULL OR repo = $1) AND ($2::TEXT IS NULL OR branch = $2)
                   AND ($3::TEXT IS NULL OR state = $3)
                   AND (NOT $4 OR state NOT IN ('queued', 'running'))
                 ORDER BY seq DESC LIMIT $5",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[
                    &filter.repo,
                    &filter.branch,
                    &filter.state.map(RunState::as_str),
                    &filter.finished,
                    &limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn count(&self, state: RunState) -> StoreResult<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM runs WHERE state = $1",
                &[&state.as_str()],
            )
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn attempts(&self, id: &str) -> StoreResult<Vec<Attempt>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT run_id, attempt, runner, claimed_ms, ended_ms, outcome FROM attempts
                 WHERE run_id = $1 ORDER BY attempt",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                run_id: r.get(0),
                attempt: r.get::<_, i32>(1).max(0) as u32,
                runner: r.get(2),
                claimed_ms: r.get(3),
                ended_ms: r.get(4),
                outcome: r.get(5),
            })
            .collect())
    }

    async fn head(&self, repo: &str, branch: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT sha FROM heads WHERE repo = $1 AND branch = $2",
                &[&repo, &branch],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn first_delivery(&self, id: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO deliveries (id, received_ms) VALUES ($1, drydock_now_ms())
                 ON CONFLICT (id) DO NOTHING",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delivery_seen(&self, id: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT 1 FROM deliveries WHERE id = $1", &[&id])
            .await?;
        Ok(row.is_some())
    }

    async fn register_runner(
        &self,
        me: &RunnerInfo,
        lease: Duration,
    ) -> StoreResult<Result<(), RunnerInfo>> {
        let client = self.client().await?;
        let taken = client
            .execute(
                "INSERT INTO runners (name, owner, host, url, pid, started_ms, seen_ms)
                 VALUES ($1, $2, $3, $4, $5, drydock_now_ms(), drydock_now_ms())
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, host = EXCLUDED.host,
                     url = EXCLUDED.url, pid = EXCLUDED.pid, started_ms = EXCLUDED.started_ms,
                     seen_ms = EXCLUDED.seen_ms
                 WHERE runners.host = EXCLUDED.host OR runners.seen_ms < drydock_now_ms() - $6",
                &[
                    &me.name,
                    &me.owner,
                    &me.host,
                    &me.url,
                    &me.pid.map(|p| p as i32),
                    &millis(lease),
                ],
            )
            .await?;
        if taken > 0 {
            return Ok(Ok(()));
        }
        let row = client
            .query_opt("SELECT * FROM runners WHERE name = $1", &[&me.name])
            .await?;
        Ok(Err(row
            .as_ref()
            .map(runner_from_row)
            .unwrap_or_else(|| me.clone())))
    }

    async fn touch_runner(&self, name: &str, owner: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE runners SET seen_ms = drydock_now_ms() WHERE name = $1 AND owner = $2",
                &[&name, &owner],
            )
            .await?;
        Ok(n > 0)
    }

    async fn expire_runner(&self, name: &str, owner: &str) -> StoreResult<Vec<Run>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE runs SET lease_until_ms = 0
                 WHERE state = 'running' AND runner = $1 AND owner IS DISTINCT FROM $2
                 RETURNING *",
                &[&name, &owner],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn runners(&self) -> StoreResult<Vec<RunnerInfo>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT * FROM runners ORDER BY name", &[])
            .await?;
        Ok(rows.iter().map(runner_from_row).collect())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.events.subscribe())
    }
}

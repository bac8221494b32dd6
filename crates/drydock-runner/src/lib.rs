//! The drydock runner: a long-lived service for self-hosted build machines.
//!
//! It watches git repositories ([`poll`], and push webhooks in [`web`]),
//! queues every new commit as a run in its store ([`store`]: SQLite in the
//! state folder, or PostgreSQL shared by a fleet of runners), runs
//! the repository's pipeline through drydock-core in a clean worktree of the
//! exact commit ([`exec`], [`git`]), lands green merge-queue candidates on the
//! central branch ([`gate`]) and serves a JSON API, a status page and badges
//! ([`web`]), health and readiness probes and Prometheus [`metrics`], and
//! posts commit statuses to the repositories' forges ([`forge`]). Its
//! configuration is one YAML file ([`config`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = drydock_runner::config::Config::load("runner.yml".as_ref())?;
//! let runner = drydock_runner::Runner::start(config).await?;
//! println!("listening on http://{}", runner.addr());
//! runner.wait().await;
//! # Ok(()) }
//! ```

pub mod attempt;
pub mod config;
pub mod exec;
pub mod forge;
pub mod gate;
pub mod git;
pub mod metrics;
pub mod poll;
pub mod store;
pub mod web;

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drydock_core::engine::Engine;
use drydock_core::run::{CancelReason, RunCancel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, StoreSpec};
use crate::git::Mirror;
use crate::store::{
    Claimer, ExpiryPolicy, NewRun, PgStore, RunSummary, RunnerInfo, SqliteStore, Store, StoreError,
    StoreEvent,
};

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state folder or database.
    #[error("{0}")]
    State(String),
    /// The Docker Engine is unreachable.
    #[error("engine: {0}")]
    Engine(String),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another runner process uses the state folder.
    #[error("the state folder {} is in use by another runner{}; two runners cannot share a state folder", .dir.display(), .holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        /// The state folder.
        dir: PathBuf,
        /// What the lock file says about its holder (`pid N`).
        holder: Option<String>,
    },
    /// The store cannot be opened or migrated.
    #[error("store {what}: {source}")]
    Store {
        /// Which store (never with a password).
        what: String,
        /// Why.
        source: StoreError,
    },
    /// Another live runner of the fleet has this name.
    #[error("runner name {name} is in use by a live runner on {host} (last seen {seen_ms} ms ago); give each runner its own `name`")]
    NameTaken {
        /// The name.
        name: String,
        /// Where the other runner runs.
        host: String,
        /// How long ago it last beat.
        seen_ms: i64,
    },
}

/// The state folder's lock: `runner.lock` locked exclusively (`flock`) for
/// the life of the runner process, so that a second runner on the same
/// folder is refused (the lock goes with the process, even on SIGKILL).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir` (which exists), or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StartError> {
        use std::io::{Read, Seek, Write};
        let path = state_dir.join("runner.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StartError::State(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "pid {}", std::process::id());
                let _ = file.flush();
                Ok(StateLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(StartError::Locked {
                    dir: state_dir.to_path_buf(),
                    holder: Some(holder.trim().to_string()).filter(|h| !h.is_empty()),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StartError::State(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

/// Opens the store `spec` names (SQLite: `runner.sqlite` in `state_dir`),
/// migrating its schema; never blocks the runtime.
pub async fn open_store(spec: &StoreSpec, state_dir: &Path) -> Result<Arc<dyn Store>, StartError> {
    match spec {
        StoreSpec::Sqlite => {
            let path = state_dir.join("runner.sqlite");
            let what = format!("sqlite {}", path.display());
            let opened = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(StoreError::from)
                .and_then(|r| r);
            match opened {
                Ok(store) => Ok(Arc::new(store)),
                Err(source) => Err(StartError::Store { what, source }),
            }
        }
        StoreSpec::Postgres(url) => match PgStore::connect(url.expose()).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(source) => Err(StartError::Store {
                what: "postgres".into(),
                source,
            }),
        },
    }
}

/// Who this runner process is in the fleet.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The runner's name (configured `name`, else the host name).
    pub name: String,
    /// This process's instance token (`<name>#<random>`): the owner of the
    /// leases it takes.
    pub owner: String,
    /// `hostname:state folder`.
    pub host: String,
}

/// A running run's handle: how it is cancelled, and whether the API asked.
#[derive(Debug, Default)]
pub struct RunHandle {
    /// The run's cancel handle (drydock-core's).
    pub cancel: RunCancel,
    /// A cancel was asked through the API (here or at any runner).
    pub asked: AtomicBool,
}

impl RunHandle {
    /// Cancels the run as asked through the API (`CancelReason::ApiCancel`).
    pub fn cancel_asked(&self) {
        self.asked.store(true, Ordering::SeqCst);
        self.cancel.cancel(CancelReason::ApiCancel);
    }

    /// Whether the API asked.
    pub fn was_asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }
}

/// State shared by the runner's tasks.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Queue and history.
    pub store: Arc<dyn Store>,
    /// The Docker Engine.
    pub engine: Engine,
    /// Wakes the dispatcher when a run is queued or ends.
    pub wake: Notify,
    /// Handles of the runs this runner runs, by run id.
    pub running: Mutex<HashMap<String, Arc<RunHandle>>>,
    /// This runner in the fleet.
    pub identity: Identity,
    /// Progress of the runs this runner runs.
    pub live: Mutex<HashMap<String, RunSummary>>,
    /// Bare mirror per repository.
    pub mirrors: HashMap<String, Mirror>,
    /// Serialises git operations that change a mirror, per repository.
    pub repo_locks: HashMap<String, tokio::sync::Mutex<()>>,
    /// Cancelled when the runner stops.
    pub shutdown: CancellationToken,
    /// The state folder's lock, held while the runner lives.
    pub state_lock: StateLock,
    /// Engine run ids whose leftovers are removed again at a later time
    /// (lost attempts: see [`exec::sweep_later`]).
    pub sweeps: Mutex<Vec<(std::time::Instant, String)>>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// Posts commit statuses to forges in the background.
    pub statuses: forge::Poster,
    /// Where people reach this runner: `public_url`, else `http://<address>`.
    pub public_url: String,
}

impl Shared {
    /// Results folder of a run.
    pub fn results_dir(&self, run_id: &str) -> PathBuf {
        self.config.state_dir.join("results").join(run_id)
    }

    /// Worktree of one attempt of a run (`run_id`: the attempt's
    /// [`store::engine_run_id`], so that attempts never share one).
    pub fn worktree_dir(&self, run_id: &str) -> PathBuf {
        self.config.state_dir.join("worktrees").join(run_id)
    }

    /// Queues a run and wakes the dispatcher.
    pub async fn enqueue(&self, new: NewRun) -> Result<store::Run, store::StoreError> {
        let run = self.store.enqueue(new).await?;
        tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, sha = %run.sha, "queued ({})", run.trigger);
        self.wake.notify_one();
        self.post_status(&run, forge::Moment::Queued);
        Ok(run)
    }

    /// The run's page (`<public url>/runs/<id>`).
    pub fn run_url(&self, run_id: &str) -> String {
        format!("{}/runs/{run_id}", self.public_url)
    }

    /// Posts the commit status of `run` at `moment` when its repository has
    /// a forge; returns at once (the post runs in the background, see
    /// [`forge::Poster`]).
    pub fn post_status(&self, run: &store::Run, moment: forge::Moment) {
        let Some(forge) = self.config.repo(&run.repo).and_then(|r| r.forge.as_ref()) else {
            return;
        };
        let status = forge::Status {
            state: forge::state_word(forge.kind, moment, run.state),
            target_url: self.run_url(&run.id),
            description: forge::describe(moment, run, &self.identity.name),
        };
        self.statuses
            .post(forge, run, status, moment == forge::Moment::Finished);
    }

    /// Queues `new` when its commit is a new head of its branch.
    pub async fn observe(&self, new: NewRun) -> Result<Option<store::Run>, store::StoreError> {
        let run = self.store.observe_head(new).await?;
        if let Some(run) = &run {
            tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, sha = %run.sha, "queued ({})", run.trigger);
            self.wake.notify_one();
            self.post_status(run, forge::Moment::Queued);
        }
        Ok(run)
    }

    /// How this runner claims runs.
    pub fn claimer(&self) -> Claimer {
        Claimer {
            runner: self.identity.name.clone(),
            owner: self.identity.owner.clone(),
            lease: self.config.lease,
        }
    }

    /// What becomes of runs whose lease expired.
    pub fn expiry_policy(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            max_attempts: self.config.max_attempts,
            requeue: self.config.requeue_interrupted,
        }
    }

    /// How often leases are renewed and expired leases looked for: a third
    /// of the lease.
    pub fn tick(&self) -> Duration {
        (self.config.lease / 3).max(Duration::from_millis(100))
    }

    /// How often the dispatcher looks at the queue without being woken
    /// (wake-ups come from this runner, and from the others through the
    /// store's notifications): at most every 2 s.
    pub fn queue_poll(&self) -> Duration {
        self.tick().min(Duration::from_secs(2))
    }
}

/// A started runner.
pub struct Runner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Runner {
    /// Locks the state folder, opens (and migrates) the store, registers
    /// this runner in it, expires the leases a previous process of this
    /// runner left, reaps leftovers of dead runs on the engine, and starts
    /// the dispatcher, the lease keeper, the pollers and the HTTP server.
    pub async fn start(config: Config) -> Result<Runner, StartError> {
        Runner::start_with(config, exec::default_executor()).await
    }

    /// [`Runner::start`] with another executor of claimed runs (the one
    /// [`exec::default_executor`] gives runs pipelines): for embedders that
    /// wrap it, and for tests.
    pub async fn start_with(
        config: Config,
        executor: exec::Executor,
    ) -> Result<Runner, StartError> {
        let state = &config.state_dir;
        for sub in ["", "git", "worktrees", "results"] {
            std::fs::create_dir_all(state.join(sub)).map_err(|e| {
                StartError::State(format!("cannot create {}: {e}", state.join(sub).display()))
            })?;
        }
        let state_lock = StateLock::acquire(state)?;
        let store = open_store(&config.store, state).await?;
        let engine = Engine::connect()
            .await
            .map_err(|e| StartError::Engine(e.to_string()))?;
        let mut mirrors = HashMap::new();
        let mut repo_locks = HashMap::new();
        for repo in &config.repos {
            let mirror = Mirror::ensure(
                state.join("git").join(format!("{}.git", repo.name)),
                &repo.url,
            )
            .await
            .map_err(|e| StartError::State(e.to_string()))?;
            mirrors.insert(repo.name.clone(), mirror);
            repo_locks.insert(repo.name.clone(), tokio::sync::Mutex::new(()));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let host_name = drydock_core::engine::labels::host_name();
        let name = config.name.clone().unwrap_or_else(|| {
            let clean: String = host_name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .take(63)
                .collect();
            if config::valid_runner_name(&clean) {
                clean
            } else {
                "runner".into()
            }
        });
        let identity = Identity {
            owner: format!("{name}#{}", store::random_hex(12)),
            host: format!(
                "{host_name}:{}",
                std::path::absolute(state)
                    .unwrap_or_else(|_| state.clone())
                    .display()
            ),
            name,
        };
        let metrics = Arc::new(metrics::Metrics::new());
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            if addr.ip().is_unspecified() {
                format!("http://{host_name}:{}", addr.port())
            } else {
                format!("http://{addr}")
            }
        });
        let me = RunnerInfo {
            name: identity.name.clone(),
            owner: identity.owner.clone(),
            host: identity.host.clone(),
            // Where other runners send people for this runner's logs.
            url: Some(if addr.ip().is_unspecified() {
                format!("http://{host_name}:{}", addr.port())
            } else {
                format!("http://{addr}")
            }),
            pid: Some(std::process::id()),
            started_ms: store::now_ms(),
            seen_ms: store::now_ms(),
        };
        let store_error = |source| StartError::Store {
            what: store.describe(),
            source,
        };
        match store
            .register_runner(&me, config.lease)
            .await
            .map_err(store_error)?
        {
            Ok(()) => {}
            Err(other) => {
                return Err(StartError::NameTaken {
                    name: other.name,
                    host: other.host,
                    seen_ms: (store::now_ms() - other.seen_ms).max(0),
                })
            }
        }
        let shared = Arc::new(Shared {
            config,
            store,
            engine,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            identity,
            live: Mutex::new(HashMap::new()),
            mirrors,
            repo_locks,
            shutdown: CancellationToken::new(),
            state_lock,
            sweeps: Mutex::new(Vec::new()),
            statuses: forge::Poster::new(metrics.clone()),
            metrics,
            public_url,
        });
        tracing::info!(
            "runner {} ({}) on store {}",
            shared.identity.name,
            shared.identity.owner,
            shared.store.describe()
        );
        exec::recover(&shared).await;
        let mut tasks = vec![
            tokio::spawn(exec::dispatch_with(shared.clone(), executor)),
            tokio::spawn(exec::keep_leases(shared.clone())),
        ];
        if let Some(events) = shared.store.subscribe() {
            tasks.push(tokio::spawn(store_events(shared.clone(), events)));
        }
        for repo in &shared.config.repos {
            if let Some(every) = repo.poll {
                tasks.push(tokio::spawn(poll::poll_repo(
                    shared.clone(),
                    repo.name.clone(),
                    every,
                )));
            }
        }
        tasks.push(tokio::spawn(web::serve(shared.clone(), listener)));
        tracing::info!("runner listening on http://{addr}");
        Ok(Runner {
            shared,
            addr,
            tasks,
        })
    }

    /// The HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, configuration…).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs until [`Runner::stop`] is called from elsewhere (or forever).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops: cancels running runs (with `requeue_interrupted` they go back
    /// to the queue, in their place; otherwise they end `interrupted`) and
    /// waits for the tasks.
    pub async fn stop(self) {
        self.shared.shutdown.cancel();
        self.wait().await;
    }
}

/// Forwards the store's events: a possibly claimable run wakes the
/// dispatcher; a cancel request for a run this runner runs cancels it now
/// (rather than at its next heartbeat).
async fn store_events(
    shared: Arc<Shared>,
    mut events: tokio::sync::broadcast::Receiver<StoreEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shared.shutdown.cancelled() => return,
        };
        match event {
            Ok(StoreEvent::QueueChanged) | Err(RecvError::Lagged(_)) => shared.wake.notify_one(),
            Ok(StoreEvent::CancelRequested(id)) => {
                let handle = shared.running.lock().unwrap().get(&id).cloned();
                if let Some(handle) = handle {
                    tracing::info!(run = %id, "cancel requested through the API (store notification)");
                    handle.cancel_asked();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// `drydock runner --config FILE`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let runner = Runner::start(config).await?;
    eprintln!("drydock runner: listening on http://{}", runner.addr());
    let shutdown = runner.shared.shutdown.clone();
    tokio::spawn(async move {
        if let Ok(mut signals) = drydock_core::run::StopSignals::install() {
            signals.next().await;
            eprintln!("drydock runner: stopping; running runs go back to the queue");
            shutdown.cancel();
        }
    });
    runner.wait().await;
    Ok(())
}

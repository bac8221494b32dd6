//! The drydock runner: a long-lived service for self-hosted build machines.
//!
//! It watches git repositories ([`poll`], and push webhooks in [`web`]),
//! queues every new commit as a run in an embedded database ([`store`]), runs
//! the repository's pipeline through drydock-core in a clean worktree of the
//! exact commit ([`exec`], [`git`]), lands green merge-queue candidates on the
//! central branch ([`gate`]) and serves a JSON API, a status page and badges
//! ([`web`]). Its configuration is one YAML file ([`config`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = drydock_runner::config::Config::load("runner.yml".as_ref())?;
//! let runner = drydock_runner::Runner::start(config).await?;
//! println!("listening on http://{}", runner.addr());
//! runner.wait().await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod exec;
pub mod gate;
pub mod git;
pub mod poll;
pub mod store;
pub mod web;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use drydock_core::engine::Engine;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::git::Mirror;
use crate::store::{NewRun, RunSummary, SqliteStore, Store};

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
    /// Cancel tokens of running runs.
    pub running: Mutex<HashMap<String, CancellationToken>>,
    /// Runs whose cancel was asked through the API.
    pub cancel_requested: Mutex<HashSet<String>>,
    /// Progress of running runs.
    pub live: Mutex<HashMap<String, RunSummary>>,
    /// Bare mirror per repository.
    pub mirrors: HashMap<String, Mirror>,
    /// Serialises git operations that change a mirror, per repository.
    pub repo_locks: HashMap<String, tokio::sync::Mutex<()>>,
    /// Cancelled when the runner stops.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Results folder of a run.
    pub fn results_dir(&self, run_id: &str) -> PathBuf {
        self.config.state_dir.join("results").join(run_id)
    }

    /// Worktree of a run.
    pub fn worktree_dir(&self, run_id: &str) -> PathBuf {
        self.config.state_dir.join("worktrees").join(run_id)
    }

    /// Queues a run and wakes the dispatcher.
    pub fn enqueue(&self, new: NewRun) -> Result<store::Run, store::StoreError> {
        let run = self.store.enqueue(new)?;
        tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, sha = %run.sha, "queued ({})", run.trigger);
        self.wake.notify_one();
        Ok(run)
    }

    /// Queues `new` when its commit is a new head of its branch.
    pub fn observe(&self, new: NewRun) -> Result<Option<store::Run>, store::StoreError> {
        let run = self.store.observe_head(new)?;
        if let Some(run) = &run {
            tracing::info!(run = %run.id, repo = %run.repo, branch = %run.branch, sha = %run.sha, "queued ({})", run.trigger);
            self.wake.notify_one();
        }
        Ok(run)
    }
}

/// A started runner.
pub struct Runner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Runner {
    /// Opens the database, recovers runs a previous runner left, reaps their
    /// containers, and starts the dispatcher, the pollers and the HTTP server.
    pub async fn start(config: Config) -> Result<Runner, StartError> {
        let state = &config.state_dir;
        for sub in ["", "git", "worktrees", "results"] {
            std::fs::create_dir_all(state.join(sub)).map_err(|e| {
                StartError::State(format!("cannot create {}: {e}", state.join(sub).display()))
            })?;
        }
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&state.join("runner.sqlite"))
                .map_err(|e| StartError::State(e.to_string()))?,
        );
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
        let shared = Arc::new(Shared {
            config,
            store,
            engine,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            cancel_requested: Mutex::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            mirrors,
            repo_locks,
            shutdown: CancellationToken::new(),
        });
        exec::recover(&shared).await;
        let mut tasks = vec![tokio::spawn(exec::dispatch(shared.clone()))];
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

    /// Stops: cancels running runs (they are marked interrupted and, with
    /// `requeue_interrupted`, queued again) and waits for the tasks.
    pub async fn stop(self) {
        self.shared.shutdown.cancel();
        self.wait().await;
    }
}

/// `drydock runner --config FILE`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let runner = Runner::start(config).await?;
    eprintln!("drydock runner: listening on http://{}", runner.addr());
    let shutdown = runner.shared.shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("drydock runner: stopping; running runs will be re-queued");
            shutdown.cancel();
        }
    });
    runner.wait().await;
    Ok(())
}

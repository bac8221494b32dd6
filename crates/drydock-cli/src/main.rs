//! `drydock`: run a product's CI pipeline inside containers, tag releases and
//! roll them back.

mod commands;
mod error;
mod hosted;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Container-native build orchestrator: runs a pipeline's lint, test and
/// release tiers inside containers on a Docker Engine.
///
/// Exit codes: 0 passed, 1 a step failed, 2 invalid configuration or usage,
/// 3 infrastructure error (engine unreachable, image missing…), 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "drydock", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline file.
    Run(commands::run::RunArgs),
    /// Check a pipeline file without running anything.
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Print what a run of the pipeline would do (builds, services, tiers,
    /// steps, release), without an engine.
    Plan(commands::run::PlanArgs),
    /// Base images made without a registry.
    Images {
        #[command(subcommand)]
        command: commands::images::ImagesCommand,
    },
    /// Remove containers, networks and volumes left by dead runs.
    Gc(commands::gc::GcArgs),
    /// List what a channel pointed to, oldest first.
    Releases(commands::releases::ReleasesArgs),
    /// Point a channel back to its previous image (and redeploy it when deployed).
    Rollback(commands::releases::RollbackArgs),
    /// Move a channel's tested image to another channel (by image id, no rebuild).
    Promote(commands::releases::PromoteArgs),
    /// Push the image a channel points to to a registry.
    Push(commands::releases::PushArgs),
    /// Run the image a channel points to behind a stable address, replacing
    /// the running version without dropping requests.
    Deploy(commands::deploy::DeployArgs),
    /// Remove a channel's deploy: app, proxy, services and network.
    Undeploy(commands::deploy::UndeployArgs),
    /// Hosted CI: write a provider's configuration file that runs a pipeline.
    Ci {
        #[command(subcommand)]
        command: commands::ci::CiCommand,
    },
    /// Long-lived service: run pipelines on new commits of watched repositories,
    /// gate merges, serve the API and status page (see crates/drydock-runner).
    Runner {
        /// The runner's configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where the queue and history live: `sqlite` (the default, in the
        /// state folder) or `postgres://user@host/db` (a fleet of runners
        /// sharing one queue). Overrides the file's `store:` and
        /// DRYDOCK_RUNNER_STORE (which is better for an address holding a
        /// password: the command line is visible to other users).
        #[arg(long, value_name = "STORE")]
        store: Option<String>,
        /// This runner's name in the fleet (default: the file's `name:`,
        /// else the host name).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

/// `drydock runner --config FILE [--store STORE] [--name NAME]`: a thin call
/// into drydock-runner. The store is `--store`, else `DRYDOCK_RUNNER_STORE`,
/// else the file's `store:`.
async fn runner(
    config: &std::path::Path,
    store: Option<String>,
    name: Option<String>,
) -> Result<u8, CliError> {
    let mut config = drydock_runner::config::Config::load(config)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    let store = store.or_else(|| {
        std::env::var("DRYDOCK_RUNNER_STORE")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if let Some(store) = store {
        config.store = drydock_runner::config::StoreSpec::parse(&store)
            .map_err(|e| CliError::invalid(format!("--store (or DRYDOCK_RUNNER_STORE): {e}")))?;
    }
    if let Some(name) = name {
        if !drydock_runner::config::valid_runner_name(&name) {
            return Err(CliError::invalid(format!(
                "--name {name:?}: expected [A-Za-z0-9][A-Za-z0-9_.-]* (at most 63 characters)"
            )));
        }
        config.name = Some(name);
    }
    drydock_runner::serve(config)
        .await
        .map_err(|e| CliError::infra(e.to_string()))?;
    Ok(0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The runner is a service: it logs what it does by default.
    let default_filter = match cli.command {
        Command::Runner { .. } => "warn,drydock_runner=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRYDOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::infra(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Validate { pipeline } => commands::run::validate(&pipeline).await,
            Command::Plan(args) => commands::run::plan(args).await,
            Command::Images { command } => commands::images::run(command).await,
            Command::Gc(args) => commands::gc::run(args).await,
            Command::Releases(args) => commands::releases::releases(args),
            Command::Rollback(args) => commands::releases::rollback(args).await,
            Command::Promote(args) => commands::releases::promote(args).await,
            Command::Push(args) => commands::releases::push(args).await,
            Command::Deploy(args) => commands::deploy::deploy(args).await,
            Command::Undeploy(args) => commands::deploy::undeploy(args).await,
            Command::Ci { command } => commands::ci::run(command).await,
            Command::Runner {
                config,
                store,
                name,
            } => runner(&config, store, name).await,
        }
    });
    // Give background tasks no chance to outlive their purpose.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => e.report(),
    }
}

//! `drydock`: run a product's CI pipeline inside containers, tag releases and
//! roll them back.

/// `println!` that never panics: when the reader of stdout has gone away
/// (`drydock plan --json | head`), what is left is dropped and the command
/// goes on to its normal end (the standard `println!` panics on a broken
/// pipe; resetting SIGPIPE instead would also kill drydock on a write to a
/// closed engine socket, mid-run, before its cleanup).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (stderr closed: `drydock validate x 2>&-`,
/// or piped into a reader that went away): see [`outln!`].
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` that never panics: see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

mod commands;
mod diagnostics;
mod error;
mod help;
mod hosted;
mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;
use crate::help::env_block;

/// `drydock --version`: the crate version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DRYDOCK_COMMIT"), ")");

/// Container-native build orchestrator: runs a pipeline's lint, test and
/// release tiers inside containers on a Docker Engine.
#[derive(Debug, Parser)]
#[command(
    name = "drydock",
    version = VERSION,
    propagate_version = true,
    after_help = help::ROOT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline file.
    #[command(after_help = concat!(
        "Examples:
  drydock run pipelines/flask-api.yml
  drydock run --bootstrap pipelines/flask-api.yml     build missing base images first
  drydock run --json pipelines/flask-api.yml | jq -c 'select(.event==\"step_finished\")'
  drydock run --timestamps --progress-interval 1m pipelines/flask-api.yml   (CI logs)
  drydock run --no-reuse pipelines/flask-api.yml      run every step, even unchanged ones

Reused results: a step whose stored result has the same key (image id, command,
entrypoint, env, user, workdir, network, content of every mounted or copied path,
services it can reach, secrets' digests, drydock's version) is not run: its
stored output, reports and files are replayed, marked \"reused from run ID\".
By default only passed steps with `network: false`, no writable mount and no
`cache:` are reused; `reuse: true` (step or pipeline) allows the others,
`reuse: always` failed results too, `reuse: false` never. --no-reuse runs every
step (results are still stored); `drydock gc --results` forgets them all;
DRYDOCK_RESULTS_MAX_BYTES bounds the store (default 2 GiB, least recently used
removed first).

",
        env_block!(
            help::env_engine!(),
            "  DRYDOCK_BUILDER    auto (default), buildkit or classic; DOCKER_BUILDKIT=0 means classic in auto",
            "  DRYDOCK_CA_BUNDLE  CA bundle for builds and networked steps (else PIP_CERT)",
            "  HTTP_PROXY, HTTPS_PROXY, NO_PROXY, PIP_INDEX_URL…  passed to builds and networked steps",
            "  DRYDOCK_PROGRESS_INTERVAL  default of --progress-interval",
            "  DRYDOCK_RESULTS_MAX_BYTES  bound of the stored step results (default 2 GiB)",
            "  DRYDOCK_REGISTRY_USER, DRYDOCK_REGISTRY_PASSWORD[_FILE]  release.registry credentials",
            help::env_state!(),
            help::env_log!(),
            "  any other variable the pipeline interpolates as ${NAME}",
        )
    ))]
    Run(commands::run::RunArgs),
    /// Check a pipeline file without running anything: every problem, with
    /// a code frame each (exit 2 when there is one).
    #[command(after_help = concat!(
        "Examples:
  drydock validate pipelines/flask-api.yml
  drydock validate --json pipelines/flask-api.yml    {\"valid\":false,\"problems\":[{\"file\",\"line\",\"col\",\"message\"}…]}

",
        env_block!(
            "  any variable the pipeline interpolates as ${NAME}",
            help::env_log!(),
        )
    ))]
    Validate(commands::validate::ValidateArgs),
    /// Print what a run of the pipeline would do (builds, services, tiers,
    /// steps, release), without an engine.
    #[command(after_help = concat!(
        "Examples:
  drydock plan pipelines/flask-api.yml
  drydock plan --json pipelines/flask-api.yml

",
        env_block!(
            "  DRYDOCK_CA_BUNDLE  CA bundle the plan hands to builds and networked steps (else PIP_CERT)",
            "  any variable the pipeline interpolates as ${NAME}",
        )
    ))]
    Plan(commands::run::PlanArgs),
    /// The TDD loop: keep one tier's step containers and services warm and
    /// run the affected steps again, through exec, on every save.
    #[command(after_help = concat!(
        "Examples:
  drydock watch pipelines/flask-api.yml                       first tier with test steps
  drydock watch pipelines/flask-api.yml --tier pre-build --step unit

Watched: the repository paths the tier's steps mount (and copy), and the
build contexts of the images it uses; a saved file a build reads rebuilds
that image. Ctrl-C (or SIGTERM) removes every container, network and volume
the session created (exit 130); a second Ctrl-C forces. See docs/watch.md.

",
        env_block!(
            help::env_engine!(),
            "  DRYDOCK_CA_BUNDLE  CA bundle for builds and networked steps (else PIP_CERT)",
            help::env_log!(),
            "  any other variable the pipeline interpolates as ${NAME}",
        )
    ))]
    Watch(commands::watch::WatchArgs),
    /// Print a JSON Schema: the pipeline format (for editors), one record
    /// of the event stream, or summary.json.
    #[command(after_help = "Examples:
  drydock schema pipeline > docs/schema/pipeline.schema.json
  drydock schema events
  drydock schema summary")]
    Schema(commands::schema::SchemaArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  drydock completions bash > ~/.local/share/bash-completion/completions/drydock
  source <(drydock completions bash)
  drydock completions zsh > ~/.zfunc/_drydock
  drydock completions fish > ~/.config/fish/completions/drydock.fish")]
    Completions(commands::schema::CompletionsArgs),
    /// Print the man page (roff), or write one per command into a folder.
    #[command(after_help = "Examples:
  drydock man | man -l -
  drydock man --dir /usr/local/share/man/man1")]
    Man(commands::schema::ManArgs),
    /// Base images made without a registry.
    #[command(after_help = concat!(
        "Examples:
  drydock images bootstrap
  drydock images bootstrap --force

",
        env_block!(
            help::env_engine!(),
            "  DRYDOCK_CA_BUNDLE  CA bundle handed to the image builds (else PIP_CERT)",
            help::env_log!(),
        )
    ))]
    Images {
        #[command(subcommand)]
        command: commands::images::ImagesCommand,
    },
    /// Remove containers, networks and volumes left by dead runs.
    #[command(after_help = concat!(
        "Examples:
  drydock gc --dry-run
  drydock gc --run 20261130-101500-ab12
  drydock gc --images --keep 3
  drydock gc --results                         forget every stored step result

",
        env_block!(help::env_engine!(), help::env_state!(), help::env_log!())
    ))]
    Gc(commands::gc::GcArgs),
    /// List what a channel pointed to, oldest first.
    #[command(after_help = concat!(
        "Examples:
  drydock releases staging
  drydock releases staging --json

",
        env_block!(help::env_state!())
    ))]
    Releases(commands::releases::ReleasesArgs),
    /// Point a channel back to its previous image (and redeploy it when deployed).
    #[command(after_help = concat!(
        "Examples:
  drydock rollback staging --reason \"500s after deploy\"
  drydock rollback staging --to 3f2c1a9

",
        env_block!(help::env_engine!(), help::env_state!(), help::env_log!())
    ))]
    Rollback(commands::releases::RollbackArgs),
    /// Move a channel's tested image to another channel (by image id, no rebuild).
    #[command(after_help = concat!(
        "Examples:
  drydock promote staging production --reason \"smoke tests green\"

",
        env_block!(help::env_engine!(), help::env_state!(), help::env_log!())
    ))]
    Promote(commands::releases::PromoteArgs),
    /// Push the image a channel points to to a registry.
    #[command(after_help = concat!(
        "Examples:
  drydock push staging --registry 127.0.0.1:5000

",
        env_block!(
            help::env_engine!(),
            "  DRYDOCK_REGISTRY_USER, DRYDOCK_REGISTRY_PASSWORD[_FILE]  credentials (else DOCKER_CONFIG's auths)",
            help::env_state!(),
            help::env_log!(),
        )
    ))]
    Push(commands::releases::PushArgs),
    /// Run the image a channel points to behind a stable address, replacing
    /// the running version without dropping requests.
    #[command(after_help = concat!(
        "Examples:
  drydock deploy staging
  drydock deploy staging --status --json

",
        env_block!(help::env_engine!(), help::env_state!(), help::env_log!())
    ))]
    Deploy(commands::deploy::DeployArgs),
    /// Remove a channel's deploy: app, proxy, services and network.
    #[command(after_help = concat!(
        "Examples:
  drydock undeploy staging

",
        env_block!(help::env_engine!(), help::env_state!(), help::env_log!())
    ))]
    Undeploy(commands::deploy::UndeployArgs),
    /// Hosted CI: write a provider's configuration file that runs a pipeline.
    #[command(after_help = concat!(
        "Examples:
  drydock ci export github --pipeline pipelines/flask-api.yml \\
      --install-git https://github.com/acme/drydock --branch main
  drydock ci export gitlab --pipeline pipelines/flask-api.yml \\
      --install-url https://example.com/drydock-x86_64-linux --check

Exit codes (ci export): 0 written or up to date, 1 (--check) stale or missing,
2 invalid options or pipeline, 3 the file cannot be read or written.

",
        env_block!(help::env_log!())
    ))]
    Ci {
        #[command(subcommand)]
        command: commands::ci::CiCommand,
    },
    /// Long-lived service: run pipelines on new commits of watched repositories,
    /// gate merges, serve the API and status page (see docs/runner.md).
    #[command(after_help = concat!(
        "Examples:
  drydock runner --config runner.yml
  DRYDOCK_LOG=debug drydock runner --config runner.yml 2>>runner.log

",
        env_block!(
            help::env_engine!(),
            help::env_state!(),
            "  DRYDOCK_LOG        tracing filter (default warn,drydock_runner=info)",
            "  NO_COLOR           set (to anything): no colours (never any when stderr is not a terminal)",
        )
    ))]
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

/// The `clap` command, for completions and the man page.
pub(crate) fn command() -> clap::Command {
    Cli::command()
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

/// Whether colour may be written to stderr: a terminal, and `NO_COLOR`
/// unset (<https://no-color.org>: set to anything non-empty).
pub(crate) fn stderr_colours() -> bool {
    std::io::stderr().is_terminal() && !no_color()
}

/// `NO_COLOR` is set to a non-empty value.
pub(crate) fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn main() -> ExitCode {
    if no_color() {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
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
    // Colour codes only on a terminal: a log file (the runner's stderr
    // redirected) gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRYDOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(stderr_colours())
        .init();
    // `watch` lives long and mostly waits: one thread keeps its memory
    // small (docs/watch.md); everything else uses every core.
    let mut builder = match cli.command {
        Command::Watch(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return CliError::infra(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Validate(args) => commands::validate::validate(args).await,
            Command::Plan(args) => commands::run::plan(args).await,
            Command::Watch(args) => commands::watch::watch(args).await,
            Command::Schema(args) => commands::schema::schema(args),
            Command::Completions(args) => commands::schema::completions(args),
            Command::Man(args) => commands::schema::man(args),
            Command::Images { command } => commands::images::run(command).await,
            Command::Gc(args) => commands::gc::run(args).await,
            Command::Releases(args) => commands::releases::releases(args).await,
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

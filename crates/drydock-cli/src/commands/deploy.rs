//! `drydock deploy` and `drydock undeploy`: run the image a channel points to
//! behind a stable address, switching versions without dropping requests.

use std::path::{Path, PathBuf};

use drydock_core::deploy::{self, config::DeployConfig, ChannelDeployError, Outcome, Which};
use drydock_core::engine::Engine;
use drydock_core::pipeline::Vars;
use drydock_core::release::{Entry, Ledger};

use crate::error::CliError;

/// Arguments of `drydock deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The channel to deploy (its deploy config is deploy/CHANNEL.yml).
    pub channel: String,
    /// The deploy config to use instead of deploy/CHANNEL.yml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Show what runs for the channel instead of deploying.
    #[arg(long)]
    pub status: bool,
    /// With --status: print JSON.
    #[arg(long, requires = "status")]
    pub json: bool,
}

/// Arguments of `drydock undeploy`.
#[derive(Debug, clap::Args)]
pub struct UndeployArgs {
    /// The channel whose app, proxy, services and network are removed.
    pub channel: String,
}

pub(crate) fn open_ledger() -> Result<Ledger, CliError> {
    Ledger::open(&Ledger::default_path()).map_err(|e| CliError::infra(e.to_string()))
}

/// Loads the channel's deploy config (`--config`, else `deploy/<channel>.yml`).
pub(crate) fn load_config(channel: &str, path: Option<&Path>) -> Result<DeployConfig, CliError> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| deploy::config::default_path(Path::new("."), channel));
    let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
    if !path.exists() {
        return Err(CliError::invalid(format!(
            "{}: no deploy config for channel {channel} (write one, see docs/deploy.md, or pass --config FILE)",
            path.display()
        )));
    }
    deploy::config::load(&path, channel, &Vars::from_process_env())
        .map_err(|e| super::run::pipeline_error(&path, &e))
}

fn describe(entry: &Entry) -> String {
    deploy::describe_entry(entry)
}

fn channel_error(e: ChannelDeployError) -> CliError {
    match e {
        ChannelDeployError::UnknownChannel(_) => CliError::failed(e.to_string()),
        ChannelDeployError::NameMismatch { .. } => CliError::invalid(e.to_string()),
        _ => CliError::infra(e.to_string()),
    }
}

/// Deploys `which` ledger entry for the config's channel under the channel
/// lock and records the attempt ([`deploy::deploy_channel`], shared with the
/// runner). `Ok(true)`: live (or already live); `Ok(false)`: the new version
/// was refused and the old one kept serving (the message was printed).
pub(crate) async fn deploy_entry(
    engine: &Engine,
    ledger: &mut Ledger,
    config: &DeployConfig,
    which: Which<'_>,
    detail: Option<&str>,
) -> Result<bool, CliError> {
    let channel = config.channel.clone();
    let progress = move |line: String| eprintln!("deploy {channel}: {line}");
    let deployed = deploy::deploy_channel(engine, ledger, config, which, detail, &progress)
        .await
        .map_err(channel_error)?;
    if deployed.serving() {
        println!("{}", deployed.summary());
        return Ok(true);
    }
    let mut message = deployed.summary();
    if let Outcome::Failed { log_tail, .. } = &deployed.outcome {
        if !log_tail.is_empty() {
            message.push_str("\n  last output:");
            for line in log_tail {
                message.push_str("\n    ");
                message.push_str(line);
            }
        }
    }
    CliError::failed(message).report();
    Ok(false)
}

/// `drydock deploy <channel> [--status]`.
pub async fn deploy(args: DeployArgs) -> Result<u8, CliError> {
    if args.status {
        return status(&args.channel, args.json).await;
    }
    let config = load_config(&args.channel, args.config.as_deref())?;
    let mut ledger = open_ledger()?;
    if ledger
        .current(&args.channel)
        .map_err(|e| CliError::infra(e.to_string()))?
        .is_none()
    {
        return Err(channel_error(ChannelDeployError::UnknownChannel(
            args.channel.clone(),
        )));
    }
    let engine = Engine::connect().await?;
    Ok(
        if deploy_entry(&engine, &mut ledger, &config, Which::Current, None).await? {
            0
        } else {
            crate::error::EXIT_FAILED
        },
    )
}

async fn status(channel: &str, json: bool) -> Result<u8, CliError> {
    let engine = Engine::connect().await?;
    let status = deploy::status(&engine, channel).await?;
    let ledger = open_ledger()?;
    let current = ledger
        .current(channel)
        .map_err(|e| CliError::infra(e.to_string()))?;
    if json {
        let mut value =
            serde_json::to_value(&status).map_err(|e| CliError::infra(e.to_string()))?;
        value["ledger_current"] =
            serde_json::to_value(&current).map_err(|e| CliError::infra(e.to_string()))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(0);
    }
    if !status.deployed() {
        println!("{channel}: not deployed");
        return Ok(0);
    }
    println!(
        "{channel}: {} (proxy {})",
        status.address.as_deref().unwrap_or("no stable address"),
        if status.proxy_running {
            "running"
        } else {
            "NOT running"
        }
    );
    for app in &status.apps {
        let image = app.image_id.trim_start_matches("sha256:");
        println!(
            "  app {} image {} entry {} {}{}{}",
            app.container,
            &image[..image.len().min(12)],
            app.entry_id.map(|e| e.to_string()).unwrap_or("?".into()),
            if app.running { "running" } else { "stopped" },
            app.health
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default(),
            if app.live { "  ← live" } else { "" }
        );
    }
    for service in &status.services {
        println!(
            "  service {} ({}) {}",
            service.service,
            service.container,
            if service.running {
                "running"
            } else {
                "stopped"
            }
        );
    }
    if let (Some(current), Some(live)) = (&current, status.live()) {
        if current.image_id != live.image_id {
            println!(
                "  note: channel {channel} points to {} ({}), which is not what runs: deploy it, or roll back",
                current.image_id,
                describe(current)
            );
        }
    }
    Ok(0)
}

/// `drydock undeploy <channel>`.
pub async fn undeploy(args: UndeployArgs) -> Result<u8, CliError> {
    let engine = Engine::connect().await?;
    let removed = deploy::undeploy(&engine, &args.channel).await?;
    if removed == 0 {
        println!("{}: not deployed; nothing to remove", args.channel);
    } else {
        println!(
            "{}: removed {removed} objects (app, proxy, services, network)",
            args.channel
        );
    }
    Ok(0)
}

//! `drydock deploy` and `drydock undeploy`: run the image a channel points to
//! behind a stable address, switching versions without dropping requests.

use std::path::{Path, PathBuf};

use drydock_core::deploy::{self, config::DeployConfig, DeployError, Outcome, Target};
use drydock_core::engine::Engine;
use drydock_core::pipeline::Vars;
use drydock_core::release::{Entry, Ledger, NewDeployment};

use crate::error::CliError;

/// Arguments of `drydock deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The channel to deploy (its deploy config is deploy/<channel>.yml).
    pub channel: String,
    /// The deploy config to use instead of deploy/<channel>.yml.
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
    format!(
        "{} {} (sha {}, run {})",
        entry.action,
        entry.id,
        entry
            .git_sha
            .as_deref()
            .map(|s| &s[..s.len().min(10)])
            .unwrap_or("-"),
        entry.run_id.as_deref().unwrap_or("-")
    )
}

fn deploy_error(e: DeployError) -> CliError {
    CliError::infra(e.to_string())
}

/// Deploys `entry`'s image for the config's channel under the channel lock
/// and records the attempt. `Ok(true)`: live (or already live);
/// `Ok(false)`: the new version was refused and the old one kept serving
/// (the message was printed).
pub(crate) async fn deploy_entry(
    engine: &Engine,
    ledger: &mut Ledger,
    config: &DeployConfig,
    entry: &Entry,
    detail: Option<&str>,
) -> Result<bool, CliError> {
    if entry.name != config.name {
        return Err(CliError::invalid(format!(
            "{}: deploys image repository `{}`, but channel {} holds releases of `{}`",
            config.source_path.display(),
            config.name,
            config.channel,
            entry.name
        )));
    }
    let state_dir = ledger
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let channel = config.channel.clone();
    let _lock = tokio::task::spawn_blocking(move || {
        deploy::lock_channel(&state_dir, &channel, || {
            eprintln!("drydock: another deploy of channel {channel} is running; waiting for it")
        })
    })
    .await
    .map_err(|e| CliError::infra(e.to_string()))?
    .map_err(|e| CliError::infra(format!("cannot take the deploy lock: {e}")))?;
    let target = Target {
        entry_id: entry.id,
        image_id: entry.image_id.clone(),
        describe: describe(entry),
    };
    let progress = |line: String| eprintln!("deploy {}: {line}", config.channel);
    let outcome = deploy::deploy(engine, config, &target, &progress)
        .await
        .map_err(deploy_error)?;
    let address = format!("http://127.0.0.1:{}", config.app.publish);
    let (container, result, failure) = match &outcome {
        Outcome::Live {
            container,
            replaced,
        } => {
            println!(
                "{}: {} is live at {address} ({container}{})",
                config.channel,
                describe(entry),
                if replaced.is_empty() {
                    String::new()
                } else {
                    format!(", replaced {}", replaced.join(", "))
                }
            );
            (Some(container.clone()), "live", None)
        }
        Outcome::Unchanged { container } => {
            println!(
                "{}: {} is already live at {address} ({container}); nothing changed",
                config.channel,
                describe(entry)
            );
            (Some(container.clone()), "unchanged", None)
        }
        Outcome::Failed {
            container,
            reason,
            log_tail,
        } => {
            let mut message = format!(
                "deploy of {} to {} failed: {container} {reason}; it was removed and the previous version keeps serving {address} (automatic rollback; nothing else changed)",
                describe(entry),
                config.channel
            );
            if !log_tail.is_empty() {
                message.push_str("\n  last output:");
                for line in log_tail {
                    message.push_str("\n    ");
                    message.push_str(line);
                }
            }
            (None, "failed", Some((reason.clone(), message)))
        }
    };
    ledger
        .record_deployment(NewDeployment {
            channel: config.channel.clone(),
            entry_id: entry.id,
            image_id: entry.image_id.clone(),
            container,
            outcome: result.to_string(),
            detail: match (&failure, detail) {
                (Some((reason, _)), _) => Some(reason.clone()),
                (None, d) => d.map(str::to_string),
            },
        })
        .map_err(|e| CliError::infra(e.to_string()))?;
    match failure {
        Some((_, message)) => {
            CliError::failed(message).report();
            Ok(false)
        }
        None => Ok(true),
    }
}

/// `drydock deploy <channel> [--status]`.
pub async fn deploy(args: DeployArgs) -> Result<u8, CliError> {
    if args.status {
        return status(&args.channel, args.json).await;
    }
    let config = load_config(&args.channel, args.config.as_deref())?;
    let mut ledger = open_ledger()?;
    let entry = ledger
        .current(&args.channel)
        .map_err(|e| CliError::infra(e.to_string()))?
        .ok_or_else(|| {
            CliError::failed(format!(
                "unknown channel {}: nothing was ever released to it; nothing changed",
                args.channel
            ))
        })?;
    let engine = Engine::connect().await?;
    Ok(
        if deploy_entry(&engine, &mut ledger, &config, &entry, None).await? {
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

//! `drydock deploy` and `drydock undeploy`: run the image a channel of a
//! product points to behind a stable address, switching versions without
//! dropping requests.

use std::path::PathBuf;

use drydock_core::deploy::{
    self, config::DeployConfig, ChannelDeployError, Outcome, Scope, Status, Which,
};
use drydock_core::engine::Engine;
use drydock_core::release::{ChannelRef, Entry, Ledger};

use super::product::{self, Hints};
use crate::error::CliError;

/// Arguments of `drydock deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The channel to deploy (its deploy config is deploy/CHANNEL.yml).
    pub channel: String,
    /// The product whose channel it is; by default the deploy config's
    /// `name` (with --status: see `drydock releases --help`).
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
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
    /// The product whose channel it is (default: see `drydock releases
    /// --help`; else the only product with a deploy of that channel).
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Also remove the channel's objects made by a drydock from before
    /// products whose product cannot be told (`deploy --status` lists them).
    #[arg(long)]
    pub unowned: bool,
}

pub(crate) use super::ledger::{load_config, open_ledger};

/// Refuses a deploy config of another product than `channel`'s (exit 2).
pub(crate) fn check_product(config: &DeployConfig, channel: &ChannelRef) -> Result<(), CliError> {
    if config.name == channel.product {
        return Ok(());
    }
    Err(CliError::invalid(format!(
        "{}: deploys product `{}`, not `{}`",
        config.source_path.display(),
        config.name,
        channel.product
    )))
}

/// The deploy of `channel` found in the engine (see [`Scope`]).
pub(crate) async fn scope_of(
    engine: &Engine,
    ledger: &Ledger,
    channel: &ChannelRef,
) -> Result<Scope, CliError> {
    let objects = deploy::channel_objects(engine, &channel.channel).await?;
    Ok(Scope::with_ledger(channel, objects, ledger))
}

/// What runs for `channel`.
pub(crate) async fn status_of(
    engine: &Engine,
    ledger: &Ledger,
    channel: &ChannelRef,
) -> Result<Status, CliError> {
    let scope = scope_of(engine, ledger, channel).await?;
    Ok(deploy::status(engine, &scope).await?)
}

fn describe(entry: &Entry) -> String {
    deploy::describe_entry(entry)
}

fn channel_error(e: ChannelDeployError) -> CliError {
    match e {
        ChannelDeployError::UnknownChannel(_) => CliError::failed(e.to_string()),
        ChannelDeployError::Ledger(e) => super::ledger::ledger_error(e),
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
    let progress = move |line: String| errln!("deploy {channel}: {line}");
    let deployed = deploy::deploy_channel(engine, ledger, config, which, detail, &progress)
        .await
        .map_err(channel_error)?;
    if deployed.serving() {
        outln!("{}", deployed.summary());
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
        return status(&args).await;
    }
    let config = load_config(&args.channel, args.config.as_deref())?;
    let channel = ChannelRef::new(
        args.product.clone().unwrap_or_else(|| config.name.clone()),
        &args.channel,
    );
    check_product(&config, &channel)?;
    let mut ledger = open_ledger()?;
    if ledger
        .current(&channel.product, &channel.channel)
        .map_err(super::ledger::ledger_error)?
        .is_none()
    {
        return Err(channel_error(ChannelDeployError::UnknownChannel(channel)));
    }
    let engine = Engine::connect().await?;
    super::ledger::repair(&engine, &channel).await?;
    Ok(
        if deploy_entry(&engine, &mut ledger, &config, Which::Current, None).await? {
            0
        } else {
            crate::error::EXIT_FAILED
        },
    )
}

async fn status(args: &DeployArgs) -> Result<u8, CliError> {
    let ledger = open_ledger()?;
    let channel = product::resolve(
        &args.channel,
        Hints {
            explicit: args.product.as_deref(),
            config: args.config.as_deref(),
        },
        &ledger,
    )
    .await?;
    let engine = Engine::connect().await?;
    super::ledger::repair(&engine, &channel).await?;
    let status = status_of(&engine, &ledger, &channel).await?;
    let current = ledger
        .current(&channel.product, &channel.channel)
        .map_err(super::ledger::ledger_error)?;
    if args.json {
        let mut value =
            serde_json::to_value(&status).map_err(|e| CliError::infra(e.to_string()))?;
        value["ledger_current"] =
            serde_json::to_value(&current).map_err(|e| CliError::infra(e.to_string()))?;
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(0);
    }
    match &current {
        Some(entry) => outln!(
            "{channel}: points to {} ({})",
            entry.image_id,
            describe(entry)
        ),
        None => outln!("{channel}: nothing released"),
    }
    if !status.deployed() {
        outln!("{channel}: not deployed");
    } else {
        outln!(
            "{channel}: {} (proxy {}{})",
            status.address.as_deref().unwrap_or("no stable address"),
            if status.proxy_running {
                "running"
            } else {
                "NOT running"
            },
            if status.legacy {
                ", named by channel alone: made before products; `drydock undeploy` and a new deploy rename it"
            } else {
                ""
            }
        );
    }
    for app in &status.apps {
        let image = app.image_id.trim_start_matches("sha256:");
        outln!(
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
        outln!(
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
            outln!(
                "  note: channel {channel} points to {} ({}), which is not what runs: deploy it, or roll back",
                current.image_id,
                describe(current)
            );
        }
    }
    if !status.unowned.is_empty() {
        outln!(
            "  note: objects of channel {} made before products, of a product this ledger cannot tell: {} (`drydock undeploy {} --product {} --unowned` removes them)",
            channel.channel,
            status.unowned.join(", "),
            channel.channel,
            channel.product
        );
    }
    Ok(0)
}

/// `drydock undeploy <channel>`.
pub async fn undeploy(args: UndeployArgs) -> Result<u8, CliError> {
    let ledger = open_ledger()?;
    let engine = Engine::connect().await?;
    let channel = match product::resolve(
        &args.channel,
        Hints {
            explicit: args.product.as_deref(),
            config: None,
        },
        &ledger,
    )
    .await
    {
        Ok(channel) => channel,
        // Nothing in the ledger says: the deploys that exist may.
        Err(e) if e.code == crate::error::EXIT_FAILED => {
            let objects = deploy::channel_objects(&engine, &args.channel).await?;
            let mut products: Vec<String> = objects
                .iter()
                .filter_map(|o| o.labels.get(deploy::PRODUCT_LABEL).cloned())
                .collect();
            products.sort();
            products.dedup();
            match products.as_slice() {
                [one] => ChannelRef::new(one.as_str(), &args.channel),
                [] if args.unowned => ChannelRef::new("(unknown)", &args.channel),
                [] => {
                    outln!("{}: not deployed; nothing to remove", args.channel);
                    return Ok(0);
                }
                several => return Err(product::ambiguous(&args.channel, several)),
            }
        }
        Err(e) => return Err(e),
    };
    let scope = scope_of(&engine, &ledger, &channel).await?;
    let removed = deploy::undeploy(&engine, &scope, args.unowned).await?;
    if removed == 0 {
        outln!("{channel}: not deployed; nothing to remove");
    } else {
        outln!("{channel}: removed {removed} objects (app, proxy, services, network)");
    }
    if !args.unowned && !scope.unowned.is_empty() {
        outln!(
            "note: {} objects of channel {} made before products, of a product this ledger cannot tell, were left (--unowned removes them)",
            scope.unowned.len(),
            channel.channel
        );
    }
    Ok(0)
}

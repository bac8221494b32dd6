//! `drydock releases`, `drydock rollback`, `drydock promote` and `drydock
//! push`, over the channel ledger. Each works on one product's channel (see
//! [`super::product`]) and first puts right a channel tag a dead process
//! left behind ([`drydock_core::release::repair`]).

use std::path::PathBuf;

use drydock_core::engine::Engine;
use drydock_core::pipeline::is_registry;
use drydock_core::release::{self, ChannelRef, Ledger, LedgerError, NewEntry};
use drydock_core::run::{self, CancellationToken};

use super::ledger::{ledger_error, open_ledger, release_error, repair};
use super::product::{self, Hints};
use crate::error::CliError;

/// Arguments of `drydock releases`.
#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    /// The channel (e.g. staging).
    pub channel: String,
    /// The product (image repository) whose channel it is; by default the
    /// deploy config's or the repository's pipelines' `release.name`, else
    /// the only product with that channel.
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Print the history as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `drydock rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The channel (e.g. staging).
    pub channel: String,
    /// The product whose channel it is (default: see `drydock releases --help`).
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Roll back to this release (a git sha prefix or a run id) instead of the previous one.
    #[arg(long, value_name = "SHA|RUN")]
    pub to: Option<String>,
    /// Why, recorded in the ledger.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The deploy config to redeploy with when the channel is deployed
    /// (default deploy/CHANNEL.yml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `drydock push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The channel whose current image is pushed (e.g. staging).
    pub channel: String,
    /// The product whose channel it is (default: see `drydock releases --help`).
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// The registry: a host, host:port or host:port/namespace, e.g. 127.0.0.1:5000.
    #[arg(long, value_name = "HOST[:PORT][/NS]")]
    pub registry: String,
}

/// Arguments of `drydock promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The channel whose current image is promoted (e.g. staging).
    pub from: String,
    /// The channel that receives it (e.g. production).
    pub to: String,
    /// The product whose channels they are (default: see `drydock releases --help`).
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Why, recorded in the ledger.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

fn unknown(channel: &ChannelRef) -> CliError {
    ledger_error(LedgerError::UnknownChannel(channel.clone()))
}

/// `drydock releases <channel>`.
pub async fn releases(args: ReleasesArgs) -> Result<u8, CliError> {
    let ledger = open_ledger()?;
    let channel = product::resolve(
        &args.channel,
        Hints {
            explicit: args.product.as_deref(),
            config: None,
        },
        &ledger,
    )
    .await?;
    // Listing works without an engine; the tag is checked when there is one.
    match Engine::connect().await {
        Ok(engine) => {
            if let Err(e) = repair(&engine, &channel).await {
                errln!(
                    "drydock: could not check the channel tag {}: {}",
                    channel.tag(),
                    e.message
                );
            }
        }
        Err(e) => errln!(
            "drydock: could not check the channel tag {}: {e}",
            channel.tag()
        ),
    }
    let history = ledger
        .history(&channel.product, &channel.channel)
        .map_err(ledger_error)?;
    if history.is_empty() {
        return Err(unknown(&channel));
    }
    let deployments = ledger
        .deployments(&channel.product, &channel.channel)
        .map_err(ledger_error)?;
    if args.json {
        // Each entry, plus the deploy attempts of its image (additive field).
        let mut values =
            serde_json::to_value(&history).map_err(|e| CliError::infra(e.to_string()))?;
        if let Some(items) = values.as_array_mut() {
            for item in items {
                let id = item["id"].as_i64();
                let mine: Vec<_> = deployments
                    .iter()
                    .filter(|d| Some(d.entry_id) == id)
                    .collect();
                item["deployments"] =
                    serde_json::to_value(mine).map_err(|e| CliError::infra(e.to_string()))?;
            }
        }
        let text =
            serde_json::to_string_pretty(&values).map_err(|e| CliError::infra(e.to_string()))?;
        outln!("{text}");
        return Ok(0);
    }
    outln!("channel {channel}");
    outln!(
        "{:<5} {:<26} {:<9} {:<14} {:<12} {:<22} reason",
        "id",
        "at",
        "action",
        "image",
        "sha",
        "run"
    );
    let current = history.last().map(|e| e.id);
    for e in &history {
        let image = e.image_id.trim_start_matches("sha256:");
        outln!(
            "{:<5} {:<26} {:<9} {:<14} {:<12} {:<22} {}{}",
            e.id,
            e.at,
            e.action.as_str(),
            &image[..image.len().min(12)],
            e.git_sha
                .as_deref()
                .map(|s| &s[..s.len().min(10)])
                .unwrap_or("-"),
            e.run_id.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or(""),
            if Some(e.id) == current {
                "  ← current"
            } else {
                ""
            }
        );
    }
    if !deployments.is_empty() {
        outln!("\ndeploys (oldest first):");
        for d in &deployments {
            let image = d.image_id.trim_start_matches("sha256:");
            outln!(
                "  {:<26} entry {:<5} image {:<12} {:<9} {}{}",
                d.at,
                d.entry_id,
                &image[..image.len().min(12)],
                d.outcome,
                d.container.as_deref().unwrap_or(""),
                d.detail
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

/// `drydock rollback <channel>`: re-points `<product>:<channel>` and records
/// it (one step: [`release::move_channel`]).
pub async fn rollback(args: RollbackArgs) -> Result<u8, CliError> {
    let mut ledger = open_ledger()?;
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
    repair(&engine, &channel).await?;
    let target = ledger
        .rollback_target(&channel.product, &channel.channel, args.to.as_deref())
        .map_err(ledger_error)?;
    if engine.image(&target.image_id).await?.is_none() {
        return Err(CliError::infra(format!(
            "image {} of release {} (run {}) is no longer in the engine; nothing changed",
            target.image_id,
            target.id,
            target.run_id.as_deref().unwrap_or("?")
        )));
    }
    // A deployed channel is redeployed first: if the restored version does
    // not become healthy, the running one keeps serving and the ledger is
    // left as it was.
    if super::deploy::status_of(&engine, &ledger, &channel)
        .await?
        .deployed()
    {
        let config = super::ledger::load_config(&channel.channel, args.config.as_deref())?;
        super::deploy::check_product(&config, &channel)?;
        if !super::deploy::deploy_entry(
            &engine,
            &mut ledger,
            &config,
            drydock_core::deploy::Which::Entry(&target),
            Some("rollback"),
        )
        .await?
        {
            errln!(
                "drydock: rollback of {channel} not recorded: the restored version failed its health check"
            );
            return Ok(crate::error::EXIT_FAILED);
        }
    }
    let moved = release::move_channel(
        &engine,
        &Ledger::default_path(),
        NewEntry::rollback(&target, args.reason.clone()),
    )
    .await
    .map_err(release_error)?;
    outln!(
        "{}:{} → {} (release {}, run {}, sha {})",
        moved.name,
        moved.channel,
        moved.image_id,
        target.id,
        target.run_id.as_deref().unwrap_or("-"),
        target.git_sha.as_deref().unwrap_or("-")
    );
    Ok(0)
}

/// `drydock push <channel> --registry HOST`: pushes the image the channel
/// points to (per the ledger) as `<registry>/<name>:<sha>`, `:<run id>` (when
/// known) and `:<channel>` (last). The ledger is not changed.
pub async fn push(args: PushArgs) -> Result<u8, CliError> {
    let registry = args.registry.trim_end_matches('/');
    if !is_registry(registry) {
        return Err(CliError::invalid(format!(
            "invalid registry {:?}: expected host[:port][/namespace] such as 127.0.0.1:5000 (no scheme; the host needs a `.` or a `:port`, or is `localhost`)",
            args.registry
        )));
    }
    let ledger = open_ledger()?;
    let channel = product::resolve(
        &args.channel,
        Hints {
            explicit: args.product.as_deref(),
            config: None,
        },
        &ledger,
    )
    .await?;
    let current = ledger
        .current(&channel.product, &channel.channel)
        .map_err(ledger_error)?
        .ok_or_else(|| unknown(&channel))?;
    if current.name.split('/').count() > 1
        && is_registry(current.name.split('/').next().unwrap_or_default())
    {
        return Err(CliError::invalid(format!(
            "channel {channel} holds {}, which already names a registry host",
            current.name
        )));
    }
    let engine = Engine::connect().await?;
    repair(&engine, &channel).await?;
    if engine.image(&current.image_id).await?.is_none() {
        return Err(CliError::infra(format!(
            "image {} of channel {channel} is no longer in the engine; nothing pushed",
            current.image_id
        )));
    }
    let mut tags: Vec<String> = current
        .git_sha
        .iter()
        .chain(current.run_id.iter())
        .cloned()
        .collect();
    tags.push(channel.channel.clone());
    tags.dedup();
    let repository = format!("{registry}/{}", current.name);
    let cancel = CancellationToken::new();
    let pushed = run::push_release(
        &engine,
        &current.image_id,
        &repository,
        &tags,
        &cancel,
        None,
    )
    .await?;
    for reference in pushed {
        outln!("pushed {reference}");
    }
    Ok(0)
}

/// `drydock promote <from> <to>`: moves the tested image by id, never
/// rebuilding, within one product.
pub async fn promote(args: PromoteArgs) -> Result<u8, CliError> {
    if args.from == args.to {
        return Err(CliError::invalid(format!(
            "cannot promote {} to itself",
            args.from
        )));
    }
    let ledger = open_ledger()?;
    let from = product::resolve(
        &args.from,
        Hints {
            explicit: args.product.as_deref(),
            config: None,
        },
        &ledger,
    )
    .await?;
    let to = ChannelRef::new(&from.product, &args.to);
    let engine = Engine::connect().await?;
    repair(&engine, &from).await?;
    repair(&engine, &to).await?;
    let source = ledger
        .current(&from.product, &from.channel)
        .map_err(ledger_error)?
        .ok_or_else(|| unknown(&from))?;
    if engine.image(&source.image_id).await?.is_none() {
        return Err(CliError::infra(format!(
            "image {} that {from} points to is no longer in the engine; nothing changed",
            source.image_id
        )));
    }
    let moved = release::move_channel(
        &engine,
        &Ledger::default_path(),
        NewEntry::promote(&source, args.to.clone(), args.reason.clone()),
    )
    .await
    .map_err(release_error)?;
    outln!(
        "{}:{} → {} (from {} entry {}, run {}, sha {})",
        moved.name,
        moved.channel,
        moved.image_id,
        args.from,
        source.id,
        source.run_id.as_deref().unwrap_or("-"),
        source.git_sha.as_deref().unwrap_or("-")
    );
    Ok(0)
}

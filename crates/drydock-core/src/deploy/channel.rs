//! Deploying what the ledger says: take the channel lock, resolve the entry
//! (the channel's current one, or one given) and the deploy's objects
//! ([`Scope`]), run [`deploy`](super::deploy()) and record the attempt in
//! the ledger's `deployments` table. The channel is the deploy config's
//! `channel` of its product, `name`.
//!
//! This is the one path shared by `drydock deploy`, `drydock rollback` (which
//! deploys the entry it restores before recording the rollback) and the
//! runner's deploy on green.

use std::path::PathBuf;

use crate::engine::{Engine, EngineError};
use crate::release::{ChannelRef, Deployment, Entry, Ledger, LedgerError, NewDeployment};

use super::config::DeployConfig;
use super::{channel_objects, deploy, lock_channel, DeployError, Outcome, Scope, Target};

/// Which ledger entry to deploy.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// What the channel points to when the lock is taken (the last release,
    /// promote or rollback).
    Current,
    /// This entry (e.g. the one a rollback is about to restore).
    Entry(&'a Entry),
}

/// A deploy attempt that ran and was recorded.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The ledger entry deployed.
    pub entry: Entry,
    /// What the deploy did.
    pub outcome: Outcome,
    /// The row recorded in the ledger's `deployments` table.
    pub deployment: Deployment,
    /// The channel's stable address, `http://127.0.0.1:<publish>`.
    pub address: String,
}

impl Deployed {
    /// True when the entry serves (switched to it, or it was live already).
    pub fn serving(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed { .. })
    }

    /// One line for people: what went live where, or why it was refused.
    pub fn summary(&self) -> String {
        let what = describe_entry(&self.entry);
        let channel = &self.deployment.channel;
        match &self.outcome {
            Outcome::Live {
                container,
                replaced,
            } => format!(
                "{channel}: {what} is live at {} ({container}{})",
                self.address,
                if replaced.is_empty() {
                    String::new()
                } else {
                    format!(", replaced {}", replaced.join(", "))
                }
            ),
            Outcome::Unchanged { container } => format!(
                "{channel}: {what} is already live at {} ({container}); nothing changed",
                self.address
            ),
            Outcome::Failed {
                container, reason, ..
            } => format!(
                "deploy of {what} to {channel} failed: {container} {reason}; it was removed and the previous version keeps serving {} (automatic rollback; nothing else changed)",
                self.address
            ),
        }
    }
}

/// Why a deploy of a channel did not run (nothing changed), or ran but
/// could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ChannelDeployError {
    /// Nothing was ever released to the channel of that product.
    #[error("unknown channel {0}: nothing was ever released to it; nothing changed")]
    UnknownChannel(ChannelRef),
    /// The deploy config deploys another image repository than the entry's.
    #[error("{}: deploys image repository `{config}`, but channel {channel} holds releases of `{entry}`", path.display())]
    NameMismatch {
        /// The deploy config file.
        path: PathBuf,
        /// Its `name`.
        config: String,
        /// The channel.
        channel: String,
        /// The entry's `name`.
        entry: String,
    },
    /// The channel lock could not be taken.
    #[error("cannot take the deploy lock of channel {channel}: {source}")]
    Lock {
        /// The channel.
        channel: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ledger could not be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The deploy's objects could not be listed: nothing changed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The deploy itself could not run (infrastructure); nothing changed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// `release 3 (sha 1a2b3c4d5e, run r-…)`: an entry in messages.
pub fn describe_entry(entry: &Entry) -> String {
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

/// The deploy [`Target`] of a ledger entry.
pub fn target_of(entry: &Entry) -> Target {
    Target {
        entry_id: entry.id,
        image_id: entry.image_id.clone(),
        describe: describe_entry(entry),
    }
}

/// Deploys `which` entry for `config.channel` of `config.name` under the
/// channel's deploy lock ([`lock_channel`], beside the ledger file) and
/// records the attempt in `ledger`
/// (`detail`, e.g. `rollback`, is stored with a live or unchanged attempt;
/// a failed one stores its reason).
///
/// `Ok` means the deploy ran: check [`Deployed::serving`] — a new version
/// that failed its health check was removed and the old one kept serving.
/// `Err` means nothing changed (or, for [`ChannelDeployError::Ledger`] after
/// the deploy, that the attempt could not be recorded).
pub async fn deploy_channel(
    engine: &Engine,
    ledger: &mut Ledger,
    config: &DeployConfig,
    which: Which<'_>,
    detail: Option<&str>,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Deployed, ChannelDeployError> {
    let channel = config.channel.clone();
    let cref = ChannelRef::new(&config.name, &config.channel);
    let check_name = |entry: &Entry| {
        if entry.name == config.name {
            Ok(())
        } else {
            Err(ChannelDeployError::NameMismatch {
                path: config.source_path.clone(),
                config: config.name.clone(),
                channel: channel.clone(),
                entry: entry.name.clone(),
            })
        }
    };
    // Refuse what cannot work before waiting for the lock.
    match which {
        Which::Entry(entry) => check_name(entry)?,
        Which::Current => {
            if let Some(entry) = ledger.current(&config.name, &channel)? {
                check_name(&entry)?;
            }
        }
    }
    let ledger_path = ledger.path().to_path_buf();
    let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel::<()>();
    let mut locking = {
        let cref = cref.clone();
        tokio::task::spawn_blocking(move || {
            lock_channel(&ledger_path, &cref, move || {
                let _ = waiting_tx.send(());
            })
        })
    };
    let locked = tokio::select! {
        r = &mut locking => r,
        waiting = waiting_rx => {
            if waiting.is_ok() {
                progress(format!("another deploy of channel {cref} is running; waiting for it"));
            }
            (&mut locking).await
        }
    };
    let lock_error = |source| ChannelDeployError::Lock {
        channel: cref.to_string(),
        source,
    };
    let _lock = locked
        .map_err(|e| lock_error(std::io::Error::other(e.to_string())))?
        .map_err(lock_error)?;

    // Under the lock: what the channel points to now.
    let entry = match which {
        Which::Entry(entry) => entry.clone(),
        Which::Current => ledger
            .current(&config.name, &channel)?
            .ok_or_else(|| ChannelDeployError::UnknownChannel(cref.clone()))?,
    };
    check_name(&entry)?;
    let objects = channel_objects(engine, &channel).await?;
    let scope = Scope::with_ledger(&cref, objects, ledger);
    let outcome = deploy(engine, config, &scope, &target_of(&entry), progress).await?;
    let (container, result, detail) = match &outcome {
        Outcome::Live { container, .. } => {
            (Some(container.clone()), "live", detail.map(str::to_string))
        }
        Outcome::Unchanged { container } => (
            Some(container.clone()),
            "unchanged",
            detail.map(str::to_string),
        ),
        Outcome::Failed { reason, .. } => (None, "failed", Some(reason.clone())),
    };
    let deployment = ledger.record_deployment(NewDeployment {
        channel: channel.clone(),
        entry_id: entry.id,
        image_id: entry.image_id.clone(),
        container,
        outcome: result.to_string(),
        detail,
    })?;
    Ok(Deployed {
        entry,
        outcome,
        deployment,
        address: format!("http://127.0.0.1:{}", config.app.publish),
    })
}

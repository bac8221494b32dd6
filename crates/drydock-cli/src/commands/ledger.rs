//! What the release commands share: the ledger, its errors as exit codes,
//! the repair of a channel tag a dead process left, and the deploy config
//! of a channel (`deploy`, `releases`/`rollback` and the product lookup all
//! read it).

use std::path::Path;

use drydock_core::deploy::{self, config::DeployConfig};
use drydock_core::engine::Engine;
use drydock_core::pipeline::Vars;
use drydock_core::release::{self, ChannelRef, Ledger, LedgerError, ReleaseError};

use crate::error::CliError;

/// Opens the ledger at its default path (`DRYDOCK_STATE_DIR`).
pub(crate) fn open_ledger() -> Result<Ledger, CliError> {
    Ledger::open(&Ledger::default_path()).map_err(|e| CliError::infra(e.to_string()))
}

/// A ledger error as the CLI reports it (exit 1 for a channel or entry that
/// is not there, 2 for an invalid entry, 3 otherwise).
pub(crate) fn ledger_error(e: LedgerError) -> CliError {
    match e {
        LedgerError::UnknownChannel(_)
        | LedgerError::NothingToRollBackTo { .. }
        | LedgerError::NoSuchRelease { .. } => CliError::failed(e.to_string()),
        LedgerError::InvalidEntry(_) => CliError::invalid(e.to_string()),
        other => CliError::infra(other.to_string()),
    }
}

/// A release error as the CLI reports it.
pub(crate) fn release_error(e: ReleaseError) -> CliError {
    match e {
        ReleaseError::Ledger(e) => ledger_error(e),
        other => CliError::infra(other.to_string()),
    }
}

/// Puts right `channel`'s tag if a process died between recording a move
/// and making it, saying so on stderr (see [`release::repair`]).
pub(crate) async fn repair(engine: &Engine, channel: &ChannelRef) -> Result<(), CliError> {
    let found = release::repair(engine, &Ledger::default_path(), channel)
        .await
        .map_err(release_error)?;
    if let Some(message) = found.message() {
        errln!("drydock: {message}");
    }
    Ok(())
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

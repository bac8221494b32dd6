//! `drydock gc`: remove what dead runs left behind.

use drydock_core::engine::{labels, Engine};

use crate::error::CliError;

/// Arguments of `drydock gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Also remove objects of runs that still look alive.
    #[arg(long)]
    pub all: bool,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `drydock gc`.
pub async fn run(args: GcArgs) -> Result<u8, CliError> {
    let engine = Engine::connect().await?;
    let stale = engine.stale(args.all).await?;
    for item in &stale {
        println!(
            "{} {} {} (run {})",
            if args.dry_run {
                "would remove"
            } else {
                "removing"
            },
            item.kind,
            &item.id[..item.id.len().min(12)],
            item.labels
                .get(labels::RUN)
                .map(String::as_str)
                .unwrap_or("?")
        );
    }
    if !args.dry_run {
        let removed = engine.remove_leftovers(&stale).await?;
        println!("removed {removed} objects");
    }
    Ok(0)
}

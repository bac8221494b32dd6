//! Which product a release or deploy command means: a channel belongs to a
//! product (the image repository its pipeline releases), and two products on
//! one machine may both have a `staging`.
//!
//! In order, the first that answers:
//!
//! 1. `--product NAME`;
//! 2. the channel's deploy config (`--config FILE`, else `deploy/<channel>.yml`
//!    when it exists): its `name`;
//! 3. the repository's pipelines (`pipelines/*.yml` and `*.yaml` of the git
//!    repository around the current folder): their `release.name` — one
//!    name, or among several the only one with releases in that channel;
//! 4. the ledger: the only product with releases in that channel.
//!
//! Several candidates left is a usage error (exit 2) naming them; none is an
//! unknown channel (exit 1).

use std::path::{Path, PathBuf};

use drydock_core::pipeline;
use drydock_core::release::{ChannelRef, Ledger};

use crate::error::CliError;

/// What a command knows besides the channel.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hints<'a> {
    /// `--product`.
    pub explicit: Option<&'a str>,
    /// `--config`.
    pub config: Option<&'a Path>,
}

/// The product of `channel` (see the module documentation). `ledger`
/// answers step 4 and narrows step 3.
pub(crate) async fn resolve(
    channel: &str,
    hints: Hints<'_>,
    ledger: &Ledger,
) -> Result<ChannelRef, CliError> {
    if let Some(product) = hints.explicit {
        if product.trim().is_empty() {
            return Err(CliError::invalid("--product: the product name is empty"));
        }
        return Ok(ChannelRef::new(product, channel));
    }
    if let Some(name) = deploy_config_name(channel, hints.config)? {
        return Ok(ChannelRef::new(name, channel));
    }
    let in_ledger = ledger
        .products_of(channel)
        .map_err(|e| CliError::infra(e.to_string()))?;
    let from_pipelines = pipeline_products().await;
    let candidates: Vec<String> = match from_pipelines.as_slice() {
        [one] => return Ok(ChannelRef::new(one.as_str(), channel)),
        [] => in_ledger,
        several => {
            let released: Vec<String> = several
                .iter()
                .filter(|p| in_ledger.contains(p))
                .cloned()
                .collect();
            if released.is_empty() {
                several.to_vec()
            } else {
                released
            }
        }
    };
    match candidates.as_slice() {
        [one] => Ok(ChannelRef::new(one.as_str(), channel)),
        [] => Err(CliError::failed(format!(
            "unknown channel {channel}: nothing was ever released to it"
        ))),
        several => Err(ambiguous(channel, several)),
    }
}

/// The usage error of a channel several products have.
pub(crate) fn ambiguous(channel: &str, products: &[String]) -> CliError {
    CliError::invalid(format!(
        "channel {channel} belongs to several products ({}): say which with --product NAME",
        products.join(", ")
    ))
}

/// The `name` of the channel's deploy config, when there is one. A config
/// given with `--config` must exist; a default one that exists must be valid.
fn deploy_config_name(channel: &str, given: Option<&Path>) -> Result<Option<String>, CliError> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => {
            let path = drydock_core::deploy::config::default_path(Path::new("."), channel);
            if !path.is_file() {
                return Ok(None);
            }
            path
        }
    };
    Ok(Some(super::ledger::load_config(channel, Some(&path))?.name))
}

/// The release names of the repository's pipelines, sorted and without
/// duplicates. A pipeline that does not load (say, it needs a variable only
/// its CI sets) tells nothing and is skipped.
async fn pipeline_products() -> Vec<String> {
    let Ok(cwd) = std::env::current_dir() else {
        return Vec::new();
    };
    // `find_repo_root` takes a file: any name in the current folder.
    let root = pipeline::find_repo_root(&cwd.join("drydock"));
    let git = super::run::git_info(&root).await;
    let mut names = Vec::new();
    for path in pipeline_files(&root.join("pipelines")) {
        match super::run::load_pipeline(&path, "product", &git) {
            Ok(p) => names.extend(p.release.map(|r| r.name)),
            Err(e) => tracing::debug!(
                "{}: not used to find the product: {}",
                path.display(),
                e.message
            ),
        }
    }
    names.sort();
    names.dedup();
    names
}

/// `*.yml` and `*.yaml` files of `dir`, sorted.
fn pipeline_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

//! Pipeline caches (`cache:` on a step): a named volume per pipeline and
//! container path that outlives runs, shared by the pipeline's steps.
//!
//! Sharing rule: a run leases each cache it uses for its whole duration (an
//! exclusive lock on `<state dir>/caches/<volume>.lock`, released when the
//! run ends or its process dies). A concurrent run of the same pipeline that
//! finds a cache leased does not wait and does not share it: it gets a fresh
//! private volume for that run (labelled with the run, removed at its
//! teardown), so two runs never write one cache at the same time and a cache
//! is never corrupted by concurrency; the second run only loses the speed-up.
//! Steps of one run do share its caches (concurrent steps of a tier too), as
//! tools like pip, npm and cargo lock their own cache folders.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::labels;

/// The volume of a pipeline's cache of `path`: `drydock-cache-<pipeline>-<12 hex of sha256(path)>`.
pub fn volume_name(pipeline: &str, path: &str) -> String {
    let digest = hex::encode(Sha256::digest(path.as_bytes()));
    format!("drydock-cache-{pipeline}-{}", &digest[..12])
}

/// The labels of a cache volume: [`labels::CACHE`] (the pipeline),
/// [`labels::CACHE_PATH`] and the role `cache`; no owner, so no sweep
/// removes it.
pub fn cache_labels(pipeline: &str, path: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::CACHE.to_string(), pipeline.to_string()),
        (labels::CACHE_PATH.to_string(), path.to_string()),
        (labels::ROLE.to_string(), "cache".to_string()),
    ])
}

/// drydock's state folder: `$DRYDOCK_STATE_DIR`, else
/// `$XDG_DATA_HOME/drydock`, else `~/.local/share/drydock` (where the
/// release ledger lives).
pub fn state_dir() -> PathBuf {
    let ledger = crate::release::Ledger::default_path();
    ledger
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".drydock"))
}

/// A held lease on a cache volume; dropping it releases the lease.
#[derive(Debug)]
pub struct CacheLease {
    _file: File,
}

/// Takes the lease of `volume` under `state`, or `None` when another run holds it.
///
/// # Errors
/// When the lock file cannot be created.
pub fn lease(state: &Path, volume: &str) -> std::io::Result<Option<CacheLease>> {
    let dir = state.join("caches");
    std::fs::create_dir_all(&dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{volume}.lock")))?;
    // std's advisory lock (flock on Linux): released when the file closes,
    // including when the process dies.
    match file.try_lock() {
        Ok(()) => Ok(Some(CacheLease { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether a run holds the lease of `volume` now.
pub fn leased(state: &Path, volume: &str) -> bool {
    matches!(lease(state, volume), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_per_pipeline_and_path() {
        let a = volume_name("shop", "/root/.cache/pip");
        assert_eq!(a, volume_name("shop", "/root/.cache/pip"));
        assert_ne!(a, volume_name("shop", "/root/.npm"));
        assert_ne!(a, volume_name("other", "/root/.cache/pip"));
        assert!(
            a.starts_with("drydock-cache-shop-") && a.len() == "drydock-cache-shop-".len() + 12
        );
        let labels = cache_labels("shop", "/root/.cache/pip");
        assert!(
            !labels.contains_key(labels::MANAGED),
            "no sweep may take it"
        );
    }

    #[test]
    fn one_lease_at_a_time() {
        let state = tempfile::tempdir().unwrap();
        let first = lease(state.path(), "v").unwrap();
        assert!(first.is_some());
        assert!(lease(state.path(), "v").unwrap().is_none());
        assert!(leased(state.path(), "v"));
        assert!(
            lease(state.path(), "w").unwrap().is_some(),
            "other volumes are free"
        );
        drop(first);
        assert!(lease(state.path(), "v").unwrap().is_some());
    }
}

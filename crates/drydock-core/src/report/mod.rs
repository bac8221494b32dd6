//! Reports built from a run's events: JUnit merging, the results folder,
//! and the root causes of failures ([`cause`]).

pub mod cause;
pub mod junit;
mod results;
mod summary;

use std::path::{Path, PathBuf};

pub(crate) use results::raw_log_path;
pub use results::{
    OutputLimits, OutputRecord, RawLog, ResultsWriter, SkippedRecord, StepRecord, Summary,
    TierRecord, LOG_TAIL_SEGMENT_BYTES, MAX_EVENT_LOG_BYTES, MAX_LOG_HEAD_BYTES, MAX_RAW_BYTES,
    MAX_RUN_EVENT_LOG_BYTES, SUMMARY_VERSION,
};
pub use summary::SummaryBuilder;

/// drydock's own folder in a repository (`<repo>/.drydock/`): the default
/// results live under it. It ignores itself for git (it holds a `.gitignore`
/// of `*`, as `.pytest_cache` does), and drydock never sends it in a build
/// context nor copies it into a container.
pub const STATE_FOLDER: &str = ".drydock";

/// The default results root of a repository, `<repo>/.drydock/results`,
/// created with the self-ignoring `.drydock/.gitignore` when missing.
///
/// # Errors
/// When the folders or the `.gitignore` cannot be created.
pub fn default_results_root(repo_root: &Path) -> std::io::Result<PathBuf> {
    let folder = repo_root.join(STATE_FOLDER);
    let results = folder.join("results");
    std::fs::create_dir_all(&results)?;
    let ignore = folder.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# drydock's results and caches: never committed\n*\n",
        )?;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_results_root_ignores_itself() {
        let repo = tempfile::tempdir().unwrap();
        let root = default_results_root(repo.path()).unwrap();
        assert_eq!(root, repo.path().join(".drydock/results"));
        assert!(root.is_dir());
        let ignore = std::fs::read_to_string(repo.path().join(".drydock/.gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"));
        // Idempotent.
        assert_eq!(default_results_root(repo.path()).unwrap(), root);
    }
}

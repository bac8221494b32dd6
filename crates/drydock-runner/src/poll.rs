//! Polling: every repository's branches are listed (`git ls-remote`) at its
//! poll interval; a new head of a watched branch is queued once.

use std::sync::Arc;
use std::time::Duration;

use crate::config::valid_branch;
use crate::store::{NewRun, RunKind};
use crate::Shared;

/// Polls one repository until the runner stops.
pub async fn poll_repo(shared: Arc<Shared>, repo: String, every: Duration) {
    let mut failing = false;
    loop {
        match poll_once(&shared, &repo).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                tracing::warn!(repo = %repo, "cannot poll: {e}");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// Lists the remote's branches once and queues new heads; returns how many
/// runs were queued.
pub async fn poll_once(shared: &Shared, repo_name: &str) -> Result<usize, crate::git::GitError> {
    let Some(repo) = shared.config.repo(repo_name) else {
        return Ok(0);
    };
    let heads = crate::git::ls_remote(&repo.url).await?;
    let mut queued = 0;
    for (branch, sha) in heads {
        if !repo.watches(&branch) {
            continue;
        }
        if !valid_branch(&branch) {
            tracing::warn!(repo = %repo.name, "ignoring branch {branch:?}: not a name the runner accepts");
            continue;
        }
        let kind = if repo.is_candidate(&branch) {
            RunKind::Candidate
        } else {
            RunKind::Branch
        };
        let new = NewRun {
            repo: repo.name.clone(),
            branch,
            sha,
            kind,
            trigger: "poll".into(),
            retry_of: None,
        };
        match shared.observe(new).await {
            Ok(Some(_)) => queued += 1,
            Ok(None) => {}
            Err(e) => tracing::error!("cannot queue: {e}"),
        }
    }
    Ok(queued)
}

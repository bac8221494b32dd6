//! Gated integration: a merge queue for any git host.
//!
//! A candidate (a branch matching the repository's `candidates` patterns) is
//! tested on top of the central branch as it is when the run starts: the
//! candidate itself when it already descends from the central head (and
//! `integrate: fast-forward`), otherwise a merge commit of both made in the
//! run's worktree. A green run pushes the tested commit to the central
//! branch, never forcing, only if the central branch still points to the
//! commit that was tested on; if it moved meanwhile, the candidate is queued
//! again and tested on top of the new head, so no untested combination ever
//! lands. A red run leaves the central branch untouched and says why.
//! Candidates of one repository run one at a time, in queue order, across
//! the whole fleet ([`crate::store::Store::claim`]); landing is fenced by
//! the run's lease, so a stale worker (whose run was reclaimed) never
//! pushes.

use std::path::Path;
use std::sync::Arc;

use crate::attempt::{fence, EndingError, RunLog};
use crate::config::{Integrate, RepoConfig};
use crate::git::{merge_in_worktree, Mirror};
use crate::store::{Lease, NewRun, Run, RunKind, RunState};
use crate::Shared;

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Checks out what a candidate run tests (the mirror is fetched and locked
/// by the caller); records base and tested commits (fenced by the lease);
/// returns both.
pub(crate) async fn prepare(
    shared: &Arc<Shared>,
    repo: &RepoConfig,
    mirror: &Mirror,
    run: &Run,
    lease: &Lease,
    worktree: &Path,
    log: &RunLog,
) -> Result<(String, String), EndingError> {
    let Some(base) = mirror.branch_head(&repo.central).await else {
        return Err(EndingError::new(
            RunState::Errored,
            format!("central branch {} does not exist", repo.central),
        ));
    };
    let descends = mirror.is_ancestor(&base, &run.sha).await;
    let tested = if descends && repo.integrate == Integrate::FastForward {
        log.note(&format!(
            "candidate {} descends from {} {}: testing it as is",
            short(&run.sha),
            repo.central,
            short(&base)
        ));
        mirror
            .add_worktree(worktree, &run.sha)
            .await
            .map_err(|e| EndingError::new(RunState::Errored, format!("cannot check out: {e}")))?;
        run.sha.clone()
    } else {
        log.note(&format!(
            "testing candidate {} merged onto {} {}",
            short(&run.sha),
            repo.central,
            short(&base)
        ));
        mirror
            .add_worktree(worktree, &base)
            .await
            .map_err(|e| EndingError::new(RunState::Errored, format!("cannot check out: {e}")))?;
        let message = format!("Merge branch '{}' into {}", run.branch, repo.central);
        match merge_in_worktree(worktree, &run.sha, &message, true).await {
            Ok(head) => head,
            Err(e) => {
                let reason = format!(
                    "candidate {} does not merge cleanly onto {} {} ({}); not landed: {} left at {}",
                    short(&run.sha),
                    repo.central,
                    short(&base),
                    e.message,
                    repo.central,
                    short(&base)
                );
                return Err(EndingError::new(RunState::Failed, reason));
            }
        }
    };
    match shared.store.set_tested(lease, &base, &tested).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run = %run.id, "the tested commit is not recorded: the lease was lost")
        }
        Err(e) => tracing::error!(run = %run.id, "cannot record the tested commit: {e}"),
    }
    Ok((base, tested))
}

/// After a green candidate run: pushes the tested commit to the central
/// branch if it has not moved and this attempt still holds its lease, else
/// asks for the candidate to be tested again. Returns what happened, for
/// the run's reason, and the retest to queue with the run's end (in the
/// same transaction, so that a later candidate cannot slip in between, and
/// nothing is queued when the end is not recorded).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn land(
    shared: &Arc<Shared>,
    repo: &RepoConfig,
    mirror: &Mirror,
    run: &Run,
    lease: &Lease,
    base: &str,
    tested: &str,
    log: &RunLog,
) -> (String, Option<NewRun>) {
    let _lock = shared.repo_locks[&repo.name].lock().await;
    if let Err(e) = mirror.fetch().await {
        return (
            format!("not landed: cannot fetch to check {}: {e}", repo.central),
            None,
        );
    }
    let now = mirror.branch_head(&repo.central).await;
    let fenced = if now.as_deref() == Some(base) {
        fence(shared, lease).await
    } else {
        Ok(())
    };
    let outcome = if let Err(why) = fenced {
        format!("not pushed: {why}")
    } else if now.as_deref() == Some(base) {
        match mirror.push(tested, &repo.central).await {
            Ok(()) => {
                let how = if tested == run.sha {
                    "fast-forwarded"
                } else {
                    "merged"
                };
                let text = format!(
                    "landed: {} {how} from {} to {}",
                    repo.central,
                    short(base),
                    short(tested)
                );
                log.note(&text);
                tracing::info!(run = %run.id, "{text}");
                return (text, None);
            }
            Err(e) => format!("the push to {} was refused ({})", repo.central, e.message),
        }
    } else {
        format!(
            "{} moved from {} to {} during the test",
            repo.central,
            short(base),
            now.as_deref().map(short).unwrap_or("nothing")
        )
    };
    // Test again on top of the new head.
    let again = NewRun {
        repo: run.repo.clone(),
        branch: run.branch.clone(),
        sha: run.sha.clone(),
        kind: RunKind::Candidate,
        trigger: format!("retest after run {}: {outcome}", run.id),
        retry_of: Some(run.id.clone()),
    };
    let text = format!("not landed: {outcome}; queued again");
    log.note(&text);
    (text, Some(again))
}

//! Which entry a rollback restores, computed from a channel's history alone.
//!
//! The history is read as a stack of states. Each entry leaves the channel in
//! a state, named by the entry that put its image there: a release or promote
//! names itself; a rollback names the entry it restores. The state *before*
//! entry `i` is the state left by entry `i - 1`. Rolling back from the current
//! state `s` (an index into the history) goes to the state before `s`, and
//! keeps going back while that state has the image the channel has now.
//!
//! So after A, B, C, rb→B the current state is B and a rollback goes to A;
//! after A, B, C, rb→B, D it goes to B: C, which was rolled back away from,
//! is not restored by a plain rollback (`--to` can still name it).

use super::{Action, ChannelRef, Entry, LedgerError, MIN_SHA_PREFIX};

/// The rollback target of `channel`, whose entries are `history` (oldest
/// first); see [`Ledger::rollback_target`](super::Ledger::rollback_target).
pub(super) fn target<'h>(
    channel: &ChannelRef,
    history: &'h [Entry],
    to: Option<&str>,
) -> Result<&'h Entry, LedgerError> {
    let Some(current) = history.last() else {
        return Err(LedgerError::UnknownChannel(channel.clone()));
    };
    if let Some(wanted) = to {
        return history
            .iter()
            .rev()
            .filter(|e| e.action != Action::Rollback)
            .find(|e| matches_wanted(e, wanted.trim()))
            .ok_or_else(|| LedgerError::NoSuchRelease {
                channel: channel.clone(),
                wanted: wanted.to_string(),
            });
    }
    let mut state = state_after(history, history.len() - 1);
    loop {
        if state == 0 {
            return Err(LedgerError::NothingToRollBackTo(channel.clone()));
        }
        state = state_after(history, state - 1);
        if history[state].image_id != current.image_id {
            return Ok(&history[state]);
        }
    }
}

/// The index of the entry naming the state the channel was in right after
/// `history[i]`: `i` itself, or for a rollback the entry it restored.
///
/// The restored entry is always earlier (the ledger checks this on record);
/// should it not be found, the rollback is treated as naming itself, which
/// keeps the walk finite.
fn state_after(history: &[Entry], i: usize) -> usize {
    let entry = &history[i];
    match (entry.action, entry.restores) {
        (Action::Rollback, Some(id)) => history[..i]
            .iter()
            .rposition(|e| e.id == id && e.action != Action::Rollback)
            .unwrap_or(i),
        _ => i,
    }
}

/// Whether `entry` is the release `--to wanted` asks for: its run id equals
/// `wanted`, or its git sha starts with it (at least [`MIN_SHA_PREFIX`]
/// characters, case-insensitive).
fn matches_wanted(entry: &Entry, wanted: &str) -> bool {
    if wanted.is_empty() {
        return false;
    }
    if entry.run_id.as_deref() == Some(wanted) {
        return true;
    }
    wanted.len() >= MIN_SHA_PREFIX
        && entry.git_sha.as_deref().is_some_and(|sha| {
            // A build of a dirty tree (`<sha>-dirty`) is not that commit.
            (!sha.ends_with("-dirty") || wanted.ends_with("-dirty"))
                && sha.len() >= wanted.len()
                && sha.as_bytes()[..wanted.len()].eq_ignore_ascii_case(wanted.as_bytes())
        })
}

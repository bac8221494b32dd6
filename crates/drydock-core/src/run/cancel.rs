//! Explicit cancellation of a run, with an ordered reason.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::events::CancelReason;

/// The cancel handle of a run: cheap to clone, shared by whoever may stop
/// the run (a signal handler, a runner's API, a timer) and the run itself.
///
/// The reason only ever grows ([`CancelReason`] is ordered): cancelling
/// with a weaker reason than the current one changes nothing. Reasons that
/// stop running steps ([`CancelReason::stops_running_steps`]) also cancel
/// [`RunCancel::token`], which the run's tasks watch.
#[derive(Debug, Clone)]
pub struct RunCancel {
    reason: Arc<watch::Sender<Option<CancelReason>>>,
    token: CancellationToken,
    hard: CancellationToken,
}

impl Default for RunCancel {
    fn default() -> Self {
        Self::new()
    }
}

impl RunCancel {
    /// A handle that has not been cancelled.
    pub fn new() -> Self {
        RunCancel {
            reason: Arc::new(watch::Sender::new(None)),
            token: CancellationToken::new(),
            hard: CancellationToken::new(),
        }
    }

    /// Cancels with `reason`, unless a stronger one was given before.
    pub fn cancel(&self, reason: CancelReason) {
        self.reason.send_if_modified(|current| {
            if Some(reason) > *current {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
        if reason.stops_running_steps() {
            self.token.cancel();
        }
        if reason == CancelReason::SecondSignal {
            self.hard.cancel();
        }
    }

    /// The strongest reason given so far.
    pub fn reason(&self) -> Option<CancelReason> {
        *self.reason.borrow()
    }

    /// Whether running steps are being stopped.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once running steps are to be stopped.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Resolves once the reason is stronger than `seen`.
    pub async fn changed(&self, seen: Option<CancelReason>) {
        let mut rx = self.reason.subscribe();
        let _ = rx.wait_for(|reason| *reason > seen).await;
    }

    /// The token the run's tasks watch (cancelled by reasons that stop steps).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// The token `when: always` steps watch: cancelled only by a second
    /// signal, so that they run to the end after a first cancel.
    pub fn hard_token(&self) -> CancellationToken {
        self.hard.clone()
    }
}

/// The signals that ask a process to stop, SIGINT (Ctrl-C) and SIGTERM
/// (`docker stop`, systemd, CI cancel buttons), as one stream: front ends
/// turn the first into a graceful cancel and the second into a forced one.
pub struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (from then on the signals no longer kill the
    /// process). Errors: the handlers could not be installed.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        tokio::select! { _ = self.int.recv() => {}, _ = self.term.recv() => {} }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_only_grow_and_only_strong_ones_stop_steps() {
        let cancel = RunCancel::new();
        assert_eq!(cancel.reason(), None);
        cancel.cancel(CancelReason::FailedTier);
        assert_eq!(cancel.reason(), Some(CancelReason::FailedTier));
        assert!(!cancel.is_cancelled());
        cancel.cancel(CancelReason::Signal);
        cancel.cancel(CancelReason::Timeout);
        assert_eq!(cancel.reason(), Some(CancelReason::Signal));
        assert!(cancel.is_cancelled());
        cancel.cancel(CancelReason::SecondSignal);
        assert_eq!(cancel.reason(), Some(CancelReason::SecondSignal));
    }

    #[tokio::test]
    async fn changed_wakes_on_a_stronger_reason_only() {
        let cancel = RunCancel::new();
        cancel.cancel(CancelReason::ApiCancel);
        let waiter = {
            let cancel = cancel.clone();
            tokio::spawn(async move { cancel.changed(Some(CancelReason::ApiCancel)).await })
        };
        tokio::task::yield_now().await;
        cancel.cancel(CancelReason::Timeout);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        cancel.cancel(CancelReason::Signal);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}

//! Build-ahead: every target of the pipeline is built, one after another in
//! tier order, as early as possible — a target does not depend on test
//! results, so later tiers' images build while earlier tiers' steps run. Each
//! tier still reports its own builds: it replays the build's output (live, if
//! the build is still running) and its outcome. A failed tier stops the
//! builder; a failed build stops the builds after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{build_request, start_services_of, RunCtx, Runtime};
use crate::engine::{BuildProgress, EngineError};
use crate::events::Status;

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildOutcome {
    pub status: Status,
    pub error: Option<String>,
    pub reused: bool,
    pub duration_ms: u64,
}

impl BuildOutcome {
    fn not_built(status: Status, why: &str) -> Self {
        BuildOutcome {
            status,
            error: Some(why.to_string()),
            reused: false,
            duration_ms: 0,
        }
    }
}

/// One target's build, as its tier sees it.
pub(crate) struct BuildSlot {
    progress: Mutex<Option<mpsc::UnboundedReceiver<BuildProgress>>>,
    done: Shared<BoxFuture<'static, BuildOutcome>>,
}

impl BuildSlot {
    /// The build's output so far and from now on (once: the first caller gets it).
    pub fn take_progress(&self) -> Option<mpsc::UnboundedReceiver<BuildProgress>> {
        self.progress.lock().expect("progress lock").take()
    }

    /// Resolves when the build ended.
    pub fn done(&self) -> Shared<BoxFuture<'static, BuildOutcome>> {
        self.done.clone()
    }
}

/// The builds of a run, started ahead of their tiers.
pub(crate) struct Builder {
    slots: HashMap<String, Arc<BuildSlot>>,
    stop: CancellationToken,
}

impl Builder {
    /// Starts building every target of the pipeline in tier order.
    pub fn start<R: Runtime>(ctx: &Arc<RunCtx<R>>) -> Builder {
        let stop = ctx.cancel.child_token();
        let targets: Vec<String> = ctx
            .pipeline
            .tiers
            .iter()
            .flat_map(|t| t.build.iter().cloned())
            .collect();
        let mut slots = HashMap::new();
        let mut work = Vec::new();
        for target in &targets {
            let (progress_tx, progress_rx) = mpsc::unbounded_channel();
            let (done_tx, done_rx) = oneshot::channel::<BuildOutcome>();
            let done = async move {
                done_rx
                    .await
                    .unwrap_or_else(|_| BuildOutcome::not_built(Status::Cancelled, "interrupted"))
            }
            .boxed()
            .shared();
            slots.insert(
                target.clone(),
                Arc::new(BuildSlot {
                    progress: Mutex::new(Some(progress_rx)),
                    done,
                }),
            );
            work.push((target.clone(), progress_tx, done_tx));
        }
        let ctx = ctx.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            let mut failed = false;
            for (target, progress_tx, done_tx) in work {
                if failed {
                    let _ = done_tx.send(BuildOutcome::not_built(
                        Status::Skipped,
                        "an earlier build failed",
                    ));
                    continue;
                }
                if token.is_cancelled() {
                    let _ = done_tx.send(BuildOutcome::not_built(Status::Cancelled, "interrupted"));
                    continue;
                }
                let outcome = build_one(&ctx, &target, progress_tx, &token).await;
                failed = !outcome.status.is_success();
                if outcome.status.is_success() {
                    start_services_of(&ctx, &target);
                }
                let _ = done_tx.send(outcome);
            }
        });
        Builder { slots, stop }
    }

    /// The slot of a target.
    pub fn slot(&self, target: &str) -> Option<Arc<BuildSlot>> {
        self.slots.get(target).cloned()
    }

    /// Stops building (a tier failed: later images are not needed).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn build_one<R: Runtime>(
    ctx: &Arc<RunCtx<R>>,
    target: &str,
    progress_tx: mpsc::UnboundedSender<BuildProgress>,
    stop: &CancellationToken,
) -> BuildOutcome {
    let started = Instant::now();
    let request = match build_request(ctx, target) {
        Ok(request) => request,
        Err(e) => return BuildOutcome::not_built(Status::Errored, &e),
    };
    let mut on_progress = move |p: BuildProgress| {
        let _ = progress_tx.send(p);
    };
    let result = tokio::select! {
        result = ctx.runtime.build(&request, &mut on_progress) => Some(result),
        _ = stop.cancelled() => None,
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, error, reused) = match result {
        None => (Status::Cancelled, Some("interrupted".to_string()), false),
        Some(Ok(built)) => {
            ctx.built
                .lock()
                .expect("built map lock")
                .insert(target.to_string(), built.image_id.clone());
            (Status::Passed, None, built.reused)
        }
        Some(Err(e @ EngineError::Build { .. })) => (Status::Failed, Some(e.to_string()), false),
        Some(Err(e)) => (Status::Errored, Some(e.to_string()), false),
    };
    BuildOutcome {
        status,
        error,
        reused,
        duration_ms,
    }
}

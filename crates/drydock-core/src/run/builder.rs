//! Build-ahead: every build of the plan is built, one after another in the
//! order the plan needs them, as early as possible — a build does not depend
//! on test results, so later tiers' images build while earlier tiers' steps
//! run. Output and outcome go to the run loop, which replays them under the
//! tier that reports each build. A failed tier stops the builder; a failed
//! build stops the builds after it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ctx, Msg, Runtime};
use crate::engine::context::BuildContext;
use crate::engine::{labels, BuildProgress, BuildRequest, EngineError};
use crate::events::Status;
use crate::plan::{BuildId, Plan, PlannedBuild};
use crate::trust::Trust;

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

/// Starts the builder task: builds every build of the plan in order until
/// done, a build fails, or `stop` fires (then the rest end `cancelled`).
pub(crate) fn start<R: Runtime>(
    ctx: Arc<Ctx<R>>,
    tx: mpsc::UnboundedSender<Msg>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut failed = false;
        for build in &ctx.plan.builds {
            let outcome = if failed {
                BuildOutcome::not_built(Status::Skipped, "an earlier build failed")
            } else if stop.is_cancelled() {
                BuildOutcome::not_built(Status::Cancelled, "interrupted")
            } else {
                let (outcome, image) = build_one(&ctx, build, &tx, &stop).await;
                failed = !outcome.status.is_success();
                let _ = tx.send(Msg::BuildDone(build.id, outcome, image));
                continue;
            };
            let _ = tx.send(Msg::BuildDone(build.id, outcome, None));
        }
    });
}

async fn build_one<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    build: &PlannedBuild,
    tx: &mpsc::UnboundedSender<Msg>,
    stop: &CancellationToken,
) -> (BuildOutcome, Option<String>) {
    let started = Instant::now();
    let request = match build_request(
        &ctx.plan,
        build,
        &ctx.plan.trust,
        &ctx.options.results_dir,
        &ctx.secrets,
    ) {
        Ok(request) => request,
        Err(e) => return (BuildOutcome::not_built(Status::Errored, &e), None),
    };
    let id: BuildId = build.id;
    let progress_tx = tx.clone();
    let mut on_progress = move |p: BuildProgress| {
        let line = match p {
            BuildProgress::Step(line) | BuildProgress::Output(line) => line,
        };
        let _ = progress_tx.send(Msg::BuildProgress(id, line));
    };
    let result = tokio::select! {
        result = ctx.runtime.build(&request, &mut on_progress) => Some(result),
        _ = stop.cancelled() => None,
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, error, reused, image) = match result {
        None => (
            Status::Cancelled,
            Some("interrupted".to_string()),
            false,
            None,
        ),
        Some(Ok(built)) => (Status::Passed, None, built.reused, Some(built.image_id)),
        Some(Err(e @ EngineError::Build { .. })) => {
            (Status::Failed, Some(e.to_string()), false, None)
        }
        Some(Err(e)) => (Status::Errored, Some(e.to_string()), false, None),
    };
    (
        BuildOutcome {
            status,
            error,
            reused,
            duration_ms,
        },
        image,
    )
}

/// The engine request for a planned build: context (with the CA bundle at
/// [`TRUST_CONTEXT_PATH`] when the build takes the run's trust settings),
/// target, args, proxy settings as transient args, labels and tag.
pub(crate) fn build_request(
    plan: &Plan,
    build: &PlannedBuild,
    trust: &Trust,
    results_dir: &std::path::Path,
    secrets: &[crate::secrets::SecretValue],
) -> Result<BuildRequest, String> {
    let mut ca_bundle = None;
    let mut transient_args = BTreeMap::new();
    if build.trust {
        // The engine decides how the bundle reaches the build (docs/trust.md).
        ca_bundle = trust.ca_bytes().map_err(|e| e.to_string())?;
        transient_args = trust.env.clone();
    }
    let mut build_labels = HashMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::PIPELINE.to_string(), plan.pipeline.clone()),
        (labels::ROLE.to_string(), "build".to_string()),
    ]);
    build_labels.insert("drydock.build".to_string(), build.name.clone());
    Ok(BuildRequest {
        context: BuildContext {
            dir: build.context.clone(),
            dockerfile: build.dockerfile.clone(),
            extra_files: Vec::new(),
            // drydock's own folder and the run's results (which may lie
            // inside the context) are never sent: they would change the
            // digest on every run and reach images through `COPY . .`.
            never_send: vec![
                plan.repo_root.join(crate::report::STATE_FOLDER),
                results_dir.to_path_buf(),
            ],
        },
        target: build.target.clone(),
        args: build.args.clone(),
        transient_args,
        labels: build_labels,
        tag: Some(build.tag.clone()),
        no_cache: false,
        ca_bundle,
        secrets: secrets
            .iter()
            .filter(|s| build.secrets.contains(&s.name))
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect(),
    })
}

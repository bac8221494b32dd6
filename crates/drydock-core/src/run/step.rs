//! One step: a container from create to removal, its output streamed as events.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::{RunCtx, Runtime};
use crate::engine::{BindMount, ContainerSpec, EngineError, LineBuffer, LogStream};
use crate::events::{Event, Status, StepKind, TestCounts};
use crate::pipeline::StepSpec;
use crate::report::junit;
use crate::trust::STEP_CA_PATH;

/// Lines of output kept for the failure report.
pub(crate) const TAIL_LINES: usize = 30;

/// How a step ended.
pub(crate) struct StepOutcome {
    pub status: Status,
    pub tests: Option<TestCounts>,
}

struct Ended {
    status: Status,
    exit_code: Option<i64>,
    error: Option<String>,
}

/// The container spec of a step.
fn container_spec<R: Runtime>(
    ctx: &RunCtx<R>,
    tier: &str,
    step: &StepSpec,
    image: String,
) -> ContainerSpec {
    let mut env = std::collections::BTreeMap::new();
    let mut binds: Vec<BindMount> = step
        .mounts
        .iter()
        .map(|m| BindMount {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: true,
        })
        .collect();
    let network = if step.network {
        env.extend(ctx.options.trust.step_env());
        if let Some(ca) = &ctx.options.trust.ca_bundle {
            binds.push(BindMount {
                source: ca.clone(),
                target: STEP_CA_PATH.to_string(),
                read_only: true,
            });
        }
        // Only tiers that use services need the run network (joining a
        // user-defined network costs ~0.1 s per container); the others get
        // the engine's default bridge, which still reaches the outside.
        let tier_uses_services = ctx
            .pipeline
            .tiers
            .iter()
            .any(|t| t.name == tier && !t.services.is_empty());
        if tier_uses_services {
            Some((ctx.network.clone(), vec![step.name.clone()]))
        } else {
            Some(("bridge".to_string(), Vec::new()))
        }
    } else {
        Some(("none".to_string(), Vec::new()))
    };
    env.extend(step.env.clone());
    ContainerSpec {
        name: ctx.container_name(&[tier, &step.name]),
        image,
        command: Some(step.command.clone()),
        env,
        workdir: step.workdir.clone(),
        labels: ctx.labels.with_role("step"),
        network,
        binds,
        ..Default::default()
    }
}

/// Runs a step to the end and reports it; never panics on engine errors.
pub(crate) async fn run_step<R: Runtime>(
    ctx: Arc<RunCtx<R>>,
    tier: String,
    step: StepSpec,
) -> StepOutcome {
    let started = Instant::now();
    let image = ctx.image_for(&step.image);
    ctx.emit(Event::StepStarted {
        tier: tier.clone(),
        step: step.name.clone(),
        kind: StepKind::Run,
        image: match &step.image {
            crate::pipeline::ImageSource::Image(r) => r.clone(),
            crate::pipeline::ImageSource::Target(t) => format!("target {t}"),
        },
    })
    .await;
    let mut tail = VecDeque::new();
    let mut container_id = None;
    let ended = match image {
        Err(e) => Ended {
            status: Status::Errored,
            exit_code: None,
            error: Some(e),
        },
        Ok(image) => {
            let spec = container_spec(&ctx, &tier, &step, image);
            run_container(&ctx, &tier, &step, &spec, &mut tail, &mut container_id).await
        }
    };

    let artifacts = ctx
        .options
        .results_dir
        .join("artifacts")
        .join(&tier)
        .join(&step.name);
    let mut tests = None;
    let mut failed_tests = Vec::new();
    let mut junit_path = None;
    let mut error = ended.error;
    if let Some(id) = &container_id {
        if let Some(report) = &step.junit {
            match collect_junit(&ctx, id, report, &artifacts).await {
                Ok(Some((relative, summary))) => {
                    tests = Some(summary.counts);
                    failed_tests = summary.failed;
                    junit_path = Some(relative);
                }
                Ok(None) => {}
                Err(e) => {
                    error.get_or_insert(format!("JUnit report {report}: {e}"));
                }
            }
        }
        for path in &step.collect {
            if let Err(e) = ctx.runtime.copy_out(id, path, &artifacts).await {
                error.get_or_insert(format!("collecting {path}: {e}"));
            }
        }
        // Off the step's critical path: the teardown waits for these removals.
        let runtime = ctx.runtime.clone();
        let id = id.clone();
        let removal = tokio::spawn(async move {
            if let Err(e) = runtime.remove(&id).await {
                tracing::warn!("removing step container {id}: {e}");
            }
        });
        ctx.removals.lock().expect("removals lock").push(removal);
    }
    let status = ended.status;
    ctx.emit(Event::StepFinished {
        tier,
        step: step.name.clone(),
        status,
        exit_code: ended.exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        error,
        cause: Vec::new(),
        log_tail: if status.is_success() {
            Vec::new()
        } else {
            tail.into_iter().collect()
        },
        tests,
        failed_tests,
        junit: junit_path,
        reused: false,
    })
    .await;
    StepOutcome { status, tests }
}

async fn run_container<R: Runtime>(
    ctx: &Arc<RunCtx<R>>,
    tier: &str,
    step: &StepSpec,
    spec: &ContainerSpec,
    tail: &mut VecDeque<String>,
    container_id: &mut Option<String>,
) -> Ended {
    let errored = |e: EngineError| Ended {
        status: Status::Errored,
        exit_code: None,
        error: Some(e.to_string()),
    };
    let id = match ctx.runtime.create(spec).await {
        Ok(id) => id,
        Err(e) => return errored(e),
    };
    *container_id = Some(id.clone());
    if ctx.cancel.is_cancelled() {
        return Ended {
            status: Status::Cancelled,
            exit_code: None,
            error: Some("interrupted".to_string()),
        };
    }
    match ctx.runtime.start(&id, spec).await {
        Ok(()) => {}
        Err(e @ EngineError::CommandNotFound { .. }) => {
            return Ended {
                status: Status::Failed,
                exit_code: Some(127),
                error: Some(e.to_string()),
            }
        }
        Err(e) => return errored(e),
    }

    let logs = follow_logs(ctx.clone(), tier.to_string(), step.name.clone(), id.clone());
    let (status, exit_code, error) = tokio::select! {
        code = ctx.runtime.wait(&id) => match code {
            Ok(0) => (Status::Passed, Some(0), None),
            Ok(code) => (Status::Failed, Some(code), Some(format!("exited with code {code}"))),
            Err(e) => (Status::Errored, None, Some(e.to_string())),
        },
        _ = tokio::time::sleep(step.timeout) => {
            let _ = ctx.runtime.stop(&id, ctx.options.stop_grace).await;
            (Status::TimedOut, None, Some(format!(
                "timed out after {}", crate::pipeline::format_duration(step.timeout)
            )))
        }
        _ = ctx.cancel.cancelled() => {
            let _ = ctx.runtime.stop(&id, ctx.options.stop_grace).await;
            (Status::Cancelled, None, Some("interrupted".to_string()))
        }
    };
    // The log stream ends when the container exits; do not hang on a stuck engine.
    if let Ok(Ok(lines)) = tokio::time::timeout(std::time::Duration::from_secs(10), logs).await {
        *tail = lines;
    }
    // With an init process the engine starts the container fine and the init
    // reports the missing command itself (exit 126/127): say so plainly.
    let error = match (exit_code, tail.back()) {
        (Some(126 | 127), Some(last)) if last.contains("exec") && last.contains("failed") => {
            Some(format!(
                "command {:?} cannot be started in image {}: {}",
                step.command,
                spec.image,
                last.rsplit("failed: ").next().unwrap_or(last)
            ))
        }
        _ => error,
    };
    Ended {
        status,
        exit_code,
        error,
    }
}

/// Streams a container's output as [`Event::Log`] lines; returns the last lines.
fn follow_logs<R: Runtime>(
    ctx: Arc<RunCtx<R>>,
    tier: String,
    step: String,
    id: String,
) -> tokio::task::JoinHandle<VecDeque<String>> {
    tokio::spawn(async move {
        let mut stream = ctx.runtime.logs(&id);
        let mut stdout = LineBuffer::default();
        let mut stderr = LineBuffer::default();
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let emit_lines = |lines: Vec<String>, which: LogStream, tail: &mut VecDeque<String>| {
            let mut events = Vec::with_capacity(lines.len());
            for line in lines {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                events.push(Event::Log {
                    tier: tier.clone(),
                    step: step.clone(),
                    stream: which,
                    line,
                });
            }
            events
        };
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            let text = String::from_utf8_lossy(&chunk.bytes);
            let buffer = match chunk.stream {
                LogStream::Stdout => &mut stdout,
                LogStream::Stderr => &mut stderr,
            };
            for event in emit_lines(buffer.push(&text), chunk.stream, &mut tail) {
                ctx.emit(event).await;
            }
        }
        for (buffer, which) in [
            (&mut stdout, LogStream::Stdout),
            (&mut stderr, LogStream::Stderr),
        ] {
            for event in emit_lines(buffer.finish(), which, &mut tail) {
                ctx.emit(event).await;
            }
        }
        tail
    })
}

/// Copies the JUnit report out and summarizes it; `None` when the step wrote none.
async fn collect_junit<R: Runtime>(
    ctx: &RunCtx<R>,
    id: &str,
    report: &str,
    artifacts: &Path,
) -> Result<Option<(String, junit::JunitSummary)>, String> {
    let found = ctx
        .runtime
        .copy_out(id, report, artifacts)
        .await
        .map_err(|e| e.to_string())?;
    if !found {
        return Ok(None);
    }
    let name = Path::new(report)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "junit.xml".to_string());
    let local = artifacts.join(&name);
    let summary = junit::summarize_file(&local).map_err(|e| e.to_string())?;
    let relative = local
        .strip_prefix(&ctx.options.results_dir)
        .unwrap_or(&local)
        .to_string_lossy()
        .into_owned();
    Ok(Some((relative, summary)))
}

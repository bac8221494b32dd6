//! One step: a container from create to removal, its output streamed as events.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{reuse, Ctx, Runtime};
use crate::engine::{ContainerSpec, EngineError, LineBuffer, LogStream};
use crate::events::{Event, Status, StepKind, StepTimings, TestCounts};
use crate::plan::PlannedStep;
use crate::report::{junit, RawLog};

/// How long a step's output may keep arriving after its container exited.
const LOG_DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// Lines of output kept for the failure report.
pub(crate) const TAIL_LINES: usize = 30;

/// How a step ended.
pub(crate) struct StepOutcome {
    pub status: Status,
    pub tests: Option<TestCounts>,
}

pub(crate) struct Ended {
    pub status: Status,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Where its time went (copy-out not yet in it).
    pub timings: Option<StepTimings>,
}

impl Ended {
    fn errored(error: String) -> Ended {
        Ended {
            status: Status::Errored,
            exit_code: None,
            error: Some(error),
            timings: None,
        }
    }
}

/// Runs a step to the end and reports it; never panics on engine errors.
/// `image` is the image to run, or why there is none; `stop` stops it (the
/// run's token, or the hard token for `when: always` steps); `deadline`, when
/// given, shortens its timeout. A failed or timed-out attempt runs again up to
/// `retry` times, in a fresh container. Returns how it ended and the
/// background removals of its containers (off the critical path; the
/// teardown waits for them).
pub(crate) async fn run_step<R: Runtime>(
    ctx: Arc<Ctx<R>>,
    step: &PlannedStep,
    image: Result<String, String>,
    stop: CancellationToken,
    deadline: Option<Instant>,
    verdict: Option<reuse::Verdict>,
) -> (StepOutcome, Vec<tokio::task::JoinHandle<()>>) {
    let started = Instant::now();
    let tier = ctx.plan.tiers[step.tier].name.clone();
    ctx.emit(Event::StepStarted {
        tier: tier.clone(),
        step: step.name.clone(),
        kind: StepKind::Run,
        image: ctx.plan.describe_image(step.container.image),
    })
    .await;
    // What the run loop found in the store (see `reuse::Verdict`), or
    // looked up now.
    let (reuse, replayed) = match verdict {
        Some(reuse::Verdict {
            candidate,
            replay: Some(replay),
        }) => (
            candidate,
            Some(replay.emit(&ctx, &tier, step, started).await),
        ),
        Some(reuse::Verdict { candidate, .. }) => (candidate, None),
        None => {
            let candidate = reuse::Candidate::prepare(&ctx, step, &image).await;
            let replayed =
                async { candidate.as_ref()?.replay(&ctx, &tier, step, started).await }.await;
            (candidate, replayed)
        }
    };
    if let Some(outcome) = replayed {
        // Replayed: a container started ahead for it is not needed.
        let removals = ctx
            .ahead
            .discard(&ctx.runtime, step.id)
            .into_iter()
            .collect();
        return (outcome, removals);
    }
    let mut removals = Vec::new();
    let mut failed_before: BTreeSet<String> = BTreeSet::new();
    let mut attempt = 1u32;
    loop {
        let timeout = match deadline {
            Some(d) => step
                .timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => step.timeout,
        };
        let run = run_attempt(&ctx, &tier, step, &image, attempt, &stop, timeout).await;
        removals.extend(run.removal);
        let retry = matches!(run.status, Status::Failed | Status::TimedOut)
            && attempt <= step.retry
            && !stop.is_cancelled();
        if retry {
            ctx.emit(Event::StepRetrying {
                tier: tier.clone(),
                step: step.name.clone(),
                attempt,
                status: run.status,
                exit_code: run.exit_code,
                error: run.error.clone(),
                failed_tests: run.failed_tests.clone(),
            })
            .await;
            failed_before.extend(run.failed_tests);
            attempt += 1;
            continue;
        }
        let status = if run.status.is_success() && attempt > 1 {
            Status::Flaky
        } else {
            run.status
        };
        // Failed in an earlier attempt, not in the last one.
        // The lines that explain a failure, from its last output.
        let cause = if status.is_success() {
            Vec::new()
        } else {
            let tail: Vec<String> = run.tail.iter().cloned().collect();
            crate::report::cause::explain(&tail)
        };
        let flaky_tests: Vec<String> = failed_before
            .iter()
            .filter(|t| !run.failed_tests.contains(t))
            .cloned()
            .collect();
        let finished = Event::StepFinished {
            tier: tier.clone(),
            step: step.name.clone(),
            status,
            exit_code: run.exit_code,
            duration_ms: started.elapsed().as_millis() as u64,
            error: run.error,
            log_tail: if status.is_success() {
                Vec::new()
            } else {
                run.tail.into_iter().collect()
            },
            tests: run.tests,
            failed_tests: run.failed_tests,
            junit: run.junit,
            reused: false,
            attempts: attempt,
            flaky_tests,
            allowed_failure: step.allow_failure && !status.is_success(),
            cause,
            timings: run.timings,
            reused_from: None,
        };
        if let Some(reuse) = reuse {
            removals.push(reuse.store_later(&ctx, &tier, step, &finished));
        }
        ctx.emit(finished).await;
        return (
            StepOutcome {
                status,
                tests: run.tests,
            },
            removals,
        );
    }
}

/// One attempt of a step: its container from create to (background) removal.
struct Attempt {
    status: Status,
    exit_code: Option<i64>,
    error: Option<String>,
    tail: VecDeque<String>,
    tests: Option<TestCounts>,
    failed_tests: Vec<String>,
    junit: Option<String>,
    removal: Option<tokio::task::JoinHandle<()>>,
    timings: Option<StepTimings>,
}

async fn run_attempt<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    tier: &str,
    step: &PlannedStep,
    image: &Result<String, String>,
    attempt: u32,
    stop: &CancellationToken,
    timeout: Duration,
) -> Attempt {
    let mut tail = VecDeque::new();
    let mut container_id = None;
    let ended = match image {
        Err(e) => Ended::errored(e.clone()),
        Ok(image) => {
            let mut spec = ctx.step_spec(step, image.clone());
            if attempt > 1 {
                // The earlier attempt's container may still be going away.
                spec.name = format!("{}-attempt{attempt}", spec.name);
            }
            // The first attempt runs in its container started ahead when
            // there is one (see `ahead`); otherwise, or when that container
            // cannot run it, as always.
            let waited = Instant::now();
            let prestarted = match attempt {
                1 => ctx.ahead.take(step.id).await,
                _ => None,
            };
            let ready_wait = waited.elapsed();
            let ahead = match prestarted {
                Some(pre) => {
                    super::ahead::run_exec(
                        ctx,
                        tier,
                        step,
                        &spec,
                        pre,
                        ready_wait,
                        &mut tail,
                        &mut container_id,
                        stop,
                        timeout,
                    )
                    .await
                }
                None => None,
            };
            match ahead {
                Some(ended) => ended,
                None => {
                    run_container(
                        ctx,
                        tier,
                        step,
                        &spec,
                        &mut tail,
                        &mut container_id,
                        stop,
                        timeout,
                    )
                    .await
                }
            }
        }
    };
    // Artifacts of the last attempt where people look; earlier ones beside.
    let mut artifacts = ctx
        .options
        .results_dir
        .join("artifacts")
        .join(tier)
        .join(&step.name);
    if !ended.status.is_success() && attempt <= step.retry {
        artifacts = artifacts.join(format!("attempt-{attempt}"));
    }
    let mut tests = None;
    let mut failed_tests = Vec::new();
    let mut junit = None;
    let mut error = ended.error;
    let mut removal = None;
    let mut timings = ended.timings;
    let copying = Instant::now();
    if !ended.status.is_success() && container_id.is_some() {
        if let (Ok(image), Some(error)) = (image, error.as_mut()) {
            if let Some(hint) = entrypoint_hint(ctx, step, image).await {
                error.push_str(&hint);
            }
        }
    }
    if let Some(id) = &container_id {
        if let Some(report) = &step.junit {
            // A report that cannot be read does not change how the step
            // ended, but its tests are not counted: people must see that.
            let warning = match collect_junit(ctx, id, report, &artifacts).await {
                Ok(Some((relative, summary))) => {
                    tests = Some(summary.counts);
                    failed_tests = summary.failed;
                    junit = Some(relative);
                    summary.warning
                }
                Ok(None) if ended.status.is_success() => Some(format!(
                    "the step wrote no JUnit report at {report}: its tests are not counted"
                )),
                Ok(None) => None,
                Err(e) => Some(format!(
                    "JUnit report {report} cannot be read, its tests are not counted: {e}"
                )),
            };
            if let Some(message) = warning {
                ctx.emit(Event::Warning {
                    tier: tier.to_string(),
                    step: step.name.clone(),
                    message,
                })
                .await;
            }
        }
        for path in &step.collect {
            if let Err(e) = ctx.runtime.copy_out(id, path, &artifacts).await {
                error.get_or_insert(format!("collecting {path}: {e}"));
            }
        }
        // Reports and artifacts may hold what the step printed.
        if let Some(masker) = &ctx.masker {
            let masker = masker.clone();
            let dir = artifacts.clone();
            let _ = tokio::task::spawn_blocking(move || masker.mask_files(&dir)).await;
        }
        if let Some(timings) = timings.as_mut() {
            timings.copy_out_ms = copying.elapsed().as_millis() as u64;
        }
        let runtime = ctx.runtime.clone();
        let id = id.clone();
        removal = Some(tokio::spawn(async move {
            if let Err(e) = runtime.remove(&id).await {
                tracing::warn!("removing step container {id}: {e}");
            }
        }));
    }
    Attempt {
        status: ended.status,
        exit_code: ended.exit_code,
        error,
        tail,
        tests,
        failed_tests,
        junit,
        removal,
        timings,
    }
}

/// When a failed step gave `command` but no `entrypoint`, and its image has
/// an `ENTRYPOINT` that is a program rather than a pass-through wrapper
/// (`docker-entrypoint.sh`, tini, dumb-init, a shell): the image ran that
/// program with the command as its arguments (as `docker run IMAGE ARGS`
/// does), which is rarely what a lint or test step meant. Says so, with the
/// fix. `None` otherwise, or when the image cannot be inspected.
async fn entrypoint_hint<R: Runtime>(
    ctx: &Ctx<R>,
    step: &PlannedStep,
    image: &str,
) -> Option<String> {
    let command = step.container.command.as_ref()?;
    if step.container.entrypoint.is_some() {
        return None;
    }
    let (entrypoint, _) = ctx.runtime.image_command(image).await.ok()??;
    let program = entrypoint.first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let wrapper = base.contains("entrypoint")
        || matches!(
            base,
            "tini" | "dumb-init" | "docker-init" | "catatonit" | "sh" | "bash" | "env"
        );
    if wrapper {
        return None;
    }
    let ran: Vec<&String> = entrypoint.iter().chain(command).collect();
    Some(format!(
        " (the image's ENTRYPOINT {entrypoint:?} ran with the step's `command` as its arguments: {ran:?}; to run the command itself, set `entrypoint: []`, or the program as `entrypoint:` and its arguments as `command:`)"
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_container<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    tier: &str,
    step: &PlannedStep,
    spec: &ContainerSpec,
    tail: &mut VecDeque<String>,
    container_id: &mut Option<String>,
    stop: &CancellationToken,
    timeout: Duration,
) -> Ended {
    let errored = |e: EngineError| Ended::errored(e.to_string());
    let mut timings = StepTimings::default();
    let began = Instant::now();
    let id = match ctx.runtime.create(spec).await {
        Ok(id) => id,
        Err(e) => return errored(e),
    };
    *container_id = Some(id.clone());
    for copy in &step.container.copies {
        if let Err(e) = ctx
            .runtime
            .copy_in(
                &id,
                &copy.source,
                &copy.target,
                &skip_dirs(&ctx.plan.repo_root),
            )
            .await
        {
            return errored(e);
        }
    }
    timings.create_ms = began.elapsed().as_millis() as u64;
    if stop.is_cancelled() {
        return Ended {
            status: Status::Cancelled,
            exit_code: None,
            error: Some("interrupted".to_string()),
            timings: Some(timings),
        };
    }
    let began = Instant::now();
    match ctx.runtime.start(&id, spec).await {
        Ok(()) => {}
        Err(e @ EngineError::CommandNotFound { .. }) => {
            return Ended {
                status: Status::Failed,
                exit_code: Some(127),
                error: Some(e.to_string()),
                timings: Some(timings),
            }
        }
        Err(e) => return errored(e),
    }
    timings.start_ms = began.elapsed().as_millis() as u64;
    let began = Instant::now();

    let logs = follow_output(
        ctx.clone(),
        tier.to_string(),
        step.name.clone(),
        ctx.runtime.logs(&id),
    );
    let (status, exit_code, error) = tokio::select! {
        code = ctx.runtime.wait(&id) => match code {
            Ok(0) => (Status::Passed, Some(0), None),
            Ok(code) => (Status::Failed, Some(code), Some(exit_reason(ctx, &id, code, true).await)),
            Err(e) => (Status::Errored, None, Some(e.to_string())),
        },
        _ = tokio::time::sleep(timeout) => {
            let _ = ctx.runtime.stop(&id, ctx.options.stop_grace).await;
            (Status::TimedOut, None, Some(format!(
                "timed out after {}", crate::pipeline::format_duration(timeout)
            )))
        }
        _ = stop.cancelled() => {
            let _ = ctx.runtime.stop(&id, ctx.options.stop_grace).await;
            (Status::Cancelled, None, Some("interrupted".to_string()))
        }
    };
    drain_output(step, logs, tail).await;
    let argv: Vec<String> = spec
        .entrypoint
        .iter()
        .flatten()
        .chain(spec.command.iter().flatten())
        .cloned()
        .collect();
    let error = explain_not_started(&argv, &spec.image, exit_code, tail, error);
    timings.command_ms = began.elapsed().as_millis() as u64;
    Ended {
        status,
        exit_code,
        error,
        timings: Some(timings),
    }
}

/// Waits for the end of a step's output (see [`follow_output`]) and keeps
/// its last lines in `tail`.
pub(crate) async fn drain_output(
    step: &PlannedStep,
    logs: tokio_util::task::AbortOnDropHandle<VecDeque<String>>,
    tail: &mut VecDeque<String>,
) {
    // The log stream ends once the engine has sent all the container's
    // output, which takes a while after a step that printed a lot: wait for
    // it, so that the step's last lines come before its end. A stuck engine
    // is the liveness ping's business (the run abandons its steps).
    match tokio::time::timeout(LOG_DRAIN_LIMIT, logs).await {
        Ok(Ok(lines)) => *tail = lines,
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!(
            "the output of step {} did not end within {}s of its exit",
            step.name,
            LOG_DRAIN_LIMIT.as_secs()
        ),
    }
}

/// With an init process the engine starts the container fine and the init
/// reports the missing command itself (exit 126/127), as an exec does: says
/// so plainly, naming the `argv` that was run in `image`.
pub(crate) fn explain_not_started(
    argv: &[String],
    image: &str,
    exit_code: Option<i64>,
    tail: &VecDeque<String>,
    error: Option<String>,
) -> Option<String> {
    match (exit_code, tail.back()) {
        (Some(126 | 127), Some(last)) if last.contains("exec") && last.contains("failed") => {
            Some(format!(
                "command {argv:?} cannot be started in image {image}: {}",
                last.rsplit("failed: ").next().unwrap_or(last)
            ))
        }
        _ => error,
    }
}

/// Why a step's container exited with `code`, for people: the OOM killer
/// (docker's `OOMKilled`) or another SIGKILL (from inside or outside the
/// step) are told apart from an ordinary non-zero exit. `main` says the
/// command was the container's main process; an exec'd command (a step
/// started ahead) killed by the OOM killer does not stop the container, so
/// the engine may not mark `OOMKilled`: a 137 then names both causes.
pub(crate) async fn exit_reason<R: Runtime>(
    ctx: &Ctx<R>,
    id: &str,
    code: i64,
    main: bool,
) -> String {
    let oom = ctx
        .runtime
        .state(id)
        .await
        .map(|s| s.oom_killed)
        .unwrap_or(false);
    match code {
        _ if oom => format!(
            "killed by the kernel's OOM killer (exit {code}, OOMKilled): a process of the step needed more memory than the container could have; lower its memory use (e.g. fewer test workers) or give the engine more memory"
        ),
        137 if !main => "killed by SIGKILL (exit 137): by the kernel's OOM killer (a process of the step needed more memory than the container could have; lower its memory use or give the engine more memory) or by a process that sent it SIGKILL, from inside the step (`kill -9`, a test harness) or from outside (`docker kill`, the engine restarting)".to_string(),
        137 => "killed by SIGKILL (exit 137), not by the OOM killer: a process sent it SIGKILL, from inside the step (`kill -9`, a test harness or supervisor) or from outside (`docker kill`, `docker rm -f`, another tool's cleanup, the engine restarting)".to_string(),
        _ => format!("exited with code {code}"),
    }
}

/// Streams a step's output (its container's logs, or its exec's output) as
/// [`Event::Log`] lines, into its log files, masked; returns the last
/// lines. The task ends when its handle is dropped (a step that is given up
/// on must not keep the run's event stream open).
pub(crate) fn follow_output<R: Runtime>(
    ctx: Arc<Ctx<R>>,
    tier: String,
    step: String,
    mut stream: futures::stream::BoxStream<'static, Result<crate::engine::LogChunk, EngineError>>,
) -> tokio_util::task::AbortOnDropHandle<VecDeque<String>> {
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let mut raw =
            RawLog::create(&ctx.options.results_dir, &tier, &step, ctx.masker.as_ref()).await;
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
            raw.write(&chunk.bytes).await;
            let buffer = match chunk.stream {
                LogStream::Stdout => &mut stdout,
                LogStream::Stderr => &mut stderr,
            };
            for event in emit_lines(buffer.push(&chunk.bytes), chunk.stream, &mut tail) {
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
        raw.finish().await;
        tail
    }))
}

/// Copies the JUnit report out and summarizes it; `None` when the step wrote none.
async fn collect_junit<R: Runtime>(
    ctx: &Ctx<R>,
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

/// drydock's own output folder in a repository, never copied into containers.
pub(crate) fn skip_dirs(repo_root: &Path) -> Vec<std::path::PathBuf> {
    vec![repo_root.join(crate::report::STATE_FOLDER)]
}

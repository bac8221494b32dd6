//! Services: start a sidecar on the run network and wait until a probe that
//! cannot be fooled says it is ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{Ctx, Runtime};
use crate::engine::LineBuffer;
use crate::events::Event;
use crate::pipeline::Probe;
use crate::plan::PlannedService;

/// Longest pause between two probes.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Tier name used for service log lines.
pub(crate) const SERVICES_TIER: &str = "services";

/// The task that streams a service's output; dropping it stops it.
pub(crate) type LogFollower = tokio_util::task::AbortOnDropHandle<()>;

/// Starts the service and waits for readiness; `Err` says why it is not
/// ready. Also returns the task that streams its output, once it started.
pub(crate) async fn start_and_probe<R: Runtime>(
    ctx: Arc<Ctx<R>>,
    service: &PlannedService,
    image: String,
) -> (Result<(), String>, Option<LogFollower>) {
    let mut follower = None;
    let result = start_and_probe_inner(&ctx, service, image, &mut follower).await;
    if let Err((error, log_tail)) = &result {
        ctx.emit(Event::ServiceFailed {
            service: service.name.clone(),
            error: error.clone(),
            log_tail: log_tail.clone(),
        })
        .await;
    }
    (result.map_err(|(error, _)| error), follower)
}

async fn start_and_probe_inner<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    service: &PlannedService,
    image: String,
    follower: &mut Option<LogFollower>,
) -> Result<(), (String, Vec<String>)> {
    let no_tail = |e: String| (e, Vec::new());
    let mut spec = ctx.container_spec(&service.container, image.clone());
    spec.health_interval = match service.ready.as_ref().map(|r| &r.probe) {
        Some(Probe::Healthcheck) => Some(
            service
                .ready
                .as_ref()
                .map(|r| r.interval.max(Duration::from_millis(250)))
                .unwrap_or(Duration::from_millis(500)),
        ),
        _ => None,
    };
    let started = Instant::now();
    let id = ctx
        .runtime
        .create(&spec)
        .await
        .map_err(|e| no_tail(e.to_string()))?;
    ctx.runtime
        .start(&id, &spec)
        .await
        .map_err(|e| no_tail(e.to_string()))?;
    ctx.emit(Event::ServiceStarted {
        service: service.name.clone(),
        image,
    })
    .await;
    *follower = Some(follow_service_logs(
        ctx.clone(),
        service.name.clone(),
        id.clone(),
    ));

    let Some(ready) = &service.ready else {
        return Ok(());
    };
    let deadline = started + ready.timeout;
    let mut backoff = ready.interval;
    let mut last_failure;
    loop {
        let state = ctx
            .runtime
            .state(&id)
            .await
            .map_err(|e| no_tail(e.to_string()))?;
        if !state.running {
            let tail = tail_lines(ctx, &id).await;
            return Err((
                format!(
                    "service {} exited with code {} before it was ready",
                    service.name,
                    state.exit_code.unwrap_or(-1)
                ),
                tail,
            ));
        }
        match probe_once(
            ctx.runtime.as_ref(),
            &id,
            &service.name,
            &ready.probe,
            state.health.as_deref(),
        )
        .await
        {
            Ok(()) => {
                ctx.emit(Event::ServiceReady {
                    service: service.name.clone(),
                    duration_ms: started.elapsed().as_millis() as u64,
                })
                .await;
                return Ok(());
            }
            Err(why) => last_failure = why,
        }
        let now = Instant::now();
        if now >= deadline {
            let tail = tail_lines(ctx, &id).await;
            return Err((
                format!(
                    "service {} not ready after {}: {last_failure}",
                    service.name,
                    crate::pipeline::format_duration(ready.timeout)
                ),
                tail,
            ));
        }
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One probe; `Err` says what it saw.
/// Runs one readiness probe against the container `id`, which answers to
/// `alias` on its network; `health` is its current health status. Shared by
/// run services and deploy services.
pub(crate) async fn probe_once<R: Runtime + ?Sized>(
    runtime: &R,
    id: &str,
    alias: &str,
    probe: &Probe,
    health: Option<&str>,
) -> Result<(), String> {
    match probe {
        Probe::Healthcheck => match health {
            Some("healthy") => Ok(()),
            Some(other) => Err(format!("health status {other}")),
            None => Err("the image has no HEALTHCHECK".to_string()),
        },
        Probe::Exec(argv) => {
            let out = runtime
                .exec(id, argv, &BTreeMap::new())
                .await
                .map_err(|e| e.to_string())?;
            if out.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{argv:?} exited with {}: {}",
                    out.exit_code,
                    out.output.trim()
                ))
            }
        }
        Probe::Postgres {
            user,
            password,
            database,
        } => {
            // Over the run network, by alias (TCP, not the socket), with a real login and query.
            let argv: Vec<String> = [
                "psql", "-h", alias, "-U", user, "-d", database, "-tAc", "SELECT 1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut env = BTreeMap::from([("PGCONNECT_TIMEOUT".to_string(), "3".to_string())]);
            if let Some(password) = password {
                env.insert("PGPASSWORD".to_string(), password.clone());
            }
            let out = runtime
                .exec(id, &argv, &env)
                .await
                .map_err(|e| e.to_string())?;
            if out.exit_code == 0 && out.output.trim() == "1" {
                Ok(())
            } else {
                Err(format!("psql said: {}", out.output.trim()))
            }
        }
    }
}

async fn tail_lines<R: Runtime>(ctx: &Ctx<R>, id: &str) -> Vec<String> {
    ctx.runtime
        .tail_logs(id, super::step::TAIL_LINES)
        .await
        .map(crate::engine::render_lines)
        .unwrap_or_default()
}

fn follow_service_logs<R: Runtime>(ctx: Arc<Ctx<R>>, service: String, id: String) -> LogFollower {
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let mut stream = ctx.runtime.logs(&id);
        let mut raw = crate::report::RawLog::create(
            &ctx.options.results_dir,
            SERVICES_TIER,
            &service,
            ctx.masker.as_ref(),
        )
        .await;
        let mut buffer = LineBuffer::default();
        let mut last = crate::engine::LogStream::Stdout;
        while let Some(Ok(chunk)) = stream.next().await {
            raw.write(&chunk.bytes).await;
            last = chunk.stream;
            for line in buffer.push(&chunk.bytes) {
                ctx.emit(Event::Log {
                    tier: SERVICES_TIER.to_string(),
                    step: service.clone(),
                    stream: chunk.stream,
                    line,
                })
                .await;
            }
        }
        for line in buffer.finish() {
            ctx.emit(Event::Log {
                tier: SERVICES_TIER.to_string(),
                step: service.clone(),
                stream: last,
                line,
            })
            .await;
        }
        raw.finish().await;
    }))
}

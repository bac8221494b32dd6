//! Services: start a sidecar on the run network and wait until a probe that
//! cannot be fooled says it is ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::ready::{probe_once, wait_ready, Backoff};
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
    let waited = wait_ready(
        ctx.runtime.as_ref(),
        &id,
        started,
        ready.timeout,
        Backoff {
            first: ready.interval,
            max: MAX_BACKOFF,
        },
        super::step::TAIL_LINES,
        |state| {
            let runtime = ctx.runtime.as_ref();
            let (id, alias, probe) = (&id, &service.name, &ready.probe);
            async move { probe_once(runtime, id, alias, probe, state.health.as_deref()).await }
        },
    )
    .await;
    match waited {
        Ok(took) => {
            ctx.emit(Event::ServiceReady {
                service: service.name.clone(),
                duration_ms: took.as_millis() as u64,
            })
            .await;
            Ok(())
        }
        Err(not_ready) => {
            let (why, log_tail) = not_ready.reason(ready.timeout);
            Err((format!("service {} {why}", service.name), log_tail))
        }
    }
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

//! The runner's Prometheus metrics, served at `GET /metrics` in the text
//! exposition format (OpenMetrics text, which Prometheus scrapes), through
//! the `prometheus-client` crate.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `drydock_runner_queue_runs` | gauge | `state` | runs in the store by state (`queued`, `running`), read from the store at each scrape: the whole fleet's queue |
//! | `drydock_runner_runs_finished_total` | counter | `outcome` | runs this runner process finished, by final state (`passed`, `failed`, `errored`, `interrupted`, `cancelled`) |
//! | `drydock_runner_run_duration_seconds` | histogram | | wall time of those runs, from start to end (buckets 1 s … 2 h) |
//! | `drydock_runner_webhook_deliveries_total` | counter | `hook`, `result` | webhook deliveries by forge and what became of them (see [`DeliveryResult`]) |
//! | `drydock_runner_engine_errors_total` | counter | `op` | Docker Engine failures: `run` (a run ended errored by the engine), `cleanup` (removing a run's leftovers), `ping` (`/readyz`) |
//! | `drydock_runner_forge_statuses_total` | counter | `forge`, `result` | commit statuses posted to forges: `posted`, `retried` (each retry), `failed` (given up) |
//!
//! Counters count from the start of this process, as Prometheus expects
//! (it handles restarts with `rate()`); the queue gauge is the store's.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::RunState;

/// The `state` label of the queue gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// A run state (`queued`, `running`…).
    pub state: String,
}

/// The `outcome` label of finished runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// A final run state (`passed`, `failed`…).
    pub outcome: String,
}

/// What became of a webhook delivery.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DeliveryResult {
    /// A run was queued.
    queued,
    /// Accepted, nothing to do (tag, deleted branch, branch not watched,
    /// commit already seen, not a push, repository not configured).
    ignored,
    /// A delivery id seen before.
    replayed,
    /// Missing or wrong signature or token, or webhooks not configured (401).
    unauthorized,
    /// Malformed body (400) or too large (413).
    rejected,
    /// The store failed (503).
    unavailable,
}

/// Labels of webhook deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `github` or `gitlab`.
    pub hook: String,
    /// What became of it.
    pub result: DeliveryResult,
}

/// The `op` label of engine errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `run`, `cleanup` or `ping`.
    pub op: String,
}

/// Labels of forge status posts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeLabels {
    /// `github` or `gitlab`.
    pub forge: String,
    /// `posted`, `retried` or `failed`.
    pub result: String,
}

/// The runner's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    queue: Family<StateLabel, Gauge>,
    finished: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    engine_errors: Family<OpLabel, Counter>,
    forge: Family<ForgeLabels, Counter>,
}

/// Upper bounds (seconds) of the run duration histogram: 1 s to 2 h.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (all at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("drydock_runner");
        let queue = Family::<StateLabel, Gauge>::default();
        let finished = Family::<OutcomeLabel, Counter>::default();
        let duration = Histogram::new(DURATION_BUCKETS);
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let engine_errors = Family::<OpLabel, Counter>::default();
        let forge = Family::<ForgeLabels, Counter>::default();
        registry.register(
            "queue_runs",
            "Runs in the store by state (queued, running), the whole fleet's",
            queue.clone(),
        );
        registry.register(
            "runs_finished",
            "Runs this runner finished, by outcome",
            finished.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Wall time of the runs this runner finished",
            duration.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by forge and result",
            deliveries.clone(),
        );
        registry.register(
            "engine_errors",
            "Docker Engine failures by operation",
            engine_errors.clone(),
        );
        registry.register(
            "forge_statuses",
            "Commit statuses posted to forges, by result",
            forge.clone(),
        );
        // Every label value the docs list exists from the start (at zero).
        for state in [RunState::Queued, RunState::Running] {
            drop(queue.get_or_create(&StateLabel {
                state: state.as_str().into(),
            }));
        }
        for state in RunState::ALL.into_iter().filter(|s| s.is_finished()) {
            drop(finished.get_or_create(&OutcomeLabel {
                outcome: state.as_str().into(),
            }));
        }
        for op in ["run", "cleanup", "ping"] {
            drop(engine_errors.get_or_create(&OpLabel { op: op.into() }));
        }
        Metrics {
            registry: Mutex::new(registry),
            queue,
            finished,
            duration,
            deliveries,
            engine_errors,
            forge,
        }
    }

    /// Sets the queue gauge of `state` to `count`.
    pub fn set_queue(&self, state: RunState, count: u64) {
        self.queue
            .get_or_create(&StateLabel {
                state: state.as_str().into(),
            })
            .set(count.min(i64::MAX as u64) as i64);
    }

    /// A run this runner finished, as `state`, after `seconds`.
    pub fn run_finished(&self, state: RunState, seconds: f64) {
        self.finished
            .get_or_create(&OutcomeLabel {
                outcome: state.as_str().into(),
            })
            .inc();
        self.duration.observe(seconds.max(0.0));
    }

    /// A webhook delivery of `hook` (`github`, `gitlab`) ended as `result`.
    pub fn delivery(&self, hook: &str, result: DeliveryResult) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                hook: hook.into(),
                result,
            })
            .inc();
    }

    /// A Docker Engine failure during `op` (`run`, `cleanup`, `ping`).
    pub fn engine_error(&self, op: &str) {
        self.engine_errors
            .get_or_create(&OpLabel { op: op.into() })
            .inc();
    }

    /// A commit status post to `forge` ended as `result` (`posted`,
    /// `retried`, `failed`).
    pub fn forge_status(&self, forge: &str, result: &str) {
        self.forge
            .get_or_create(&ForgeLabels {
                forge: forge.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The text exposition of every metric (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names_every_metric() {
        let m = Metrics::new();
        m.set_queue(RunState::Queued, 3);
        m.run_finished(RunState::Passed, 12.5);
        m.run_finished(RunState::Failed, 0.2);
        m.delivery("github", DeliveryResult::queued);
        m.delivery("gitlab", DeliveryResult::unauthorized);
        m.engine_error("ping");
        m.forge_status("github", "posted");
        let text = m.encode();
        for line in [
            "drydock_runner_queue_runs{state=\"queued\"} 3",
            "drydock_runner_queue_runs{state=\"running\"} 0",
            "drydock_runner_runs_finished_total{outcome=\"passed\"} 1",
            "drydock_runner_runs_finished_total{outcome=\"failed\"} 1",
            "drydock_runner_runs_finished_total{outcome=\"cancelled\"} 0",
            "drydock_runner_run_duration_seconds_count 2",
            "drydock_runner_run_duration_seconds_bucket{le=\"1.0\"} 1",
            "drydock_runner_run_duration_seconds_bucket{le=\"15.0\"} 2",
            "drydock_runner_webhook_deliveries_total{hook=\"github\",result=\"queued\"} 1",
            "drydock_runner_webhook_deliveries_total{hook=\"gitlab\",result=\"unauthorized\"} 1",
            "drydock_runner_engine_errors_total{op=\"ping\"} 1",
            "drydock_runner_engine_errors_total{op=\"run\"} 0",
            "drydock_runner_forge_statuses_total{forge=\"github\",result=\"posted\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

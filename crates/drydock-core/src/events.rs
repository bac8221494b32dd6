//! Typed, ordered events of a run. The executor emits them; reporters
//! (terminal, NDJSON, JUnit, results folder, ledgers) consume them and never
//! reach back into the engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::engine::LogStream;

/// A consumer of a run's events: the terminal, `--json` output, the results
/// folder, the runner's database and status page. The run session
/// ([`crate::session`]) calls every sink on one thread of its own, off the
/// async runtime, with every event in the order the executor sent it and the
/// time it was received (the same stamp for every sink).
pub trait EventSink: Send {
    /// One event, stamped `at` (when the session received it).
    fn handle(&mut self, event: &Event, at: Timestamp);
    /// No event is waiting: write out what is buffered.
    fn idle(&mut self) {}
    /// Called at least every [`SINK_TICK`] while the run goes on (progress
    /// lines use it), with the time now.
    fn tick(&mut self, _now: Timestamp) {}
    /// The stream ended ([`Event::RunFinished`] was the last event, or the
    /// executor stopped sending).
    fn finish(&mut self) {}
}

/// When something happened: UTC, as recorded in `events.ndjson` (see
/// [`format_ts`]).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The executor's end of a run's event channel (bounded: a slow consumer
/// slows the run down rather than growing memory).
pub type EventSender = tokio::sync::mpsc::Sender<Event>;

/// How often [`EventSink::tick`] is called at least: 250 ms.
pub const SINK_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Builds a Dockerfile target.
    Build,
    /// Runs a command in a container.
    Run,
}

/// How a step or tier ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code 0 (or the build succeeded).
    Passed,
    /// Non-zero exit code, or a failed build.
    Failed,
    /// The step's timeout elapsed.
    TimedOut,
    /// The step could not run because of the engine or the environment.
    Errored,
    /// The run was interrupted.
    Cancelled,
    /// An earlier tier failed.
    Skipped,
    /// Failed, then passed on a retry (`retry:`): the step passes, and is
    /// reported flaky.
    Flaky,
}

impl Status {
    /// True for `Passed` and `Flaky`.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Passed | Status::Flaky)
    }

    /// A short lower-case word for people.
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::TimedOut => "timed out",
            Status::Errored => "errored",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
            Status::Flaky => "flaky",
        }
    }
}

/// How a whole run ended; maps to the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every tier passed (exit 0).
    Passed,
    /// A step failed or timed out (exit 1).
    Failed,
    /// The engine or environment failed (exit 3).
    Errored,
    /// Interrupted by a signal or a cancel (exit 130).
    Interrupted,
    /// Nothing ran: the pipeline file, the command line or another input
    /// was invalid (exit 2). Only a front end that refuses a run before it
    /// starts reports it (`drydock run --json`); the executor never does.
    Invalid,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Errored => 3,
            Outcome::Interrupted => 130,
            Outcome::Invalid => 2,
        }
    }
}

/// Why a run was cut short. Ordered from the mildest to the strongest: a
/// run keeps the strongest reason it was given (as cargo-nextest's cancel
/// reasons are ordered).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// A tier failed: builds ahead are stopped and later tiers skipped;
    /// steps already running finish.
    FailedTier,
    /// The run's own deadline passed (the runner's per-run timeout).
    Timeout,
    /// Someone cancelled it through an API (the runner's cancel endpoint, a library caller).
    ApiCancel,
    /// A first SIGINT or SIGTERM: running steps are stopped with the stop grace.
    Signal,
    /// A second signal: stop everything now.
    SecondSignal,
}

impl CancelReason {
    /// Whether running steps are stopped (everything but a failed tier).
    pub fn stops_running_steps(self) -> bool {
        self >= CancelReason::Timeout
    }

    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::FailedTier => "a tier failed",
            CancelReason::Timeout => "the run timed out",
            CancelReason::ApiCancel => "cancelled through the API",
            CancelReason::Signal => "interrupted by a signal",
            CancelReason::SecondSignal => "interrupted by a second signal",
        }
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Where a step's time went, in milliseconds (its last attempt). Removal
/// is not in it: it happens in the background after `step_finished`, off
/// the critical path (the run's teardown waits for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepTimings {
    /// Whether its container was created and started ahead of its turn
    /// (its command then ran through exec in it; see `docs/events.md`).
    pub started_ahead: bool,
    /// Creating its container, copies in included (ahead of its turn when
    /// `started_ahead`).
    pub create_ms: u64,
    /// Starting its container (ahead of its turn when `started_ahead`).
    pub start_ms: u64,
    /// Waiting, at its turn, for its container started ahead to be ready.
    pub ready_wait_ms: u64,
    /// Its command: from its start (or exec) to its exit and the end of its
    /// output.
    pub command_ms: u64,
    /// Copying its JUnit report and collected files out.
    pub copy_out_ms: u64,
}

/// Test counts from JUnit reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestCounts {
    /// Tests run.
    pub tests: u64,
    /// Failed tests.
    pub failures: u64,
    /// Tests that errored.
    pub errors: u64,
    /// Skipped tests.
    pub skipped: u64,
}

impl TestCounts {
    /// Tests that passed.
    pub fn passed(&self) -> u64 {
        self.tests
            .saturating_sub(self.failures + self.errors + self.skipped)
    }

    /// Adds another count to this one.
    pub fn add(&mut self, other: &TestCounts) {
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
    }
}

/// The plan of one tier, announced at the start of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TierPlan {
    /// Tier name.
    pub name: String,
    /// Step names in order (builds first, named `build <target>`).
    pub steps: Vec<String>,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Pipeline name.
        pipeline: String,
        /// The tiers to run.
        tiers: Vec<TierPlan>,
        /// Where logs and reports are written.
        results_dir: String,
        /// The engine's address and version.
        engine: String,
    },
    /// A service container was started.
    ServiceStarted {
        /// Service name.
        service: String,
        /// Image it runs.
        image: String,
    },
    /// A service passed its readiness probe.
    ServiceReady {
        /// Service name.
        service: String,
        /// Time from start to ready.
        duration_ms: u64,
    },
    /// A service could not be started or never became ready.
    ServiceFailed {
        /// Service name.
        service: String,
        /// Why.
        error: String,
        /// Its last log lines.
        log_tail: Vec<String>,
    },
    /// A tier started.
    TierStarted {
        /// Tier name.
        tier: String,
    },
    /// A step started.
    StepStarted {
        /// Tier name.
        tier: String,
        /// Step name.
        step: String,
        /// Build or run.
        kind: StepKind,
        /// Image (run) or target (build).
        image: String,
    },
    /// A line of output from a step (or a build, or a service).
    Log {
        /// Tier name (`services` for service logs).
        tier: String,
        /// Step name (or service name).
        step: String,
        /// Which stream.
        stream: LogStream,
        /// The line, without its newline.
        line: String,
    },
    /// A step ended.
    StepFinished {
        /// Tier name.
        tier: String,
        /// Step name.
        step: String,
        /// How it ended.
        status: Status,
        /// Exit code of the command, when it ran.
        exit_code: Option<i64>,
        /// Wall time.
        duration_ms: u64,
        /// Why it failed, for people.
        error: Option<String>,
        /// The lines of its output that explain the failure (a TLS error, a
        /// missing package, a traceback's last line…), picked by
        /// [`crate::report::cause::explain`]; empty when it passed or nothing
        /// telling was found.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cause: Vec<String>,
        /// The last lines of its output (on failure).
        log_tail: Vec<String>,
        /// Counts from its JUnit report, when it has one.
        tests: Option<TestCounts>,
        /// Failed test cases named by its JUnit report.
        failed_tests: Vec<String>,
        /// The collected JUnit report, relative to the results folder.
        junit: Option<String>,
        /// Whether a build reused an image with the same content digest, or
        /// a step's stored result was replayed instead of running it (see
        /// [`crate::reuse`]).
        reused: bool,
        /// For a replayed step: the run id its result comes from (its
        /// output, reports and collected files are that run's, copied into
        /// this run's results folder). `None` when the step ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reused_from: Option<String>,
        /// How many times the step ran (more than 1 with `retry:`).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        attempts: u32,
        /// Test cases that failed in an earlier attempt and passed in the last.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        flaky_tests: Vec<String>,
        /// The step failed but may (`allow_failure: true`): a warning, not a failure.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allowed_failure: bool,
        /// Where its time went (run steps whose container was created; not
        /// builds, skipped or abandoned steps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timings: Option<StepTimings>,
    },
    /// An attempt of a step with `retry:` failed and the step runs again.
    /// The attempt's log lines were sent before this event; the next
    /// attempt's follow it.
    StepRetrying {
        /// Tier name.
        tier: String,
        /// Step name.
        step: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How it ended.
        status: Status,
        /// Exit code, when the command ran.
        exit_code: Option<i64>,
        /// Why it failed.
        error: Option<String>,
        /// Failed test cases named by its JUnit report.
        failed_tests: Vec<String>,
    },
    /// Something people must see that did not change how a step ended: a
    /// JUnit report that could not be read (its tests are then not
    /// counted), for one. Shown on the terminal, kept in the step's log and
    /// in `summary.json`. (Added after the first release of the event
    /// stream: readers of older streams never see it.)
    Warning {
        /// Tier name.
        tier: String,
        /// Step name.
        step: String,
        /// What happened and what it means, for people.
        message: String,
    },
    /// A step that did not run because an earlier tier failed or the run stopped.
    StepSkipped {
        /// Tier name.
        tier: String,
        /// Step name.
        step: String,
        /// Why, for people (`an earlier step failed`, `its need lint/flake8 failed`…).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A tier ended.
    TierFinished {
        /// Tier name.
        tier: String,
        /// How it ended.
        status: Status,
        /// Wall time.
        duration_ms: u64,
        /// Test counts summed over its steps.
        tests: TestCounts,
    },
    /// A release tag was pushed to the pipeline's registry (before the
    /// channel moves; see [`Event::Released`]).
    Pushed {
        /// The reference pushed (`host:port/name:tag`).
        reference: String,
        /// The registry host.
        registry: String,
    },
    /// Tags were applied to the released image.
    Released {
        /// Image id.
        image_id: String,
        /// Tags applied (`name:sha`, `name:run`, `name:channel`).
        tags: Vec<String>,
        /// The channel moved.
        channel: String,
    },
    /// The run is being cut short (sent again when a stronger reason arrives).
    Cancelling {
        /// Why.
        reason: CancelReason,
    },
    /// The run ended and everything it created was removed.
    RunFinished {
        /// Run id.
        run_id: String,
        /// How it ended.
        outcome: Outcome,
        /// Wall time.
        duration_ms: u64,
        /// Failure summary, for people.
        error: Option<String>,
        /// Containers/networks removed at teardown.
        removed: usize,
        /// Why the run was cut short, if it was (the strongest reason seen).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_reason: Option<CancelReason>,
        /// Why the run did not pass, for tools: a kind, the message and,
        /// for invalid configuration, where (absent when it passed).
        /// (Added in event stream v1.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<RunFailure>,
    },
}

/// What kind of failure ended a run (see [`RunFailure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A step or build failed or timed out (exit 1).
    StepFailed,
    /// The pipeline file or a file it names is invalid (exit 2).
    InvalidConfiguration,
    /// The command line is invalid (exit 2).
    InvalidUsage,
    /// The engine, an image, a sidecar or the host failed (exit 3).
    Infrastructure,
    /// A signal or a cancel stopped the run (exit 130).
    Interrupted,
}

impl FailureKind {
    /// The kind that goes with a run's outcome (`None` when it passed).
    pub fn of(outcome: Outcome) -> Option<FailureKind> {
        match outcome {
            Outcome::Passed => None,
            Outcome::Failed => Some(FailureKind::StepFailed),
            Outcome::Errored => Some(FailureKind::Infrastructure),
            Outcome::Interrupted => Some(FailureKind::Interrupted),
            Outcome::Invalid => Some(FailureKind::InvalidConfiguration),
        }
    }
}

/// A place in a file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    /// The file, as given on the command line (or relative to the current
    /// folder for files the pipeline names).
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in characters).
    pub col: u64,
}

/// One located problem of an invalid input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// Where.
    #[serde(flatten)]
    pub location: Location,
    /// What is wrong, for people.
    pub message: String,
}

/// Why a run did not pass, in [`Event::RunFinished`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The message shown to people (the first problem for invalid input).
    pub message: String,
    /// Where the (first) problem is, when it is in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Every located problem, in file order (invalid input only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl RunFailure {
    /// The failure of a run that ended with `outcome` and `error` (`None`
    /// when it passed).
    pub fn of(outcome: Outcome, error: Option<&str>) -> Option<RunFailure> {
        let kind = FailureKind::of(outcome)?;
        Some(RunFailure {
            kind,
            message: error.unwrap_or(outcome_word(outcome)).to_string(),
            location: None,
            problems: Vec::new(),
        })
    }
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "a step failed",
        Outcome::Errored => "infrastructure error",
        Outcome::Interrupted => "interrupted",
        Outcome::Invalid => "invalid configuration",
    }
}

/// The version of the event stream's shape, the `v` of every record (see
/// `docs/events.md`). Within a version, fields and event types may be
/// added (readers ignore what they do not know); renaming or removing one
/// makes a new version.
pub const EVENT_STREAM_VERSION: u32 = 1;

/// A timestamp as the event stream writes it: RFC 3339, UTC, milliseconds
/// (`2026-11-30T19:29:50.123Z`).
pub fn format_ts(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One line of the event stream (`drydock run --json`, `events.ndjson`):
/// the event's fields, preceded by `v` ([`EVENT_STREAM_VERSION`]), `ts`
/// (when drydock recorded it, see [`format_ts`]) and `run_id`.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// When the event was recorded.
    pub ts: chrono::DateTime<chrono::Utc>,
    /// The run it belongs to.
    pub run_id: &'a str,
    /// The event.
    pub event: &'a Event,
}

impl Record<'_> {
    /// The record as one line of JSON (no newline).
    ///
    /// # Errors
    /// When the event cannot be serialized (it always can: its fields are
    /// strings, numbers and lists).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut map = serde_json::Map::new();
        map.insert("v".into(), EVENT_STREAM_VERSION.into());
        map.insert("ts".into(), format_ts(self.ts).into());
        map.insert("run_id".into(), self.run_id.into());
        match serde_json::to_value(self.event)? {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    // `run_started` and `run_finished` carry the run id too.
                    if k != "run_id" {
                        map.insert(k, v);
                    }
                }
            }
            other => {
                map.insert("event".into(), other);
            }
        }
        serde_json::to_vec(&serde_json::Value::Object(map))
    }
}

/// A record read back: `(v, ts, run_id, event)`.
///
/// # Errors
/// When the line is not a JSON object with `v`, `ts`, `run_id` and an event
/// this version of drydock knows.
pub fn parse_record(line: &str) -> Result<(u32, String, String, Event), String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        value
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no `{name}` in {line}"))
    };
    let v = field("v")?
        .as_u64()
        .ok_or("`v` is not a number")?
        .try_into()
        .map_err(|_| "`v` is too large".to_string())?;
    let ts = field("ts")?
        .as_str()
        .ok_or("`ts` is not a string")?
        .to_string();
    let run_id = field("run_id")?
        .as_str()
        .ok_or("`run_id` is not a string")?
        .to_string();
    let event = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok((v, ts, run_id, event))
}

/// The shape of one record, for the JSON Schema (see [`record_schema`]).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RecordShape {
    /// The event stream's version: always 1 in this version.
    #[schemars(range(min = 1, max = 1))]
    v: u32,
    /// When drydock recorded the event: RFC 3339, UTC, milliseconds.
    #[schemars(
        regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"),
        extend("format" = "date-time")
    )]
    ts: String,
    /// The run the event belongs to.
    run_id: String,
    #[serde(flatten)]
    event: Event,
}

/// The JSON Schema (draft 2020-12) of one line of the event stream, as
/// shipped in `docs/schema/events.schema.json`. Generated from [`Event`]
/// itself, so it cannot drift: every field drydock writes is described and
/// no other is allowed (`unevaluatedProperties: false`).
pub fn record_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RecordShape).to_value();
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "$id".into(),
            "https://drydock.invalid/schema/events.schema.json".into(),
        );
        root.insert("title".into(), "drydock event stream v1: one record".into());
        root.insert("unevaluatedProperties".into(), false.into());
    }
    schema
}

impl Event {
    /// A [`Event::StepFinished`] with only its names, status and error: no
    /// exit code, 0 ms, one attempt, no tests, JUnit report, tail or cause,
    /// not reused. What the executor sends for a step or build it ends
    /// itself (cancelled while running); set other fields on the value.
    pub fn step_ended(
        tier: impl Into<String>,
        step: impl Into<String>,
        status: Status,
        error: Option<String>,
    ) -> Event {
        Event::StepFinished {
            tier: tier.into(),
            step: step.into(),
            status,
            exit_code: None,
            duration_ms: 0,
            error,
            log_tail: Vec::new(),
            tests: None,
            failed_tests: Vec::new(),
            junit: None,
            reused: false,
            attempts: 1,
            flaky_tests: Vec::new(),
            allowed_failure: false,
            cause: Vec::new(),
            timings: None,
            reused_from: None,
        }
    }

    /// Calls `f` on every free-text field of the event (log lines, errors,
    /// log tails, test names): what may carry a secret a step printed. Used
    /// to mask secrets before an event leaves the executor; a new variant
    /// with text must be added here.
    pub fn for_each_text(&mut self, f: &mut dyn FnMut(&mut String)) {
        match self {
            Event::Log { line, .. } => f(line),
            Event::ServiceFailed {
                error, log_tail, ..
            } => {
                f(error);
                log_tail.iter_mut().for_each(&mut *f);
            }
            Event::StepFinished {
                error,
                cause,
                log_tail,
                failed_tests,
                flaky_tests,
                ..
            } => {
                if let Some(e) = error {
                    f(e);
                }
                cause.iter_mut().for_each(&mut *f);
                log_tail.iter_mut().for_each(&mut *f);
                failed_tests.iter_mut().for_each(&mut *f);
                flaky_tests.iter_mut().for_each(&mut *f);
            }
            Event::StepRetrying {
                error,
                failed_tests,
                ..
            } => {
                if let Some(e) = error {
                    f(e);
                }
                failed_tests.iter_mut().for_each(&mut *f);
            }
            Event::StepSkipped {
                reason: Some(r), ..
            } => f(r),
            Event::RunFinished { error, failure, .. } => {
                if let Some(e) = error {
                    f(e);
                }
                if let Some(failure) = failure {
                    f(&mut failure.message);
                }
            }
            Event::Warning { message, .. } => f(message),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(cause: Vec<String>) -> Event {
        let mut event = Event::step_ended(
            "t",
            "build x",
            Status::Failed,
            Some("build of x failed".into()),
        );
        if let Event::StepFinished { cause: c, .. } = &mut event {
            *c = cause;
        }
        event
    }

    #[test]
    fn step_finished_carries_its_cause_only_when_there_is_one() {
        let with = finished(vec!["E: Unable to locate package nope".into()]);
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["cause"][0], "E: Unable to locate package nope");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), with);
        let without = finished(Vec::new());
        let json = serde_json::to_value(&without).unwrap();
        assert!(json.get("cause").is_none(), "{json}");
        // Events written before the field existed still read.
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), without);
    }
}

//! Typed, ordered events of a run. The executor emits them; reporters
//! (terminal, NDJSON, JUnit, results folder, ledgers) consume them and never
//! reach back into the engine.

use serde::{Deserialize, Serialize};

pub use crate::engine::LogStream;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Builds a Dockerfile target.
    Build,
    /// Runs a command in a container.
    Run,
}

/// How a step or tier ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Errored => 3,
            Outcome::Interrupted => 130,
        }
    }
}

/// Why a run was cut short. Ordered from the mildest to the strongest: a
/// run keeps the strongest reason it was given (as cargo-nextest's cancel
/// reasons are ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// Test counts from JUnit reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPlan {
    /// Tier name.
    pub name: String,
    /// Step names in order (builds first, named `build <target>`).
    pub steps: Vec<String>,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// Whether a build reused an image with the same content digest.
        reused: bool,
        /// How many times the step ran (more than 1 with `retry:`).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        attempts: u32,
        /// Test cases that failed in an earlier attempt and passed in the last.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        flaky_tests: Vec<String>,
        /// The step failed but may (`allow_failure: true`): a warning, not a failure.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allowed_failure: bool,
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
    },
}

impl Event {
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
            Event::RunFinished { error: Some(e), .. } => f(e),
            Event::Warning { message, .. } => f(message),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(cause: Vec<String>) -> Event {
        Event::StepFinished {
            tier: "t".into(),
            step: "build x".into(),
            status: Status::Failed,
            exit_code: None,
            duration_ms: 1,
            error: Some("build of x failed".into()),
            cause,
            log_tail: Vec::new(),
            tests: None,
            failed_tests: Vec::new(),
            junit: None,
            reused: false,
            attempts: 1,
            flaky_tests: Vec::new(),
            allowed_failure: false,
        }
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

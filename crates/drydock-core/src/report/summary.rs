//! The one place a run's summary is built from its events: the results
//! folder's `summary.json` ([`super::ResultsWriter`]) and the runner's live
//! summary (status page, store) both fold events with a [`SummaryBuilder`].

use crate::events::{Event, Status};

use super::results::{log_path, SkippedRecord, StepRecord, Summary, TierRecord};

/// Folds a run's events, in order, into a [`Summary`]. What only the results
/// folder knows (how much output each step had, what was left out, warnings
/// about its files) is added by [`super::ResultsWriter`] on top.
#[derive(Debug, Clone, Default)]
pub struct SummaryBuilder {
    summary: Summary,
}

impl SummaryBuilder {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The summary so far, to add to.
    pub fn summary_mut(&mut self) -> &mut Summary {
        &mut self.summary
    }

    /// Takes one event; returns whether the summary changed.
    pub fn handle(&mut self, event: &Event) -> bool {
        let s = &mut self.summary;
        match event {
            Event::RunStarted {
                run_id, pipeline, ..
            } => {
                s.run_id = run_id.clone();
                s.pipeline = pipeline.clone();
            }
            Event::Warning {
                tier,
                step,
                message,
            } => s.warnings.push(format!("{tier}/{step}: {message}")),
            Event::StepFinished {
                tier,
                step,
                status,
                duration_ms,
                tests,
                error,
                cause,
                failed_tests,
                allowed_failure,
                attempts,
                flaky_tests,
                timings,
                reused_from,
                ..
            } => {
                let name = format!("{tier}/{step}");
                s.failed_tests
                    .extend(failed_tests.iter().map(|t| format!("{name}: {t}")));
                s.flaky_tests
                    .extend(flaky_tests.iter().map(|t| format!("{name}: {t}")));
                if *status == Status::Flaky {
                    s.flaky_steps.push(name);
                } else if *allowed_failure {
                    s.allowed_failures.push(name);
                }
                s.steps.push(StepRecord {
                    tier: tier.clone(),
                    step: step.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                    tests: *tests,
                    error: error.clone(),
                    cause: cause.clone(),
                    log: log_path(tier, step),
                    output: Default::default(),
                    warnings: Vec::new(),
                    attempts: *attempts,
                    allowed_failure: *allowed_failure,
                    flaky_tests: flaky_tests.clone(),
                    started_ahead: timings.is_some_and(|t| t.started_ahead),
                    timings: *timings,
                    reused_from: reused_from.clone(),
                });
            }
            Event::StepSkipped { tier, step, reason } => s.skipped.push(SkippedRecord {
                tier: tier.clone(),
                step: step.clone(),
                reason: reason.clone(),
            }),
            Event::TierFinished {
                tier,
                status,
                duration_ms,
                tests,
            } => {
                s.tests.add(tests);
                s.tiers.push(TierRecord {
                    name: tier.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                    tests: *tests,
                });
            }
            Event::Pushed { reference, .. } => s.pushed.push(reference.clone()),
            Event::Released { tags, .. } => s.released = tags.clone(),
            Event::RunFinished {
                outcome,
                duration_ms,
                ..
            } => {
                s.outcome = Some(*outcome);
                s.duration_ms = *duration_ms;
            }
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Outcome, TestCounts};

    /// A run's events, folded: steps in the order they ended, skipped steps
    /// with their reason, test totals over tiers, failed and flaky tests
    /// named `tier/step: case`, allowed failures and flaky steps listed.
    #[test]
    fn events_fold_into_the_summary() {
        let mut b = SummaryBuilder::new();
        let counts = TestCounts {
            tests: 3,
            failures: 1,
            errors: 0,
            skipped: 0,
        };
        let mut unit = Event::step_ended("unit", "pytest", Status::Failed, Some("exit 1".into()));
        if let Event::StepFinished {
            tests,
            failed_tests,
            cause,
            ..
        } = &mut unit
        {
            *tests = Some(counts);
            *failed_tests = vec!["t::test_a".into()];
            *cause = vec!["AssertionError".into()];
        }
        let mut lint = Event::step_ended("lint", "flake8", Status::Flaky, None);
        if let Event::StepFinished {
            attempts,
            flaky_tests,
            ..
        } = &mut lint
        {
            *attempts = 2;
            *flaky_tests = vec!["t::test_b".into()];
        }
        let events = [
            Event::RunStarted {
                run_id: "r1".into(),
                pipeline: "p".into(),
                tiers: Vec::new(),
                results_dir: String::new(),
                engine: String::new(),
            },
            lint,
            unit,
            Event::StepSkipped {
                tier: "e2e".into(),
                step: "browser".into(),
                reason: Some("tier unit failed".into()),
            },
            Event::TierFinished {
                tier: "unit".into(),
                status: Status::Failed,
                duration_ms: 5,
                tests: counts,
            },
            Event::RunFinished {
                run_id: "r1".into(),
                outcome: Outcome::Failed,
                duration_ms: 9,
                error: None,
                removed: 0,
                cancel_reason: None,
                failure: None,
            },
        ];
        for e in &events {
            assert!(b.handle(e));
        }
        let s = b.summary();
        assert_eq!((s.run_id.as_str(), s.pipeline.as_str()), ("r1", "p"));
        assert_eq!(s.outcome, Some(Outcome::Failed));
        let steps: Vec<_> = s
            .steps
            .iter()
            .map(|r| (r.step.as_str(), r.status))
            .collect();
        assert_eq!(
            steps,
            [("flake8", Status::Flaky), ("pytest", Status::Failed)]
        );
        assert_eq!(s.steps[1].error.as_deref(), Some("exit 1"));
        assert_eq!(s.steps[1].cause, ["AssertionError"]);
        assert_eq!(s.steps[1].log, "logs/unit/pytest.log");
        assert_eq!(s.skipped[0].reason.as_deref(), Some("tier unit failed"));
        assert_eq!(s.tests, counts);
        assert_eq!(s.failed_tests, ["unit/pytest: t::test_a"]);
        assert_eq!(s.flaky_tests, ["lint/flake8: t::test_b"]);
        assert_eq!(s.flaky_steps, ["lint/flake8"]);
        assert_eq!(s.duration_ms, 9);
    }
}

//! The live terminal view: a line per step with state and duration, a spinner
//! while it runs, the failing step's last log lines, and a summary table.

use std::collections::HashMap;
use std::time::Duration;

use console::{style, Term};
use drydock_core::events::{Event, Outcome, Status, TestCounts};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{human_duration, Reporter};

/// Terminal reporter; spinners only when stdout is a terminal.
pub struct TerminalReporter {
    multi: Option<MultiProgress>,
    bars: HashMap<(String, String), ProgressBar>,
    show_logs: bool,
    tiers: Vec<(String, Status, u64, TestCounts)>,
    failures: Vec<String>,
    warnings: Vec<String>,
    results_dir: String,
    /// The tier whose header was printed last.
    current_tier: String,
}

impl TerminalReporter {
    /// A reporter; with `show_logs` every log line is printed.
    pub fn new(show_logs: bool) -> Self {
        let multi = Term::stdout()
            .is_term()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        TerminalReporter {
            multi,
            bars: HashMap::new(),
            show_logs,
            tiers: Vec::new(),
            failures: Vec::new(),
            warnings: Vec::new(),
            results_dir: String::new(),
            current_tier: String::new(),
        }
    }

    /// A step's name as shown: `tier/step` when its tier is not the one
    /// whose header was printed last (a step started early by `needs`).
    fn step_label(&self, tier: &str, step: &str) -> String {
        if tier == self.current_tier {
            step.to_string()
        } else {
            format!("{tier}/{step}")
        }
    }

    fn line(&self, text: String) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => println!("{text}"),
        }
    }
}

fn status_mark(status: Status) -> String {
    match status {
        Status::Passed => style("✔").green().to_string(),
        Status::Skipped => style("-").dim().to_string(),
        Status::Cancelled => style("■").yellow().to_string(),
        Status::Flaky => style("✔").yellow().to_string(),
        _ => style("✘").red().bold().to_string(),
    }
}

fn counts_text(tests: &TestCounts) -> String {
    let mut text = format!("{} passed", tests.passed());
    if tests.failures + tests.errors > 0 {
        text.push_str(&format!(", {} failed", tests.failures + tests.errors));
    }
    if tests.skipped > 0 {
        text.push_str(&format!(", {} skipped", tests.skipped));
    }
    text
}

impl Reporter for TerminalReporter {
    fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                results_dir,
                engine,
                ..
            } => {
                self.results_dir = results_dir.clone();
                self.line(format!(
                    "{} run {} of {} on {}",
                    style("drydock").bold(),
                    style(run_id).cyan(),
                    style(pipeline).bold(),
                    engine
                ));
            }
            Event::ServiceStarted { service, image } => {
                self.line(format!(
                    "  {} service {service} started ({image})",
                    style("·").dim()
                ));
            }
            Event::ServiceReady {
                service,
                duration_ms,
            } => {
                self.line(format!(
                    "  {} service {service} ready after {}",
                    style("·").dim(),
                    human_duration(*duration_ms)
                ));
            }
            Event::ServiceFailed {
                service,
                error,
                log_tail,
            } => {
                let mut text = format!(
                    "  {} service {service}: {error}",
                    status_mark(Status::Errored)
                );
                for line in log_tail {
                    text.push_str(&format!("\n      {} {line}", style("│").dim()));
                }
                self.line(text);
            }
            Event::TierStarted { tier } => {
                self.current_tier = tier.clone();
                self.line(format!("{} {}", style("──").dim(), style(tier).bold()));
            }
            Event::Cancelling { reason } if reason.stops_running_steps() => {
                self.line(format!(
                    "{} stopping: {}",
                    style("──").yellow(),
                    reason.describe()
                ));
            }
            Event::StepRetrying {
                tier,
                step,
                attempt,
                status,
                exit_code,
                error,
                ..
            } => {
                let mut text = format!(
                    "  {} {} attempt {attempt} {}",
                    style("↻").yellow(),
                    self.step_label(tier, step),
                    status.word()
                );
                if let Some(code) = exit_code {
                    text.push_str(&format!(" (exit {code})"));
                }
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                text.push_str("; running it again");
                self.line(text);
            }
            Event::StepStarted { tier, step, .. } => {
                if let Some(multi) = &self.multi {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner:.cyan} {msg} {elapsed:.dim}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(step.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert((tier.clone(), step.clone()), bar);
                }
            }
            Event::Log {
                tier, step, line, ..
            } if self.show_logs => {
                self.line(format!(
                    "    {} {line}",
                    style(format!("{tier}/{step} │")).dim()
                ));
            }
            Event::StepFinished {
                tier,
                step,
                status,
                exit_code,
                duration_ms,
                error,
                cause,
                log_tail,
                tests,
                failed_tests,
                reused,
                attempts,
                flaky_tests,
                allowed_failure,
                ..
            } => {
                if let Some(bar) = self.bars.remove(&(tier.clone(), step.clone())) {
                    bar.finish_and_clear();
                    if let Some(multi) = &self.multi {
                        multi.remove(&bar);
                    }
                }
                let label = self.step_label(tier, step);
                let mark = if *allowed_failure {
                    style("!").yellow().bold().to_string()
                } else {
                    status_mark(*status)
                };
                let mut text = format!("  {mark} {label:<24} {:>7}", human_duration(*duration_ms));
                if *reused {
                    text.push_str(&format!("  {}", style("(unchanged, reused)").dim()));
                }
                if let Some(tests) = tests {
                    text.push_str(&format!("  {}", counts_text(tests)));
                }
                if *status == Status::Flaky {
                    text.push_str(&format!(
                        "  {}",
                        style(format!("flaky: passed on attempt {attempts}")).yellow()
                    ));
                    for test in flaky_tests.iter().take(20) {
                        text.push_str(&format!("\n      {} {test}", style("FLAKY").yellow()));
                    }
                    self.warnings.push(format!("{tier}/{step} is flaky"));
                }
                if !status.is_success() {
                    let word = if *allowed_failure {
                        style(format!("{} (allowed to fail)", status.word())).yellow()
                    } else {
                        style(status.word().to_string()).red()
                    };
                    text.push_str(&format!("  {word}"));
                    if let Some(code) = exit_code {
                        text.push_str(&format!(" (exit {code})"));
                    }
                    if let Some(error) = error {
                        text.push_str(&format!("\n      {}", style(error).red()));
                    }
                    for line in cause {
                        text.push_str(&format!("\n      {} {line}", style("cause:").yellow()));
                    }
                    for test in failed_tests.iter().take(20) {
                        text.push_str(&format!("\n      {} {test}", style("FAILED").red()));
                    }
                    for line in log_tail {
                        text.push_str(&format!("\n      {} {line}", style("│").dim()));
                    }
                    if *allowed_failure {
                        self.warnings
                            .push(format!("{tier}/{step} failed (allowed)"));
                    } else {
                        self.failures.push(format!("{tier}/{step}"));
                    }
                }
                self.line(text);
            }
            Event::Warning {
                tier,
                step,
                message,
            } => {
                let text = format!("{tier}/{step}: {message}");
                self.line(format!(
                    "  {} {}",
                    style("!").yellow().bold(),
                    style(&text).yellow()
                ));
                self.warnings.push(text);
            }
            Event::StepSkipped { tier, step, reason } => {
                let label = self.step_label(tier, step);
                let why = match reason {
                    Some(reason) => format!("skipped: {reason}"),
                    None => "skipped".to_string(),
                };
                self.line(format!(
                    "  {} {label:<24} {:>7}  {}",
                    status_mark(Status::Skipped),
                    "",
                    style(why).dim()
                ));
            }
            Event::TierFinished {
                tier,
                status,
                duration_ms,
                tests,
            } => {
                self.tiers
                    .push((tier.clone(), *status, *duration_ms, *tests));
            }
            Event::Pushed { reference, .. } => {
                self.line(format!("{} pushed {reference}", style("──").dim()));
            }
            Event::Released { tags, .. } => {
                self.line(format!("{} tagged {}", style("──").dim(), tags.join(", ")));
            }
            Event::RunFinished {
                run_id,
                outcome,
                duration_ms,
                error,
                removed,
                ..
            } => {
                let mut table = format!(
                    "\n{:<16} {:<10} {:>8}  {}\n",
                    "tier", "status", "time", "tests"
                );
                for (tier, status, ms, tests) in &self.tiers {
                    let tests = if tests.tests > 0 {
                        counts_text(tests)
                    } else {
                        String::new()
                    };
                    let time = if *status == Status::Skipped {
                        String::new()
                    } else {
                        human_duration(*ms)
                    };
                    table.push_str(&format!(
                        "{tier:<16} {:<10} {time:>8}  {tests}\n",
                        status.word()
                    ));
                }
                self.line(table);
                let verdict = match outcome {
                    Outcome::Passed => style("PASSED").green().bold(),
                    Outcome::Failed => style("FAILED").red().bold(),
                    Outcome::Errored => style("ERROR").red().bold(),
                    Outcome::Interrupted => style("INTERRUPTED").yellow().bold(),
                };
                let mut text =
                    format!("{verdict} run {run_id} in {}", human_duration(*duration_ms));
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                for warning in &self.warnings {
                    text.push_str(&format!("\n  {} {warning}", style("warning:").yellow()));
                }
                text.push_str(&format!(
                    "\n  results: {}  ·  cleaned up {removed} objects",
                    self.results_dir
                ));
                self.line(text);
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}

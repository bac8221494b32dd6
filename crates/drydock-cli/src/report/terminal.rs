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
    results_dir: String,
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
            results_dir: String::new(),
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
                self.line(format!("{} {}", style("──").dim(), style(tier).bold()));
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
                ..
            } => {
                if let Some(bar) = self.bars.remove(&(tier.clone(), step.clone())) {
                    bar.finish_and_clear();
                    if let Some(multi) = &self.multi {
                        multi.remove(&bar);
                    }
                }
                let mut text = format!(
                    "  {} {step:<24} {:>7}",
                    status_mark(*status),
                    human_duration(*duration_ms)
                );
                if *reused {
                    text.push_str(&format!("  {}", style("(unchanged, reused)").dim()));
                }
                if let Some(tests) = tests {
                    text.push_str(&format!("  {}", counts_text(tests)));
                }
                if !status.is_success() {
                    text.push_str(&format!("  {}", style(status.word()).red()));
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
                    self.failures.push(format!("{tier}/{step}"));
                }
                self.line(text);
            }
            Event::StepSkipped { step, .. } => {
                self.line(format!(
                    "  {} {step:<24} {:>7}  {}",
                    status_mark(Status::Skipped),
                    "",
                    style("skipped").dim()
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

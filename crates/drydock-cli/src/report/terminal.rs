//! The live terminal view: a line per step with state and duration, a spinner
//! while it runs, the failing step's last log lines, and a summary table.
//!
//! Without a terminal (CI logs) there is no spinner: each step gets a start
//! line and a finish line, and a "still running" line every
//! `progress_interval` while it runs, so that a long step never looks hung.
//! `--timestamps` puts the event's time (RFC 3339, UTC, milliseconds) before
//! every line. Colours only on a terminal, never with `NO_COLOR`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use console::{style, Term};
use drydock_core::events::{format_ts, Event, Outcome, Status, TestCounts};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::human_duration;
use drydock_core::events::EventSink;
use drydock_core::report::SummaryBuilder;

/// Terminal reporter; spinners only when stdout is a terminal.
pub struct TerminalReporter {
    multi: Option<MultiProgress>,
    bars: HashMap<(String, String), ProgressBar>,
    show_logs: bool,
    /// The run so far, for the closing table (core's one summary builder).
    summary: SummaryBuilder,
    results_dir: String,
    /// The tier whose header was printed last.
    current_tier: String,
    /// Prefix every line with the time of its event.
    timestamps: bool,
    /// Without a terminal: how often a running step gets a "still running" line.
    progress_interval: Option<Duration>,
    /// Running steps: when each started and when its next progress line is due.
    running: HashMap<(String, String), (DateTime<Utc>, DateTime<Utc>)>,
    /// The time of the event being handled.
    now: DateTime<Utc>,
}

/// What the terminal view shows, beyond its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalOptions {
    /// Print every log line of every step.
    pub show_logs: bool,
    /// Prefix every line with the time of its event.
    pub timestamps: bool,
    /// Without a terminal: a "still running" line per running step this
    /// often (`None`: never).
    pub progress_interval: Option<Duration>,
}

impl TerminalReporter {
    /// A reporter on stdout, with spinners when it is a terminal.
    pub fn new(options: TerminalOptions) -> Self {
        let multi = Term::stdout()
            .is_term()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        TerminalReporter {
            multi,
            bars: HashMap::new(),
            show_logs: options.show_logs,
            timestamps: options.timestamps,
            progress_interval: options.progress_interval.filter(|d| !d.is_zero()),
            running: HashMap::new(),
            now: Utc::now(),
            summary: SummaryBuilder::new(),
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
        let text = if self.timestamps {
            let stamp = style(format_ts(self.now)).dim().to_string();
            text.split('\n')
                .map(|l| format!("{stamp} {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => outln!("{text}"),
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

/// `31 passed, 2 failed, 1 error, 3 skipped`: JUnit failures (assertions)
/// and errors (a test that could not run: fixture, import…) told apart.
pub(crate) fn counts_text(tests: &TestCounts) -> String {
    let mut text = format!("{} passed", tests.passed());
    if tests.failures > 0 {
        text.push_str(&format!(", {} failed", tests.failures));
    }
    if tests.errors > 0 {
        text.push_str(&format!(", {}", super::plural(tests.errors, "error")));
    }
    if tests.skipped > 0 {
        text.push_str(&format!(", {} skipped", tests.skipped));
    }
    text
}

/// `6s`, `2m`, `2m30s`, `1h05m`: how long a step has been running.
pub(crate) fn elapsed_text(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 if s % 60 == 0 => format!("{}m", s / 60),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl EventSink for TerminalReporter {
    fn tick(&mut self, now: DateTime<Utc>) {
        let Some(interval) = self.progress_interval else {
            return;
        };
        if self.multi.is_some() {
            return;
        }
        let Ok(interval) = chrono::TimeDelta::from_std(interval) else {
            return;
        };
        let mut due: Vec<((String, String), DateTime<Utc>)> = Vec::new();
        for (key, (started, next)) in &mut self.running {
            if now >= *next {
                while *next <= now {
                    *next += interval;
                }
                due.push((key.clone(), *started));
            }
        }
        due.sort_by_key(|(_, started)| *started);
        self.now = now;
        for ((tier, step), started) in due {
            let label = self.step_label(&tier, &step);
            self.line(format!(
                "  {} {label} still running ({})",
                style("…").dim(),
                elapsed_text(now - started)
            ));
        }
    }

    fn handle(&mut self, event: &Event, ts: DateTime<Utc>) {
        self.now = ts;
        self.summary.handle(event);
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
            Event::StepStarted {
                tier, step, image, ..
            } => {
                if let (None, Some(interval)) = (&self.multi, self.progress_interval) {
                    let next = ts + chrono::TimeDelta::from_std(interval).unwrap_or_default();
                    self.running
                        .insert((tier.clone(), step.clone()), (ts, next));
                }
                if self.multi.is_none() {
                    let label = self.step_label(tier, step);
                    self.line(format!("  {} {label} started ({image})", style("▶").dim()));
                }
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
                reused_from,
                attempts,
                flaky_tests,
                allowed_failure,
                ..
            } => {
                self.running.remove(&(tier.clone(), step.clone()));
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
                match reused_from {
                    // A step's stored result, replayed: say from which run.
                    Some(run) => text.push_str(&format!(
                        "  {}",
                        style(format!("(reused from run {run})")).dim()
                    )),
                    None if *reused => {
                        text.push_str(&format!("  {}", style("(unchanged, reused)").dim()))
                    }
                    None => {}
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
                let summary = self.summary.summary();
                for tier in &summary.tiers {
                    let tests = if tier.tests.tests > 0 {
                        counts_text(&tier.tests)
                    } else {
                        String::new()
                    };
                    let time = if tier.status == Status::Skipped {
                        String::new()
                    } else {
                        human_duration(tier.duration_ms)
                    };
                    table.push_str(&format!(
                        "{:<16} {:<10} {time:>8}  {tests}\n",
                        tier.name,
                        tier.status.word()
                    ));
                }
                self.line(table);
                let verdict = match outcome {
                    Outcome::Passed => style("PASSED").green().bold(),
                    Outcome::Failed => style("FAILED").red().bold(),
                    Outcome::Errored => style("ERROR").red().bold(),
                    Outcome::Interrupted => style("INTERRUPTED").yellow().bold(),
                    Outcome::Invalid => style("INVALID").red().bold(),
                };
                let mut text =
                    format!("{verdict} run {run_id} in {}", human_duration(*duration_ms));
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                let warnings = summary
                    .steps
                    .iter()
                    .filter_map(|r| match (r.status, r.allowed_failure) {
                        (Status::Flaky, _) => Some(format!("{}/{} is flaky", r.tier, r.step)),
                        (_, true) => Some(format!("{}/{} failed (allowed)", r.tier, r.step)),
                        _ => None,
                    })
                    .chain(summary.warnings.iter().cloned());
                for warning in warnings {
                    text.push_str(&format!("\n  {} {warning}", style("warning:").yellow()));
                }
                text.push_str(&format!(
                    "\n  results: {}  ·  cleaned up {}",
                    self.results_dir,
                    super::plural(*removed as u64, "object")
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

//! The results folder of a run: every step's full log, the event stream, a
//! merged JUnit report and a summary.
//!
//! Layout under `<results>/<run id>/`: `events.ndjson`, `logs/<tier>/<step>.log`,
//! `artifacts/<tier>/<step>/…` (files collected by the executor), `junit.xml`
//! and `summary.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::junit;
use crate::events::{Event, Outcome, Status, TestCounts};

/// One step in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Tier name.
    pub tier: String,
    /// Step name.
    pub step: String,
    /// How it ended.
    pub status: Status,
    /// Wall time.
    pub duration_ms: u64,
    /// Test counts, when it had a report.
    pub tests: Option<TestCounts>,
    /// Its full log, relative to the results folder.
    pub log: String,
}

/// The summary written as `summary.json` at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Wall time.
    pub duration_ms: u64,
    /// Tier name → (status, duration, tests), in order.
    pub tiers: Vec<(String, Status, u64, TestCounts)>,
    /// Every step.
    pub steps: Vec<StepRecord>,
    /// Tags applied on release.
    pub released: Vec<String>,
    /// References pushed to the release registry.
    pub pushed: Vec<String>,
}

/// Writes the results folder from a run's events (a blocking consumer: run it
/// on its own thread).
pub struct ResultsWriter {
    dir: PathBuf,
    events: BufWriter<File>,
    logs: BTreeMap<(String, String), BufWriter<File>>,
    junit_files: Vec<(String, PathBuf)>,
    summary: Summary,
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The log file of a step, relative to the results folder.
pub fn log_path(tier: &str, step: &str) -> String {
    format!("logs/{}/{}.log", safe(tier), safe(step))
}

impl ResultsWriter {
    /// Creates the folder (and its parents).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let events = BufWriter::new(File::create(dir.join("events.ndjson"))?);
        Ok(ResultsWriter {
            dir: dir.to_path_buf(),
            events,
            logs: BTreeMap::new(),
            junit_files: Vec::new(),
            summary: Summary::default(),
        })
    }

    /// The folder written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn log_file(&mut self, tier: &str, step: &str) -> std::io::Result<&mut BufWriter<File>> {
        let key = (tier.to_string(), step.to_string());
        if !self.logs.contains_key(&key) {
            let path = self.dir.join(log_path(tier, step));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            self.logs
                .insert(key.clone(), BufWriter::new(File::create(path)?));
        }
        Ok(self.logs.get_mut(&key).expect("inserted above"))
    }

    /// Records one event.
    pub fn handle(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.events, event)?;
        self.events.write_all(b"\n")?;
        match event {
            Event::RunStarted {
                run_id, pipeline, ..
            } => {
                self.summary.run_id = run_id.clone();
                self.summary.pipeline = pipeline.clone();
            }
            Event::Log {
                tier, step, line, ..
            } => {
                let file = self.log_file(tier, step)?;
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")?;
            }
            Event::StepFinished {
                tier,
                step,
                status,
                duration_ms,
                tests,
                junit,
                error,
                ..
            } => {
                let log = log_path(tier, step);
                if let Some(error) = error {
                    let file = self.log_file(tier, step)?;
                    writeln!(file, "drydock: {error}")?;
                }
                if let Some(file) = self.logs.get_mut(&(tier.clone(), step.clone())) {
                    file.flush()?;
                }
                if let Some(junit) = junit {
                    self.junit_files
                        .push((format!("{tier}/{step}"), self.dir.join(junit)));
                }
                self.summary.steps.push(StepRecord {
                    tier: tier.clone(),
                    step: step.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                    tests: *tests,
                    log,
                });
            }
            Event::TierFinished {
                tier,
                status,
                duration_ms,
                tests,
            } => {
                self.summary
                    .tiers
                    .push((tier.clone(), *status, *duration_ms, *tests));
            }
            Event::Pushed { reference, .. } => self.summary.pushed.push(reference.clone()),
            Event::Released { tags, .. } => self.summary.released = tags.clone(),
            Event::RunFinished {
                outcome,
                duration_ms,
                ..
            } => {
                self.summary.outcome = Some(*outcome);
                self.summary.duration_ms = *duration_ms;
                self.finish()?;
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        for file in self.logs.values_mut() {
            file.flush()?;
        }
        self.events.flush()?;
        let mut texts = Vec::new();
        for (prefix, path) in &self.junit_files {
            if let Ok(text) = std::fs::read_to_string(path) {
                texts.push((prefix.clone(), text));
            }
        }
        let merged = junit::merge(texts.iter().map(|(p, t)| (p.as_str(), t.as_str())))
            .map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("junit.xml"), merged)?;
        let summary = serde_json::to_vec_pretty(&self.summary)?;
        std::fs::write(self.dir.join("summary.json"), summary)
    }
}

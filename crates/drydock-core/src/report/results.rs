//! The results folder of a run: every step's log, the event stream, a
//! merged JUnit report and a summary.
//!
//! Layout under `<results>/<run id>/`: `events.ndjson`, `logs/<tier>/<step>.log`
//! (the output as a terminal showed it, see [`crate::engine::LineBuffer`]),
//! `logs/<tier>/<step>.raw` (the bytes the step wrote, stdout and stderr
//! interleaved as they arrived, written by [`RawLog`]),
//! `artifacts/<tier>/<step>/…` (files collected by the executor), `junit.xml`
//! and `summary.json`.
//!
//! What is stored is bounded, and every cut is said where it happens and in
//! `summary.json` (`steps[].output`, `truncated`):
//! - `events.ndjson` holds at most [`MAX_EVENT_LOG_BYTES`] of `log` events per
//!   step (and [`MAX_RUN_EVENT_LOG_BYTES`] per run); past that, one `log`
//!   event says so and the step's further lines are only in its `.log`;
//! - a `.log` keeps its first [`MAX_LOG_HEAD_BYTES`] and its last
//!   [`LOG_TAIL_SEGMENT_BYTES`]–2× that (two rotating tail files), joined
//!   by a line saying how much was left out;
//! - a `.raw` keeps the first [`MAX_RAW_BYTES`]; what is left out is
//!   counted in `<step>.raw.omitted`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use super::junit;
use crate::events::{Event, Outcome, Record, Status, StepTimings, TestCounts};

/// When an event was recorded.
type Timestamp = chrono::DateTime<chrono::Utc>;

/// One step in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
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
    /// Why it did not pass, for people (`null` when it passed).
    pub error: Option<String>,
    /// The lines of its output that explain its failure (see
    /// `step_finished`'s `cause`); empty when it passed.
    pub cause: Vec<String>,
    /// Its log as a terminal showed it, relative to the results folder.
    pub log: String,
    /// How much output it had and what of it was stored.
    pub output: OutputRecord,
    /// Problems that did not change its status (an unreadable JUnit report…).
    pub warnings: Vec<String>,
    /// How many times it ran (more than 1 with `retry:`).
    pub attempts: u32,
    /// Its failure was allowed (`allow_failure: true`): a warning, not a
    /// failure of its tier or the run.
    pub allowed_failure: bool,
    /// Its test cases (`classname::name`) that failed in an earlier attempt
    /// and passed in the last.
    pub flaky_tests: Vec<String>,
    /// Whether its container was created and started ahead of its turn
    /// (the command then ran through exec; `timings.started_ahead`).
    pub started_ahead: bool,
    /// Where its time went, in milliseconds (`null` for builds and steps
    /// whose container was never created).
    pub timings: Option<StepTimings>,
    /// Its result was not run but replayed from the run with this id (see
    /// the core's `reuse` module): its log, reports and collected files are
    /// that run's. Absent when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
}

/// A step that did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SkippedRecord {
    /// Tier name.
    pub tier: String,
    /// Step name.
    pub step: String,
    /// Why (an earlier tier failed, the run was cancelled, `when:`…).
    pub reason: Option<String>,
}

/// How much output a step had, and what of it was left out of the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OutputRecord {
    /// Lines of output (rendered).
    pub lines: u64,
    /// Bytes of rendered output (UTF-8, one newline per line).
    pub bytes: u64,
    /// Bytes of rendered output left out of the middle of `log`.
    pub log_omitted_bytes: u64,
    /// Lines left out of `events.ndjson` (still in `log`, unless omitted there too).
    pub events_omitted_lines: u64,
    /// The raw bytes the step wrote, relative to the results folder, when kept.
    pub raw_log: Option<String>,
    /// Bytes of raw output left out of the end of `raw_log`.
    pub raw_omitted_bytes: u64,
}

impl OutputRecord {
    /// Whether anything was left out.
    pub fn truncated(&self) -> bool {
        self.log_omitted_bytes > 0 || self.events_omitted_lines > 0 || self.raw_omitted_bytes > 0
    }
}

/// One tier in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TierRecord {
    /// Tier name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Wall time, from its first step (or build) to its end; 0 when skipped.
    pub duration_ms: u64,
    /// Test counts summed over its steps' JUnit reports.
    pub tests: TestCounts,
}

/// The version of `summary.json`'s shape (its `v`); see `docs/events.md`.
pub const SUMMARY_VERSION: u32 = 1;

/// The summary written as `summary.json` at the end of a run (its JSON
/// Schema: [`Summary::schema`], shipped as `docs/schema/summary.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Summary {
    /// The shape's version ([`SUMMARY_VERSION`]).
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// How it ended (`null` only if the run's end was never recorded).
    pub outcome: Option<Outcome>,
    /// Wall time.
    pub duration_ms: u64,
    /// Every tier, in order.
    pub tiers: Vec<TierRecord>,
    /// Every step that ran, in the order they ended.
    pub steps: Vec<StepRecord>,
    /// Every step that did not run, in the order they were skipped.
    pub skipped: Vec<SkippedRecord>,
    /// Test counts summed over the tiers' JUnit reports.
    pub tests: TestCounts,
    /// The test cases that failed in their step's last attempt
    /// (`tier/step: classname::name`).
    pub failed_tests: Vec<String>,
    /// Tags applied on release.
    pub released: Vec<String>,
    /// References pushed to the release registry.
    pub pushed: Vec<String>,
    /// Whether some output was left out of the results (see each step's `output`).
    pub truncated: bool,
    /// Warnings of the run (also in each step's `warnings`), for people.
    pub warnings: Vec<String>,
    /// The steps that passed only on a retry (`tier/step`, status `flaky`).
    pub flaky_steps: Vec<String>,
    /// The test cases that failed in one attempt of their step and passed in
    /// a later one (`tier/step: classname::name`), also marked with
    /// `<flakyFailure>` in `junit.xml`.
    pub flaky_tests: Vec<String>,
    /// The steps whose failure was allowed (`tier/step`).
    pub allowed_failures: Vec<String>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            v: SUMMARY_VERSION,
            run_id: String::new(),
            pipeline: String::new(),
            outcome: None,
            duration_ms: 0,
            tiers: Vec::new(),
            steps: Vec::new(),
            skipped: Vec::new(),
            tests: TestCounts::default(),
            failed_tests: Vec::new(),
            released: Vec::new(),
            pushed: Vec::new(),
            truncated: false,
            warnings: Vec::new(),
            flaky_steps: Vec::new(),
            flaky_tests: Vec::new(),
            allowed_failures: Vec::new(),
        }
    }
}

impl Summary {
    /// The JSON Schema (draft 2020-12) of `summary.json`, generated from
    /// this type (so it cannot drift); no field outside it is allowed.
    pub fn schema() -> serde_json::Value {
        let mut settings = schemars::generate::SchemaSettings::draft2020_12();
        settings
            .transforms
            .push(Box::new(schemars::transform::RecursiveTransform(
                |schema: &mut schemars::Schema| {
                    if schema.get("properties").is_some()
                        && schema.get("additionalProperties").is_none()
                    {
                        schema.insert("additionalProperties".into(), false.into());
                    }
                },
            )));
        let mut schema = settings
            .into_generator()
            .into_root_schema_for::<Summary>()
            .to_value();
        if let Some(root) = schema.as_object_mut() {
            root.insert(
                "$id".into(),
                "https://drydock.invalid/schema/summary.schema.json".into(),
            );
            root.insert("title".into(), "drydock summary.json v1".into());
        }
        schema
    }
}

/// Most bytes of `log` events (as serialized) kept in `events.ndjson` per step.
pub const MAX_EVENT_LOG_BYTES: u64 = 16 << 20;
/// Most bytes of `log` events kept in `events.ndjson` per run.
pub const MAX_RUN_EVENT_LOG_BYTES: u64 = 256 << 20;
/// The first bytes of a step's rendered output always kept in its `.log`.
pub const MAX_LOG_HEAD_BYTES: u64 = 32 << 20;
/// Size of each of the two rotating tail files of a long `.log`.
pub const LOG_TAIL_SEGMENT_BYTES: u64 = 8 << 20;
/// Most raw bytes kept per step in its `.raw`.
pub const MAX_RAW_BYTES: u64 = 64 << 20;

/// The bounds of what a [`ResultsWriter`] stores (the defaults are the
/// `MAX_*` constants of this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// [`MAX_EVENT_LOG_BYTES`].
    pub event_log_bytes: u64,
    /// [`MAX_RUN_EVENT_LOG_BYTES`].
    pub run_event_log_bytes: u64,
    /// [`MAX_LOG_HEAD_BYTES`].
    pub log_head_bytes: u64,
    /// [`LOG_TAIL_SEGMENT_BYTES`].
    pub log_tail_segment_bytes: u64,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            event_log_bytes: MAX_EVENT_LOG_BYTES,
            run_event_log_bytes: MAX_RUN_EVENT_LOG_BYTES,
            log_head_bytes: MAX_LOG_HEAD_BYTES,
            log_tail_segment_bytes: LOG_TAIL_SEGMENT_BYTES,
        }
    }
}

/// A step's `.log`: head, then two rotating tail segments.
struct StepLog {
    limits: OutputLimits,
    head: BufWriter<File>,
    path: PathBuf,
    head_bytes: u64,
    /// The current tail segment (`.log.tail`) and its size.
    tail: Option<(BufWriter<File>, u64)>,
    /// Bytes of the previous segment (`.log.tail.prev`), when there is one.
    prev: Option<u64>,
    output: OutputRecord,
    events_bytes: u64,
    warnings: Vec<String>,
}

impl StepLog {
    fn create(path: PathBuf, limits: OutputLimits) -> std::io::Result<StepLog> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(StepLog {
            limits,
            head: BufWriter::new(File::create(&path)?),
            path,
            head_bytes: 0,
            tail: None,
            prev: None,
            output: OutputRecord::default(),
            events_bytes: 0,
            warnings: Vec::new(),
        })
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// Appends one line of the step's output (its text, then a newline).
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.output.lines += 1;
        self.output.bytes += text.len() as u64 + 1;
        self.write_line(text)
    }

    /// Appends a line of drydock's own (not counted as output).
    fn note(&mut self, text: &str) -> std::io::Result<()> {
        self.write_line(text)
    }

    fn write_line(&mut self, text: &str) -> std::io::Result<()> {
        let n = text.len() as u64 + 1;
        if self.head_bytes + n <= self.limits.log_head_bytes && self.tail.is_none() {
            self.head_bytes += n;
            self.head.write_all(text.as_bytes())?;
            return self.head.write_all(b"\n");
        }
        let segment = self.limits.log_tail_segment_bytes;
        let rotate = self.tail.as_ref().is_some_and(|(_, size)| *size >= segment);
        if rotate {
            if let Some((mut file, size)) = self.tail.take() {
                file.flush()?;
                drop(file);
                if let Some(dropped) = self.prev.replace(size) {
                    self.output.log_omitted_bytes += dropped;
                }
                std::fs::rename(self.with_suffix(".tail"), self.with_suffix(".tail.prev"))?;
            }
        }
        if self.tail.is_none() {
            let file = BufWriter::new(File::create(self.with_suffix(".tail"))?);
            self.tail = Some((file, 0));
        }
        let (file, size) = self.tail.as_mut().expect("opened above");
        *size += n;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")
    }

    /// Joins the kept tail to the head, with a line saying what was left out.
    fn close(&mut self) -> std::io::Result<()> {
        if let Some((mut file, _)) = self.tail.take() {
            file.flush()?;
            drop(file);
            if self.output.log_omitted_bytes > 0 {
                writeln!(
                    self.head,
                    "drydock: … {} bytes of output left out here (this log keeps the first {} MiB \
                     and the last {}–{} MiB; see summary.json) …",
                    self.output.log_omitted_bytes,
                    self.limits.log_head_bytes >> 20,
                    self.limits.log_tail_segment_bytes >> 20,
                    (2 * self.limits.log_tail_segment_bytes) >> 20
                )?;
            }
            for suffix in [".tail.prev", ".tail"] {
                let part = self.with_suffix(suffix);
                if let Ok(mut f) = File::open(&part) {
                    std::io::copy(&mut f, &mut self.head)?;
                    let _ = std::fs::remove_file(&part);
                }
            }
        }
        self.head.flush()
    }
}

/// The raw bytes of a step's (or service's) output, as they arrived, in
/// `logs/<tier>/<step>.raw` under a results folder: at most
/// [`MAX_RAW_BYTES`]; the count of bytes left out goes to
/// `<step>.raw.omitted` when [`RawLog::finish`] is called. Writes are async
/// (tokio's file I/O). A file that cannot be written disables the raw log
/// (with a warning in the tracing log), never the run.
pub struct RawLog {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    path: PathBuf,
    written: u64,
    omitted: u64,
    max: u64,
    /// Masks the run's secrets, when it has any.
    mask: Option<crate::secrets::MaskStream>,
}

impl RawLog {
    /// Creates `logs/<tier>/<step>.raw` under `results_dir`; with a
    /// `masker`, the run's secrets are replaced by `***` (also when split
    /// between chunks), as everywhere else in the results folder.
    pub async fn create(
        results_dir: &Path,
        tier: &str,
        step: &str,
        masker: Option<&crate::secrets::Masker>,
    ) -> RawLog {
        let path = results_dir.join(raw_log_path(tier, step));
        let file = async {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::File::create(&path).await
        }
        .await;
        let file = match file {
            Ok(f) => Some(tokio::io::BufWriter::with_capacity(64 * 1024, f)),
            Err(e) => {
                tracing::warn!("raw log {}: {e}", path.display());
                None
            }
        };
        RawLog {
            file,
            path,
            written: 0,
            omitted: 0,
            max: MAX_RAW_BYTES,
            mask: masker.map(crate::secrets::Masker::stream),
        }
    }

    /// Appends bytes (what is past [`MAX_RAW_BYTES`] is only counted).
    pub async fn write(&mut self, bytes: &[u8]) {
        match self.mask.as_mut().map(|m| m.push(bytes)) {
            Some(masked) => self.write_out(&masked).await,
            None => self.write_out(bytes).await,
        }
    }

    async fn write_out(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let room = self.max.saturating_sub(self.written) as usize;
        let (keep, drop) = bytes.split_at(bytes.len().min(room));
        self.omitted += drop.len() as u64;
        if keep.is_empty() {
            return;
        }
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(keep).await {
                tracing::warn!("raw log {}: {e}", self.path.display());
                self.file = None;
            }
        }
        self.written += keep.len() as u64;
    }

    /// Flushes the file and records what was left out.
    pub async fn finish(mut self) {
        use tokio::io::AsyncWriteExt;
        if let Some(rest) = self.mask.as_mut().map(|m| m.finish()) {
            self.write_out(&rest).await;
        }
        if let Some(mut file) = self.file.take() {
            let _ = file.flush().await;
        }
        if self.omitted > 0 {
            let mut marker = self.path.clone().into_os_string();
            marker.push(".omitted");
            let _ = tokio::fs::write(marker, self.omitted.to_string()).await;
        }
    }
}

/// Writes the results folder from a run's events (a blocking consumer: run it
/// on its own thread).
pub struct ResultsWriter {
    dir: PathBuf,
    /// The run id records carry: the folder's name until an event names it.
    run_id: String,
    events: BufWriter<File>,
    logs: BTreeMap<(String, String), StepLog>,
    /// `(tier/step, report, flaky test cases, reused from run)`.
    junit_files: Vec<(String, PathBuf, Vec<String>, Option<String>)>,
    /// Steps without a JUnit report of their own, as test cases.
    step_cases: Vec<junit::StepCase>,
    summary: super::summary::SummaryBuilder,
    run_event_log_bytes: u64,
    limits: OutputLimits,
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

/// The raw log file of a step, relative to the results folder.
pub fn raw_log_path(tier: &str, step: &str) -> String {
    format!("logs/{}/{}.raw", safe(tier), safe(step))
}

impl ResultsWriter {
    /// Creates the folder (and its parents).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        Self::create_with_limits(dir, OutputLimits::default())
    }

    /// [`ResultsWriter::create`] with other bounds on what is stored.
    pub fn create_with_limits(dir: &Path, limits: OutputLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let events = BufWriter::new(File::create(dir.join("events.ndjson"))?);
        Ok(ResultsWriter {
            dir: dir.to_path_buf(),
            run_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            events,
            logs: BTreeMap::new(),
            junit_files: Vec::new(),
            step_cases: Vec::new(),
            summary: Default::default(),
            run_event_log_bytes: 0,
            limits,
        })
    }

    /// The folder written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        self.summary.summary()
    }

    fn log_file(&mut self, tier: &str, step: &str) -> std::io::Result<&mut StepLog> {
        let key = (tier.to_string(), step.to_string());
        if !self.logs.contains_key(&key) {
            let log = StepLog::create(self.dir.join(log_path(tier, step)), self.limits)?;
            self.logs.insert(key.clone(), log);
        }
        Ok(self.logs.get_mut(&key).expect("inserted above"))
    }

    /// Writes an event to `events.ndjson`; `log` events only within the
    /// step's and the run's budgets (the first one past them is replaced by a
    /// line saying so).
    fn record(&mut self, event: &Event, ts: Timestamp) -> std::io::Result<()> {
        let record = Record {
            ts,
            run_id: &self.run_id,
            event,
        };
        let mut json = record.to_json()?;
        json.push(b'\n');
        if let Event::Log {
            tier, step, stream, ..
        } = event
        {
            let n = json.len() as u64;
            let limits = self.limits;
            let run_full = self.run_event_log_bytes + n > limits.run_event_log_bytes;
            let log = self.log_file(tier, step)?;
            if log.output.events_omitted_lines > 0 {
                log.output.events_omitted_lines += 1;
                return Ok(());
            }
            if run_full || log.events_bytes + n > limits.event_log_bytes {
                log.output.events_omitted_lines += 1;
                let marker = Event::Log {
                    tier: tier.clone(),
                    step: step.clone(),
                    stream: *stream,
                    line: format!(
                        "drydock: output of {tier}/{step} from here on is not in events.ndjson \
                         (limit: {} MiB per step, {} MiB per run); it is in {} (see summary.json)",
                        limits.event_log_bytes >> 20,
                        limits.run_event_log_bytes >> 20,
                        log_path(tier, step)
                    ),
                };
                let mut json = Record {
                    ts,
                    run_id: &self.run_id,
                    event: &marker,
                }
                .to_json()?;
                json.push(b'\n');
                return self.events.write_all(&json);
            }
            log.events_bytes += n;
            self.run_event_log_bytes += n;
        }
        self.events.write_all(&json)
    }

    /// Writes out what is buffered (`events.ndjson` and the step logs), so
    /// that readers following the files see every event received so far.
    /// Call it when no event is waiting.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.events.flush()?;
        for log in self.logs.values_mut() {
            log.head.flush()?;
            if let Some((tail, _)) = &mut log.tail {
                tail.flush()?;
            }
        }
        Ok(())
    }

    /// Records one event, stamped now.
    pub fn handle(&mut self, event: &Event) -> std::io::Result<()> {
        self.handle_at(event, chrono::Utc::now())
    }

    /// Records one event stamped `ts` (when it was received: a consumer
    /// that also shows it passes the same time to both).
    pub fn handle_at(&mut self, event: &Event, ts: Timestamp) -> std::io::Result<()> {
        if let Event::RunStarted { run_id, .. } | Event::RunFinished { run_id, .. } = event {
            self.run_id.clone_from(run_id);
        }
        self.record(event, ts)?;
        self.summary.handle(event);
        match event {
            Event::Log {
                tier, step, line, ..
            } => {
                self.log_file(tier, step)?.line(line)?;
            }
            Event::Warning {
                tier,
                step,
                message,
            } => {
                let log = self.log_file(tier, step)?;
                log.note(&format!("drydock: warning: {message}"))?;
                log.warnings.push(message.clone());
            }
            Event::StepFinished {
                tier,
                step,
                status,
                duration_ms,
                junit,
                error,
                log_tail,
                allowed_failure,
                attempts,
                flaky_tests,
                reused_from,
                ..
            } => {
                let log = self.log_file(tier, step)?;
                if let Some(run) = reused_from {
                    log.note(&format!(
                        "drydock: reused from run {run}: nothing this step depends on changed, its stored result was replayed"
                    ))?;
                }
                if let Some(error) = error {
                    log.note(&format!("drydock: {error}"))?;
                }
                log.close()?;
                let mut output = log.output.clone();
                let warnings = log.warnings.clone();
                let raw = raw_log_path(tier, step);
                if self.dir.join(&raw).is_file() {
                    output.raw_omitted_bytes =
                        std::fs::read_to_string(self.dir.join(format!("{raw}.omitted")))
                            .ok()
                            .and_then(|n| n.trim().parse().ok())
                            .unwrap_or(0);
                    output.raw_log = Some(raw);
                }
                // What only the results folder knows, on the builder's record.
                let summary = self.summary.summary_mut();
                summary.truncated |= output.truncated();
                if let Some(record) = summary.steps.last_mut() {
                    record.output = output;
                    record.warnings = warnings;
                }
                match junit {
                    Some(junit) => self.junit_files.push((
                        format!("{tier}/{step}"),
                        self.dir.join(junit),
                        flaky_tests.clone(),
                        reused_from.clone(),
                    )),
                    None => self.step_cases.push(junit::StepCase {
                        tier: tier.clone(),
                        step: step.clone(),
                        kind: match status {
                            Status::Passed => junit::CaseKind::Passed,
                            Status::Flaky => junit::CaseKind::Flaky,
                            Status::Failed | Status::TimedOut => junit::CaseKind::Failed,
                            Status::Errored => junit::CaseKind::Errored,
                            Status::Cancelled | Status::Skipped => junit::CaseKind::Skipped,
                        },
                        seconds: *duration_ms as f64 / 1000.0,
                        message: match (status, error) {
                            (Status::Cancelled, e) => {
                                Some(e.clone().unwrap_or_else(|| "cancelled".into()))
                            }
                            (Status::Flaky, _) => Some(format!(
                                "flaky: passed on attempt {attempts} after {} failed",
                                attempts.saturating_sub(1)
                            )),
                            (_, Some(e)) if *allowed_failure => {
                                Some(format!("{e} (allowed to fail)"))
                            }
                            (_, e) => e.clone(),
                        },
                        text: log_tail.join("\n"),
                        reused_from: reused_from.clone(),
                    }),
                }
            }
            Event::StepSkipped { tier, step, reason } => {
                self.step_cases.push(junit::StepCase {
                    tier: tier.clone(),
                    step: step.clone(),
                    kind: junit::CaseKind::Skipped,
                    seconds: 0.0,
                    message: reason.clone(),
                    text: String::new(),
                    reused_from: None,
                });
            }
            Event::RunFinished { .. } => self.finish()?,
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        for log in self.logs.values_mut() {
            log.close()?;
        }
        self.events.flush()?;
        // Steps without a report of their own: one suite per tier, merged
        // after the tools' reports (written to temporary files that go away).
        let mut tiers: Vec<&str> = Vec::new();
        for case in &self.step_cases {
            if !tiers.contains(&case.tier.as_str()) {
                tiers.push(&case.tier);
            }
        }
        let mut step_files = Vec::new();
        for tier in tiers {
            let cases: Vec<junit::StepCase> = self
                .step_cases
                .iter()
                .filter(|c| c.tier == tier)
                .cloned()
                .collect();
            let file = tempfile::Builder::new()
                .prefix(".steps-")
                .suffix(".xml")
                .tempfile_in(&self.dir)?;
            junit::write_step_cases("", &cases, file.path()).map_err(std::io::Error::other)?;
            step_files.push((tier.to_string(), file));
        }
        let merged = junit::merge_reports(
            self.junit_files
                .iter()
                .map(|(prefix, path, flaky, reused_from)| junit::Report {
                    prefix,
                    path,
                    flaky,
                    reused_from: reused_from.as_deref(),
                })
                .chain(step_files.iter().map(|(prefix, file)| junit::Report {
                    prefix,
                    path: file.path(),
                    flaky: &[],
                    reused_from: None,
                })),
            &self.dir.join("junit.xml"),
        )
        .map_err(std::io::Error::other)?;
        drop(step_files);
        for left_out in merged.skipped {
            self.summary
                .summary_mut()
                .warnings
                .push(format!("left out of junit.xml: {left_out}"));
        }
        let summary = serde_json::to_vec_pretty(self.summary.summary())?;
        std::fs::write(self.dir.join("summary.json"), summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::LogStream;

    fn log(step: &str, line: String) -> Event {
        Event::Log {
            tier: "t".into(),
            step: step.into(),
            stream: LogStream::Stdout,
            line,
        }
    }

    fn finished(step: &str) -> Event {
        let mut event = Event::step_ended("t", step, Status::Passed, None);
        if let Event::StepFinished { exit_code, .. } = &mut event {
            *exit_code = Some(0);
        }
        event
    }

    #[test]
    fn stored_output_is_bounded_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            event_log_bytes: 200 << 10,
            run_event_log_bytes: 1 << 30,
            log_head_bytes: 1 << 20,
            log_tail_segment_bytes: 256 << 10,
        };
        let mut w = ResultsWriter::create_with_limits(dir.path(), limits).unwrap();
        // 4 MiB of output in 4,096 lines of 1 KiB (line numbers first).
        for i in 0..4096 {
            w.handle(&log("big", format!("{i:06} {}", "x".repeat(1016))))
                .unwrap();
        }
        w.handle(&log("small", "hello".into())).unwrap();
        w.handle(&finished("big")).unwrap();
        w.handle(&finished("small")).unwrap();
        w.handle(&Event::RunFinished {
            run_id: "r".into(),
            outcome: Outcome::Passed,
            duration_ms: 1,
            error: None,
            removed: 0,
            cancel_reason: None,
            failure: None,
        })
        .unwrap();

        let events = std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap();
        assert!(events.len() < 300 << 10, "{}", events.len());
        assert!(events.contains("from here on is not in events.ndjson"));
        assert!(
            events.contains("\"line\":\"hello\""),
            "other steps keep their lines"
        );

        let text = std::fs::read_to_string(dir.path().join("logs/t/big.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("000000 "));
        assert!(
            lines.last().unwrap().starts_with("004095 "),
            "the tail is kept"
        );
        let marker = lines
            .iter()
            .position(|l| l.contains("bytes of output left out here"))
            .unwrap();
        // The tail after the marker is whole lines in order.
        let first_after: usize = lines[marker + 1][..6].parse().unwrap();
        let last_before: usize = lines[marker - 1][..6].parse().unwrap();
        assert!(first_after > last_before + 1);
        assert!(
            text.len() < (1 << 20) + 2 * (256 << 10) + 4096,
            "{}",
            text.len()
        );
        assert!(!dir.path().join("logs/t/big.log.tail").exists());

        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["truncated"], true);
        let big = &summary["steps"][0]["output"];
        assert_eq!(big["lines"], 4096);
        assert_eq!(big["bytes"], 4096 * 1024);
        let omitted = big["log_omitted_bytes"].as_u64().unwrap();
        assert!(omitted > 0);
        assert_eq!(
            omitted,
            ((first_after - last_before - 1) * 1024) as u64,
            "the count says exactly what is missing"
        );
        assert!(big["events_omitted_lines"].as_u64().unwrap() > 3000);
        assert_eq!(summary["steps"][1]["output"]["log_omitted_bytes"], 0);
    }

    /// Steps without a report of their own (a linter, a build) and skipped
    /// steps are test cases of the merged report; the record says v, ts and
    /// the run id; summary.json names its fields.
    #[test]
    fn every_step_is_a_test_case_and_records_are_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r1");
        let mut w = ResultsWriter::create(&run_dir).unwrap();
        let mut flake8 = finished("flake8");
        if let Event::StepFinished {
            status,
            exit_code,
            error,
            log_tail,
            tier,
            ..
        } = &mut flake8
        {
            *tier = "lint".into();
            *status = Status::Failed;
            *exit_code = Some(1);
            *error = Some("exited with code 1".into());
            *log_tail = vec!["./app.py:1:1: F401 'os' imported but unused".into()];
        }
        w.handle(&flake8).unwrap();
        w.handle(&finished("build")).unwrap();
        w.handle(&Event::StepSkipped {
            tier: "t".into(),
            step: "later".into(),
            reason: Some("an earlier step failed".into()),
        })
        .unwrap();
        w.handle(&Event::TierFinished {
            tier: "lint".into(),
            status: Status::Failed,
            duration_ms: 5,
            tests: TestCounts::default(),
        })
        .unwrap();
        w.handle(&Event::RunFinished {
            run_id: "r1".into(),
            outcome: Outcome::Failed,
            duration_ms: 9,
            error: Some("tier lint failed".into()),
            removed: 0,
            cancel_reason: None,
            failure: None,
        })
        .unwrap();
        let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("tests"), Some("3"), "{xml}");
        assert_eq!(root.attribute("failures"), Some("1"), "{xml}");
        assert_eq!(root.attribute("skipped"), Some("1"), "{xml}");
        let case = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("flake8"))
            .unwrap();
        assert_eq!(case.attribute("classname"), Some("lint"));
        let failure = case.first_element_child().unwrap();
        assert_eq!(failure.tag_name().name(), "failure");
        assert_eq!(failure.attribute("message"), Some("exited with code 1"));
        assert!(failure.text().unwrap().contains("F401"));
        assert!(xml.contains(r#"message="an earlier step failed""#), "{xml}");
        let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".steps-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary reports are removed");

        let events = std::fs::read_to_string(run_dir.join("events.ndjson")).unwrap();
        for line in events.lines() {
            let (v, ts, run_id, _) = crate::events::parse_record(line).unwrap();
            assert_eq!(v, 1);
            assert_eq!(run_id, "r1");
            assert_eq!(ts.len(), "2026-11-30T19:29:50.123Z".len(), "{ts}");
            assert!(ts.ends_with('Z'));
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["v"], 1);
        assert_eq!(summary["tiers"][0]["name"], "lint");
        assert_eq!(summary["tiers"][0]["status"], "failed");
        assert_eq!(summary["tiers"][0]["duration_ms"], 5);
    }

    /// A step that passed on a retry and a pytest step whose test failed in
    /// one attempt and passed in the next: both `flaky` in summary.json and
    /// marked with `<flakyFailure>` (Surefire's rerun form) in junit.xml,
    /// counted as passed; an allowed failure is counted apart.
    #[test]
    fn flaky_steps_and_tests_are_marked_in_junit_and_counted_in_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r2");
        let mut w = ResultsWriter::create(&run_dir).unwrap();
        std::fs::create_dir_all(run_dir.join("junit")).unwrap();
        std::fs::write(
            run_dir.join("junit/unit.xml"),
            r#"<testsuites><testsuite name="pytest"><testcase classname="t.test_a" name="test_net"/><testcase classname="t.test_a" name="test_io" time="1"><system-out>x</system-out></testcase><testcase classname="t.test_a" name="test_ok"/></testsuite></testsuites>"#,
        )
        .unwrap();
        let step = |name: &str, status: Status, attempts: u32| {
            let mut event = finished(name);
            if let Event::StepFinished {
                status: s,
                attempts: a,
                ..
            } = &mut event
            {
                *s = status;
                *a = attempts;
            }
            event
        };
        w.handle(&step("lint", Status::Flaky, 2)).unwrap();
        let mut unit = step("unit", Status::Flaky, 3);
        if let Event::StepFinished {
            junit, flaky_tests, ..
        } = &mut unit
        {
            *junit = Some("junit/unit.xml".into());
            *flaky_tests = vec!["t.test_a::test_net".into(), "t.test_a::test_io".into()];
        }
        w.handle(&unit).unwrap();
        let mut perf = step("perf", Status::Failed, 1);
        if let Event::StepFinished {
            allowed_failure, ..
        } = &mut perf
        {
            *allowed_failure = true;
        }
        w.handle(&perf).unwrap();
        w.handle(&Event::RunFinished {
            run_id: "r2".into(),
            outcome: Outcome::Passed,
            duration_ms: 9,
            error: None,
            removed: 0,
            cancel_reason: None,
            failure: None,
        })
        .unwrap();

        let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("tests"), Some("5"), "{xml}");
        assert_eq!(root.attribute("failures"), Some("1"), "{xml}");
        let case = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .unwrap_or_else(|| panic!("no case {name}: {xml}"))
        };
        let flaky_mark = |name: &str| {
            case(name)
                .children()
                .find(|n| n.has_tag_name("flakyFailure"))
                .map(|n| n.attribute("message").unwrap_or_default().to_string())
        };
        assert_eq!(
            flaky_mark("lint").as_deref(),
            Some("flaky: passed on attempt 2 after 1 failed")
        );
        for test in ["test_net", "test_io"] {
            assert_eq!(
                flaky_mark(test).as_deref(),
                Some(junit::FLAKY_TEST_MESSAGE),
                "{test}: {xml}"
            );
        }
        assert_eq!(flaky_mark("test_ok"), None);
        assert!(
            case("test_io")
                .children()
                .any(|n| n.has_tag_name("system-out")),
            "the case keeps what it had: {xml}"
        );

        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(
            summary["flaky_steps"],
            serde_json::json!(["t/lint", "t/unit"])
        );
        assert_eq!(
            summary["flaky_tests"],
            serde_json::json!(["t/unit: t.test_a::test_net", "t/unit: t.test_a::test_io"])
        );
        assert_eq!(summary["allowed_failures"], serde_json::json!(["t/perf"]));
        assert_eq!(summary["steps"][1]["attempts"], 3);
        assert_eq!(summary["steps"][2]["allowed_failure"], true);
    }

    #[tokio::test]
    async fn raw_logs_keep_the_bytes_and_count_what_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = RawLog::create(dir.path(), "t", "s", None).await;
        raw.write(b"\x1b[31mred\x1b(B\x1b[m\r\n\xff").await;
        raw.finish().await;
        let path = dir.path().join(raw_log_path("t", "s"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"\x1b[31mred\x1b(B\x1b[m\r\n\xff"
        );
        let mut raw = RawLog::create(dir.path(), "t", "s", None).await;
        raw.max = 10;
        raw.write(b"0123456").await;
        raw.write(b"789abcdef").await;
        raw.finish().await;
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
        let omitted = dir.path().join("logs/t/s.raw.omitted");
        assert_eq!(std::fs::read_to_string(omitted).unwrap(), "6");
    }
}

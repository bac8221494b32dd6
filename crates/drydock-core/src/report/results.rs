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
    /// Its log as a terminal showed it, relative to the results folder.
    pub log: String,
    /// How much output it had and what of it was stored.
    pub output: OutputRecord,
    /// Problems that did not change its status (an unreadable JUnit report…).
    pub warnings: Vec<String>,
}

/// How much output a step had, and what of it was left out of the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Whether some output was left out of the results (see each step's `output`).
    pub truncated: bool,
    /// Warnings of the run (also in each step's `warnings`), for people.
    pub warnings: Vec<String>,
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
    events: BufWriter<File>,
    logs: BTreeMap<(String, String), StepLog>,
    junit_files: Vec<(String, PathBuf)>,
    summary: Summary,
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
            events,
            logs: BTreeMap::new(),
            junit_files: Vec::new(),
            summary: Summary::default(),
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
        &self.summary
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
    fn record(&mut self, event: &Event) -> std::io::Result<()> {
        let mut json = serde_json::to_vec(event)?;
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
                serde_json::to_writer(&mut self.events, &marker)?;
                return self.events.write_all(b"\n");
            }
            log.events_bytes += n;
            self.run_event_log_bytes += n;
        }
        self.events.write_all(&json)
    }

    /// Records one event.
    pub fn handle(&mut self, event: &Event) -> std::io::Result<()> {
        self.record(event)?;
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
                self.log_file(tier, step)?.line(line)?;
            }
            Event::Warning {
                tier,
                step,
                message,
            } => {
                let text = format!("{tier}/{step}: {message}");
                let log = self.log_file(tier, step)?;
                log.note(&format!("drydock: warning: {message}"))?;
                log.warnings.push(message.clone());
                self.summary.warnings.push(text);
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
                let log = self.log_file(tier, step)?;
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
                self.summary.truncated |= output.truncated();
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
                    log: log_path(tier, step),
                    output,
                    warnings,
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
        for log in self.logs.values_mut() {
            log.close()?;
        }
        self.events.flush()?;
        let merged = junit::merge_files(
            self.junit_files
                .iter()
                .map(|(prefix, path)| (prefix.as_str(), path.as_path())),
            &self.dir.join("junit.xml"),
        )
        .map_err(std::io::Error::other)?;
        for left_out in merged.skipped {
            self.summary
                .warnings
                .push(format!("left out of junit.xml: {left_out}"));
        }
        let summary = serde_json::to_vec_pretty(&self.summary)?;
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
        Event::StepFinished {
            tier: "t".into(),
            step: step.into(),
            status: Status::Passed,
            exit_code: Some(0),
            duration_ms: 1,
            error: None,
            log_tail: Vec::new(),
            tests: None,
            failed_tests: Vec::new(),
            junit: None,
            reused: false,
            attempts: 1,
            flaky_tests: Vec::new(),
            allowed_failure: false,
            cause: Vec::new(),
        }
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

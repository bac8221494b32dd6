//! The run session: the one way a front end (the CLI, the runner, a tool that
//! embeds drydock) runs a planned pipeline.
//!
//! A session takes the plan, the engine, the run options (run id, results
//! folder, trust, git facts, release choice, ledger and its fence), the
//! cancel handle and the event sinks; it creates the results folder, spawns
//! the executor (`run::run_plan`) and **the** event consumer (one thread
//! off the async runtime that feeds every [`EventSink`] in order), waits for
//! both and returns the [`RunReport`] (with the ledger entry of a release),
//! the results folder's [`Summary`] and whether a sink died. The release
//! (tag, push, ledger record) is made by the executor in one place,
//! [`crate::release`]; the session never writes the ledger itself.
//!
//! Signals, deadlines and how the outcome is shown stay with the caller: it
//! holds the [`RunCancel`] and may cancel it at any time (the session then
//! still waits for the teardown).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::events::{Event, EventSink, SINK_TICK};
use crate::plan::Plan;
use crate::report::{ResultsWriter, Summary};
use crate::run::{self, RunCancel, RunOptions, RunReport, Runtime};

/// Why a session could not run or did not end normally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The results folder (`RunOptions::results_dir`) could not be created;
    /// nothing ran.
    #[error("cannot create the results folder {}: {source}", path.display())]
    ResultsFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The executor panicked. Its teardown did not run: the session removed
    /// what carries the run's labels instead.
    #[error("internal error in run {run_id}: {message}")]
    Panicked {
        /// The run.
        run_id: String,
        /// The panic, for people.
        message: String,
    },
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionOutcome {
    /// The executor's report (outcome, error, release with its ledger entry,
    /// cancel reason).
    pub report: RunReport,
    /// What the results folder's `summary.json` holds.
    pub summary: Summary,
    /// A sink panicked: the results folder or a report may be incomplete.
    pub sink_failed: bool,
}

/// Runs `plan` on `runtime` with `options`, feeding every event to the
/// results folder writer (in `options.results_dir`) and then to `sinks`, in
/// that order, until the run ends; `cancel` stops it (see [`RunCancel`]).
///
/// Errors: [`SessionError::ResultsFolder`] before anything runs;
/// [`SessionError::Panicked`] when the executor died (what it had started is
/// removed by label).
pub async fn run_session<R: Runtime>(
    plan: &Plan,
    runtime: Arc<R>,
    options: RunOptions,
    cancel: RunCancel,
    sinks: Vec<Box<dyn EventSink>>,
) -> Result<SessionOutcome, SessionError> {
    let results = ResultsWriter::create(&options.results_dir).map_err(|source| {
        SessionError::ResultsFolder {
            path: options.results_dir.clone(),
            source,
        }
    })?;
    let (tx, rx) = mpsc::channel::<Event>(1024);
    let handle = tokio::runtime::Handle::current();
    let consumer = std::thread::spawn(move || consume(rx, results, sinks, handle));
    let task = {
        let plan = plan.clone();
        let runtime = runtime.clone();
        let exec = options.exec_options();
        tokio::spawn(async move { run::run_plan(&plan, runtime, exec, tx, cancel).await })
    };
    let report = task.await;
    let joined = tokio::task::spawn_blocking(move || consumer.join())
        .await
        .ok()
        .and_then(Result::ok);
    let report = match report {
        Ok(report) => report,
        Err(panic) => {
            // The executor died: its teardown did not run, so sweep by label.
            let _ = runtime.remove_run(&options.run_id).await;
            return Err(SessionError::Panicked {
                run_id: options.run_id,
                message: panic.to_string(),
            });
        }
    };
    let (summary, sink_failed) = match joined {
        Some(summary) => (summary, false),
        None => (Summary::default(), true),
    };
    Ok(SessionOutcome {
        report,
        summary,
        sink_failed,
    })
}

/// The event consumer: the results folder first, then every sink, each event
/// stamped once when received; what is buffered is written out as soon as
/// no event is waiting (a log line reaches a reader within milliseconds).
fn consume(
    mut rx: mpsc::Receiver<Event>,
    mut results: ResultsWriter,
    mut sinks: Vec<Box<dyn EventSink>>,
    handle: tokio::runtime::Handle,
) -> Summary {
    use tokio::sync::mpsc::error::TryRecvError;
    loop {
        let event = match rx.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if let Err(e) = results.flush() {
                    tracing::warn!("results folder: {e}");
                }
                for sink in &mut sinks {
                    sink.idle();
                }
                // The timer is made on the runtime (inside block_on).
                let next =
                    handle.block_on(async { tokio::time::timeout(SINK_TICK, rx.recv()).await });
                match next {
                    Ok(Some(event)) => Some(event),
                    Ok(None) => break,
                    Err(_) => None,
                }
            }
        };
        let now = chrono::Utc::now();
        for sink in &mut sinks {
            sink.tick(now);
        }
        let Some(event) = event else { continue };
        // Nothing follows the end of the run: do not wait for a sender that
        // a task given up on still holds.
        let last = matches!(event, Event::RunFinished { .. });
        if let Err(e) = results.handle_at(&event, now) {
            tracing::warn!("results folder: {e}");
        }
        for sink in &mut sinks {
            sink.handle(&event, now);
        }
        if last {
            break;
        }
    }
    let _ = results.flush();
    for sink in &mut sinks {
        sink.finish();
    }
    results.summary().clone()
}

/// A sink made of a closure, for tools that only want to look at events:
/// `Box::new(FnSink(|event: &Event| println!("{event:?}")))`.
pub struct FnSink<F>(pub F);

impl<F: FnMut(&Event) + Send> EventSink for FnSink<F> {
    fn handle(&mut self, event: &Event, _at: chrono::DateTime<chrono::Utc>) {
        (self.0)(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fake::FakeRuntime;
    use std::sync::Mutex;

    /// Every event reaches every sink in order, the results folder holds the
    /// summary the session returns, and `finish` is called once.
    #[tokio::test]
    async fn every_sink_sees_every_event_in_order_and_the_summary_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, options) = crate::run::tests::one_step_plan("s1", dir.path());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let finished = Arc::new(Mutex::new(0));
        struct Sink(Arc<Mutex<Vec<String>>>, Arc<Mutex<u32>>);
        impl EventSink for Sink {
            fn handle(&mut self, event: &Event, _at: chrono::DateTime<chrono::Utc>) {
                let json = serde_json::to_value(event).unwrap();
                self.0
                    .lock()
                    .unwrap()
                    .push(json["event"].as_str().unwrap().to_string());
            }
            fn finish(&mut self) {
                *self.1.lock().unwrap() += 1;
            }
        }
        let out = run_session(
            &plan,
            Arc::new(FakeRuntime::with_images(&["drydock/python:3.11"])),
            options.clone(),
            RunCancel::new(),
            vec![Box::new(Sink(seen.clone(), finished.clone()))],
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.first().map(String::as_str), Some("run_started"));
        assert_eq!(seen.last().map(String::as_str), Some("run_finished"));
        assert_eq!(*finished.lock().unwrap(), 1);
        assert!(!out.sink_failed);
        assert_eq!(out.summary.run_id, options.run_id);
        assert_eq!(out.summary.outcome, Some(out.report.outcome));
        assert!(options.results_dir.join("summary.json").is_file());
        assert!(options.results_dir.join("events.ndjson").is_file());
    }

    /// A sink that panics does not stop the run: the session says so.
    #[tokio::test]
    async fn a_panicking_sink_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, options) = crate::run::tests::one_step_plan("s2", dir.path());
        let out = run_session(
            &plan,
            Arc::new(FakeRuntime::with_images(&["drydock/python:3.11"])),
            options,
            RunCancel::new(),
            vec![Box::new(FnSink(|event: &Event| {
                if matches!(event, Event::StepFinished { .. }) {
                    panic!("sink broke");
                }
            }))],
        )
        .await
        .unwrap();
        assert!(out.sink_failed);
        assert_eq!(out.report.outcome, crate::events::Outcome::Passed);
    }

    /// A results folder that cannot be made refuses the run before it starts.
    #[tokio::test]
    async fn a_results_folder_that_cannot_be_made_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let (plan, mut options) = crate::run::tests::one_step_plan("s3", dir.path());
        options.results_dir = file.join("run");
        let err = run_session(
            &plan,
            Arc::new(FakeRuntime::with_images(&["drydock/python:3.11"])),
            options,
            RunCancel::new(),
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SessionError::ResultsFolder { .. }), "{err}");
    }
}

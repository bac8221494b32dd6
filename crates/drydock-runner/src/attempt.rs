//! What one attempt of a run carries through the executor and the merge
//! gate alike: its log (`run.log`), how it ended (`EndingError`), and the
//! lease check before anything that cannot be undone (`fence`).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::store::{Heartbeat, Lease, NewRun, RunState};
use crate::Shared;

/// The run's own log (`run.log` in its results folder): runner messages and
/// every step's output, prefixed `[tier/step]`, flushed line by line so the
/// API can stream it. At most [`MAX_RUN_LOG_BYTES`] of step output are
/// written (one line then says so; the full output is in the step's `.log`);
/// runner messages are always written.
#[derive(Clone)]
pub struct RunLog(Arc<Mutex<RunLogFile>>);

/// Most bytes of step output in a `run.log`.
pub const MAX_RUN_LOG_BYTES: u64 = 64 << 20;

struct RunLogFile {
    file: Option<std::fs::File>,
    output_bytes: u64,
    capped: bool,
}

impl RunLog {
    /// Opens (appending) `dir/run.log`.
    pub fn open(dir: &Path) -> RunLog {
        let _ = std::fs::create_dir_all(dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("run.log"))
            .ok();
        RunLog(Arc::new(Mutex::new(RunLogFile {
            file,
            output_bytes: 0,
            capped: false,
        })))
    }

    /// Appends one line.
    pub fn line(&self, text: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = log.file.as_mut() {
            let _ = f.write_all(text.as_bytes());
            let _ = f.write_all(b"\n");
        }
    }

    /// Appends a line of step output, within [`MAX_RUN_LOG_BYTES`].
    pub fn output(&self, text: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if log.capped {
            return;
        }
        log.output_bytes += text.len() as u64 + 1;
        if log.output_bytes > MAX_RUN_LOG_BYTES {
            log.capped = true;
            drop(log);
            self.note(&format!(
                "step output past {} MiB is not in run.log; each step's full log is in \
                 logs/<tier>/<step>.log (see summary.json)",
                MAX_RUN_LOG_BYTES >> 20
            ));
            return;
        }
        drop(log);
        self.line(text);
    }

    /// A runner message (`drydock: …`).
    pub fn note(&self, text: &str) {
        self.line(&format!("drydock: {text}"));
    }
}

/// What a run ended as, and the run to queue with its end (a candidate's
/// retest).
pub(crate) struct EndingError {
    pub(crate) state: RunState,
    pub(crate) reason: Option<String>,
    pub(crate) then: Option<NewRun>,
}

impl EndingError {
    pub(crate) fn new(state: RunState, reason: impl Into<String>) -> EndingError {
        EndingError {
            state,
            reason: Some(reason.into()),
            then: None,
        }
    }
}

/// Whether this attempt still holds its lease (renewing it for a whole
/// lease): asked right before anything that cannot be undone (landing,
/// recording a release, deploying), so that a stale worker never does it.
/// `Err` says why not.
pub(crate) async fn fence(shared: &Shared, lease: &Lease) -> Result<(), String> {
    match shared
        .store
        .heartbeat(lease, shared.config.lease, None)
        .await
    {
        Ok(Heartbeat::Held { .. }) => Ok(()),
        Ok(Heartbeat::Lost) => Err(format!(
            "attempt {} lost its lease (the run was reclaimed)",
            lease.attempt
        )),
        Err(e) => Err(format!("cannot confirm the lease: {e}")),
    }
}

//! `--json`: the event stream v1 on stdout, one record per line
//! (`docs/events.md`): `v`, `ts` and `run_id`, then the event's fields.
//! Lines are buffered while events keep coming and written out as soon as
//! none is waiting, so a log line reaches the reader within milliseconds.

use std::io::Write;

use chrono::{DateTime, Utc};
use drydock_core::events::{Event, Record};

use drydock_core::events::EventSink;

/// Writes the event stream v1.
pub struct JsonReporter {
    out: std::io::BufWriter<std::io::Stdout>,
    run_id: String,
}

impl JsonReporter {
    /// A reporter on stdout for run `run_id`.
    pub fn new(run_id: &str) -> Self {
        JsonReporter {
            out: std::io::BufWriter::new(std::io::stdout()),
            run_id: run_id.to_string(),
        }
    }
}

impl EventSink for JsonReporter {
    fn handle(&mut self, event: &Event, ts: DateTime<Utc>) {
        let record = Record {
            ts,
            run_id: &self.run_id,
            event,
        };
        if let Ok(mut json) = record.to_json() {
            json.push(b'\n');
            let _ = self.out.write_all(&json);
        }
    }

    fn idle(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

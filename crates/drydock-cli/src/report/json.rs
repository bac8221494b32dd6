//! `--json`: one event per line on stdout.

use std::io::Write;

use drydock_core::events::Event;

use super::Reporter;

/// Writes newline-delimited JSON events.
pub struct JsonReporter {
    out: std::io::BufWriter<std::io::Stdout>,
}

impl JsonReporter {
    /// A reporter on stdout.
    pub fn new() -> Self {
        JsonReporter {
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }
}

impl Reporter for JsonReporter {
    fn handle(&mut self, event: &Event) {
        if serde_json::to_writer(&mut self.out, event).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
        if !matches!(event, Event::Log { .. }) {
            let _ = self.out.flush();
        }
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

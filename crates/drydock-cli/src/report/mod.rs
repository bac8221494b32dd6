//! Reporters: consume a run's events, never touch the engine.

pub mod json;
pub mod terminal;

use chrono::{DateTime, Utc};
use drydock_core::events::Event;

/// Something that shows a run's events.
pub trait Reporter: Send {
    /// One event, in order, with the time it was received.
    fn handle(&mut self, event: &Event, ts: DateTime<Utc>);
    /// No event is waiting: write out what is buffered.
    fn idle(&mut self) {}
    /// Called at least every [`TICK`] while the run goes on.
    fn tick(&mut self, _now: DateTime<Utc>) {}
    /// The stream ended.
    fn finish(&mut self) {}
}

/// How often [`Reporter::tick`] is called at least.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// `1 object`, `3 objects`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `1.2s`, `2m03s`.
pub fn human_duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        for (ms, text) in [
            (0, "0.0s"),
            (1234, "1.2s"),
            (59_999, "60.0s"),
            (123_000, "2m03s"),
        ] {
            assert_eq!(super::human_duration(ms), text);
        }
    }
}

//! Reporters: consume a run's events, never touch the engine.

pub mod json;
pub mod terminal;

use drydock_core::events::Event;

/// Something that shows a run's events.
pub trait Reporter: Send {
    /// One event, in order.
    fn handle(&mut self, event: &Event);
    /// The stream ended.
    fn finish(&mut self) {}
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

//! Reporters: event sinks ([`drydock_core::events::EventSink`]) that show a
//! run's events; they never touch the engine.

pub mod json;
pub mod terminal;

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

//! Durations written as `250ms`, `10s`, `2m`, `1h` or combinations (`1h30m`).

use std::time::Duration;

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h` or `1h30m10s`.
///
/// Units are `h`, `m`, `s` and `ms`; each may appear once, in that order.
/// Zero (`0s`, `0m0s`, ...) is refused. The error is a message meant to be
/// shown after a `file:line:col:` prefix.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 30s, 5m or 1h30m, found {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    // Index into UNITS of the last unit seen; units must strictly descend.
    let mut last: Option<usize> = None;
    const UNITS: [(&str, u128); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        if last.is_some_and(|l| idx <= l) {
            return Err(bad());
        }
        last = Some(idx);
        total = number
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(format!("a duration must be greater than zero, found {s:?}"));
    }
    let millis = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way the pipeline file writes them (`1h30m`, `250ms`).
///
/// Sub-millisecond parts are dropped; zero is written `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Serializes a [`Duration`] as its pipeline-file spelling (see [`format_duration`]).
pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_durations() {
        let cases = [
            ("250ms", 250),
            ("10s", 10_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h30m", 5_400_000),
            ("1h2m3s4ms", 3_723_004),
            ("90s", 90_000),
            ("0m5s", 5_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations() {
        let cases = [
            (
                "5 minutes",
                "expected a duration like 30s, 5m or 1h30m, found \"5 minutes\"",
            ),
            ("", "expected a duration"),
            ("5", "expected a duration"),
            ("m", "expected a duration"),
            ("1.5m", "expected a duration"),
            ("30m1h", "expected a duration"),
            ("1m1m", "expected a duration"),
            ("5d", "expected a duration"),
            (" 5s", "expected a duration"),
            ("5s ", "expected a duration"),
            ("-5s", "expected a duration"),
            (
                "99999999999999999999999999999999999999999h",
                "expected a duration",
            ),
            ("0s", "greater than zero"),
            ("0h0m0s0ms", "greater than zero"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["250ms", "10s", "1h30m", "1h2m3s4ms", "2m"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}

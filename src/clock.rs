//! The one wall clock of the gateway, and the one way it prints a time.
//!
//! Decisions never read the clock themselves: the code that moves bytes reads it here once
//! per call and passes the value down (to the store, to `cortex-filters`), so tests can pin
//! time and two parts of one request never disagree about "now".
//!
//! Every function here is total: a clock set before 1970 reads as 0, one past the year
//! 292 million saturates, and nothing panics.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it, `i64::MAX` if it does not fit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, JavaScript's `toISOString` form (what
/// Cortex backends send, so times from both sort together as strings). A time outside
/// the calendar's range is written as its plain number of milliseconds.
pub fn iso8601_ms(ts_ms: i64) -> String {
    let nanos = i128::from(ts_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ts_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_format_matches_javascript() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn out_of_range_times_do_not_panic() {
        assert_eq!(iso8601_ms(i64::MAX), i64::MAX.to_string());
        assert_eq!(iso8601_ms(i64::MIN), i64::MIN.to_string());
    }

    #[test]
    fn the_two_units_agree() {
        let (ms, s) = (now_ms(), unix_now());
        assert!(ms > 1_600_000_000_000, "clock reads {ms}");
        let ms_secs = u64::try_from(ms / 1000).unwrap();
        assert!(s.abs_diff(ms_secs) <= 1, "{s} s vs {ms} ms");
    }
}

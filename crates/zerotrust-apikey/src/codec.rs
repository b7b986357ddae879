//! Conversions between record fields and the plain values remote stores keep.

use std::time::{Duration, SystemTime};

/// Converts `time` to whole microseconds since the Unix epoch, rounding down.
///
/// Returns `None` for times before the epoch or past the year 292,277, which
/// no key record has.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn to_micros(time: SystemTime) -> Option<i64> {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_micros()).ok()
}

/// Converts microseconds since the Unix epoch back to a time. Returns `None`
/// for negative values.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn from_micros(micros: i64) -> Option<SystemTime> {
    let micros = u64::try_from(micros).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(micros))
}

/// Rounds `time` down to a whole microsecond.
///
/// The manager stores times at this precision, because PostgreSQL
/// `timestamptz` keeps microseconds, so a record reads back from every store
/// exactly as it was written.
pub(crate) fn truncate_to_micros(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since_epoch) => {
            let nanos_past_micro = since_epoch.subsec_nanos() % 1_000;
            time - Duration::from_nanos(u64::from(nanos_past_micro))
        }
        Err(_) => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_drops_nanoseconds() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);

        let micros = to_micros(time).unwrap();

        assert_eq!(micros, 1_700_000_000_123_456);
        assert_eq!(from_micros(micros), Some(truncate_to_micros(time)));
        assert_eq!(
            truncate_to_micros(time),
            SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000)
        );
    }

    #[test]
    fn micros_reject_times_before_epoch() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);

        assert_eq!(to_micros(before), None);
        assert_eq!(from_micros(-1), None);
    }
}

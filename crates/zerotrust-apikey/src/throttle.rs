//! Rate limiting for error logs on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Allows one log line per interval and counts the ones it suppresses.
///
/// A store outage fails every request, and one `error!` per request would flood
/// the logs exactly when they are needed.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    started: Instant,
    interval_ms: u64,
    next_allowed_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            started: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_allowed_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Returns `Some(suppressed)` if a line may be logged now, with the number of
    /// lines suppressed since the last one, or `None` to suppress this one.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next_ms = self.next_allowed_ms.load(Ordering::Relaxed);

        // Only the thread that wins the exchange logs, so concurrent failures
        // produce one line.
        let won = now_ms >= next_ms
            && self
                .next_allowed_ms
                .compare_exchange(
                    next_ms,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if won {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_allows_first_then_counts_suppressed() {
        let throttle = LogThrottle::new(Duration::from_secs(3_600));

        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn throttle_allows_again_after_interval() {
        let throttle = LogThrottle::new(Duration::ZERO);

        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), Some(0));
    }
}

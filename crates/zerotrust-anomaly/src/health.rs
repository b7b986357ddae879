//! Tracks whether the counter store works, and limits `STORE_DEGRADED` events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The health of a layer's counter store, shared by all clones of the layer.
///
/// After a failure the store is left alone for `retry_interval`, so that while
/// it is down each request goes straight to the failure policy instead of
/// waiting for the store timeout. The first request after that interval tries
/// the store again.
#[derive(Debug)]
pub(crate) struct StoreHealth {
    started: Instant,
    retry_interval_ms: u64,
    /// Milliseconds after `started` before which the store is not called.
    retry_at_ms: AtomicU64,
    degraded: AtomicBool,
    events: EventInterval,
}

impl StoreHealth {
    pub(crate) fn new(retry_interval: Duration, event_interval: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            retry_interval_ms: millis(retry_interval),
            retry_at_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            events: EventInterval::new(event_interval),
        }
    }

    /// Returns the time left before the store may be called again, or `None`
    /// if it may be called now.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        let now = self.now_ms();
        let retry_at = self.retry_at_ms.load(Ordering::Relaxed);
        (now < retry_at).then(|| Duration::from_millis(retry_at - now))
    }

    /// Records a failed store call. Returns `true` if this failure should be
    /// reported as a `STORE_DEGRADED` event.
    pub(crate) fn record_failure(&self, stop_calls: bool) -> bool {
        if stop_calls {
            let retry_at = self.now_ms().saturating_add(self.retry_interval_ms);
            self.retry_at_ms.fetch_max(retry_at, Ordering::Relaxed);
        }
        self.degraded.store(true, Ordering::Relaxed);
        self.events.should_report(self.now_ms())
    }

    /// Records a store call that failed without being tried. Returns `true` if
    /// it should be reported.
    pub(crate) fn record_skipped(&self) -> bool {
        self.events.should_report(self.now_ms())
    }

    /// Records a successful store call. Returns `true` if the store was degraded
    /// until now.
    pub(crate) fn record_success(&self) -> bool {
        // A plain load first keeps the common healthy path free of writes to a
        // shared cache line.
        self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }
}

/// Lets one report through per interval, across all clones of a layer.
#[derive(Debug)]
struct EventInterval {
    interval_ms: u64,
    /// Milliseconds after the layer started before which no report is sent.
    next_report_ms: AtomicU64,
}

impl EventInterval {
    fn new(interval: Duration) -> Self {
        Self {
            interval_ms: millis(interval),
            next_report_ms: AtomicU64::new(0),
        }
    }

    fn should_report(&self, now_ms: u64) -> bool {
        let next = self.next_report_ms.load(Ordering::Relaxed);
        if now_ms < next {
            return false;
        }
        // Of several requests that fail at once, only the one that moves the
        // deadline reports.
        self.next_report_ms
            .compare_exchange(
                next,
                now_ms.saturating_add(self.interval_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_pauses_store_calls_for_retry_interval() {
        let health = StoreHealth::new(Duration::from_millis(50), Duration::from_secs(60));
        assert_eq!(health.retry_in(), None);

        let report = health.record_failure(true);

        assert!(report, "first failure is reported");
        assert!(health.retry_in().is_some());
        assert!(
            !health.record_failure(true),
            "second failure within interval is not"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(health.retry_in(), None);
        assert!(health.record_success(), "recovery is noticed once");
        assert!(!health.record_success());
    }

    #[test]
    fn capacity_failure_keeps_store_calls() {
        let health = StoreHealth::new(Duration::from_secs(5), Duration::from_secs(60));

        health.record_failure(false);

        assert_eq!(health.retry_in(), None);
    }
}

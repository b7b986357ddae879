//! A sink wrapper that limits events per kind and identifier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::event::{EventKind, SecurityEvent};
use crate::sink::{EventSink, SharedSink};

/// The default maximum of kind and identifier pairs that a
/// [`RateLimitedSink`] tracks.
pub const DEFAULT_MAX_TRACKED: usize = 10_000;

/// Forwards at most `max_events` events per kind and identifier in each
/// `interval`, and counts the rest, so that one caller who triggers a denial on
/// every request cannot flood the SIEM.
///
/// Intervals are fixed and start at the first event of each pair. Events with
/// no identifier share one limit per kind. When `max_tracked` pairs are
/// tracked, pairs whose interval ended are dropped. If none has ended, an event
/// of a new pair is suppressed, because an attacker who sprays identifiers
/// would otherwise bypass the limit.
#[derive(Debug)]
pub struct RateLimitedSink {
    inner: SharedSink,
    max_events: u32,
    interval: Duration,
    max_tracked: usize,
    state: Mutex<HashMap<(EventKind, Option<String>), Window>>,
    suppressed: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    sent: u32,
}

impl RateLimitedSink {
    /// Wraps `inner`, forwarding at most `max_events` events per kind and
    /// identifier per `interval`, and tracking up to [`DEFAULT_MAX_TRACKED`]
    /// pairs.
    pub fn new(inner: SharedSink, max_events: u32, interval: Duration) -> Self {
        Self {
            inner,
            max_events,
            interval,
            max_tracked: DEFAULT_MAX_TRACKED,
            state: Mutex::new(HashMap::new()),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Tracks up to `max_tracked` kind and identifier pairs instead of
    /// [`DEFAULT_MAX_TRACKED`].
    #[must_use]
    pub fn with_max_tracked(mut self, max_tracked: usize) -> Self {
        self.max_tracked = max_tracked;
        self
    }

    /// Returns how many events were not forwarded.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    fn admit(&self, event: &SecurityEvent) -> bool {
        let now = Instant::now();
        let key = (event.kind, event.identifier.clone());
        let mut state = self.lock();

        if !state.contains_key(&key) && state.len() >= self.max_tracked {
            let interval = self.interval;
            state.retain(|_, window| now.duration_since(window.started) < interval);
            if state.len() >= self.max_tracked {
                return false;
            }
        }

        let window = state.entry(key).or_insert(Window {
            started: now,
            sent: 0,
        });
        if now.duration_since(window.started) >= self.interval {
            *window = Window {
                started: now,
                sent: 0,
            };
        }
        if window.sent >= self.max_events {
            return false;
        }
        window.sent += 1;
        true
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(EventKind, Option<String>), Window>> {
        // Each update is one map operation, so a poisoned map is consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventSink for RateLimitedSink {
    fn send(&self, event: SecurityEvent) {
        if self.admit(&event) {
            self.inner.send(event);
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::sink::MemorySink;

    fn denial(identifier: &str) -> SecurityEvent {
        SecurityEvent::new(EventKind::AuthenticationDenied).identifier(identifier)
    }

    #[test]
    fn limit_applies_per_kind_and_identifier() {
        let memory = Arc::new(MemorySink::default());
        let sink = RateLimitedSink::new(memory.clone(), 2, Duration::from_secs(60));

        for _ in 0..10 {
            sink.send(denial("a"));
        }
        sink.send(denial("b"));
        sink.send(SecurityEvent::new(EventKind::Blocked).identifier("a"));

        assert_eq!(memory.count(EventKind::AuthenticationDenied), 3);
        assert_eq!(memory.count(EventKind::Blocked), 1);
        assert_eq!(sink.suppressed(), 8);
    }

    #[test]
    fn limit_resets_after_interval() {
        let memory = Arc::new(MemorySink::default());
        let sink = RateLimitedSink::new(memory.clone(), 1, Duration::from_millis(30));

        sink.send(denial("a"));
        sink.send(denial("a"));
        std::thread::sleep(Duration::from_millis(40));
        sink.send(denial("a"));

        assert_eq!(memory.events().len(), 2);
        assert_eq!(sink.suppressed(), 1);
    }

    #[test]
    fn identifier_spray_cannot_bypass_full_table() {
        let memory = Arc::new(MemorySink::default());
        let sink =
            RateLimitedSink::new(memory.clone(), 1, Duration::from_secs(60)).with_max_tracked(100);

        for i in 0..1_000 {
            sink.send(denial(&format!("spray-{i}")));
        }

        assert_eq!(memory.events().len(), 100);
        assert_eq!(sink.suppressed(), 900);
    }
}

//! Destinations for security events.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::event::{EventKind, SecurityEvent};

/// A destination for security events.
///
/// `send` runs on the request path, so it must return at once and must not fail
/// the request: a sink that talks to the network queues the event and sends it
/// from a task of its own.
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Accepts one event without blocking.
    fn send(&self, event: SecurityEvent);
}

/// A sink shared between layers.
pub type SharedSink = Arc<dyn EventSink>;

/// Emits each event as a `tracing` event on the `zerotrust::security` target.
///
/// This is the default sink. Events are logged at `INFO` with structured fields
/// and no credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn send(&self, event: SecurityEvent) {
        tracing::info!(
            target: "zerotrust::security",
            kind = event.kind.as_str(),
            identifier = event.identifier.as_deref(),
            service = event.service.as_deref(),
            count = event.count,
            reason = event.reason,
            status = event.status,
            request_id = event.request_id.as_deref(),
            "security event"
        );
    }
}

/// Keeps the most recent events in memory, for tests and demos.
///
/// Holds at most `capacity` events and drops the oldest past that, counting the
/// drops.
#[derive(Debug)]
pub struct MemorySink {
    events: Mutex<VecDeque<SecurityEvent>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl MemorySink {
    /// Creates a sink that keeps up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Returns a copy of the stored events, oldest first.
    pub fn events(&self) -> Vec<SecurityEvent> {
        self.lock().iter().cloned().collect()
    }

    /// Returns how many stored events are of `kind`.
    pub fn count(&self, kind: EventKind) -> usize {
        self.lock().iter().filter(|e| e.kind == kind).count()
    }

    /// Returns how many events were dropped because the sink was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Removes all stored events.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SecurityEvent>> {
        // A panic while holding the lock leaves the queue itself consistent,
        // so a poisoned lock is still safe to use.
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl EventSink for MemorySink {
    fn send(&self, event: SecurityEvent) {
        let mut events = self.lock();
        if events.len() == self.capacity {
            events.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        events.push_back(event);
    }
}

impl<S: EventSink + ?Sized> EventSink for Arc<S> {
    fn send(&self, event: SecurityEvent) {
        (**self).send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sink_drops_oldest_when_full() {
        let sink = MemorySink::new(2);

        sink.send(SecurityEvent::new(EventKind::RateAnomaly).count(1));
        sink.send(SecurityEvent::new(EventKind::RateAnomaly).count(2));
        sink.send(SecurityEvent::new(EventKind::Blocked).count(3));

        let events = sink.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].count, Some(2));
        assert_eq!(events[1].kind, EventKind::Blocked);
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.count(EventKind::Blocked), 1);
    }
}

//! The part of a layer that sends its security events.

use std::sync::Arc;

use http::HeaderMap;

use crate::event::{EventKind, SecurityEvent};
use crate::rejection::Rejection;
use crate::request_id::request_id;
use crate::sink::{SharedSink, TracingSink};

/// A layer's event sink and the service name its events carry.
///
/// Layers keep one of these so that every denial event is built the same way:
/// kind, reason, status, identifier, service and request id.
#[derive(Debug, Clone)]
pub struct EventReporter {
    service: Option<Arc<str>>,
    sink: SharedSink,
}

impl Default for EventReporter {
    fn default() -> Self {
        Self {
            service: None,
            sink: Arc::new(TracingSink),
        }
    }
}

impl EventReporter {
    /// Replaces the sink. By default events go to the [`TracingSink`].
    pub fn set_sink(&mut self, sink: SharedSink) {
        self.sink = sink;
    }

    /// Sets the service name that events carry.
    pub fn set_service(&mut self, service: impl Into<Arc<str>>) {
        self.service = Some(service.into());
    }

    /// Returns the service name, if set.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// Sends `event`, adding the service name when the event has none.
    pub fn send(&self, mut event: SecurityEvent) {
        if event.service.is_none()
            && let Some(service) = &self.service
        {
            event.service = Some(service.to_string());
        }
        self.sink.send(event);
    }

    /// Sends the event for a request refused with `rejection`.
    pub fn denial<R: Rejection>(
        &self,
        kind: EventKind,
        rejection: &R,
        identifier: Option<String>,
        headers: &HeaderMap,
    ) {
        let mut event = SecurityEvent::new(kind)
            .reason(rejection.reason())
            .status(rejection.status().as_u16())
            .request_id(request_id(headers));
        event.identifier = identifier;
        self.send(event);
    }
}

//! The anomaly layer and its builder.

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use zerotrust_core::{EventReporter, SharedSink};

use crate::error::AnomalyConfigError;
use crate::identifier::IdentifierKind;
use crate::policy::AnomalyPolicy;
use crate::service::{AnomalyService, Shared};
use crate::store::CounterStore;

/// The default bound on one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// The default minimum time between two `STORE_DEGRADED` events of one layer.
pub const DEFAULT_DEGRADED_EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Layer that applies [`AnomalyService`]. See the [crate docs](crate).
///
/// Cheap to clone: clones share the configuration and the store.
#[derive(Debug, Clone)]
#[must_use]
pub struct AnomalyLayer {
    shared: Arc<Shared>,
}

impl AnomalyLayer {
    /// Starts a builder that counts in `store`.
    ///
    /// By default events go to the [`TracingSink`](zerotrust_core::TracingSink), service principals get
    /// [`AnomalyPolicy::service_default`], every other kind
    /// [`AnomalyPolicy::default`], store calls time out after
    /// [`DEFAULT_STORE_TIMEOUT`], and `STORE_DEGRADED` events are sent at most
    /// once per [`DEFAULT_DEGRADED_EVENT_INTERVAL`].
    pub fn builder(store: Arc<dyn CounterStore>) -> AnomalyLayerBuilder {
        AnomalyLayerBuilder {
            store,
            events: EventReporter::default(),
            policies: IdentifierKind::ALL.map(default_policy),
            store_timeout: DEFAULT_STORE_TIMEOUT,
            degraded_event_interval: DEFAULT_DEGRADED_EVENT_INTERVAL,
        }
    }
}

impl<S> Layer<S> for AnomalyLayer {
    type Service = AnomalyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnomalyService::new(inner, self.shared.clone())
    }
}

/// Builder for [`AnomalyLayer`].
#[derive(Debug)]
#[must_use]
pub struct AnomalyLayerBuilder {
    store: Arc<dyn CounterStore>,
    events: EventReporter,
    policies: [AnomalyPolicy; IdentifierKind::ALL.len()],
    store_timeout: Duration,
    degraded_event_interval: Duration,
}

impl AnomalyLayerBuilder {
    /// Names the service in events. By default events carry no service name.
    pub fn service_name(mut self, service: impl Into<Arc<str>>) -> Self {
        self.events.set_service(service);
        self
    }

    /// Sends events to `sink`. By default they go to the [`TracingSink`](zerotrust_core::TracingSink).
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Applies `policy` to identifiers of `kind`.
    pub fn policy(mut self, kind: IdentifierKind, policy: AnomalyPolicy) -> Self {
        self.policies[kind_index(kind)] = policy;
        self
    }

    /// Bounds each store call. By default [`DEFAULT_STORE_TIMEOUT`]. A call that
    /// takes longer counts as a store error, so the request goes through.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Sets the minimum time between two `STORE_DEGRADED` events. By default
    /// [`DEFAULT_DEGRADED_EVENT_INTERVAL`].
    pub fn degraded_event_interval(mut self, interval: Duration) -> Self {
        self.degraded_event_interval = interval;
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::ZeroDuration`] if the store timeout is zero.
    pub fn build(self) -> Result<AnomalyLayer, AnomalyConfigError> {
        if self.store_timeout.is_zero() {
            return Err(AnomalyConfigError::ZeroDuration {
                field: "store_timeout",
            });
        }

        tracing::debug!(
            target: "zerotrust::anomaly",
            service = self.events.service(),
            store_timeout_ms = self.store_timeout.as_millis(),
            "anomaly layer built"
        );
        Ok(AnomalyLayer {
            shared: Arc::new(Shared::new(
                self.store,
                self.events,
                self.policies,
                self.store_timeout,
                self.degraded_event_interval,
            )),
        })
    }
}

fn default_policy(kind: IdentifierKind) -> AnomalyPolicy {
    match kind {
        IdentifierKind::Service => AnomalyPolicy::service_default(),
        _ => AnomalyPolicy::default(),
    }
}

pub(crate) fn kind_index(kind: IdentifierKind) -> usize {
    match kind {
        IdentifierKind::Service => 0,
        IdentifierKind::ApiKey => 1,
        IdentifierKind::Subject => 2,
        IdentifierKind::ClientAddress => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_index_follows_all_order() {
        for (position, kind) in IdentifierKind::ALL.into_iter().enumerate() {
            assert_eq!(kind_index(kind), position, "{kind}");
        }
    }
}

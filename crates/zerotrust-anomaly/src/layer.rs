//! The anomaly layer and its builder.

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use zerotrust_core::{EventReporter, SharedSink};

use crate::metrics::Metrics;
use crate::blocked_cache::{BlockedCache, DEFAULT_BLOCKED_CACHE_CAPACITY};
use crate::client_address::ClientAddressResolver;
use crate::decision::Shared;
use crate::error::AnomalyConfigError;
use crate::failure::{Enforcement, OnStoreError, RateLimitHeaders};
use crate::health::StoreHealth;
use crate::identifier::IdentifierKind;
use crate::memory::MemoryCounterStore;
use crate::policy::AnomalyPolicy;
use crate::service::AnomalyService;
use crate::source::IdentifierSource;
use crate::store::CounterStore;

/// The default bound on one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// The default minimum time between two `STORE_DEGRADED` events of one layer.
pub const DEFAULT_DEGRADED_EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// The default time after a store failure during which the layer does not call
/// the store, and applies its [`OnStoreError`] policy at once.
pub const DEFAULT_STORE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The default maximum of identifiers in the in-memory fallback store that
/// [`OnStoreError::FailOpen`] counts in while the store fails.
pub const DEFAULT_FALLBACK_MAX_IDENTIFIERS: usize = 10_000;

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
    /// By default events go to the [`TracingSink`](zerotrust_core::TracingSink);
    /// service principals and SPIFFE IDs get [`AnomalyPolicy::service_default`],
    /// authentication failures [`AnomalyPolicy::authentication_failure_default`]
    /// and every other kind [`AnomalyPolicy::default`]; the identifier is
    /// [`IdentifierSource::PrincipalOrClientAddress`] with client addresses from
    /// the socket; store calls time out after [`DEFAULT_STORE_TIMEOUT`]; store
    /// errors fail open ([`OnStoreError::FailOpen`]) and `STORE_DEGRADED` events
    /// are sent at most once per [`DEFAULT_DEGRADED_EVENT_INTERVAL`]; blocks are
    /// enforced; authentication failures are not counted.
    pub fn builder(store: Arc<dyn CounterStore>) -> AnomalyLayerBuilder {
        AnomalyLayerBuilder {
            store,
            events: EventReporter::default(),
            policies: IdentifierKind::ALL.map(default_policy),
            store_timeout: DEFAULT_STORE_TIMEOUT,
            degraded_event_interval: DEFAULT_DEGRADED_EVENT_INTERVAL,
            store_retry_interval: DEFAULT_STORE_RETRY_INTERVAL,
            on_store_error: OnStoreError::default(),
            enforcement: Enforcement::default(),
            rate_limit_headers: RateLimitHeaders::default(),
            source: IdentifierSource::default(),
            addresses: ClientAddressResolver::new(),
            count_authentication_failures: false,
            blocked_cache_capacity: DEFAULT_BLOCKED_CACHE_CAPACITY,
            fallback_max_identifiers: DEFAULT_FALLBACK_MAX_IDENTIFIERS,
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
    store_retry_interval: Duration,
    on_store_error: OnStoreError,
    enforcement: Enforcement,
    rate_limit_headers: RateLimitHeaders,
    source: IdentifierSource,
    addresses: ClientAddressResolver,
    count_authentication_failures: bool,
    blocked_cache_capacity: usize,
    fallback_max_identifiers: usize,
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
    /// takes longer counts as a store error, handled by the
    /// [`on_store_error`](Self::on_store_error) policy.
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

    /// Sets what happens to requests while the store fails or times out. By
    /// default [`OnStoreError::FailOpen`].
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// Sets how long the layer leaves the store alone after a failure before it
    /// tries it again. By default [`DEFAULT_STORE_RETRY_INTERVAL`]. Meanwhile
    /// requests follow the [`on_store_error`](Self::on_store_error) policy at
    /// once instead of each waiting for the store timeout.
    pub fn store_retry_interval(mut self, interval: Duration) -> Self {
        self.store_retry_interval = interval;
        self
    }

    /// Sets the maximum of identifiers that the fail-open fallback store tracks.
    /// By default [`DEFAULT_FALLBACK_MAX_IDENTIFIERS`].
    pub fn fallback_max_identifiers(mut self, max_identifiers: usize) -> Self {
        self.fallback_max_identifiers = max_identifiers;
        self
    }

    /// Sets whether allowed responses carry `RateLimit-Policy` and `RateLimit`
    /// headers. By default [`RateLimitHeaders::Omit`].
    pub fn rate_limit_headers(mut self, headers: RateLimitHeaders) -> Self {
        self.rate_limit_headers = headers;
        self
    }

    /// Sets whether blocks are enforced or only logged. By default
    /// [`Enforcement::Enforce`].
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// Sets where each request's identifier comes from. By default
    /// [`IdentifierSource::PrincipalOrClientAddress`].
    pub fn identify_by(mut self, source: IdentifierSource) -> Self {
        self.source = source;
        self
    }

    /// Sets how client addresses are found. By default the socket peer from
    /// `ConnectInfo<SocketAddr>`, with IPv6 grouped by /64 and forwarding
    /// headers ignored.
    pub fn client_addresses(mut self, resolver: ClientAddressResolver) -> Self {
        self.addresses = resolver;
        self
    }

    /// Counts every response with status 401 against the client address, under
    /// `policy`, as [`IdentifierKind::AuthenticationFailure`]. By default
    /// authentication failures are not counted.
    ///
    /// The layer must wrap the authentication layers to see their 401
    /// responses. Once the address is blocked, its requests get 429 before they
    /// reach authentication; the 401 that starts the block is returned as it is.
    pub fn count_authentication_failures(mut self, policy: AnomalyPolicy) -> Self {
        self.count_authentication_failures = true;
        self.policies[kind_index(IdentifierKind::AuthenticationFailure)] = policy;
        self
    }

    /// Sets the maximum of blocked identifiers that the layer remembers, so that
    /// their requests are rejected without a store call. By default
    /// [`DEFAULT_BLOCKED_CACHE_CAPACITY`]; 0 turns the cache off.
    pub fn blocked_cache_capacity(mut self, capacity: usize) -> Self {
        self.blocked_cache_capacity = capacity;
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::ZeroDuration`] if the store timeout or the store
    /// retry interval is zero, and [`AnomalyConfigError::ZeroCount`] if the
    /// fallback store may track no identifiers.
    pub fn build(self) -> Result<AnomalyLayer, AnomalyConfigError> {
        if self.store_timeout.is_zero() {
            return Err(AnomalyConfigError::ZeroDuration {
                field: "store_timeout",
            });
        }
        if self.store_retry_interval.is_zero() {
            return Err(AnomalyConfigError::ZeroDuration {
                field: "store_retry_interval",
            });
        }
        let fallback = MemoryCounterStore::with_max_identifiers(self.fallback_max_identifiers)
            .map_err(|_| AnomalyConfigError::ZeroCount {
                field: "fallback_max_identifiers",
            })?;

        tracing::debug!(
            target: "zerotrust::anomaly",
            service = self.events.service(),
            store_timeout_ms = self.store_timeout.as_millis(),
            on_store_error = ?self.on_store_error,
            enforcement = ?self.enforcement,
            source = ?self.source,
            "anomaly layer built"
        );
        let metrics = Metrics::new(self.events.service());
        Ok(AnomalyLayer {
            shared: Arc::new(Shared {
                store: self.store,
                fallback,
                on_store_error: self.on_store_error,
                enforcement: self.enforcement,
                events: self.events,
                policies: self.policies,
                store_timeout: self.store_timeout,
                health: StoreHealth::new(self.store_retry_interval, self.degraded_event_interval),
                blocked: BlockedCache::new(self.blocked_cache_capacity),
                source: self.source,
                addresses: self.addresses,
                count_authentication_failures: self.count_authentication_failures,
                metrics,
                rate_limit_headers: self.rate_limit_headers,
            }),
        })
    }
}

fn default_policy(kind: IdentifierKind) -> AnomalyPolicy {
    match kind {
        IdentifierKind::Service | IdentifierKind::SpiffeId => AnomalyPolicy::service_default(),
        IdentifierKind::AuthenticationFailure => AnomalyPolicy::authentication_failure_default(),
        _ => AnomalyPolicy::default(),
    }
}

pub(crate) fn kind_index(kind: IdentifierKind) -> usize {
    match kind {
        IdentifierKind::Service => 0,
        IdentifierKind::ApiKey => 1,
        IdentifierKind::Subject => 2,
        IdentifierKind::ClientAddress => 3,
        IdentifierKind::SpiffeId => 4,
        IdentifierKind::AuthenticationFailure => 5,
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

//! The API key layer and its builder.

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use zerotrust_core::{Clock, EventReporter, SharedSink, SystemClock, TracingSink};

use crate::key::KeyFormat;
use crate::service::ApiKeyService;
use crate::store::KeyStore;
use crate::throttle::LogThrottle;

/// How long a request waits for the store by default before it gets 503.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The maximum length of a service name, in bytes.
const MAX_SERVICE_NAME_LEN: usize = 128;

/// Layer that applies [`ApiKeyService`]: every request must carry a valid API key.
///
/// Cheap to clone: the configuration sits behind an `Arc`. Build it with
/// [`ApiKeyLayer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ApiKeyLayer {
    pub(crate) config: Arc<Config>,
}

/// The settings shared by every service the layer makes.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) format: KeyFormat,
    pub(crate) events: EventReporter,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lookup_timeout: Duration,
    pub(crate) store_error_log: LogThrottle,
}

impl ApiKeyLayer {
    /// Starts a builder that checks keys against `store`.
    pub fn builder(store: Arc<dyn KeyStore>) -> ApiKeyLayerBuilder {
        ApiKeyLayerBuilder {
            store,
            format: KeyFormat::default(),
            sink: Arc::new(TracingSink),
            service: None,
            clock: Arc::new(SystemClock),
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
        }
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Builder for [`ApiKeyLayer`]. Every setting has a strict default.
#[derive(Debug)]
#[must_use]
pub struct ApiKeyLayerBuilder {
    store: Arc<dyn KeyStore>,
    format: KeyFormat,
    sink: SharedSink,
    service: Option<String>,
    clock: Arc<dyn Clock>,
    lookup_timeout: Duration,
}

impl ApiKeyLayerBuilder {
    /// Names the service in security events. By default events name no service.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Sends security events to `sink`. By default they go to [`TracingSink`].
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.sink = sink;
        self
    }

    /// Accepts keys of `format`. By default the prefix is `mk_`.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// Reads the time for expiry and revocation checks from `clock`. By default
    /// it is the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long a request waits for the store before it gets 503. By
    /// default it is 2 seconds.
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ApiKeyLayer, ApiKeyConfigError> {
        if let Some(name) = &self.service {
            let valid = !name.is_empty()
                && name.len() <= MAX_SERVICE_NAME_LEN
                && !name.chars().any(char::is_control);
            if !valid {
                return Err(ApiKeyConfigError::InvalidServiceName {
                    name: name.chars().take(MAX_SERVICE_NAME_LEN).collect(),
                });
            }
        }
        if self.lookup_timeout.is_zero() {
            return Err(ApiKeyConfigError::ZeroLookupTimeout);
        }

        tracing::debug!(
            target: "zerotrust::apikey",
            service = self.service.as_deref(),
            prefix = self.format.prefix(),
            lookup_timeout_ms = self.lookup_timeout.as_millis() as u64,
            "API key layer built"
        );
        let mut events = EventReporter::default();
        events.set_sink(self.sink);
        if let Some(service) = self.service {
            events.set_service(service);
        }
        Ok(ApiKeyLayer {
            config: Arc::new(Config {
                store: self.store,
                format: self.format,
                events,
                clock: self.clock,
                lookup_timeout: self.lookup_timeout,
                store_error_log: LogThrottle::new(Duration::from_secs(10)),
            }),
        })
    }
}

/// [`ApiKeyLayerBuilder::build`] rejected a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyConfigError {
    /// The service name is empty, too long or contains control characters.
    #[error("invalid service name {name:?}: expected 1 to 128 bytes without control characters")]
    InvalidServiceName {
        /// The rejected name, cut to 128 characters.
        name: String,
    },
    /// The store lookup timeout is zero, which would reject every request.
    #[error("invalid lookup timeout: it must be greater than zero")]
    ZeroLookupTimeout,
}

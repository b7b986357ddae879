//! The API key layer and its builder.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tower::Layer;
use zerotrust_core::{Clock, EventReporter, SharedSink, SystemClock, TracingSink};

use crate::key::KeyFormat;
use crate::service::ApiKeyService;
use crate::store::KeyStore;
use crate::throttle::LogThrottle;
use crate::usage::UsageRecorder;

/// How long a request waits for the store by default before it gets 503.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The default remaining lifetime below which responses carry a `Sunset`
/// header: 14 days.
pub const DEFAULT_SUNSET_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// How often the last use of keys is written to the store by default: every
/// 60 seconds.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(60);

/// How often a key near its end is reported in the log, at most.
const SUNSET_REPORT_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The maximum number of keys whose sunset report is remembered.
const MAX_SUNSET_REPORTS: u64 = 10_000;

/// The maximum length of a query parameter name, in bytes.
const MAX_QUERY_PARAMETER_LEN: usize = 64;

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
    pub(crate) query_parameter: Option<String>,
    pub(crate) sunset_warning: Duration,
    /// Key ids reported as near their end within the last report interval.
    pub(crate) sunset_reported: Cache<String, ()>,
    pub(crate) usage: Option<Arc<UsageRecorder>>,
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
            query_parameter: None,
            sunset_warning: DEFAULT_SUNSET_WARNING,
            last_used_interval: DEFAULT_LAST_USED_INTERVAL,
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
    query_parameter: Option<String>,
    sunset_warning: Duration,
    last_used_interval: Duration,
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

    /// Also reads the key from the query parameter `name`, such as `api_key`.
    /// By default the query string is never read, because URLs end up in
    /// access logs, browser history and `Referer` headers.
    ///
    /// A key in the query and a different credential in a header are rejected
    /// as ambiguous, like two different headers.
    pub fn allow_query_parameter(mut self, name: impl Into<String>) -> Self {
        self.query_parameter = Some(name.into());
        self
    }

    /// Adds a `Sunset` header (RFC 8594) with the key's end, its expiry or a
    /// scheduled revocation after a rotation, to responses for keys that end
    /// within `period`. By default the period is 14 days. Zero turns the
    /// header off.
    pub fn sunset_warning(mut self, period: Duration) -> Self {
        self.sunset_warning = period;
        self
    }

    /// Sets how often the last use of each key is written to the store, in one
    /// batch per interval. By default it is 60 seconds. Zero turns recording
    /// off.
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.last_used_interval = interval;
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
        if let Some(name) = &self.query_parameter {
            let valid = !name.is_empty()
                && name.len() <= MAX_QUERY_PARAMETER_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ApiKeyConfigError::InvalidQueryParameter {
                    name: name.chars().take(MAX_QUERY_PARAMETER_LEN).collect(),
                });
            }
        }

        tracing::debug!(
            target: "zerotrust::apikey",
            service = self.service.as_deref(),
            prefix = self.format.prefix(),
            lookup_timeout_ms = self.lookup_timeout.as_millis() as u64,
            query_parameter = self.query_parameter.as_deref(),
            sunset_warning_secs = self.sunset_warning.as_secs(),
            last_used_interval_ms = self.last_used_interval.as_millis() as u64,
            "API key layer built"
        );
        let usage = (!self.last_used_interval.is_zero()).then(|| {
            Arc::new(UsageRecorder::new(
                self.store.clone(),
                self.last_used_interval,
                self.lookup_timeout,
            ))
        });
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
                query_parameter: self.query_parameter,
                sunset_warning: self.sunset_warning,
                sunset_reported: Cache::builder()
                    .max_capacity(MAX_SUNSET_REPORTS)
                    .time_to_live(SUNSET_REPORT_INTERVAL)
                    .build(),
                usage,
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
    /// The query parameter name is empty, too long or has characters other
    /// than ASCII letters, digits, `_` and `-`.
    #[error(
        "invalid query parameter name {name:?}: expected 1 to 64 ASCII letters, digits, '_' or '-'"
    )]
    InvalidQueryParameter {
        /// The rejected name, cut to 64 characters.
        name: String,
    },
}

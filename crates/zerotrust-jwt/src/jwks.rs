//! A JWKS fetched from a URL and refreshed in the background.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use zerotrust_core::{EventKind, EventReporter, SecurityEvent, SharedSink};

use crate::keys::KeySet;

/// The maximum duration of one fetch, connection and body included, unless set.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the key set is fetched when the response has no usable `max-age`.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// The minimum time between two fetches by the refresh task, whatever `max-age` or unknown `kid`s request.
pub const DEFAULT_JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The maximum time between two fetches, whatever `max-age` allows.
pub const DEFAULT_JWKS_MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// The largest JWKS response body read, in bytes.
pub const DEFAULT_JWKS_MAX_BODY_BYTES: usize = 256 * 1024;

/// An invalid [`RemoteJwks`] configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksConfigError {
    /// The URL could not be parsed or has no host.
    #[error("invalid JWKS URL {0:?}: use an absolute https:// URL")]
    InvalidUrl(String),
    /// The URL is not https://, or is http:// to a host other than loopback.
    #[error("insecure JWKS URL {0:?}: use https://, or http:// to a loopback address with allow_insecure_http()")]
    InsecureUrl(String),
    /// The platform's root certificates could not be loaded.
    #[error("could not load the platform's root certificates: {0}; set a TLS configuration with tls_config()")]
    Roots(String),
    /// The refresh intervals are zero or out of order.
    #[error("invalid refresh intervals: need 0 < minimum <= default <= maximum")]
    InvalidIntervals,
    /// The timeout or the body limit is zero.
    #[error("the JWKS timeout and body limit must be greater than zero")]
    ZeroLimit,
}

/// A failed JWKS fetch. The last good key set stays in use.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// The fetch did not finish within the timeout.
    #[error("fetching the JWKS timed out after {0:?}")]
    Timeout(Duration),
    /// The connection or the request failed.
    #[error("fetching the JWKS failed: {0}")]
    Request(String),
    /// The server returned a status other than 200.
    #[error("the JWKS endpoint returned status {0}: expected 200")]
    Status(u16),
    /// The body is larger than the limit or could not be read.
    #[error("the JWKS response body could not be read: {0}")]
    Body(String),
    /// The body is not a JWKS, or has no usable key.
    #[error("the JWKS response is invalid: {0}")]
    Invalid(String),
}

impl JwksFetchError {
    fn reason(&self) -> &'static str {
        match self {
            JwksFetchError::Timeout(_) => "jwks_fetch_timed_out",
            JwksFetchError::Request(_) => "jwks_fetch_failed",
            JwksFetchError::Status(_) => "jwks_fetch_status",
            JwksFetchError::Body(_) => "jwks_fetch_body",
            JwksFetchError::Invalid(_) => "jwks_invalid",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Intervals {
    default: Duration,
    min: Duration,
    max: Duration,
    unknown_kid: Duration,
}

struct Inner {
    url: Uri,
    keys: ArcSwap<KeySet>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_body_bytes: usize,
    intervals: Intervals,
    refresh_requested: Notify,
    last_unknown_kid_request: Mutex<Option<Instant>>,
    events: EventReporter,
}

/// A key set fetched from a JWKS URL and kept current by a background task.
///
/// Verification reads the current key set without I/O. The task started by
/// [`spawn_refresh_task`](Self::spawn_refresh_task) fetches the set:
///
/// - at start, unless a fetch already succeeded;
/// - again after the response's `Cache-Control: max-age`, kept between the
///   minimum and maximum refresh intervals, or after the default interval when
///   the response has none;
/// - when a token names an unknown `kid`, at most once per unknown-`kid`
///   interval however many such tokens arrive.
///
/// The task waits at least the minimum interval between two of its fetches.
/// Explicit [`refresh`](Self::refresh) calls are not rate-limited.
///
/// A failed fetch keeps the last good key set, sends a
/// [`EventKind::StoreDegraded`] event with a `jwks_*` reason, and is retried
/// after the minimum interval. Keys that are not usable signature keys (another
/// `kty`, `use: enc`, private parameters) are skipped.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use zerotrust_jwt::{JwtVerifier, RemoteJwks};
///
/// let jwks = RemoteJwks::builder("https://issuer.zerotrust.test/.well-known/jwks.json").build()?;
/// jwks.refresh().await?;
/// let _task = jwks.spawn_refresh_task();
/// let verifier = JwtVerifier::builder()
///     .issuer("https://issuer.zerotrust.test")
///     .audience("api:orders")
///     .remote_jwks(jwks)
///     .build()?;
/// # let _ = verifier;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.inner.url)
            .field("keys", &**self.inner.keys.load())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Starts a builder for the JWKS at `url`.
    pub fn builder(url: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            url: url.into(),
            allow_insecure_http: false,
            timeout: DEFAULT_JWKS_TIMEOUT,
            max_body_bytes: DEFAULT_JWKS_MAX_BODY_BYTES,
            intervals: Intervals {
                default: DEFAULT_JWKS_REFRESH_INTERVAL,
                min: DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
                max: DEFAULT_JWKS_MAX_REFRESH_INTERVAL,
                unknown_kid: DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
            },
            tls_config: None,
            events: EventReporter::default(),
        }
    }

    /// Returns the current key set, empty until the first fetch succeeds.
    pub fn key_set(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.inner.keys.load()
    }

    /// Asks the refresh task for a fetch because a token named an unknown `kid`.
    /// Requests closer together than the unknown-`kid` interval are dropped.
    pub(crate) fn request_refresh(&self) {
        let now = Instant::now();
        let mut last = self
            .inner
            .last_unknown_kid_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|previous| now.duration_since(previous) >= self.inner.intervals.unknown_kid);
        if due {
            *last = Some(now);
            self.inner.refresh_requested.notify_one();
        }
    }

    /// Fetches the key set now and, if it has a usable key, replaces the current
    /// one. Returns the delay until the next scheduled fetch.
    ///
    /// On failure the current key set stays and a security event is sent.
    pub async fn refresh(&self) -> Result<Duration, JwksFetchError> {
        let result = match tokio::time::timeout(self.inner.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(JwksFetchError::Timeout(self.inner.timeout)),
        };
        match result {
            Ok((keys, delay)) => {
                tracing::debug!(target: "zerotrust::jwt", url = %self.inner.url, kids = ?keys.kids(), next_refresh = ?delay, "JWKS refreshed");
                self.inner.keys.store(Arc::new(keys));
                Ok(delay)
            }
            Err(error) => {
                tracing::warn!(target: "zerotrust::jwt", url = %self.inner.url, %error, "JWKS refresh failed; keeping the last good key set");
                self.inner.events.send(
                    SecurityEvent::new(EventKind::StoreDegraded)
                        .reason(error.reason())
                        .identifier(self.inner.url.to_string()),
                );
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), JwksFetchError> {
        let request = Request::get(self.inner.url.clone())
            .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|error| JwksFetchError::Request(error.to_string()))?;
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|error| JwksFetchError::Request(error.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(JwksFetchError::Status(response.status().as_u16()));
        }
        let delay = self.next_delay(response.headers());
        let body = Limited::new(response.into_body(), self.inner.max_body_bytes)
            .collect()
            .await
            .map_err(|error| JwksFetchError::Body(error.to_string()))?
            .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| JwksFetchError::Invalid("the body is not UTF-8".to_owned()))?;

        let (keys, skipped) = KeySet::from_jwks_json(text).map_err(JwksFetchError::Invalid)?;
        for key in &skipped {
            tracing::debug!(target: "zerotrust::jwt", kid = key.kid.as_deref(), reason = %key.reason, "skipped JWKS key");
        }
        if keys.is_empty() {
            return Err(JwksFetchError::Invalid("the document has no usable key".to_owned()));
        }
        Ok((keys, delay))
    }

    /// Returns the `max-age` of the response, kept within the refresh bounds, or the
    /// default interval.
    fn next_delay(&self, headers: &HeaderMap) -> Duration {
        let intervals = self.inner.intervals;
        let max_age = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .find_map(|directive| {
                let (name, value) = directive.trim().split_once('=')?;
                if !name.trim().eq_ignore_ascii_case("max-age") {
                    return None;
                }
                value.trim().trim_matches('"').parse::<u64>().ok()
            });
        max_age
            .map(Duration::from_secs)
            .unwrap_or(intervals.default)
            .clamp(intervals.min, intervals.max)
    }

    /// Starts the background task that keeps the key set current.
    ///
    /// The task ends when every clone of this `RemoteJwks`, and every verifier
    /// using it, has been dropped (checked after each wake-up), or when the
    /// returned handle is aborted. Must be called inside a Tokio runtime.
    pub fn spawn_refresh_task(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let first_delay = if self.inner.keys.load().is_empty() {
            Duration::ZERO
        } else {
            self.inner.intervals.default
        };
        tokio::spawn(refresh_loop(weak, first_delay))
    }
}

async fn refresh_loop(weak: Weak<Inner>, first_delay: Duration) {
    let mut delay = first_delay;
    let mut last_fetch: Option<Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else {
            tracing::debug!(target: "zerotrust::jwt", "JWKS refresh task stopped");
            return;
        };
        let jwks = RemoteJwks { inner };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = jwks.inner.refresh_requested.notified() => {}
        }
        // However the wake-up came, two fetches are at least the minimum interval apart.
        if let Some(last) = last_fetch {
            let since = last.elapsed();
            if since < jwks.inner.intervals.min {
                tokio::time::sleep(jwks.inner.intervals.min - since).await;
            }
        }
        last_fetch = Some(Instant::now());
        delay = jwks.refresh().await.unwrap_or(jwks.inner.intervals.min);
    }
}

/// Builder for [`RemoteJwks`].
#[must_use]
pub struct RemoteJwksBuilder {
    url: String,
    allow_insecure_http: bool,
    timeout: Duration,
    max_body_bytes: usize,
    intervals: Intervals,
    tls_config: Option<rustls::ClientConfig>,
    events: EventReporter,
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksBuilder")
            .field("url", &self.url)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

impl RemoteJwksBuilder {
    /// Allows an `http://` URL to a loopback address, for tests. Keys fetched
    /// over plain HTTP could be replaced by anyone on the path, so other hosts
    /// stay refused.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Sets how long one fetch may take. By default 5 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response body read, in bytes. By default 256 KiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the refresh interval used when a response has no `max-age`. By default 5 minutes.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.intervals.default = interval;
        self
    }

    /// Sets the bounds that `max-age` is kept within. By default 30 seconds and 1 hour.
    /// The minimum is also the shortest time between any two fetches.
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.intervals.min = min;
        self.intervals.max = max;
        self
    }

    /// Sets the shortest time between two fetches caused by unknown `kid`s. By
    /// default 30 seconds.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.intervals.unknown_kid = interval;
        self
    }

    /// Sets the TLS client configuration. By default the platform's root
    /// certificates with the aws-lc-rs provider.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Sends fetch failures to `sink`. By default they go to the tracing sink.
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Names the service in fetch-failure events.
    pub fn service_name(mut self, service: impl Into<Arc<str>>) -> Self {
        self.events.set_service(service);
        self
    }

    /// Validates the configuration and builds the key source. Fetches nothing.
    pub fn build(self) -> Result<RemoteJwks, JwksConfigError> {
        let url: Uri = self
            .url
            .parse()
            .map_err(|_| JwksConfigError::InvalidUrl(self.url.clone()))?;
        let host = url.host().ok_or_else(|| JwksConfigError::InvalidUrl(self.url.clone()))?;
        let insecure = match url.scheme_str() {
            Some("https") => false,
            Some("http") if self.allow_insecure_http && is_loopback(host) => true,
            Some("http") => return Err(JwksConfigError::InsecureUrl(self.url)),
            _ => return Err(JwksConfigError::InvalidUrl(self.url)),
        };
        let intervals = self.intervals;
        let ordered = !intervals.min.is_zero()
            && !intervals.unknown_kid.is_zero()
            && intervals.min <= intervals.default
            && intervals.default <= intervals.max;
        if !ordered {
            return Err(JwksConfigError::InvalidIntervals);
        }
        if self.timeout.is_zero() || self.max_body_bytes == 0 {
            return Err(JwksConfigError::ZeroLimit);
        }

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = match (self.tls_config, insecure) {
            (Some(config), _) => HttpsConnectorBuilder::new().with_tls_config(config),
            // A plain-HTTP loopback URL never uses TLS, so it needs no roots.
            (None, true) => HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|error| JwksConfigError::Roots(error.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            (None, false) => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|error| JwksConfigError::Roots(error.to_string()))?,
        };
        let connector = if insecure {
            connector.https_or_http().enable_http1().build()
        } else {
            connector.https_only().enable_http1().build()
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);

        Ok(RemoteJwks {
            inner: Arc::new(Inner {
                url,
                keys: ArcSwap::from_pointee(KeySet::default()),
                client,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
                intervals,
                refresh_requested: Notify::new(),
                last_unknown_kid_request: Mutex::new(None),
                events: self.events,
            }),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;

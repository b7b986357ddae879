//! Security events posted to an HTTP endpoint in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::SecurityEvent;
use crate::sink::EventSink;
use crate::sinks::ocsf::ocsf_json;

/// Settings of a [`WebhookSink`]. Create with [`WebhookConfig::new`]; every
/// setting has a default that its method names.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    url: Uri,
    headers: HeaderMap,
    queue_capacity: usize,
    max_batch: usize,
    flush_interval: Duration,
    request_timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// An invalid [`WebhookConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse, or is not `http://host[:port]/path`.
    InvalidUrl {
        /// The URL that was given.
        url: String,
    },
    /// A count or duration that must be positive is zero.
    Zero {
        /// The setting, such as `queue_capacity`.
        field: &'static str,
    },
}

impl std::error::Error for WebhookError {}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::InvalidUrl { url } => write!(
                f,
                "invalid webhook url {url:?}: expected http://host[:port]/path \
                 (https needs a TLS-terminating proxy in front)"
            ),
            WebhookError::Zero { field } => write!(f, "webhook {field} must be greater than zero"),
        }
    }
}

impl WebhookConfig {
    /// Creates settings that post to `url`.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidUrl`] unless `url` is an `http://` URL with a host.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        let invalid = || WebhookError::InvalidUrl {
            url: url.to_owned(),
        };
        let parsed: Uri = url.parse().map_err(|_| invalid())?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            return Err(invalid());
        }
        Ok(Self {
            url: parsed,
            headers: HeaderMap::new(),
            queue_capacity: 1_024,
            max_batch: 100,
            flush_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        })
    }

    /// Adds a header to every request, such as an `authorization` token. The
    /// value is marked sensitive, so hyper keeps it out of HTTP/2 header
    /// compression tables.
    #[must_use]
    pub fn header(mut self, name: http::HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.headers.insert(name, value);
        self
    }

    /// Sets how many events wait for delivery before new ones are dropped. By
    /// default 1,024.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the maximum of events per request. By default 100.
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets how long the first event of a batch waits for more before the batch
    /// is sent. By default 1 second.
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Bounds each request, response body included. By default 5 seconds.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how often a failed batch is sent again, and the first delay, which
    /// doubles after each attempt up to `max_backoff`. By default 3 retries from
    /// 200 ms up to 5 seconds.
    #[must_use]
    pub fn retries(
        mut self,
        max_retries: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> Self {
        self.max_retries = max_retries;
        self.initial_backoff = initial_backoff;
        self.max_backoff = max_backoff;
        self
    }

    fn validate(&self) -> Result<(), WebhookError> {
        let zero = [
            ("queue_capacity", self.queue_capacity == 0),
            ("max_batch", self.max_batch == 0),
            ("flush_interval", self.flush_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((field, _)) => Err(WebhookError::Zero { field }),
            None => Ok(()),
        }
    }
}

/// Counters of a [`WebhookSink`].
#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// Posts events as a JSON array of OCSF-shaped objects (see
/// [`ocsf_json`](crate::sinks::ocsf_json)) to an HTTP endpoint.
///
/// `send` puts the event in a bounded queue and returns at once; a task of its
/// own sends batches. When the queue is full the event is dropped and counted
/// in [`dropped`](Self::dropped). A batch is retried with exponential backoff
/// after a connection error, a timeout, a 408, a 429 or a 5xx. After the last
/// retry, or after any other error status, its events are dropped and counted. The task
/// ends once every clone of the sink is dropped and the queue is drained.
///
/// # Known limitations
///
/// - Only `http://` endpoints: put a TLS-terminating proxy in front of an
///   `https://` collector.
/// - Events are at most once: a batch whose response was lost is not resent
///   after the last retry, and a resent batch may arrive twice.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    queue: mpsc::Sender<SecurityEvent>,
    stats: Arc<Stats>,
}

impl WebhookSink {
    /// Starts the delivery task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Zero`] if a count or duration in `config` is zero.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn(config: WebhookConfig) -> Result<Self, WebhookError> {
        config.validate()?;
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let stats = Arc::new(Stats::default());
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());

        tracing::debug!(target: "zerotrust::security", url = %config.url, "webhook sink started");
        let delivery = Delivery {
            client,
            config,
            stats: stats.clone(),
        };
        tokio::spawn(delivery.run(receiver));
        Ok(Self { queue, stats })
    }

    /// Returns how many events the endpoint accepted.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }

    /// Returns how many events were dropped: queue full, or retries used up.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Returns how many times a batch was sent again.
    pub fn retries(&self) -> u64 {
        self.stats.retries.load(Ordering::Relaxed)
    }
}

impl EventSink for WebhookSink {
    fn send(&self, event: SecurityEvent) {
        if self.queue.try_send(event).is_err() {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(1_000) {
                tracing::warn!(target: "zerotrust::security", dropped = dropped + 1, "webhook queue full, security event dropped");
            }
        }
    }
}

struct Delivery {
    client: Client<HttpConnector, Full<Bytes>>,
    config: WebhookConfig,
    stats: Arc<Stats>,
}

/// Whether a failed attempt may be repeated.
enum Failure {
    Retryable(String),
    Final(String),
}

impl Delivery {
    async fn run(self, mut receiver: mpsc::Receiver<SecurityEvent>) {
        let mut batch = Vec::with_capacity(self.config.max_batch);
        while let Some(first) = receiver.recv().await {
            batch.push(first);
            let flush_at = Instant::now() + self.config.flush_interval;
            while batch.len() < self.config.max_batch {
                match tokio::time::timeout_at(flush_at, receiver.recv()).await {
                    Ok(Some(event)) => batch.push(event),
                    // Closed queue or flush time: send what there is.
                    Ok(None) | Err(_) => break,
                }
            }
            self.deliver(&batch).await;
            batch.clear();
        }
        tracing::debug!(target: "zerotrust::security", "webhook sink stopped");
    }

    async fn deliver(&self, batch: &[SecurityEvent]) {
        let body = serde_json::Value::Array(batch.iter().map(ocsf_json).collect()).to_string();
        let body = Bytes::from(body);
        let mut backoff = self.config.initial_backoff;

        for attempt in 0..=self.config.max_retries {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
            let failure = match self.post(body.clone()).await {
                Ok(()) => {
                    let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                    self.stats.delivered.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Err(failure) => failure,
            };
            match failure {
                Failure::Retryable(reason) => {
                    tracing::debug!(target: "zerotrust::security", attempt, %reason, "webhook delivery failed, will retry");
                }
                Failure::Final(reason) => {
                    self.drop_batch(batch.len(), &reason);
                    return;
                }
            }
        }
        self.drop_batch(batch.len(), "retries exhausted");
    }

    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.config.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|error| Failure::Final(format!("building the request failed: {error}")))?;
        request.headers_mut().extend(self.config.headers.clone());

        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Reading the body lets the connection be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        let status = match tokio::time::timeout(self.config.request_timeout, exchange).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => return Err(Failure::Retryable(error.to_string())),
            Err(_) => {
                return Err(Failure::Retryable(format!(
                    "timed out after {:?}",
                    self.config.request_timeout
                )));
            }
        };

        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(Failure::Retryable(format!("status {status}")))
        } else {
            Err(Failure::Final(format!("status {status}")))
        }
    }

    fn drop_batch(&self, events: usize, reason: &str) {
        let events = u64::try_from(events).unwrap_or(u64::MAX);
        let before = self.stats.dropped.fetch_add(events, Ordering::Relaxed);
        tracing::warn!(
            target: "zerotrust::security",
            url = %self.config.url,
            events,
            dropped_total = before + events,
            reason,
            "webhook delivery failed, security events dropped"
        );
    }
}

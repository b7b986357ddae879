//! The per-request decision: the blocked cache, the store call under its
//! failure policy, threshold events and rejections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use http::{Extensions, HeaderMap};
use zerotrust_core::{EventKind, EventReporter, Rejection as _, SecurityEvent, problem_response};

use crate::blocked_cache::BlockedCache;
use crate::client_address::ClientAddressResolver;
use crate::error::StoreError;
use crate::failure::{Enforcement, OnStoreError, RateLimitHeaders};
use crate::health::StoreHealth;
use crate::identifier::{Identifier, IdentifierKind};
use crate::layer::kind_index;
use crate::memory::MemoryCounterStore;
use crate::metrics::Metrics;
use crate::policy::AnomalyPolicy;
use crate::rejection::{AnomalyRejection, StoreUnavailableRejection};
use crate::source::IdentifierSource;
use crate::store::{CounterStore, HitDecision, HitOutcome};

/// The `Retry-After` of a fail-closed 503 when no retry time is known.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Configuration and state shared by a layer and all its services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn CounterStore>,
    pub(crate) fallback: MemoryCounterStore,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) enforcement: Enforcement,
    pub(crate) events: EventReporter,
    pub(crate) policies: [AnomalyPolicy; IdentifierKind::ALL.len()],
    pub(crate) store_timeout: Duration,
    pub(crate) health: StoreHealth,
    pub(crate) blocked: BlockedCache,
    pub(crate) source: IdentifierSource,
    pub(crate) addresses: ClientAddressResolver,
    pub(crate) count_authentication_failures: bool,
    pub(crate) metrics: Metrics,
    pub(crate) rate_limit_headers: RateLimitHeaders,
}

/// What the rate-limit headers of one allowed response report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    limit: u64,
    remaining: u64,
    window_secs: u64,
    reset_secs: u64,
}

impl Quota {
    fn new(policy: &AnomalyPolicy, count: u64) -> Self {
        let window_secs = policy.window().as_secs().max(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            limit: policy.block_at(),
            remaining: policy.block_at().saturating_sub(count),
            window_secs,
            reset_secs: window_secs - now % window_secs,
        }
    }

    /// Adds `RateLimit-Policy` and `RateLimit` in the structured-field form of
    /// draft-ietf-httpapi-ratelimit-headers.
    pub(crate) fn add_headers(&self, headers: &mut http::HeaderMap) {
        let policy = format!("\"default\";q={};w={}", self.limit, self.window_secs);
        let current = format!("\"default\";r={};t={}", self.remaining, self.reset_secs);
        if let (Ok(policy), Ok(current)) = (policy.parse(), current.parse()) {
            headers.insert("ratelimit-policy", policy);
            headers.insert("ratelimit", current);
        }
    }
}

/// The result of counting one request, after the failure policy.
enum Counted {
    /// The store, or the fallback store, decided.
    Outcome(HitOutcome),
    /// The store failed under [`OnStoreError::FailClosed`].
    Unavailable(Duration),
    /// The store and the fallback store both failed under
    /// [`OnStoreError::FailOpen`], so the request goes through uncounted.
    Uncounted,
}

impl Shared {
    /// Returns the identifier that the layer's source finds in a request.
    pub(crate) fn identify(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Option<Identifier> {
        self.source.identify(headers, extensions, &self.addresses)
    }

    /// Returns the authentication-failure identifier of a request, if the layer
    /// counts authentication failures and the request has a client address.
    pub(crate) fn authentication_failure_identifier(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Option<Identifier> {
        if !self.count_authentication_failures {
            return None;
        }
        self.addresses
            .identify_request(headers, extensions)?
            .to_authentication_failure()
    }

    /// Decides whether a request may reach the inner service, and counts it.
    /// Returns the rejection response if not.
    pub(crate) async fn admit(
        &self,
        identifier: Option<&Identifier>,
        authentication_failure: Option<&Identifier>,
        request_id: Option<&str>,
    ) -> Result<Option<Quota>, Response> {
        // NOTE: only this replica's cache is consulted for authentication-failure
        // blocks, to keep one store call per request. Another replica learns of
        // the block at the address's next 401 there.
        if let Some(address) = authentication_failure
            && let Some(retry_after) = self.blocked.remaining(address)
            && let Some(response) = self.reject_blocked(address, retry_after)
        {
            return Err(response);
        }

        let Some(identifier) = identifier else {
            return Ok(None);
        };
        if let Some(retry_after) = self.blocked.remaining(identifier) {
            return self.reject_blocked(identifier, retry_after).map_or(Ok(None), Err);
        }

        let policy = &self.policies[kind_index(identifier.kind())];
        let outcome = match self.count(identifier, policy, request_id).await {
            Counted::Outcome(outcome) => outcome,
            Counted::Unavailable(retry_after) => {
                return self.reject_unavailable(identifier, retry_after).map_or(Ok(None), Err);
            }
            Counted::Uncounted => return Ok(None),
        };
        self.send_threshold_events(identifier, policy, &outcome, request_id);

        match outcome.decision {
            HitDecision::Counted { count } => {
                tracing::trace!(
                    target: "zerotrust::anomaly",
                    identifier = %identifier,
                    count,
                    "request counted"
                );
                let quota = (self.rate_limit_headers == RateLimitHeaders::Send).then(|| Quota::new(policy, count));
                Ok(quota)
            }
            HitDecision::Blocked { retry_after } => {
                self.blocked.insert(identifier, retry_after);
                self.reject_blocked(identifier, retry_after).map_or(Ok(None), Err)
            }
        }
    }

    /// Counts a response with status 401 against the client address. The
    /// response itself is not changed: a block applies from the next request.
    pub(crate) async fn count_authentication_failure(
        &self,
        address: &Identifier,
        request_id: Option<&str>,
    ) {
        let policy = &self.policies[kind_index(address.kind())];
        let Counted::Outcome(outcome) = self.count(address, policy, request_id).await else {
            return;
        };
        self.send_threshold_events(address, policy, &outcome, request_id);
        if let HitDecision::Blocked { retry_after } = outcome.decision {
            self.blocked.insert(address, retry_after);
        }
    }

    /// Counts one request in the store, or applies the failure policy.
    async fn count(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
        request_id: Option<&str>,
    ) -> Counted {
        self.metrics.request(identifier.kind());
        let (error, report) = match self.health.retry_in() {
            // The store failed moments ago: do not wait for it again yet.
            Some(retry_in) => (
                StoreError::Unavailable { retry_in },
                self.health.record_skipped(),
            ),
            None => match self.call_store(identifier, policy).await {
                Ok(outcome) => {
                    if self.health.record_success() {
                        tracing::info!(
                            target: "zerotrust::anomaly",
                            service = self.events.service(),
                            "counter store recovered; counting in it again"
                        );
                    }
                    return Counted::Outcome(outcome);
                }
                Err(error) => {
                    // A full memory store still counts the identifiers it
                    // tracks, blocked ones included, so it stays in use.
                    let stop_calls = !matches!(error, StoreError::CapacityExceeded { .. });
                    let report = self.health.record_failure(stop_calls);
                    (error, report)
                }
            },
        };
        self.report_store_error(identifier, &error, report, request_id);

        match self.on_store_error {
            // Fail closed: a request that cannot be counted is not let through.
            OnStoreError::FailClosed => {
                Counted::Unavailable(self.health.retry_in().unwrap_or(UNAVAILABLE_RETRY_AFTER))
            }
            // Fail open: count locally, so a flood is still alerted on and
            // blocked on this replica while the store is down.
            _ => match self.fallback.hit(identifier, policy).await {
                Ok(outcome) => Counted::Outcome(outcome),
                Err(error) => {
                    tracing::trace!(
                        target: "zerotrust::anomaly",
                        identifier = %identifier,
                        %error,
                        "fallback store failed, request not counted"
                    );
                    Counted::Uncounted
                }
            },
        }
    }

    async fn call_store(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
    ) -> Result<HitOutcome, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.store_timeout, self.store.hit(identifier, policy)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.store_timeout)),
        };
        self.metrics.store_latency(started.elapsed());
        result
    }

    fn reject_blocked(&self, identifier: &Identifier, retry_after: Duration) -> Option<Response> {
        let rejection = AnomalyRejection { retry_after };
        if self.enforcement == Enforcement::Shadow {
            tracing::debug!(
                target: "zerotrust::anomaly",
                identifier = %identifier,
                retry_after_s = rejection.retry_after_secs(),
                status = 429,
                reason = rejection.reason(),
                "shadow mode: request would be rejected"
            );
            return None;
        }

        tracing::trace!(
            target: "zerotrust::anomaly",
            identifier = %identifier,
            retry_after_s = rejection.retry_after_secs(),
            status = 429,
            reason = rejection.reason(),
            "request rejected"
        );
        self.metrics.rejection("blocked");
        Some(problem_response(rejection))
    }

    fn reject_unavailable(
        &self,
        identifier: &Identifier,
        retry_after: Duration,
    ) -> Option<Response> {
        let rejection = StoreUnavailableRejection { retry_after };
        let shadow = self.enforcement == Enforcement::Shadow;
        tracing::trace!(
            target: "zerotrust::anomaly",
            identifier = %identifier,
            status = 503,
            reason = rejection.reason(),
            shadow,
            "counter store unavailable, failing closed"
        );
        if shadow {
            return None;
        }
        self.metrics.rejection("store_unavailable");
        Some(problem_response(rejection))
    }

    fn send_threshold_events(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
        outcome: &HitOutcome,
        request_id: Option<&str>,
    ) {
        if outcome.alert_crossed {
            self.metrics.alert(identifier.kind());
            let event = self
                .event(EventKind::RateAnomaly, identifier, request_id)
                .count(policy.alert_at())
                .reason("alert_threshold");
            self.events.send(event);
        }
        if outcome.block_started {
            self.metrics.block(identifier.kind());
            tracing::debug!(
                target: "zerotrust::anomaly",
                identifier = %identifier,
                block_for_s = policy.block_for().as_secs(),
                "block started"
            );
            let event = self
                .event(EventKind::Blocked, identifier, request_id)
                .count(policy.block_at());
            // In shadow mode the caller is not rejected, so the event carries no
            // status, and its reason names shadow mode.
            let event = match self.enforcement {
                Enforcement::Shadow => event.reason("block_threshold_shadow"),
                _ => event.reason("block_threshold").status(429),
            };
            self.events.send(event);
        }
    }

    fn report_store_error(
        &self,
        identifier: &Identifier,
        error: &StoreError,
        report: bool,
        request_id: Option<&str>,
    ) {
        tracing::trace!(
            target: "zerotrust::anomaly",
            identifier = %identifier,
            %error,
            "counter store failed"
        );
        let reason = match error {
            StoreError::Timeout(_) => "store_timeout",
            StoreError::CapacityExceeded { .. } => "store_full",
            StoreError::Unavailable { .. } => "store_unavailable",
            _ => "store_error",
        };
        self.metrics.store_error(reason);
        if !report {
            return;
        }

        let policy = match self.on_store_error {
            OnStoreError::FailClosed => "requests are rejected with 503",
            _ => "requests are counted in the local fallback store",
        };
        tracing::warn!(
            target: "zerotrust::anomaly",
            service = self.events.service(),
            %error,
            "counter store failed; {policy} until it recovers"
        );
        let mut event = self
            .event(EventKind::StoreDegraded, identifier, request_id)
            .reason(reason);
        if self.on_store_error == OnStoreError::FailClosed
            && self.enforcement == Enforcement::Enforce
        {
            event = event.status(503);
        }
        self.events.send(event);
    }

    fn event(
        &self,
        kind: EventKind,
        identifier: &Identifier,
        request_id: Option<&str>,
    ) -> SecurityEvent {
        SecurityEvent::new(kind)
            .identifier(identifier.to_string())
            .request_id(request_id.map(str::to_owned))
    }
}

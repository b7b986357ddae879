//! The middleware that counts, alerts and blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::Request;
use tower::Service;
use zerotrust_core::{
    EventKind, Rejection as _, EventReporter, SecurityEvent, problem_response, request_id,
};

use crate::error::StoreError;
use crate::identifier::{Identifier, IdentifierKind};
use crate::layer::kind_index;
use crate::policy::AnomalyPolicy;
use crate::rejection::AnomalyRejection;
use crate::store::{BoxFuture, CounterStore, HitDecision, HitOutcome};

/// The response future of [`AnomalyService`].
pub type ResponseFuture<E> = BoxFuture<'static, Result<Response, E>>;

/// Middleware that counts requests per identifier and rejects blocked ones. See
/// the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct AnomalyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> AnomalyService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B> Service<Request<B>> for AnomalyService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service is the one that goes into the future; the clone stays
        // behind for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let Some(identifier) = Identifier::from_extensions(request.extensions()) else {
            // NOTE: a request with neither a Principal nor ConnectInfo is not
            // counted. Serve the router with ConnectInfo, or place the layer after
            // authentication, so that every request has an identifier.
            tracing::trace!(
                target: "zerotrust::anomaly",
                path = request.uri().path(),
                "no identifier, request not counted"
            );
            return Box::pin(inner.call(request));
        };

        let shared = self.shared.clone();
        let request_id = request_id(request.headers());
        Box::pin(async move {
            match shared.check(&identifier, request_id).await {
                Some(denied) => Ok(denied),
                None => inner.call(request).await,
            }
        })
    }
}

/// Configuration and state shared by a layer and all its services.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Arc<dyn CounterStore>,
    events: EventReporter,
    policies: [AnomalyPolicy; IdentifierKind::ALL.len()],
    store_timeout: Duration,
    degraded: DegradedReporter,
}

impl Shared {
    pub(crate) fn new(
        store: Arc<dyn CounterStore>,
        events: EventReporter,
        policies: [AnomalyPolicy; IdentifierKind::ALL.len()],
        store_timeout: Duration,
        degraded_event_interval: Duration,
    ) -> Self {
        Self {
            store,
            events,
            policies,
            store_timeout,
            degraded: DegradedReporter::new(degraded_event_interval),
        }
    }

    /// Records the request and returns the rejection response if the identifier
    /// is blocked.
    async fn check(&self, identifier: &Identifier, request_id: Option<String>) -> Option<Response> {
        let policy = &self.policies[kind_index(identifier.kind())];

        let result = match tokio::time::timeout(
            self.store_timeout,
            self.store.hit(identifier, policy),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.store_timeout)),
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                // Fail open: a store outage must not take the service down with it.
                // NOTE: there is no fail-closed option yet.
                self.report_store_error(identifier, &error, request_id);
                return None;
            }
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
                None
            }
            HitDecision::Blocked { retry_after } => {
                let rejection = AnomalyRejection { retry_after };
                tracing::trace!(
                    target: "zerotrust::anomaly",
                    identifier = %identifier,
                    retry_after_s = rejection.retry_after_secs(),
                    status = 429,
                    reason = rejection.reason(),
                    "request rejected"
                );
                Some(problem_response(rejection))
            }
        }
    }

    fn send_threshold_events(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
        outcome: &HitOutcome,
        request_id: Option<String>,
    ) {
        if outcome.alert_crossed {
            let event = self
                .event(EventKind::RateAnomaly, identifier, request_id.clone())
                .count(policy.alert_at())
                .reason("alert_threshold");
            self.events.send(event);
        }
        if outcome.block_started {
            tracing::debug!(
                target: "zerotrust::anomaly",
                identifier = %identifier,
                block_for_s = policy.block_for().as_secs(),
                "block started"
            );
            let event = self
                .event(EventKind::Blocked, identifier, request_id)
                .count(policy.block_at())
                .reason("block_threshold")
                .status(429);
            self.events.send(event);
        }
    }

    fn report_store_error(
        &self,
        identifier: &Identifier,
        error: &StoreError,
        request_id: Option<String>,
    ) {
        tracing::trace!(
            target: "zerotrust::anomaly",
            identifier = %identifier,
            %error,
            "counter store failed, request not counted"
        );
        if !self.degraded.should_report() {
            return;
        }

        tracing::warn!(
            target: "zerotrust::anomaly",
            service = self.events.service(),
            %error,
            "counter store failed; requests pass uncounted until it recovers"
        );
        let reason = match error {
            StoreError::Timeout(_) => "store_timeout",
            StoreError::CapacityExceeded { .. } => "store_full",
            _ => "store_error",
        };
        let event = self
            .event(EventKind::StoreDegraded, identifier, request_id)
            .reason(reason);
        self.events.send(event);
    }

    fn event(
        &self,
        kind: EventKind,
        identifier: &Identifier,
        request_id: Option<String>,
    ) -> SecurityEvent {
        SecurityEvent::new(kind)
            .identifier(identifier.to_string())
            .request_id(request_id)
    }
}

/// Lets one store-error report through per interval, across all clones of a layer.
#[derive(Debug)]
struct DegradedReporter {
    started: Instant,
    interval_ms: u64,
    /// Milliseconds after `started` before which no report is sent.
    next_report_ms: AtomicU64,
}

impl DegradedReporter {
    fn new(interval: Duration) -> Self {
        Self {
            started: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_report_ms: AtomicU64::new(0),
        }
    }

    fn should_report(&self) -> bool {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_report_ms.load(Ordering::Relaxed);
        if now_ms < next {
            return false;
        }
        // Of several requests that fail at once, only the one that moves the
        // deadline reports.
        self.next_report_ms
            .compare_exchange(
                next,
                now_ms.saturating_add(self.interval_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

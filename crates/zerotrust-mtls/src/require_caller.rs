//! A layer that lets only listed callers through.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use tower::{Layer, Service};
use zerotrust_core::future::GuardFuture;
use zerotrust_core::{EventKind, EventReporter, PeerIdentity, Rejection, SharedSink, problem_response};

use crate::caller_policy::CallerPolicy;
use crate::rejection::MtlsRejection;

/// A layer that lets only listed callers through.
///
/// ```
/// use axum::{Router, routing::post};
/// use zerotrust_mtls::{CallerPolicy, RequireCallerLayer};
///
/// let only_gateway = CallerPolicy::new()
///     .allow_spiffe_id("spiffe://zerotrust.test/gateway")
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/orders", post(|| async { "created" }))
///     .layer(RequireCallerLayer::new(only_gateway));
/// ```
///
/// Rules:
///
/// 1. A request whose connection had no client certificate gets 401.
/// 2. A certificate without a valid SPIFFE ID gets 403, unless a predicate in the
///    policy allows it.
/// 3. A SPIFFE ID that the policy does not allow gets 403.
///
/// Every denial is an `application/problem+json` response and a security event.
/// The peer identity comes from [`PeerIdentityAcceptor`](crate::PeerIdentityAcceptor).
/// A header can supply it only through
/// [`ForwardedClientCertLayer`](crate::ForwardedClientCertLayer), and only from a
/// trusted proxy.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireCallerLayer {
    policy: Arc<CallerPolicy>,
    events: EventReporter,
}

impl RequireCallerLayer {
    /// Lets through only peers that `policy` allows. Events go to the
    /// [`TracingSink`](zerotrust_core::TracingSink) unless a sink is set.
    pub fn new(policy: CallerPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            events: EventReporter::default(),
        }
    }

    /// Sends denial events to `sink`.
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Names the service in denial events.
    pub fn service_name(mut self, service: impl Into<Arc<str>>) -> Self {
        self.events.set_service(service);
        self
    }
}

impl<S> Layer<S> for RequireCallerLayer {
    type Service = RequireCaller<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireCaller {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that rejects peers not on the allow-list; see [`RequireCallerLayer`].
#[derive(Debug, Clone)]
pub struct RequireCaller<S> {
    inner: S,
    layer: RequireCallerLayer,
}

impl<S> RequireCaller<S> {
    fn check(&self, peer: Option<&PeerIdentity>) -> Result<(), (MtlsRejection, Option<String>)> {
        let Some(peer) = peer else {
            return Err((MtlsRejection::NoClientCertificate, None));
        };
        if self.layer.policy.allows(peer) {
            return Ok(());
        }

        match peer.spiffe_id() {
            Some(id) => Err((MtlsRejection::CallerNotAllowed, Some(id.to_string()))),
            None => Err((
                MtlsRejection::NoSpiffeId,
                Some(format!("x5t#S256:{}", peer.fingerprint())),
            )),
        }
    }
}

impl<S, B> Service<Request<B>> for RequireCaller<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Arc<PeerIdentity>>().map(AsRef::as_ref);

        let (rejection, identifier) = match self.check(peer) {
            Ok(()) => {
                tracing::trace!(
                    target: "zerotrust::mtls",
                    caller = peer.and_then(|p| p.spiffe_id()).map(|id| id.to_string()),
                    "caller allowed"
                );
                return GuardFuture::allowed(self.inner.call(request));
            }
            Err(denial) => denial,
        };

        tracing::debug!(
            target: "zerotrust::mtls",
            caller = identifier.as_deref(),
            reason = rejection.reason(),
            status = rejection.status().as_u16(),
            path = request.uri().path(),
            "caller denied"
        );
        let kind = match rejection {
            MtlsRejection::NoClientCertificate => EventKind::AuthenticationDenied,
            _ => EventKind::AuthorizationDenied,
        };
        self.layer.events.denial(kind, &rejection, identifier, request.headers());
        GuardFuture::denied(problem_response(rejection))
    }
}

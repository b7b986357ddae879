//! A route layer that requires a scope on the authenticated principal.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::event::EventKind;
use crate::future::GuardFuture;
use crate::principal::{Principal, PrincipalRejection};
use crate::rejection::{BearerChallenge, Rejection, problem_response};
use crate::reporter::EventReporter;
use crate::sink::SharedSink;

/// The rejection of [`RequireScope`]: the principal lacks the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRejection {
    /// The scope that the route requires.
    pub required: Arc<str>,
}

impl Rejection for ScopeRejection {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn problem_type(&self) -> &'static str {
        "urn:zerotrust:problem:insufficient-scope"
    }

    fn title(&self) -> &'static str {
        "insufficient scope"
    }

    fn reason(&self) -> &'static str {
        "insufficient_scope"
    }

    fn challenge(&self) -> Option<BearerChallenge> {
        Some(BearerChallenge::InsufficientScope(self.required.to_string()))
    }
}

/// A route layer that requires a scope on the authenticated principal.
///
/// ```
/// use axum::{Router, routing::post};
/// use zerotrust_core::RequireScopeLayer;
///
/// let app: Router = Router::new().route(
///     "/orders",
///     post(|| async { "created" }).layer(RequireScopeLayer::new("orders:write")),
/// );
/// ```
///
/// Rules:
///
/// 1. A request without a [`Principal`] gets 401: an authentication layer must run
///    first.
/// 2. A principal without the scope gets 403 with
///    `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"`
///    (RFC 6750 section 3.1), and an `AUTHORIZATION_DENIED` security event.
/// 3. Scopes match exactly.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireScopeLayer {
    scope: Arc<str>,
    events: EventReporter,
}

impl RequireScopeLayer {
    /// Requires `scope` on every request. Events go to the
    /// [`TracingSink`](crate::TracingSink) unless a sink is set.
    pub fn new(scope: impl Into<Arc<str>>) -> Self {
        Self {
            scope: scope.into(),
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

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware made by [`RequireScopeLayer`], whose docs give the rules.
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S, B> Service<Request<B>> for RequireScope<S>
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
        let Some(principal) = request.extensions().get::<Principal>() else {
            tracing::trace!(target: "zerotrust::scope", path = request.uri().path(), "no principal");
            return GuardFuture::denied(problem_response(PrincipalRejection));
        };

        if principal.scopes().contains(&self.layer.scope) {
            tracing::trace!(
                target: "zerotrust::scope",
                principal = principal.id(),
                scope = &*self.layer.scope,
                "scope granted"
            );
            return GuardFuture::allowed(self.inner.call(request));
        }

        let rejection = ScopeRejection {
            required: self.layer.scope.clone(),
        };
        tracing::debug!(
            target: "zerotrust::scope",
            principal = principal.id(),
            scope = &*self.layer.scope,
            status = 403,
            "scope missing"
        );
        self.layer.events.denial(
            EventKind::AuthorizationDenied,
            &rejection,
            Some(principal.id().to_owned()),
            request.headers(),
        );
        GuardFuture::denied(problem_response(rejection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;
    use crate::sink::MemorySink;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::header::WWW_AUTHENTICATE;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    fn app(principal: Option<Principal>, sink: Arc<MemorySink>, calls: Arc<AtomicUsize>) -> Router {
        let handler = move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        };
        let router = Router::new().route(
            "/",
            get(handler).layer(RequireScopeLayer::new("orders:write").event_sink(sink)),
        );
        match principal {
            Some(p) => router.layer(axum::Extension(p)),
            None => router,
        }
    }

    #[tokio::test]
    async fn scope_present_runs_handler() {
        let sink = Arc::new(MemorySink::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let principal = Principal::api_key("key_1", "acme", Scopes::parse("orders:write"));

        let response = app(Some(principal), sink.clone(), calls.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(sink.events().is_empty());
    }

    #[tokio::test]
    async fn scope_missing_is_403_without_handler() {
        let sink = Arc::new(MemorySink::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let principal = Principal::api_key("key_1", "acme", Scopes::parse("orders:read"));

        let response = app(Some(principal), sink.clone(), calls.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\", scope=\"orders:write\""
        );
        assert!(response.extensions().get::<ScopeRejection>().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(sink.count(EventKind::AuthorizationDenied), 1);
        assert_eq!(sink.events()[0].identifier.as_deref(), Some("key_1"));
    }

    #[tokio::test]
    async fn no_principal_is_401_without_handler() {
        let sink = Arc::new(MemorySink::default());
        let calls = Arc::new(AtomicUsize::new(0));

        let response = app(None, sink, calls.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.extensions().get::<PrincipalRejection>().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

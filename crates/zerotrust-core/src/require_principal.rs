//! A route layer that admits principals for which a predicate holds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::event::EventKind;
use crate::future::GuardFuture;
use crate::principal::{Principal, PrincipalRejection};
use crate::rejection::{Rejection, problem_response};
use crate::reporter::EventReporter;
use crate::sink::SharedSink;

type Predicate = Arc<dyn Fn(&Principal) -> bool + Send + Sync>;

/// The rejection of [`RequirePrincipal`]: the predicate returned `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrincipalNotAllowed;

impl Rejection for PrincipalNotAllowed {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn problem_type(&self) -> &'static str {
        "urn:zerotrust:problem:forbidden"
    }

    fn title(&self) -> &'static str {
        "forbidden"
    }

    fn reason(&self) -> &'static str {
        "principal_not_allowed"
    }
}

/// Admits only principals for which a predicate returns `true`, for rules that
/// one scope cannot express: several scopes, an owner, a kind of principal.
///
/// ```
/// use axum::{Router, routing::delete};
/// use zerotrust_core::RequirePrincipalLayer;
///
/// let admins_of_acme = RequirePrincipalLayer::new("acme_admin", |principal| {
///     principal.owner() == Some("acme") && principal.scopes().contains("admin")
/// });
/// let app: Router = Router::new().route(
///     "/orders/{id}",
///     delete(|| async { "deleted" }).layer(admins_of_acme),
/// );
/// ```
///
/// Rules:
///
/// 1. A request without a [`Principal`] gets 401: an authentication layer must
///    run first.
/// 2. A principal for which the predicate returns `false` gets 403 with an
///    `application/problem+json` body, and an `AUTHORIZATION_DENIED` event whose
///    reason is `principal_not_allowed`. The rule's name goes to the log, never
///    to the client.
#[derive(Clone)]
#[must_use]
pub struct RequirePrincipalLayer {
    name: Arc<str>,
    predicate: Predicate,
    events: EventReporter,
}

impl fmt::Debug for RequirePrincipalLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequirePrincipalLayer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RequirePrincipalLayer {
    /// Admits principals for which `predicate` returns `true`. `name` names the
    /// rule in logs.
    pub fn new(
        name: impl Into<Arc<str>>,
        predicate: impl Fn(&Principal) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            predicate: Arc::new(predicate),
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

impl<S> Layer<S> for RequirePrincipalLayer {
    type Service = RequirePrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePrincipal {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware made by [`RequirePrincipalLayer`], whose docs give the rules.
#[derive(Debug, Clone)]
pub struct RequirePrincipal<S> {
    inner: S,
    layer: RequirePrincipalLayer,
}

impl<S, B> Service<Request<B>> for RequirePrincipal<S>
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
            return GuardFuture::denied(problem_response(PrincipalRejection));
        };
        if (self.layer.predicate)(principal) {
            return GuardFuture::allowed(self.inner.call(request));
        }

        tracing::debug!(
            target: "zerotrust::principal",
            principal = principal.id(),
            rule = &*self.layer.name,
            status = 403,
            "principal not allowed"
        );
        let rejection = PrincipalNotAllowed;
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
    use http::header::CONTENT_TYPE;
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
        let rule = RequirePrincipalLayer::new("acme_admin", |p: &Principal| {
            p.owner() == Some("acme") && p.scopes().contains("admin")
        })
        .event_sink(sink);
        let router = Router::new().route("/", get(handler).layer(rule));
        match principal {
            Some(p) => router.layer(axum::Extension(p)),
            None => router,
        }
    }

    async fn call(principal: Option<Principal>) -> (Response, Arc<MemorySink>, Arc<AtomicUsize>) {
        let sink = Arc::new(MemorySink::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let response = app(principal, sink.clone(), calls.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response, sink, calls)
    }

    #[tokio::test]
    async fn predicate_true_runs_handler() {
        let principal = Principal::api_key("key_1", "acme", Scopes::parse("admin"));

        let (response, sink, calls) = call(Some(principal)).await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(sink.events().is_empty());
    }

    #[tokio::test]
    async fn predicate_false_is_403_without_handler() {
        let principal = Principal::api_key("key_2", "globex", Scopes::parse("admin"));

        let (response, sink, calls) = call(Some(principal)).await;

        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(response.extensions().get::<PrincipalNotAllowed>().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(sink.count(EventKind::AuthorizationDenied), 1);
        assert_eq!(sink.events()[0].reason, Some("principal_not_allowed"));
        assert_eq!(sink.events()[0].identifier.as_deref(), Some("key_2"));
    }

    #[tokio::test]
    async fn no_principal_is_401() {
        let (response, _, calls) = call(None).await;

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

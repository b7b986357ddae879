//! The middleware that counts, alerts and blocks.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::{Request, StatusCode};
use tower::Service;
use zerotrust_core::request_id;

use crate::decision::Shared;
use crate::store::BoxFuture;

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

        let identifier = self
            .shared
            .identify(request.headers(), request.extensions());
        let authentication_failure = self
            .shared
            .authentication_failure_identifier(request.headers(), request.extensions());
        if identifier.is_none() && authentication_failure.is_none() {
            // NOTE: a request for which the identifier source finds nothing is
            // not counted. With the default source, serve the router with
            // ConnectInfo so that every request has an identifier.
            tracing::trace!(
                target: "zerotrust::anomaly",
                path = request.uri().path(),
                "no identifier, request not counted"
            );
            return Box::pin(inner.call(request));
        }

        let shared = self.shared.clone();
        let request_id = request_id(request.headers());
        Box::pin(async move {
            let denied = shared
                .admit(
                    identifier.as_ref(),
                    authentication_failure.as_ref(),
                    request_id.as_deref(),
                )
                .await;
            let quota = match denied {
                Err(denied) => return Ok(denied),
                Ok(quota) => quota,
            };

            let mut response = inner.call(request).await?;
            if let Some(quota) = quota {
                quota.add_headers(response.headers_mut());
            }
            if let Some(address) = &authentication_failure
                && response.status() == StatusCode::UNAUTHORIZED
            {
                shared
                    .count_authentication_failure(address, request_id.as_deref())
                    .await;
            }
            Ok(response)
        })
    }
}

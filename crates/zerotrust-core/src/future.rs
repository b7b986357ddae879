//! The response future shared by layers that decide before calling the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Either a denial decided up front or the inner service's future.
    ///
    /// Layers whose check needs no I/O ([`RequireScope`](crate::RequireScope),
    /// caller allow-lists) return this, so an allowed request costs no allocation.
    #[project = GuardFutureProj]
    pub enum GuardFuture<F> {
        /// The request was refused; the response is ready.
        Denied {
            /// The ready response, taken on the first poll.
            response: Option<Response>,
        },
        /// The request was allowed and the inner service is running.
        Allowed {
            /// The inner service's future.
            #[pin]
            future: F,
        },
    }
}

impl<F> GuardFuture<F> {
    /// A future that yields `response` at once.
    pub fn denied(response: Response) -> Self {
        GuardFuture::Denied {
            response: Some(response),
        }
    }

    /// A future that drives the inner service's `future`.
    pub fn allowed(future: F) -> Self {
        GuardFuture::Allowed { future }
    }
}

impl<F, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardFutureProj::Denied { response } => {
                let response = response
                    .take()
                    .expect("GuardFuture polled after it returned Poll::Ready");
                Poll::Ready(Ok(response))
            }
            GuardFutureProj::Allowed { future } => future.poll(cx),
        }
    }
}

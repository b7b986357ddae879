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
    pub struct GuardFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Denied { response: Option<Response> },
        Allowed { #[pin] future: F },
    }
}

impl<F> GuardFuture<F> {
    /// Creates a future that yields `response` at once.
    pub fn denied(response: Response) -> Self {
        Self {
            state: State::Denied {
                response: Some(response),
            },
        }
    }

    /// Creates a future that drives the inner service's `future`.
    pub fn allowed(future: F) -> Self {
        Self {
            state: State::Allowed { future },
        }
    }
}

impl<F> std::fmt::Debug for GuardFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Denied { .. } => "denied",
            State::Allowed { .. } => "allowed",
        };
        f.debug_struct("GuardFuture").field("state", &state).finish()
    }
}

impl<F, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Denied { response } => {
                let response = response
                    .take()
                    .expect("GuardFuture polled after it returned Poll::Ready");
                Poll::Ready(Ok(response))
            }
            StateProj::Allowed { future } => future.poll(cx),
        }
    }
}

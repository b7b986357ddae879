//! Routers, requests and the threshold scenario shared by the store tests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::routing::get;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use zerotrust_anomaly::{
    AnomalyLayer, AnomalyPolicy, AnomalyRejection, CounterStore, IdentifierKind,
};
use zerotrust_core::{EventKind, MemorySink, Principal, Scopes};

/// A window of one day, so that a test crosses a window boundary only with a
/// chance of about one in 86,400 per second it runs.
pub const WINDOW: Duration = Duration::from_secs(86_400);
pub const BLOCK_FOR: Duration = Duration::from_secs(600);

/// Alert at 3, block at 5.
pub fn small_policy() -> AnomalyPolicy {
    AnomalyPolicy::new(WINDOW, 3, 5, BLOCK_FOR).unwrap()
}

/// A router behind an anomaly layer, with a handler that counts its calls.
#[derive(Clone)]
pub struct TestApp {
    pub router: Router,
    pub calls: Arc<AtomicUsize>,
    pub sink: Arc<MemorySink>,
}

impl TestApp {
    pub fn new(store: Arc<dyn CounterStore>, policy: AnomalyPolicy) -> Self {
        let sink = Arc::new(MemorySink::default());
        Self::with_sink(store, policy, sink, Duration::from_secs(5))
    }

    pub fn with_sink(
        store: Arc<dyn CounterStore>,
        policy: AnomalyPolicy,
        sink: Arc<MemorySink>,
        store_timeout: Duration,
    ) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = AnomalyLayer::builder(store)
            .service_name("orders")
            .event_sink(sink.clone())
            .policy(IdentifierKind::ApiKey, policy)
            .policy(IdentifierKind::ClientAddress, policy)
            .store_timeout(store_timeout)
            .build()
            .unwrap();
        let handler_calls = calls.clone();
        let router = Router::new()
            .route(
                "/",
                get(move || {
                    let calls = handler_calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    }
                }),
            )
            .layer(layer);
        Self {
            router,
            calls,
            sink,
        }
    }

    /// Wraps the test handler in a layer that the caller built.
    pub fn with_layer(layer: AnomalyLayer, sink: Arc<MemorySink>) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler_calls = calls.clone();
        let router = Router::new()
            .route(
                "/",
                get(move || {
                    let calls = handler_calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    }
                }),
            )
            .layer(layer);
        Self {
            router,
            calls,
            sink,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub async fn send_as_key(&self, key_id: &str) -> Response {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(Principal::api_key(key_id, "acme", Scopes::default()));
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn send_from(&self, address: SocketAddr) -> Response {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(address));
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn send_anonymous(&self) -> Response {
        let request = Request::get("/").body(Body::empty()).unwrap();
        self.router.clone().oneshot(request).await.unwrap()
    }
}

/// Checks a 429 from the layer: `Retry-After`, problem+json body and the typed
/// rejection.
pub async fn assert_blocked_response(response: Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let retry_after: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=BLOCK_FOR.as_secs()).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let rejection = response.extensions().get::<AnomalyRejection>().cloned();
    assert!(rejection.is_some(), "typed rejection in extensions");

    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 429);
    assert_eq!(json["type"], "urn:zerotrust:problem:blocked");
}

/// Runs the alert-at-3, block-at-5 scenario for `key_id` on a fresh store.
pub async fn run_threshold_scenario(app: &TestApp, key_id: &str, other_key_id: &str) {
    for n in 1..=2 {
        let response = app.send_as_key(key_id).await;
        assert_eq!(response.status(), StatusCode::OK, "request {n}");
    }
    assert!(
        app.sink.events().is_empty(),
        "no event before the alert threshold"
    );

    let third = app.send_as_key(key_id).await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(app.sink.count(EventKind::RateAnomaly), 1);
    let alert = app.sink.events()[0].clone();
    assert_eq!(
        alert.identifier.as_deref(),
        Some(format!("api_key:{key_id}").as_str())
    );
    assert_eq!(alert.service.as_deref(), Some("orders"));
    assert_eq!(alert.count, Some(3));

    let fourth = app.send_as_key(key_id).await;
    assert_eq!(fourth.status(), StatusCode::OK);
    assert_eq!(
        app.sink.count(EventKind::RateAnomaly),
        1,
        "one alert per window"
    );
    assert_eq!(app.sink.count(EventKind::Blocked), 0);

    let fifth = app.send_as_key(key_id).await;
    assert_blocked_response(fifth).await;
    assert_eq!(
        app.calls(),
        4,
        "the request that starts the block is rejected"
    );
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
    let block = app.sink.events()[1].clone();
    assert_eq!(block.count, Some(5));
    assert_eq!(block.status, Some(429));

    for _ in 0..3 {
        assert_blocked_response(app.send_as_key(key_id).await).await;
    }
    assert_eq!(app.calls(), 4, "handler not run while blocked");
    assert_eq!(app.sink.count(EventKind::Blocked), 1, "one block event");
    assert_eq!(app.sink.count(EventKind::RateAnomaly), 1);

    let other = app.send_as_key(other_key_id).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "other identifiers are unaffected"
    );
    assert_eq!(app.calls(), 5);
    assert_eq!(app.sink.count(EventKind::StoreDegraded), 0);
}

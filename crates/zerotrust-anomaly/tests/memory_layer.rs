//! The anomaly layer on the memory store.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use zerotrust_anomaly::{AnomalyLayer, AnomalyPolicy, MemoryCounterStore};
use zerotrust_core::{EventKind, MemorySink};

use common::{TestApp, WINDOW, assert_blocked_response, run_threshold_scenario, small_policy};

#[tokio::test]
async fn memory_layer_alerts_then_blocks() {
    let app = TestApp::new(Arc::new(MemoryCounterStore::new()), small_policy());

    run_threshold_scenario(&app, "key_a", "key_b").await;
}

#[tokio::test]
async fn addresses_in_one_ipv6_64_share_a_count() {
    let app = TestApp::new(Arc::new(MemoryCounterStore::new()), small_policy());
    let in_network =
        |host: u16| SocketAddr::new(format!("2001:db8:7:7::{host:x}").parse().unwrap(), 443);

    for host in 1..=4 {
        assert_eq!(
            app.send_from(in_network(host)).await.status(),
            StatusCode::OK
        );
    }
    let fifth = app.send_from(in_network(5)).await;
    let other_network = app
        .send_from("[2001:db8:7:8::1]:443".parse().unwrap())
        .await;

    assert_blocked_response(fifth).await;
    assert_eq!(other_network.status(), StatusCode::OK);
    let block = &app.sink.events()[1];
    assert_eq!(
        block.identifier.as_deref(),
        Some("client_address:2001:db8:7:7::/64")
    );
}

#[tokio::test]
async fn request_without_identifier_passes_uncounted() {
    let store = Arc::new(MemoryCounterStore::new());
    let app = TestApp::new(store.clone(), small_policy());

    for _ in 0..10 {
        assert_eq!(app.send_anonymous().await.status(), StatusCode::OK);
    }

    assert_eq!(app.calls(), 10);
    assert_eq!(store.tracked_identifiers(), 0);
    assert!(app.sink.events().is_empty());
}

#[tokio::test]
async fn full_store_fails_open_with_one_degraded_event() {
    let store = Arc::new(MemoryCounterStore::with_max_identifiers(1).unwrap());
    let app = TestApp::new(store, small_policy());
    assert_eq!(app.send_as_key("tracked").await.status(), StatusCode::OK);

    for i in 0..10 {
        let response = app.send_as_key(&format!("untracked-{i}")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(app.calls(), 11);
    assert_eq!(
        app.sink.count(EventKind::StoreDegraded),
        1,
        "degraded events are rate-limited"
    );
    assert_eq!(app.sink.events()[0].reason, Some("store_full"));
}

#[tokio::test]
async fn service_principals_use_service_policy() {
    let sink = Arc::new(MemorySink::default());
    let store = Arc::new(MemoryCounterStore::new());
    let layer = AnomalyLayer::builder(store)
        .event_sink(sink.clone())
        .policy(zerotrust_anomaly::IdentifierKind::ApiKey, small_policy())
        .build()
        .unwrap();
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(layer);

    for _ in 0..10 {
        let mut request = http::Request::get("/")
            .body(axum::body::Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(zerotrust_core::Principal::service("gateway"));
        let response = tower::ServiceExt::oneshot(router.clone(), request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert!(
        sink.events().is_empty(),
        "the API-key thresholds do not apply to services"
    );
}

#[test]
fn zero_store_timeout_is_rejected() {
    let result = AnomalyLayer::builder(Arc::new(MemoryCounterStore::new()))
        .store_timeout(Duration::ZERO)
        .build();

    assert!(matches!(
        result,
        Err(zerotrust_anomaly::AnomalyConfigError::ZeroDuration {
            field: "store_timeout"
        })
    ));
}

#[test]
fn equal_thresholds_are_accepted() {
    assert!(AnomalyPolicy::new(WINDOW, 5, 5, WINDOW).is_ok());
}

//! Layer options on the memory store: identifier sources, trusted proxies,
//! authentication-failure counting and shadow mode.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt as _;
use zerotrust_anomaly::{
    AnomalyLayer, ClientAddressResolver, Enforcement, IdentifierKind, IdentifierSource,
    MemoryCounterStore, ProxyHeader, RateLimitHeaders,
};
use zerotrust_core::{EventKind, MemorySink};

use common::{TestApp, assert_blocked_response, small_policy};

fn layer_builder(sink: &Arc<MemorySink>) -> zerotrust_anomaly::AnomalyLayerBuilder {
    AnomalyLayer::builder(Arc::new(MemoryCounterStore::new()))
        .service_name("orders")
        .event_sink(sink.clone())
        .policy(IdentifierKind::ApiKey, small_policy())
        .policy(IdentifierKind::ClientAddress, small_policy())
}

async fn send(router: &Router, peer: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    router.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn trusted_proxy_header_names_the_client() {
    let sink = Arc::new(MemorySink::default());
    let resolver = ClientAddressResolver::new()
        .trust_proxies(ProxyHeader::XForwardedFor, ["10.0.0.0/8".parse().unwrap()]);
    let layer = layer_builder(&sink)
        .client_addresses(resolver)
        .build()
        .unwrap();
    let app = TestApp::with_layer(layer, sink);

    for _ in 0..4 {
        let response = send(
            &app.router,
            "10.0.0.2:5000",
            &[("x-forwarded-for", "198.51.100.1, 10.0.0.1")],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let fifth = send(
        &app.router,
        "10.0.0.2:5000",
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await;
    let other_client = send(
        &app.router,
        "10.0.0.2:5000",
        &[("x-forwarded-for", "198.51.100.2")],
    )
    .await;
    let spoofed_direct = send(
        &app.router,
        "203.0.113.9:5000",
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await;

    assert_blocked_response(fifth).await;
    assert_eq!(other_client.status(), StatusCode::OK);
    assert_eq!(
        spoofed_direct.status(),
        StatusCode::OK,
        "untrusted peers are counted by socket"
    );
    let block = &app.sink.events()[1];
    assert_eq!(
        block.identifier.as_deref(),
        Some("client_address:198.51.100.1")
    );
}

#[tokio::test]
async fn untrusted_peer_cannot_spread_its_count() {
    let sink = Arc::new(MemorySink::default());
    let resolver = ClientAddressResolver::new()
        .trust_proxies(ProxyHeader::Forwarded, ["10.0.0.0/8".parse().unwrap()]);
    let layer = layer_builder(&sink)
        .client_addresses(resolver)
        .build()
        .unwrap();
    let app = TestApp::with_layer(layer, sink);

    for i in 0..4 {
        let forwarded = format!("for=198.51.100.{i}");
        let response = send(
            &app.router,
            "203.0.113.9:5000",
            &[("forwarded", &forwarded)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let fifth = send(
        &app.router,
        "203.0.113.9:5000",
        &[("forwarded", "for=198.51.100.99")],
    )
    .await;

    assert_blocked_response(fifth).await;
}

/// A router whose handler returns 401 unless the request carries
/// `authorization: good`, behind the anomaly layer.
fn login_router(layer: AnomalyLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move {
                match headers.get("authorization") {
                    Some(value) if value == "good" => "ok".into_response(),
                    _ => StatusCode::UNAUTHORIZED.into_response(),
                }
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn authentication_failures_block_the_address() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink)
        .identify_by(IdentifierSource::Principal)
        .count_authentication_failures(small_policy())
        .build()
        .unwrap();
    let router = login_router(layer);

    for _ in 0..5 {
        let response = send(&router, "198.51.100.7:4000", &[("authorization", "bad")]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let correct_guess = send(&router, "198.51.100.7:4000", &[("authorization", "good")]).await;
    let other_address = send(&router, "198.51.100.8:4000", &[("authorization", "good")]).await;

    assert_blocked_response(correct_guess).await;
    assert_eq!(other_address.status(), StatusCode::OK);
    assert_eq!(sink.count(EventKind::RateAnomaly), 1);
    assert_eq!(sink.count(EventKind::Blocked), 1);
    let block = sink
        .events()
        .into_iter()
        .find(|event| event.kind == EventKind::Blocked)
        .unwrap();
    assert_eq!(
        block.identifier.as_deref(),
        Some("authentication_failure:198.51.100.7")
    );
}

#[tokio::test]
async fn successful_logins_are_not_authentication_failures() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink)
        .identify_by(IdentifierSource::Principal)
        .count_authentication_failures(small_policy())
        .build()
        .unwrap();
    let router = login_router(layer);

    for _ in 0..20 {
        let response = send(&router, "198.51.100.7:4000", &[("authorization", "good")]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn shadow_mode_logs_but_never_rejects() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink)
        .enforcement(Enforcement::Shadow)
        .build()
        .unwrap();
    let app = TestApp::with_layer(layer, sink);

    for n in 1..=10 {
        assert_eq!(
            app.send_as_key("noisy").await.status(),
            StatusCode::OK,
            "request {n}"
        );
    }

    assert_eq!(app.calls(), 10);
    assert_eq!(app.sink.count(EventKind::RateAnomaly), 1);
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
    let block = &app.sink.events()[1];
    assert_eq!(block.reason, Some("block_threshold_shadow"));
    assert_eq!(block.status, None);
}

#[tokio::test]
async fn spiffe_source_without_certificate_is_not_counted() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink)
        .identify_by(IdentifierSource::SpiffeId)
        .policy(IdentifierKind::SpiffeId, small_policy())
        .build()
        .unwrap();
    let app = TestApp::with_layer(layer, sink);

    for _ in 0..10 {
        assert_eq!(app.send_as_key("k").await.status(), StatusCode::OK);
    }

    assert!(app.sink.events().is_empty());
}

#[test]
fn zero_retry_interval_and_fallback_size_are_rejected() {
    let sink = Arc::new(MemorySink::default());

    let retry = layer_builder(&sink)
        .store_retry_interval(std::time::Duration::ZERO)
        .build();
    let fallback = layer_builder(&sink).fallback_max_identifiers(0).build();

    assert!(matches!(
        retry,
        Err(zerotrust_anomaly::AnomalyConfigError::ZeroDuration {
            field: "store_retry_interval"
        })
    ));
    assert!(matches!(
        fallback,
        Err(zerotrust_anomaly::AnomalyConfigError::ZeroCount {
            field: "fallback_max_identifiers"
        })
    ));
}

#[tokio::test]
async fn rate_limit_headers_report_the_quota() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink)
        .policy(IdentifierKind::ApiKey, small_policy())
        .rate_limit_headers(RateLimitHeaders::Send)
        .build()
        .unwrap();
    let app = TestApp::with_layer(layer, sink);

    let first = app.send_as_key("key_quota").await;
    let second = app.send_as_key("key_quota").await;

    assert_eq!(first.headers()["ratelimit-policy"], "\"default\";q=5;w=86400");
    let current = first.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(current.starts_with("\"default\";r=4;t="), "{current}");
    let reset: u64 = current.rsplit("t=").next().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&reset), "t={reset}");
    assert!(second.headers()["ratelimit"].to_str().unwrap().starts_with("\"default\";r=3;"));
}

#[tokio::test]
async fn rate_limit_headers_are_omitted_by_default() {
    let sink = Arc::new(MemorySink::default());
    let layer = layer_builder(&sink).policy(IdentifierKind::ApiKey, small_policy()).build().unwrap();
    let app = TestApp::with_layer(layer, sink);

    let response = app.send_as_key("key_quota").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
}

//! API-key and anomaly denials over real TLS sockets: status, headers, problem
//! body, and a handler that never ran.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::client::{Reply, get_request, send};
use common::{Calls, assert_problem, client, serve};
use zerotrust::anomaly::{AnomalyLayer, AnomalyPolicy, IdentifierKind, MemoryCounterStore};
use zerotrust::apikey::{ApiKeyLayer, KeyManager, MemoryKeyStore, NewKey};
use zerotrust::core::{EventKind, MemorySink, RequireScopeLayer, Scopes};
use zerotrust::mtls::ClientAuth;
use zerotrust_testkit::pki::DevPki;

struct Fixture {
    pki: DevPki,
    calls: Calls,
    sink: Arc<MemorySink>,
    keys: KeyManager,
    server: common::TestServer,
}

async fn start() -> Fixture {
    let pki = DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
    let store = Arc::new(MemoryKeyStore::new());
    let keys = KeyManager::new(store.clone());
    let calls = Calls::default();
    let sink = Arc::new(MemorySink::default());
    let policy = AnomalyPolicy::new(Duration::from_secs(86_400), 3, 5, Duration::from_secs(3600)).unwrap();
    let anomaly = AnomalyLayer::builder(Arc::new(MemoryCounterStore::new()))
        .service_name("gateway")
        .event_sink(sink.clone())
        .policy(IdentifierKind::ApiKey, policy)
        .build()
        .unwrap();
    let handler_calls = calls.clone();
    let app = Router::new()
        .route(
            "/orders",
            get(move || {
                let calls = handler_calls.clone();
                async move {
                    calls.hit();
                    "[]"
                }
            })
            .layer(RequireScopeLayer::new("orders:read").event_sink(sink.clone())),
        )
        .layer(anomaly)
        .layer(ApiKeyLayer::builder(store).service_name("gateway").event_sink(sink.clone()).build().unwrap());
    let server = serve(app, &pki, pki.service("gateway").unwrap(), ClientAuth::Optional);
    Fixture { pki, calls, sink, keys, server }
}

async fn call(fixture: &Fixture, keys: &[&str]) -> Reply {
    let mut request = get_request(&format!("{}/orders", fixture.server.url));
    for key in keys {
        request.headers_mut().append("x-api-key", key.parse().unwrap());
    }
    send(&client(&fixture.pki, None), request).await.unwrap()
}

#[tokio::test]
async fn missing_key_is_401_bare_challenge() {
    let fixture = start().await;

    let reply = call(&fixture, &[]).await;

    assert_problem(&reply, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    assert_eq!(fixture.calls.count(), 0);
    assert_eq!(fixture.sink.count(EventKind::AuthenticationDenied), 1);
}

#[tokio::test]
async fn unknown_and_mistyped_keys_are_401() {
    let fixture = start().await;
    let other = KeyManager::new(Arc::new(MemoryKeyStore::new()));
    let unknown = other.create(NewKey::new("x").scopes(Scopes::parse("orders:read"))).await.unwrap();
    let mut mistyped = unknown.secret.expose().to_owned();
    mistyped.replace_range(10..11, if &mistyped[10..11] == "a" { "b" } else { "a" });

    for key in [unknown.secret.expose(), mistyped.as_str()] {
        let reply = call(&fixture, &[key]).await;

        assert_problem(&reply, 401);
        assert_eq!(reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"");
        assert!(!String::from_utf8_lossy(&reply.body).contains(key));
    }
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn two_different_keys_are_400() {
    let fixture = start().await;
    let first = fixture.keys.create(NewKey::new("a").scopes(Scopes::parse("orders:read"))).await.unwrap();
    let second = fixture.keys.create(NewKey::new("b").scopes(Scopes::parse("orders:read"))).await.unwrap();

    let reply = call(&fixture, &[first.secret.expose(), second.secret.expose()]).await;

    assert_problem(&reply, 400);
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn key_without_scope_is_403() {
    let fixture = start().await;
    let key = fixture.keys.create(NewKey::new("a").scopes(Scopes::parse("orders:write"))).await.unwrap();

    let reply = call(&fixture, &[key.secret.expose()]).await;

    assert_problem(&reply, 403);
    assert_eq!(reply.headers["www-authenticate"], "Bearer error=\"insufficient_scope\", scope=\"orders:read\"");
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn burst_alerts_once_then_429() {
    let fixture = start().await;
    let key = fixture.keys.create(NewKey::new("a").scopes(Scopes::parse("orders:read"))).await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(call(&fixture, &[key.secret.expose()]).await);
    }

    for reply in &statuses[..4] {
        assert_eq!(reply.status, 200);
    }
    for reply in &statuses[4..] {
        assert_problem(reply, 429);
        let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((3590..=3600).contains(&retry_after), "Retry-After {retry_after}");
    }
    assert_eq!(fixture.calls.count(), 4);
    assert_eq!(fixture.sink.count(EventKind::RateAnomaly), 1);
    assert_eq!(fixture.sink.count(EventKind::Blocked), 1);
}

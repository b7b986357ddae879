//! What handlers see of an accepted key, and route rules over it.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use tower::ServiceExt as _;
use zerotrust_apikey::{ApiKeyLayer, KeyManager, KeySummary, MemoryKeyStore, NewKey};
use zerotrust_core::{RequirePrincipalLayer, Scopes};

#[tokio::test]
async fn handler_reads_key_summary_and_rule_applies() {
    let store = Arc::new(MemoryKeyStore::new());
    let keys = KeyManager::new(store.clone());
    let acme = keys.create(NewKey::new("acme").scopes(Scopes::parse("orders:read"))).await.unwrap();
    let globex = keys.create(NewKey::new("globex").scopes(Scopes::parse("orders:read"))).await.unwrap();
    let only_acme = RequirePrincipalLayer::new("acme_only", |principal| principal.owner() == Some("acme"));
    let app = Router::new()
        .route(
            "/",
            get(|Extension(key): Extension<KeySummary>| async move {
                format!("{} {} {}", key.id, key.owner, key.scopes)
            })
            .layer(only_acme),
        )
        .layer(ApiKeyLayer::builder(store).build().unwrap());
    let request = |key: &str| Request::get("/").header("x-api-key", key).body(Body::empty()).unwrap();

    let allowed = app.clone().oneshot(request(acme.secret.expose())).await.unwrap();
    let denied = app.oneshot(request(globex.secret.expose())).await.unwrap();

    assert_eq!(allowed.status(), StatusCode::OK);
    let body = axum::body::to_bytes(allowed.into_body(), 1024).await.unwrap();
    assert_eq!(body, format!("{} acme orders:read", acme.record.id));
    assert!(!String::from_utf8_lossy(&body).contains(acme.secret.expose()));
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(denied.headers()["content-type"], "application/problem+json");
}

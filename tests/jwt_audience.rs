//! Per-service audiences over real mTLS: every token failure is a 401 and the
//! handler never runs.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::client::{get_request, send};
use common::{Calls, assert_problem, client, serve};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use zerotrust::core::{EventKind, MemorySink, Principal};
use zerotrust::jwt::{JwtAuthLayer, JwtVerifier, ServiceDirectory, ServiceTokenIssuer};
use zerotrust::mtls::ClientAuth;
use zerotrust_testkit::pki::DevPki;
use zerotrust_testkit::tokens::SigningKeyPair;

const ISSUER: &str = "https://issuer.zerotrust.test";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(key: &SigningKeyPair, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap()).unwrap()
}

fn claims(aud: serde_json::Value) -> serde_json::Value {
    json!({"iss": ISSUER, "sub": "service:gateway", "aud": aud, "exp": now() + 300, "iat": now(), "nbf": now()})
}

struct Fixture {
    pki: DevPki,
    key: SigningKeyPair,
    calls: Calls,
    sink: Arc<MemorySink>,
    server: common::TestServer,
}

fn start() -> Fixture {
    let pki = DevPki::generate("zerotrust.test", &["gateway", "orders"]).unwrap();
    let key = SigningKeyPair::generate_rs256("k1").unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience("api:orders")
        .rsa_public_key_pem("k1", &key.public_key_pem)
        .build()
        .unwrap();
    let calls = Calls::default();
    let sink = Arc::new(MemorySink::default());
    let handler_calls = calls.clone();
    let app = Router::new()
        .route(
            "/orders",
            get(move |principal: Principal| {
                let calls = handler_calls.clone();
                async move {
                    calls.hit();
                    principal.id().to_owned()
                }
            }),
        )
        .layer(JwtAuthLayer::new(Arc::new(verifier)).service_name("orders").event_sink(sink.clone()));
    let server = serve(app, &pki, pki.service("orders").unwrap(), ClientAuth::Required);
    Fixture { pki, key, calls, sink, server }
}

async fn call(fixture: &Fixture, authorization: &[&str]) -> common::client::Reply {
    let mut request = get_request(&format!("{}/orders", fixture.server.url));
    for value in authorization {
        request.headers_mut().append("authorization", value.parse().unwrap());
    }
    send(&client(&fixture.pki, fixture.pki.service("gateway")), request).await.unwrap()
}

#[tokio::test]
async fn service_token_for_this_audience_is_accepted() {
    let fixture = start();
    let issuer = ServiceTokenIssuer::builder()
        .issuer(ISSUER)
        .rsa_private_key_pem("k1", &fixture.key.private_key_pem)
        .directory(ServiceDirectory::new().with_service("orders", "api:orders"))
        .build()
        .unwrap();
    let token = issuer.mint("gateway", "orders").unwrap();

    let reply = call(&fixture, &[&format!("Bearer {}", token.expose())]).await;

    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"service:gateway");
    assert_eq!(fixture.calls.count(), 1);
}

#[tokio::test]
async fn missing_token_is_401_with_bare_challenge() {
    let fixture = start();

    let reply = call(&fixture, &[]).await;

    assert_problem(&reply, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    let fixture = start();
    let token = sign(&fixture.key, "k1", claims(json!("api:orders")));

    let reply = call(&fixture, &[&format!("Bearer {token}"), &format!("Bearer {token}")]).await;

    assert_problem(&reply, 400);
    assert_eq!(reply.headers["www-authenticate"], "Bearer error=\"invalid_request\"");
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let fixture = start();
    let other_key = SigningKeyPair::generate_rs256("k1").unwrap();
    let now = now();
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!("api:orders")).to_string())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("audience of another service", sign(&fixture.key, "k1", claims(json!("api:payments"))), "audience_mismatch"),
        ("audience array without ours", sign(&fixture.key, "k1", claims(json!(["api:payments", "api:gateway"]))), "audience_mismatch"),
        // A token without `aud` fails claim parsing before the audience check.
        ("no audience", sign(&fixture.key, "k1", json!({"iss": ISSUER, "sub": "service:gateway", "exp": now + 300})), "invalid_claims"),
        ("wrong issuer", sign(&fixture.key, "k1", json!({"iss": "https://evil.test", "sub": "s", "aud": "api:orders", "exp": now + 300})), "issuer_mismatch"),
        ("expired", sign(&fixture.key, "k1", json!({"iss": ISSUER, "sub": "s", "aud": "api:orders", "exp": now - 120})), "token_expired"),
        ("no expiry", sign(&fixture.key, "k1", json!({"iss": ISSUER, "sub": "s", "aud": "api:orders"})), "invalid_claims"),
        ("not yet valid", sign(&fixture.key, "k1", json!({"iss": ISSUER, "sub": "s", "aud": "api:orders", "exp": now + 600, "nbf": now + 300})), "token_not_yet_valid"),
        ("signed by another key", sign(&other_key, "k1", claims(json!("api:orders"))), "invalid_signature"),
        ("unknown kid", sign(&fixture.key, "k2", claims(json!("api:orders"))), "unknown_key"),
        // jsonwebtoken has no `none` algorithm, so the header itself fails to parse.
        ("alg none", none_token, "token_malformed"),
        ("not a JWT", "abc".to_owned(), "token_malformed"),
        ("oversized", "a".repeat(9000), "token_too_large"),
    ];

    for (name, token, reason) in cases {
        fixture.sink.clear();

        let reply = call(&fixture, &[&format!("Bearer {token}")]).await;

        assert_problem(&reply, 401);
        assert_eq!(reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"", "{name}");
        assert_eq!(reply.json()["title"], "invalid token", "{name}: body must not say which check failed");
        let events = fixture.sink.events();
        assert_eq!(events.len(), 1, "{name}");
        assert_eq!(events[0].kind, EventKind::AuthenticationDenied, "{name}");
        assert_eq!(events[0].reason, Some(reason), "{name}");
    }
    assert_eq!(fixture.calls.count(), 0);
}

#[tokio::test]
async fn several_spaces_after_bearer_are_accepted() {
    let fixture = start();
    let token = sign(&fixture.key, "k1", claims(json!("api:orders")));

    // RFC 6750 section 2.1 allows one or more spaces after the scheme, and the
    // API-key layer parses the header the same way.
    let reply = call(&fixture, &[&format!("Bearer   {token}")]).await;

    assert_eq!(reply.status, 200);
    assert_eq!(fixture.calls.count(), 1);
}

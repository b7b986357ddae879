use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use zerotrust_core::{CertificateFingerprint, EventKind, MemorySink, SpiffeId};

use super::*;
use crate::algorithm::SigningAlgorithm;
use crate::issuer::{ServiceDirectory, ServiceTokenIssuer};
use crate::test_support::{AUDIENCE, ISSUER, TestKey, unix_now, valid_claims};

/// Which layer configuration a row runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Default,
    TypedAccessTokens,
    BindingRequired,
    SubjectMatchesPeer,
}

struct Harness {
    app: Router,
    calls: Arc<AtomicUsize>,
    sink: Arc<MemorySink>,
}

fn verifier(setup: Setup) -> Arc<JwtVerifier> {
    let mut builder = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .max_lifetime(Duration::from_secs(300));
    for algorithm in SigningAlgorithm::ALL {
        let key = TestKey::shared(algorithm);
        builder = builder.public_key_pem(&key.kid, algorithm, &key.public_pem);
    }
    if setup == Setup::TypedAccessTokens {
        builder = builder.required_type("at+jwt");
    }
    Arc::new(builder.build().unwrap())
}

fn harness(setup: Setup) -> Harness {
    let calls = Arc::new(AtomicUsize::new(0));
    let sink = Arc::new(MemorySink::default());
    let mut layer = JwtAuthLayer::new(verifier(setup)).service_name("orders").event_sink(sink.clone());
    match setup {
        Setup::BindingRequired => layer = layer.require_certificate_binding(),
        Setup::SubjectMatchesPeer => layer = layer.require_subject_matches_peer(),
        Setup::Default | Setup::TypedAccessTokens => {}
    }
    let handler_calls = calls.clone();
    let app = Router::new()
        .route(
            "/orders",
            get(move |principal: Principal| {
                let calls = handler_calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    principal.id().to_owned()
                }
            }),
        )
        .layer(layer);
    Harness { app, calls, sink }
}

fn peer(service: &str, fingerprint_byte: u8) -> Arc<PeerIdentity> {
    let now = SystemTime::now();
    Arc::new(PeerIdentity::new(
        Some(SpiffeId::new(format!("spiffe://zerotrust.test/{service}")).unwrap()),
        vec![],
        CertificateFingerprint::from_sha256([fingerprint_byte; 32]),
        now,
        now + Duration::from_secs(3600),
    ))
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn call(harness: &Harness, token: Option<&str>, peer: Option<Arc<PeerIdentity>>) -> Reply {
    let mut request = http::Request::get("/orders");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }

    let response = harness.app.clone().oneshot(request).await.unwrap();

    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply { status, challenge, body }
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = valid_claims();
    claims[name] = value;
    claims
}

fn bound_claims(fingerprint_byte: u8) -> Value {
    let thumbprint = CertificateFingerprint::from_sha256([fingerprint_byte; 32]).x5t_s256();
    with_claim("cnf", json!({ "x5t#S256": thumbprint }))
}

fn unsigned(header: Value, claims: Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// One attack: name, layer setup, token, peer of the connection, expected event reason.
type Row = (&'static str, Setup, String, Option<Arc<PeerIdentity>>, &'static str);

#[tokio::test]
async fn layer_rejects_each_attack_with_same_problem() {
    let rsa = TestKey::shared(SigningAlgorithm::Rs256);
    let ec = TestKey::shared(SigningAlgorithm::Es256);
    let ed = TestKey::shared(SigningAlgorithm::EdDsa);
    let now = unix_now();
    let header = |extra: Value| {
        let mut header = json!({"alg": "ES256", "kid": ec.kid});
        header.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        header
    };
    let hmac_with_public_key = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": rsa.kid}).to_string()),
            URL_SAFE_NO_PAD.encode(valid_claims().to_string())
        );
        let secret = jsonwebtoken::EncodingKey::from_secret(rsa.public_pem.as_bytes()).unwrap();
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &secret, jsonwebtoken::Algorithm::HS256).unwrap();
        format!("{input}.{signature}")
    };
    let tampered = {
        let token = ed.sign(&valid_claims());
        let parts: Vec<&str> = token.split('.').collect();
        let claims = URL_SAFE_NO_PAD.encode(with_claim("sub", json!("service:admin")).to_string());
        format!("{}.{claims}.{}", parts[0], parts[2])
    };
    let valid_es = ec.sign(&valid_claims());
    let duplicate_aud = ec.sign_raw(
        &header(json!({})).to_string(),
        &valid_claims().to_string().replacen('{', r#"{"aud":"api:payments","#, 1),
    );
    let gateway = || Some(peer("gateway", 1));

    let rows: Vec<Row> = vec![
        ("audience of another service", Setup::Default, ec.sign(&with_claim("aud", json!("api:payments"))), None, "audience_mismatch"),
        ("issuer differs", Setup::Default, ec.sign(&with_claim("iss", json!("https://evil.test"))), None, "issuer_mismatch"),
        ("expired", Setup::Default, ec.sign(&with_claim("exp", json!(now - 60))), None, "token_expired"),
        ("not yet valid", Setup::Default, ec.sign(&with_claim("nbf", json!(now + 120))), None, "token_not_yet_valid"),
        ("issued in the future", Setup::Default, ec.sign(&with_claim("iat", json!(now + 120))), None, "token_issued_in_future"),
        ("lifetime over maximum", Setup::Default, ec.sign(&with_claim("exp", json!(now + 3600))), None, "token_lifetime_too_long"),
        ("exp as string", Setup::Default, ec.sign(&with_claim("exp", json!((now + 60).to_string()))), None, "invalid_claims"),
        ("exp null", Setup::Default, ec.sign(&with_claim("exp", json!(null))), None, "invalid_claims"),
        ("aud as object", Setup::Default, ec.sign(&with_claim("aud", json!({"aud": AUDIENCE}))), None, "invalid_claims"),
        ("duplicate aud member", Setup::Default, duplicate_aud, None, "token_malformed"),
        ("alg none without signature", Setup::Default, unsigned(json!({"alg": "none", "kid": ec.kid}), valid_claims(), ""), None, "token_malformed"),
        ("alg none with signature", Setup::Default, unsigned(json!({"alg": "none", "kid": ec.kid}), valid_claims(), "c2ln"), None, "disallowed_header"),
        ("HS256 keyed with RSA public key", Setup::Default, hmac_with_public_key, None, "disallowed_header"),
        ("EdDSA header on ES256 key", Setup::Default, ed.sign_with_header(&json!({"alg": "EdDSA", "kid": ec.kid}), &valid_claims()), None, "disallowed_header"),
        ("embedded jwk", Setup::Default, ec.sign_with_header(&header(json!({"jwk": ec.jwk})), &valid_claims()), None, "disallowed_header"),
        ("jku", Setup::Default, ec.sign_with_header(&header(json!({"jku": "http://127.0.0.1:9/jwks"})), &valid_claims()), None, "disallowed_header"),
        ("x5c", Setup::Default, ec.sign_with_header(&header(json!({"x5c": ["MIIB"]})), &valid_claims()), None, "disallowed_header"),
        ("x5u", Setup::Default, ec.sign_with_header(&header(json!({"x5u": "http://127.0.0.1:9/cert"})), &valid_claims()), None, "disallowed_header"),
        ("crit", Setup::Default, ec.sign_with_header(&header(json!({"crit": ["b64"], "b64": false})), &valid_claims()), None, "disallowed_header"),
        ("unknown kid", Setup::Default, ec.sign_with_header(&header(json!({"kid": "k-ES256-old"})), &valid_claims()), None, "unknown_key"),
        ("tampered claims", Setup::Default, tampered, None, "invalid_signature"),
        ("padded segment", Setup::Default, format!("{valid_es}="), None, "token_malformed"),
        ("standard base64 characters", Setup::Default, format!("{}+", &valid_es[..valid_es.len() - 1]), None, "token_malformed"),
        ("four segments", Setup::Default, format!("{valid_es}.c2ln"), None, "token_malformed"),
        ("not a JWT", Setup::Default, "abc".to_owned(), None, "token_malformed"),
        ("oversized", Setup::Default, "a".repeat(9000), None, "token_too_large"),
        ("typ missing", Setup::TypedAccessTokens, ec.sign_with_header(&header(json!({})), &valid_claims()), None, "token_type_mismatch"),
        ("typ of an ID token", Setup::TypedAccessTokens, ec.sign(&valid_claims()), None, "token_type_mismatch"),
        ("bound token without peer", Setup::Default, ec.sign(&bound_claims(1)), None, "peer_certificate_missing"),
        ("bound token from another peer", Setup::Default, ec.sign(&bound_claims(1)), Some(peer("gateway", 2)), "certificate_binding_mismatch"),
        ("unbound token where binding is required", Setup::BindingRequired, ec.sign(&valid_claims()), gateway(), "certificate_binding_missing"),
        ("bound token without peer where required", Setup::BindingRequired, ec.sign(&bound_claims(1)), None, "peer_certificate_missing"),
        ("cnf without x5t#S256", Setup::BindingRequired, ec.sign(&with_claim("cnf", json!({"jkt": "abc"}))), gateway(), "certificate_binding_missing"),
        ("subject of another service", Setup::SubjectMatchesPeer, ec.sign(&valid_claims()), Some(peer("payments", 1)), "subject_peer_mismatch"),
        ("subject not a service", Setup::SubjectMatchesPeer, ec.sign(&with_claim("sub", json!("user:1"))), gateway(), "subject_peer_mismatch"),
        ("subject check without peer", Setup::SubjectMatchesPeer, ec.sign(&valid_claims()), None, "peer_certificate_missing"),
    ];

    let mut bodies = HashSet::new();
    let mut reasons = HashSet::new();
    for (name, setup, token, peer, reason) in rows {
        let harness = harness(setup);

        let reply = call(&harness, Some(&token), peer).await;

        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(reply.challenge.as_deref(), Some("Bearer error=\"invalid_token\""), "{name}");
        assert_eq!(harness.calls.load(Ordering::SeqCst), 0, "{name}: the handler must not run");
        let events = harness.sink.events();
        assert_eq!(events.len(), 1, "{name}");
        assert_eq!(events[0].kind, EventKind::AuthenticationDenied, "{name}");
        assert_eq!(events[0].reason, Some(reason), "{name}");
        assert_eq!(events[0].service.as_deref(), Some("orders"), "{name}");
        bodies.insert(reply.body.to_string());
        reasons.insert(reason);
    }

    assert_eq!(bodies.len(), 1, "every invalid token must get the same body: {bodies:?}");
    assert_eq!(bodies.into_iter().next().unwrap(), json!({"type": "urn:zerotrust:problem:invalid-token", "title": "invalid token", "status": 401}).to_string());
    assert_eq!(reasons.len(), 17, "each token rejection reason is covered");
}

#[tokio::test]
async fn layer_accepts_each_algorithm() {
    let harness = harness(Setup::Default);

    for algorithm in SigningAlgorithm::ALL {
        let token = TestKey::shared(algorithm).sign(&valid_claims());
        let reply = call(&harness, Some(&token), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{algorithm}");
        assert_eq!(reply.body, Value::String("service:gateway".into()), "{algorithm}");
    }

    assert_eq!(harness.calls.load(Ordering::SeqCst), SigningAlgorithm::ALL.len());
}

#[tokio::test]
async fn missing_token_gets_bare_challenge() {
    let harness = harness(Setup::Default);

    let reply = call(&harness, None, None).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer"));
    assert_eq!(reply.body["title"], "authentication required");
    assert_eq!(harness.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bound_service_token_accepted_only_from_its_peer() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let issuer = ServiceTokenIssuer::builder()
        .issuer(ISSUER)
        .private_key_pem(&key.kid, key.algorithm, &key.private_pem)
        .directory(ServiceDirectory::new().with_service("orders", AUDIENCE))
        .build()
        .unwrap();
    let gateway = peer("gateway", 7);
    let token = issuer.mint_bound("gateway", "orders", &gateway.fingerprint()).unwrap();
    let harness = harness(Setup::BindingRequired);

    let from_owner = call(&harness, Some(token.expose()), Some(gateway.clone())).await;
    let cached_from_owner = call(&harness, Some(token.expose()), Some(gateway)).await;
    let replayed = call(&harness, Some(token.expose()), Some(peer("gateway", 8))).await;

    assert_eq!(from_owner.status, StatusCode::OK);
    assert_eq!(cached_from_owner.status, StatusCode::OK);
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED, "a cache hit must still check the binding");
    assert_eq!(harness.sink.events()[0].reason, Some("certificate_binding_mismatch"));
    assert_eq!(harness.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn subject_matching_peer_is_accepted() {
    let harness = harness(Setup::SubjectMatchesPeer);
    let token = TestKey::shared(SigningAlgorithm::EdDsa).sign(&valid_claims());

    let reply = call(&harness, Some(&token), Some(peer("gateway", 1))).await;

    assert_eq!(reply.status, StatusCode::OK);
}

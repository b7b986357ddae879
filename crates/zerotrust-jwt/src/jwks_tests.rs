use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use zerotrust_core::{EventKind, MemorySink};

use super::*;
use crate::algorithm::SigningAlgorithm;
use crate::rejection::JwtRejection;
use crate::test_support::{AUDIENCE, ISSUER, TestKey, valid_claims};
use crate::verifier::JwtVerifier;

/// A local JWKS server whose response the test can change while it runs.
struct JwksServer {
    url: String,
    body: Arc<Mutex<(StatusCode, String)>>,
    cache_control: Arc<Mutex<Option<&'static str>>>,
    hits: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: &[&TestKey]) -> JwksServer {
        let body = Arc::new(Mutex::new((StatusCode::OK, jwks_document(keys))));
        let cache_control = Arc::new(Mutex::new(None));
        let hits = Arc::new(AtomicUsize::new(0));
        let app = {
            let (body, cache_control, hits) = (body.clone(), cache_control.clone(), hits.clone());
            Router::new().route(
                "/jwks.json",
                get(move || {
                    let (body, cache_control, hits) = (body.clone(), cache_control.clone(), hits.clone());
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let (status, text) = body.lock().unwrap().clone();
                        let mut response: Response = (status, text).into_response();
                        if let Some(value) = *cache_control.lock().unwrap() {
                            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(value));
                        }
                        response
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer { url, body, cache_control, hits, server }
    }

    fn serve(&self, status: StatusCode, body: String) {
        *self.body.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn jwks_document(keys: &[&TestKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(|key| key.jwk.clone()).collect();
    json!({ "keys": keys }).to_string()
}

fn verifier(jwks: &RemoteJwks) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .remote_jwks(jwks.clone())
        .build()
        .unwrap()
}

/// Waits, at most 5 seconds, until `condition` holds.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn remote_jwks_fetches_and_verifies() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let server = JwksServer::start(&[key]).await;
    let jwks = RemoteJwks::builder(&server.url).allow_insecure_http().build().unwrap();
    let verifier = verifier(&jwks);
    let token = key.sign(&valid_claims());

    let before = verifier.verify(&token);
    jwks.refresh().await.unwrap();
    let after = verifier.verify(&token);

    assert_eq!(before.unwrap_err(), JwtRejection::UnknownKey);
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(jwks.key_set().kids(), vec![key.kid.as_str()]);
}

#[tokio::test]
async fn cached_token_rejected_after_key_removed() {
    let removed = TestKey::shared(SigningAlgorithm::Es256);
    let kept = TestKey::shared(SigningAlgorithm::EdDsa);
    let server = JwksServer::start(&[removed, kept]).await;
    let jwks = RemoteJwks::builder(&server.url).allow_insecure_http().build().unwrap();
    let verifier = verifier(&jwks);
    let token = removed.sign(&valid_claims());
    let kept_token = kept.sign(&valid_claims());
    jwks.refresh().await.unwrap();
    assert!(verifier.verify(&token).is_ok());
    assert!(verifier.verify(&kept_token).is_ok());

    server.serve(StatusCode::OK, jwks_document(&[kept]));
    jwks.refresh().await.unwrap();

    assert_eq!(verifier.verify(&token).unwrap_err(), JwtRejection::UnknownKey);
    assert!(verifier.verify(&kept_token).is_ok());
}

#[tokio::test]
async fn remote_jwks_honours_max_age_within_bounds() {
    let key = TestKey::shared(SigningAlgorithm::EdDsa);
    let server = JwksServer::start(&[key]).await;
    let jwks = RemoteJwks::builder(&server.url)
        .allow_insecure_http()
        .refresh_interval(Duration::from_secs(120))
        .refresh_bounds(Duration::from_secs(60), Duration::from_secs(600))
        .build()
        .unwrap();

    let cases = [
        (None, 120),
        (Some("public, max-age=300"), 300),
        (Some("max-age=5"), 60),
        (Some("max-age=86400"), 600),
        (Some("no-store"), 120),
        (Some("max-age=junk"), 120),
    ];
    for (header, expected) in cases {
        *server.cache_control.lock().unwrap() = header;
        let delay = jwks.refresh().await.unwrap();
        assert_eq!(delay, Duration::from_secs(expected), "{header:?}");
    }
}

#[tokio::test]
async fn remote_jwks_keeps_last_good_set_on_errors() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let server = JwksServer::start(&[key]).await;
    let sink = Arc::new(MemorySink::default());
    let jwks = RemoteJwks::builder(&server.url)
        .allow_insecure_http()
        .event_sink(sink.clone())
        .build()
        .unwrap();
    let verifier = verifier(&jwks);
    let token = key.sign(&valid_claims());
    jwks.refresh().await.unwrap();

    let failures = [
        (StatusCode::INTERNAL_SERVER_ERROR, "oops".to_owned(), "jwks_fetch_status"),
        (StatusCode::OK, "not json".to_owned(), "jwks_invalid"),
        (StatusCode::OK, json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}).to_string(), "jwks_invalid"),
        (StatusCode::OK, "x".repeat(DEFAULT_JWKS_MAX_BODY_BYTES + 1), "jwks_fetch_body"),
    ];
    for (status, body, reason) in failures {
        sink.clear();
        server.serve(status, body);

        let result = jwks.refresh().await;

        assert!(result.is_err(), "{reason}");
        assert!(verifier.verify(&token).is_ok(), "{reason}: the last good key set must stay");
        let events = sink.events();
        assert_eq!(events.len(), 1, "{reason}");
        assert_eq!(events[0].kind, EventKind::StoreDegraded, "{reason}");
        assert_eq!(events[0].reason, Some(reason));
    }
}

#[tokio::test]
async fn remote_jwks_times_out_on_silent_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    // Accepts connections and never sends a response.
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let jwks = RemoteJwks::builder(&url)
        .allow_insecure_http()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();

    let result = jwks.refresh().await;
    silent.abort();

    assert!(matches!(result, Err(JwksFetchError::Timeout(_))), "{result:?}");
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let old = TestKey::shared(SigningAlgorithm::Es256);
    let rotated = TestKey::shared(SigningAlgorithm::EdDsa);
    let server = JwksServer::start(&[old]).await;
    let jwks = RemoteJwks::builder(&server.url)
        .allow_insecure_http()
        .refresh_bounds(Duration::from_millis(100), Duration::from_secs(3600))
        .unknown_kid_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let verifier = verifier(&jwks);
    let task = jwks.spawn_refresh_task();
    assert!(eventually(|| server.hits() == 1).await, "initial fetch");

    server.serve(StatusCode::OK, jwks_document(&[old, rotated]));
    let token = rotated.sign(&valid_claims());
    let first = verifier.verify(&token);
    assert!(eventually(|| verifier.verify(&token).is_ok()).await, "refresh after unknown kid");
    for _ in 0..50 {
        let _ = verifier.verify(&rotated.sign_with_header(&json!({"alg": "EdDSA", "kid": "unknown"}), &valid_claims()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();

    assert_eq!(first.unwrap_err(), JwtRejection::UnknownKey);
    assert_eq!(server.hits(), 2, "one initial fetch and one for the first unknown kid");
}

#[test]
fn builder_rejects_insecure_and_invalid_urls() {
    let cases = [
        ("http://127.0.0.1:1/jwks.json", false, "insecure"),
        ("http://issuer.example/jwks.json", true, "insecure"),
        ("http://10.0.0.1/jwks.json", true, "insecure"),
        ("ftp://127.0.0.1/jwks.json", true, "invalid"),
        ("/jwks.json", true, "invalid"),
        ("not a url", true, "invalid"),
    ];

    for (url, allow_http, kind) in cases {
        let mut builder = RemoteJwks::builder(url);
        if allow_http {
            builder = builder.allow_insecure_http();
        }
        let error = builder.build().unwrap_err();
        let matches = match kind {
            "insecure" => matches!(error, JwksConfigError::InsecureUrl(_)),
            _ => matches!(error, JwksConfigError::InvalidUrl(_)),
        };
        assert!(matches, "{url}: {error}");
    }
    for url in ["http://127.0.0.1:8080/jwks", "http://[::1]:8080/jwks", "http://localhost/jwks"] {
        assert!(RemoteJwks::builder(url).allow_insecure_http().build().is_ok(), "{url}");
    }
}

#[test]
fn builder_rejects_bad_intervals() {
    let builder = || RemoteJwks::builder("http://127.0.0.1/jwks").allow_insecure_http();

    let min_above_max = builder().refresh_bounds(Duration::from_secs(10), Duration::from_secs(5)).build();
    let zero_min = builder().refresh_bounds(Duration::ZERO, Duration::from_secs(5)).build();
    let zero_timeout = builder().timeout(Duration::ZERO).build();

    assert!(matches!(min_above_max, Err(JwksConfigError::InvalidIntervals)));
    assert!(matches!(zero_min, Err(JwksConfigError::InvalidIntervals)));
    assert!(matches!(zero_timeout, Err(JwksConfigError::ZeroLimit)));
}

#[test]
fn every_jwks_error_formats() {
    let config_errors = [
        JwksConfigError::InvalidUrl("x".into()),
        JwksConfigError::InsecureUrl("http://x".into()),
        JwksConfigError::Roots("none".into()),
        JwksConfigError::InvalidIntervals,
        JwksConfigError::ZeroLimit,
    ];
    let fetch_errors = [
        JwksFetchError::Timeout(Duration::from_secs(1)),
        JwksFetchError::Request("refused".into()),
        JwksFetchError::Status(500),
        JwksFetchError::Body("too large".into()),
        JwksFetchError::Invalid("bad".into()),
    ];

    for text in config_errors.iter().map(ToString::to_string).chain(fetch_errors.iter().map(ToString::to_string)) {
        assert!(!text.is_empty());
    }
    for error in &fetch_errors {
        assert!(error.reason().starts_with("jwks_"));
    }
}

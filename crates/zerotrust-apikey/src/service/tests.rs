//! Tests of the layer through an axum router.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use zerotrust_core::{
    Clock, EventKind, MemorySink, Principal, PrincipalKind, RequireScopeLayer, ScopeRejection,
    Scopes,
};

use crate::{
    ApiKeyConfigError, ApiKeyLayer, ApiKeyLayerBuilder, ApiKeyRejection, ApiKeySecret, KeyDigest,
    KeyFormat, KeyManager, KeyRecord, KeyStore, MemoryKeyStore, NewKey, StoreError, StoreFuture,
};

/// A clock that tests move by hand.
#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A store whose every operation fails as if its backend were down.
#[derive(Debug)]
struct FailingStore;

impl FailingStore {
    fn error() -> StoreError {
        StoreError::Unavailable {
            store: "test",
            source: "connection refused".into(),
        }
    }
}

impl KeyStore for FailingStore {
    fn insert(&self, _record: KeyRecord) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(Self::error()) })
    }

    fn find_by_digest<'a>(&'a self, _digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async { Err(Self::error()) })
    }

    fn get<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async { Err(Self::error()) })
    }

    fn list_by_owner<'a>(&'a self, _owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(async { Err(Self::error()) })
    }

    fn revoke<'a>(&'a self, _id: &'a str, _at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        Box::pin(async { Err(Self::error()) })
    }

    fn delete<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, KeyRecord> {
        Box::pin(async { Err(Self::error()) })
    }

    fn record_last_used<'a>(&'a self, _uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(Self::error()) })
    }
}

/// A store whose lookups never finish.
#[derive(Debug)]
struct HangingStore;

impl KeyStore for HangingStore {
    fn insert(&self, _record: KeyRecord) -> StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    fn find_by_digest<'a>(&'a self, _digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(std::future::pending())
    }

    fn get<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(std::future::pending())
    }

    fn list_by_owner<'a>(&'a self, _owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(std::future::pending())
    }

    fn revoke<'a>(&'a self, _id: &'a str, _at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        Box::pin(std::future::pending())
    }

    fn delete<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, KeyRecord> {
        Box::pin(std::future::pending())
    }

    fn record_last_used<'a>(&'a self, _uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        Box::pin(std::future::pending())
    }
}

/// A store, a manager over it, a router behind the layer, and a handler counter.
struct Harness {
    manager: KeyManager,
    clock: Arc<ManualClock>,
    sink: Arc<MemorySink>,
    calls: Arc<AtomicUsize>,
    app: Router,
}

impl Harness {
    fn new() -> Self {
        Self::with_store(Arc::new(MemoryKeyStore::new()), Duration::from_secs(2))
    }

    fn with_store(store: Arc<dyn KeyStore>, lookup_timeout: Duration) -> Self {
        Self::with_layer(store, |builder| builder.lookup_timeout(lookup_timeout))
    }

    /// Builds the harness with extra layer settings from `configure`.
    fn with_layer(
        store: Arc<dyn KeyStore>,
        configure: impl FnOnce(ApiKeyLayerBuilder) -> ApiKeyLayerBuilder,
    ) -> Self {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Arc::new(ManualClock(Mutex::new(start)));
        let sink = Arc::new(MemorySink::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = KeyManager::new(store.clone()).with_clock(clock.clone());
        let builder = ApiKeyLayer::builder(store)
            .service_name("orders")
            .event_sink(sink.clone())
            .clock(clock.clone());
        let layer = configure(builder).build().unwrap();

        let handler_calls = calls.clone();
        let handler = move |principal: Principal| {
            let calls = handler_calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                format!("{} {}", principal.id(), principal.owner().unwrap_or("-"))
            }
        };
        let app = Router::new()
            .route("/", get(handler.clone()))
            .route(
                "/orders",
                get(handler).layer(RequireScopeLayer::new("orders:write").event_sink(sink.clone())),
            )
            .layer(layer);

        Self {
            manager,
            clock,
            sink,
            calls,
            app,
        }
    }

    async fn create(&self, scopes: &str) -> crate::CreatedKey {
        self.manager
            .create(NewKey::new("acme").scopes(Scopes::parse(scopes)))
            .await
            .unwrap()
    }

    async fn send(&self, request: Request<Body>) -> http::Response<Body> {
        self.app.clone().oneshot(request).await.unwrap()
    }

    fn handler_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn get_with(headers: &[(&str, &str)]) -> Request<Body> {
    get_path_with("/", headers)
}

fn get_path_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

async fn body_json(response: http::Response<Body>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Checks everything a denial must have, and returns its problem body.
async fn assert_denied(
    response: http::Response<Body>,
    status: StatusCode,
    challenge: Option<&str>,
    rejection: ApiKeyRejection,
) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap()),
        challenge
    );
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        response.extensions().get::<ApiKeyRejection>(),
        Some(&rejection)
    );

    let body = body_json(response).await;
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Generates a well-formed key that no store contains.
fn unstored_key() -> ApiKeySecret {
    KeyFormat::default().generate().unwrap()
}

const INVALID_TOKEN: Option<&str> = Some("Bearer error=\"invalid_token\"");

#[tokio::test]
async fn layer_valid_key_runs_handler() {
    let harness = Harness::new();
    let created = harness.create("orders:read").await;

    let response = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("{} acme", created.record.id));
    assert_eq!(harness.handler_calls(), 1);
    assert!(harness.sink.events().is_empty());
}

#[tokio::test]
async fn layer_principal_carries_key_id_owner_and_scopes() {
    let store = Arc::new(MemoryKeyStore::new());
    let manager = KeyManager::new(store.clone());
    let created = manager
        .create(NewKey::new("acme").scopes(Scopes::parse("a b")))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(None));
    let seen_in_handler = seen.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |principal: Principal| {
                *seen_in_handler.lock().unwrap() = Some(principal);
                async { "ok" }
            }),
        )
        .layer(ApiKeyLayer::builder(store).build().unwrap());

    let response = app
        .oneshot(get_with(&[("x-api-key", created.secret.expose())]))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let principal = seen.lock().unwrap().take().unwrap();
    assert_eq!(principal.kind(), PrincipalKind::ApiKey);
    assert_eq!(principal.id(), created.record.id);
    assert_eq!(principal.owner(), Some("acme"));
    assert_eq!(principal.scopes(), &Scopes::parse("a b"));
}

#[tokio::test]
async fn layer_lower_case_bearer_is_accepted() {
    let harness = Harness::new();
    let created = harness.create("").await;
    let value = format!("bearer {}", created.secret.expose());

    let response = harness.send(get_with(&[("authorization", &value)])).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.handler_calls(), 1);
}

#[tokio::test]
async fn layer_same_key_in_both_headers_is_accepted() {
    let harness = Harness::new();
    let created = harness.create("").await;
    let bearer = format!("Bearer {}", created.secret.expose());

    let response = harness
        .send(get_with(&[
            ("x-api-key", created.secret.expose()),
            ("authorization", &bearer),
        ]))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.handler_calls(), 1);
}

#[tokio::test]
async fn layer_missing_key_is_401_bare_challenge() {
    let harness = Harness::new();

    let response = harness.send(get_with(&[])).await;

    let body = assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        Some("Bearer"),
        ApiKeyRejection::Missing,
    )
    .await;
    assert_eq!(body["type"], "urn:zerotrust:problem:unauthenticated");
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.count(EventKind::AuthenticationDenied), 1);
    assert_eq!(harness.sink.events()[0].reason, Some("missing_api_key"));
    assert_eq!(harness.sink.events()[0].service.as_deref(), Some("orders"));
}

#[tokio::test]
async fn layer_query_string_key_is_ignored() {
    let harness = Harness::new();
    let created = harness.create("").await;
    let path = format!("/?api_key={}", created.secret.expose());

    let response = harness.send(get_path_with(&path, &[])).await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        Some("Bearer"),
        ApiKeyRejection::Missing,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_other_authorization_scheme_counts_as_missing() {
    let harness = Harness::new();

    let response = harness
        .send(get_with(&[("authorization", "Basic YWxhZGRpbjpvcGVu")]))
        .await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        Some("Bearer"),
        ApiKeyRejection::Missing,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_malformed_key_is_401_invalid_token() {
    let harness = Harness::new();
    let created = harness.create("").await;
    let mut typo = created.secret.expose().as_bytes().to_vec();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();

    for key in [typo.as_str(), "mk_short", "not-a-key", "Bearer"] {
        let response = harness.send(get_with(&[("x-api-key", key)])).await;

        assert_denied(
            response,
            StatusCode::UNAUTHORIZED,
            INVALID_TOKEN,
            ApiKeyRejection::Malformed,
        )
        .await;
    }
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.count(EventKind::AuthenticationDenied), 4);
}

#[tokio::test]
async fn layer_empty_bearer_is_401_invalid_token() {
    let harness = Harness::new();

    let response = harness
        .send(get_with(&[("authorization", "Bearer ")]))
        .await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Malformed,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_unknown_key_is_401_invalid_token() {
    let harness = Harness::new();
    let key = unstored_key();

    let response = harness.send(get_with(&[("x-api-key", key.expose())])).await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Unknown,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
    let events = harness.sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::AuthenticationDenied);
    assert_eq!(events[0].reason, Some("unknown_api_key"));
    assert_eq!(events[0].identifier, None);
}

#[tokio::test]
async fn layer_key_with_other_prefix_is_malformed() {
    let harness = Harness::new();
    let key = KeyFormat::new("other_").unwrap().generate().unwrap();

    let response = harness.send(get_with(&[("x-api-key", key.expose())])).await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Malformed,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_expired_key_is_401_invalid_token() {
    let harness = Harness::new();
    let created = harness
        .manager
        .create(NewKey::new("acme").expires_in(Duration::from_secs(60)))
        .await
        .unwrap();
    let before = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;
    assert_eq!(before.status(), StatusCode::OK);

    harness.clock.advance(Duration::from_secs(60));
    let response = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Expired,
    )
    .await;
    assert_eq!(harness.handler_calls(), 1);
    // The key expires within the sunset warning period, so its successful use
    // first raised one CREDENTIAL_EXPIRING event.
    assert_eq!(harness.sink.count(EventKind::CredentialExpiring), 1);
    let events: Vec<_> = harness
        .sink
        .events()
        .into_iter()
        .filter(|event| event.kind == EventKind::AuthenticationDenied)
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, Some("expired_api_key"));
    assert_eq!(
        events[0].identifier.as_deref(),
        Some(created.record.id.as_str())
    );
}

#[tokio::test]
async fn layer_revoked_key_is_401_invalid_token() {
    let harness = Harness::new();
    let created = harness.create("").await;
    harness.manager.revoke(&created.record.id).await.unwrap();

    let response = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Revoked,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.events()[0].reason, Some("revoked_api_key"));
    assert_eq!(
        harness.sink.events()[0].identifier.as_deref(),
        Some(created.record.id.as_str())
    );
}

#[tokio::test]
async fn layer_rotated_key_works_until_grace_ends() {
    let harness = Harness::new();
    let old = harness.create("").await;
    let new = harness
        .manager
        .rotate(&old.record.id, Duration::from_secs(30))
        .await
        .unwrap();

    let old_during_grace = harness
        .send(get_with(&[("x-api-key", old.secret.expose())]))
        .await;
    harness.clock.advance(Duration::from_secs(30));
    let old_after_grace = harness
        .send(get_with(&[("x-api-key", old.secret.expose())]))
        .await;
    let new_after_grace = harness
        .send(get_with(&[("x-api-key", new.secret.expose())]))
        .await;

    assert_eq!(old_during_grace.status(), StatusCode::OK);
    assert_eq!(old_after_grace.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        old_after_grace.extensions().get::<ApiKeyRejection>(),
        Some(&ApiKeyRejection::Revoked)
    );
    assert_eq!(new_after_grace.status(), StatusCode::OK);
}

#[tokio::test]
async fn layer_invalid_key_bodies_are_identical() {
    let harness = Harness::new();
    let expired = harness
        .manager
        .create(NewKey::new("acme").expires_in(Duration::from_secs(1)))
        .await
        .unwrap();
    let revoked = harness.create("").await;
    harness.manager.revoke(&revoked.record.id).await.unwrap();
    harness.clock.advance(Duration::from_secs(1));
    let unknown = unstored_key();

    let mut bodies = Vec::new();
    for key in [
        "mk_short",
        unknown.expose(),
        expired.secret.expose(),
        revoked.secret.expose(),
    ] {
        let response = harness.send(get_with(&[("x-api-key", key)])).await;
        bodies.push(response.into_body().collect().await.unwrap().to_bytes());
    }

    for body in &bodies[1..] {
        assert_eq!(body, &bodies[0]);
    }
    let text = String::from_utf8_lossy(&bodies[0]);
    assert!(text.contains("urn:zerotrust:problem:invalid-api-key"));
    assert!(!text.contains("expired"));
    assert!(!text.contains("revoked"));
    assert!(!text.contains("unknown"));
}

#[tokio::test]
async fn layer_two_x_api_key_headers_are_400() {
    let harness = Harness::new();
    let created = harness.create("").await;

    let response = harness
        .send(get_with(&[
            ("x-api-key", created.secret.expose()),
            ("x-api-key", created.secret.expose()),
        ]))
        .await;

    let body = assert_denied(
        response,
        StatusCode::BAD_REQUEST,
        Some("Bearer error=\"invalid_request\""),
        ApiKeyRejection::Ambiguous,
    )
    .await;
    assert_eq!(body["type"], "urn:zerotrust:problem:ambiguous-credentials");
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(
        harness.sink.events()[0].reason,
        Some("ambiguous_credentials")
    );
}

#[tokio::test]
async fn layer_both_headers_with_different_keys_are_400() {
    let harness = Harness::new();
    let first = harness.create("").await;
    let second = harness.create("").await;
    let bearer = format!("Bearer {}", second.secret.expose());

    let response = harness
        .send(get_with(&[
            ("x-api-key", first.secret.expose()),
            (AUTHORIZATION.as_str(), &bearer),
        ]))
        .await;

    assert_denied(
        response,
        StatusCode::BAD_REQUEST,
        Some("Bearer error=\"invalid_request\""),
        ApiKeyRejection::Ambiguous,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_scope_denial_is_403_from_require_scope() {
    let harness = Harness::new();
    let created = harness.create("orders:read").await;

    let response = harness
        .send(get_path_with(
            "/orders",
            &[("x-api-key", created.secret.expose())],
        ))
        .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", scope=\"orders:write\""
    );
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert!(response.extensions().get::<ScopeRejection>().is_some());
    assert!(response.extensions().get::<ApiKeyRejection>().is_none());
    assert_eq!(body_json(response).await["status"], 403);
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.count(EventKind::AuthorizationDenied), 1);
}

#[tokio::test]
async fn layer_scope_present_reaches_handler() {
    let harness = Harness::new();
    let created = harness.create("orders:write").await;

    let response = harness
        .send(get_path_with(
            "/orders",
            &[("x-api-key", created.secret.expose())],
        ))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.handler_calls(), 1);
}

#[tokio::test]
async fn layer_store_failure_is_503_with_event() {
    let harness = Harness::with_store(Arc::new(FailingStore), Duration::from_secs(2));
    let key = unstored_key();

    let response = harness.send(get_with(&[("x-api-key", key.expose())])).await;

    let body = assert_denied(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        ApiKeyRejection::StoreUnavailable,
    )
    .await;
    assert_eq!(
        body["type"],
        "urn:zerotrust:problem:authentication-unavailable"
    );
    assert!(!body.to_string().contains("connection refused"));
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.count(EventKind::StoreDegraded), 1);
    assert_eq!(harness.sink.count(EventKind::AuthenticationDenied), 0);
}

#[tokio::test]
async fn layer_store_timeout_is_503() {
    let harness = Harness::with_store(Arc::new(HangingStore), Duration::from_millis(20));
    let key = unstored_key();

    let response = harness.send(get_with(&[("x-api-key", key.expose())])).await;

    assert_denied(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        ApiKeyRejection::StoreUnavailable,
    )
    .await;
    assert_eq!(harness.handler_calls(), 0);
    assert_eq!(harness.sink.count(EventKind::StoreDegraded), 1);
}

#[tokio::test]
async fn layer_malformed_key_skips_store() {
    // The failing store would turn any lookup into 503, so 401 proves no lookup ran.
    let harness = Harness::with_store(Arc::new(FailingStore), Duration::from_secs(2));

    let response = harness.send(get_with(&[("x-api-key", "mk_typo")])).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(harness.sink.count(EventKind::StoreDegraded), 0);
}

#[tokio::test]
async fn layer_event_carries_request_id() {
    let harness = Harness::new();

    harness.send(get_with(&[("x-request-id", "req-42")])).await;

    assert_eq!(
        harness.sink.events()[0].request_id.as_deref(),
        Some("req-42")
    );
}

#[test]
fn builder_rejects_bad_settings() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());

    let empty_name = ApiKeyLayer::builder(store.clone()).service_name("").build();
    let control_name = ApiKeyLayer::builder(store.clone())
        .service_name("a\nb")
        .build();
    let zero_timeout = ApiKeyLayer::builder(store.clone())
        .lookup_timeout(Duration::ZERO)
        .build();
    let defaults = ApiKeyLayer::builder(store).build();

    assert!(matches!(
        empty_name,
        Err(ApiKeyConfigError::InvalidServiceName { .. })
    ));
    assert!(matches!(
        control_name,
        Err(ApiKeyConfigError::InvalidServiceName { .. })
    ));
    assert!(matches!(
        zero_timeout,
        Err(ApiKeyConfigError::ZeroLookupTimeout)
    ));
    assert!(defaults.is_ok());
}

/// Collects everything a `tracing` fmt subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn layer_trace_logs_never_contain_key() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The test runs on a current-thread runtime, so the thread-local default
    // subscriber receives every event of the requests below.
    let _guard = tracing::subscriber::set_default(subscriber);

    // The default sink is `TracingSink`, so security events land in the buffer too.
    let store = Arc::new(MemoryKeyStore::new());
    let manager = KeyManager::new(store.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/orders",
            get(|| async { "ok" }).layer(RequireScopeLayer::new("orders:write")),
        )
        .layer(
            ApiKeyLayer::builder(store)
                .service_name("orders")
                .build()
                .unwrap(),
        );
    let good = manager.create(NewKey::new("acme")).await.unwrap();
    let revoked = manager.create(NewKey::new("acme")).await.unwrap();
    manager.revoke(&revoked.record.id).await.unwrap();
    let unknown = unstored_key();
    let mut typo = good.secret.expose().as_bytes().to_vec();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let good_bearer = format!("Bearer {}", good.secret.expose());
    let other_bearer = format!("Bearer {}", unknown.expose());

    let requests = vec![
        (
            "/",
            vec![("x-api-key", good.secret.expose())],
            StatusCode::OK,
        ),
        (
            "/",
            vec![("authorization", good_bearer.as_str())],
            StatusCode::OK,
        ),
        (
            "/orders",
            vec![("x-api-key", good.secret.expose())],
            StatusCode::FORBIDDEN,
        ),
        (
            "/",
            vec![("x-api-key", typo.as_str())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/",
            vec![("x-api-key", unknown.expose())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/",
            vec![("x-api-key", revoked.secret.expose())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/",
            vec![
                ("x-api-key", good.secret.expose()),
                ("authorization", other_bearer.as_str()),
            ],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, headers, expected) in requests {
        let response = app
            .clone()
            .oneshot(get_path_with(path, &headers))
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path} {:?}", headers.len());
    }

    let output = logs.contents();
    assert!(
        output.contains("API key accepted"),
        "accept not logged at TRACE:\n{output}"
    );
    assert!(
        output.contains("API key rejected"),
        "rejection not logged:\n{output}"
    );
    assert!(
        output.contains(&good.record.id),
        "key id missing from logs:\n{output}"
    );
    assert!(
        output.contains(&revoked.record.id),
        "revoked key id missing from logs:\n{output}"
    );
    for key in [
        good.secret.expose(),
        revoked.secret.expose(),
        unknown.expose(),
        typo.as_str(),
    ] {
        // The prefix is public, so look for the random part only, whole and in pieces.
        let random_part = &key[3..];
        assert!(
            !output.contains(random_part),
            "key found in logs:\n{output}"
        );
        assert!(
            !output.contains(&random_part[..12]),
            "key fragment found in logs:\n{output}"
        );
        assert!(
            !output.contains(&random_part[30..]),
            "key fragment found in logs:\n{output}"
        );
    }
}

/// A memory store that counts lookups and last-use writes, and can stall the
/// writes as a hung database would.
#[derive(Debug, Default)]
struct CountingStore {
    inner: MemoryKeyStore,
    lookups: AtomicUsize,
    last_used_writes: AtomicUsize,
    stall_last_used: bool,
}

impl KeyStore for CountingStore {
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()> {
        self.inner.insert(record)
    }

    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_digest(digest)
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        self.inner.get(id)
    }

    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        self.inner.list_by_owner(owner)
    }

    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        self.inner.revoke(id, at)
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord> {
        self.inner.delete(id)
    }

    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        self.last_used_writes.fetch_add(1, Ordering::SeqCst);
        if self.stall_last_used {
            return Box::pin(std::future::pending());
        }
        self.inner.record_last_used(uses)
    }
}

fn sunset_header(response: &http::Response<Body>) -> Option<String> {
    response
        .headers()
        .get("sunset")
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn layer_rotation_deadline_holds_to_second() {
    let harness = Harness::new();
    let old = harness.create("").await;
    let new = harness
        .manager
        .rotate(&old.record.id, crate::DEFAULT_ROTATION_GRACE)
        .await
        .unwrap();

    harness
        .clock
        .advance(crate::DEFAULT_ROTATION_GRACE - Duration::from_secs(1));
    let old_before_deadline = harness
        .send(get_with(&[("x-api-key", old.secret.expose())]))
        .await;
    harness.clock.advance(Duration::from_secs(1));
    let old_at_deadline = harness
        .send(get_with(&[("x-api-key", old.secret.expose())]))
        .await;
    let new_at_deadline = harness
        .send(get_with(&[("x-api-key", new.secret.expose())]))
        .await;

    assert_eq!(old_before_deadline.status(), StatusCode::OK);
    assert_eq!(old_at_deadline.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        old_at_deadline.extensions().get::<ApiKeyRejection>(),
        Some(&ApiKeyRejection::Revoked)
    );
    assert_eq!(new_at_deadline.status(), StatusCode::OK);
}

#[tokio::test]
async fn layer_sunset_header_near_end_only() {
    let harness = Harness::with_layer(Arc::new(MemoryKeyStore::new()), |builder| {
        builder.sunset_warning(Duration::from_secs(3_600))
    });
    let long_lived = harness.create("").await;
    let short_lived = harness
        .manager
        .create(NewKey::new("acme").expires_in(Duration::from_secs(3_600)))
        .await
        .unwrap();

    let far = harness
        .send(get_with(&[("x-api-key", long_lived.secret.expose())]))
        .await;
    let near = harness
        .send(get_with(&[("x-api-key", short_lived.secret.expose())]))
        .await;

    assert_eq!(far.status(), StatusCode::OK);
    assert_eq!(sunset_header(&far), None);
    assert_eq!(near.status(), StatusCode::OK);
    assert_eq!(
        sunset_header(&near).as_deref(),
        Some(httpdate::fmt_http_date(short_lived.record.expires_at).as_str())
    );
    assert!(sunset_header(&near).unwrap().ends_with(" GMT"));
}

#[tokio::test]
async fn layer_sunset_header_shows_rotation_deadline() {
    let harness = Harness::new();
    let old = harness.create("").await;
    harness
        .manager
        .rotate(&old.record.id, Duration::from_secs(600))
        .await
        .unwrap();

    let response = harness
        .send(get_with(&[("x-api-key", old.secret.expose())]))
        .await;

    let deadline = harness.clock.now() + Duration::from_secs(600);
    assert_eq!(
        sunset_header(&response).as_deref(),
        Some(httpdate::fmt_http_date(deadline).as_str())
    );
}

#[tokio::test]
async fn layer_sunset_zero_period_sends_no_header() {
    let harness = Harness::with_layer(Arc::new(MemoryKeyStore::new()), |builder| {
        builder.sunset_warning(Duration::ZERO)
    });
    let short_lived = harness
        .manager
        .create(NewKey::new("acme").expires_in(Duration::from_secs(60)))
        .await
        .unwrap();

    let response = harness
        .send(get_with(&[("x-api-key", short_lived.secret.expose())]))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sunset_header(&response), None);
}

#[tokio::test]
async fn layer_query_key_needs_named_option() {
    let default = Harness::new();
    let key = default.create("").await;
    let enabled = Harness::with_layer(default.manager.store().clone(), |builder| {
        builder.allow_query_parameter("api_key")
    });
    let path = format!("/?api_key={}", key.secret.expose());

    let ignored = default.send(get_path_with(&path, &[])).await;
    let accepted = enabled.send(get_path_with(&path, &[])).await;
    let conflicting = enabled
        .send(get_path_with(
            &path,
            &[("x-api-key", unstored_key().expose())],
        ))
        .await;

    assert_denied(
        ignored,
        StatusCode::UNAUTHORIZED,
        Some("Bearer"),
        ApiKeyRejection::Missing,
    )
    .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(conflicting.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn builder_rejects_bad_query_parameter() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());

    for name in ["", "api key", "a=b", "&x", &"x".repeat(65)] {
        let result = ApiKeyLayer::builder(store.clone())
            .allow_query_parameter(name)
            .build();

        assert!(
            matches!(result, Err(ApiKeyConfigError::InvalidQueryParameter { .. })),
            "{name:?}"
        );
    }
}

#[tokio::test]
async fn layer_oversized_header_skips_store() {
    let harness = Harness::with_store(Arc::new(FailingStore), Duration::from_secs(2));
    let huge = format!("Bearer {}", "A".repeat(64 * 1024));

    let response = harness.send(get_with(&[("authorization", &huge)])).await;

    assert_denied(
        response,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        ApiKeyRejection::Malformed,
    )
    .await;
    assert_eq!(harness.sink.count(EventKind::StoreDegraded), 0);
}

#[tokio::test]
async fn layer_trailing_whitespace_key_is_malformed() {
    let harness = Harness::new();
    let created = harness.create("").await;

    for (name, value) in [
        ("x-api-key", format!("{} ", created.secret.expose())),
        ("x-api-key", format!("{}\t", created.secret.expose())),
        (
            "authorization",
            format!("Bearer {} ", created.secret.expose()),
        ),
    ] {
        let response = harness.send(get_with(&[(name, &value)])).await;

        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{name}: {value:?}"
        );
        assert_eq!(
            response.extensions().get::<ApiKeyRejection>(),
            Some(&ApiKeyRejection::Malformed),
            "{name}"
        );
    }
    assert_eq!(harness.handler_calls(), 0);
}

#[tokio::test]
async fn layer_cached_store_skips_repeated_lookups() {
    let counting = Arc::new(CountingStore::default());
    let cached = Arc::new(crate::CachedKeyStore::new(
        counting.clone(),
        crate::CacheConfig::default(),
    ));
    let harness = Harness::with_store(cached, Duration::from_secs(2));
    let created = harness.create("").await;
    let junk = unstored_key();

    for _ in 0..5 {
        let valid = harness
            .send(get_with(&[("x-api-key", created.secret.expose())]))
            .await;
        let unknown = harness
            .send(get_with(&[("x-api-key", junk.expose())]))
            .await;
        assert_eq!(valid.status(), StatusCode::OK);
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    }

    assert_eq!(counting.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn layer_cached_key_rejected_after_local_revoke() {
    let cached = Arc::new(crate::CachedKeyStore::new(
        Arc::new(MemoryKeyStore::new()),
        crate::CacheConfig::default().positive_ttl(Duration::from_secs(3_600)),
    ));
    let harness = Harness::with_store(cached, Duration::from_secs(2));
    let created = harness.create("").await;
    let before = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    harness.manager.revoke(&created.record.id).await.unwrap();
    let after = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        after.extensions().get::<ApiKeyRejection>(),
        Some(&ApiKeyRejection::Revoked)
    );
}

#[tokio::test]
async fn layer_cached_key_rejected_after_expiry() {
    let cached = Arc::new(crate::CachedKeyStore::new(
        Arc::new(MemoryKeyStore::new()),
        crate::CacheConfig::default().positive_ttl(Duration::from_secs(3_600)),
    ));
    let harness = Harness::with_store(cached, Duration::from_secs(2));
    let created = harness
        .manager
        .create(NewKey::new("acme").expires_in(Duration::from_secs(60)))
        .await
        .unwrap();
    let before = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    harness.clock.advance(Duration::from_secs(60));
    let after = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(
        after.extensions().get::<ApiKeyRejection>(),
        Some(&ApiKeyRejection::Expired)
    );
}

#[tokio::test(start_paused = true)]
async fn layer_last_used_written_in_batches() {
    let counting = Arc::new(CountingStore::default());
    let harness = Harness::with_layer(counting.clone(), |builder| {
        builder.last_used_interval(Duration::from_secs(60))
    });
    let created = harness.create("").await;

    for _ in 0..50 {
        let response = harness
            .send(get_with(&[("x-api-key", created.secret.expose())]))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let writes_before_interval = counting.last_used_writes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let writes_after_interval = counting.last_used_writes.load(Ordering::SeqCst);

    assert_eq!(writes_before_interval, 0);
    assert_eq!(writes_after_interval, 1);
    let stored = counting.get(&created.record.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(harness.clock.now()));
}

#[tokio::test(start_paused = true)]
async fn layer_stalled_last_used_write_never_delays_requests() {
    let counting = Arc::new(CountingStore {
        stall_last_used: true,
        ..CountingStore::default()
    });
    let harness = Harness::with_layer(counting.clone(), |builder| {
        builder
            .last_used_interval(Duration::from_secs(1))
            .lookup_timeout(Duration::from_secs(2))
    });
    let created = harness.create("").await;

    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        let response = harness
            .send(get_with(&[("x-api-key", created.secret.expose())]))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    // Ten requests with 500 ms pauses: any wait on the stalled write would add
    // up to the 2-second flush timeout per request.
    assert!(elapsed < Duration::from_millis(5_100), "took {elapsed:?}");
    assert!(counting.last_used_writes.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn layer_last_used_off_when_interval_zero() {
    let counting = Arc::new(CountingStore::default());
    let harness = Harness::with_layer(counting.clone(), |builder| {
        builder.last_used_interval(Duration::ZERO)
    });
    let created = harness.create("").await;

    let response = harness
        .send(get_with(&[("x-api-key", created.secret.expose())]))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        harness
            .manager
            .store()
            .get(&created.record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_none()
    );
    assert_eq!(counting.last_used_writes.load(Ordering::SeqCst), 0);
}

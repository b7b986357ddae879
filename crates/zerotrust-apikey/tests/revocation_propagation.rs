//! Revocation and rotation seen by two layer instances that share one store,
//! as two processes would.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use tower::ServiceExt;
use zerotrust_apikey::{
    ApiKeyLayer, ApiKeyRejection, CacheConfig, CachedKeyStore, Invalidation, KeyDigest, KeyManager,
    KeyRecord, KeyStore, MemoryKeyStore, NewKey, StoreFuture,
};

use support::StoreFixture;

/// The maximum time a revocation may take to reach the other process when the
/// store publishes invalidations. The caches' TTL is an hour, so only a
/// notification can make the other process reject the key in time.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

/// The pause between two requests while waiting for propagation.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One "process": a cached store, a manager and a router over it.
struct Process {
    manager: KeyManager,
    app: Router,
}

impl Process {
    fn new(store: Arc<dyn KeyStore>, positive_ttl: Duration) -> Self {
        let cached: Arc<dyn KeyStore> = Arc::new(CachedKeyStore::new(
            store,
            CacheConfig::default().positive_ttl(positive_ttl),
        ));
        let layer = ApiKeyLayer::builder(cached.clone())
            .service_name("orders")
            .build()
            .unwrap();
        Self {
            manager: KeyManager::new(cached),
            app: Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(layer),
        }
    }

    /// Sends a request with `key` and returns its status and rejection.
    async fn call(&self, key: &str) -> (StatusCode, Option<ApiKeyRejection>) {
        let request = Request::get("/")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let rejection = response.extensions().get::<ApiKeyRejection>().copied();
        (response.status(), rejection)
    }

    /// Repeats the request until it is rejected, and returns how long that took.
    async fn wait_for_rejection(&self, key: &str, limit: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let attempts = limit.as_millis() / POLL_INTERVAL.as_millis() + 1;
        for _ in 0..attempts {
            if self.call(key).await.0 == StatusCode::UNAUTHORIZED {
                return started.elapsed();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!("key still accepted {limit:?} after the change");
    }
}

/// Checks that a revocation in one process is immediate there and reaches
/// the other through the store's notifications.
async fn check_revocation_propagates(fixture: StoreFixture) {
    let hour = Duration::from_secs(3_600);
    let first = Process::new(fixture.store.clone(), hour);
    let second = Process::new((fixture.reconnect)().await, hour);
    let created = first.manager.create(NewKey::new("acme")).await.unwrap();
    let key = created.secret.expose();
    assert_eq!(first.call(key).await.0, StatusCode::OK);
    assert_eq!(
        second.call(key).await.0,
        StatusCode::OK,
        "now cached in the second process"
    );

    first.manager.revoke(&created.record.id).await.unwrap();
    let in_first = first.call(key).await;
    let delay = second.wait_for_rejection(key, PROPAGATION_LIMIT).await;

    assert_eq!(
        in_first,
        (StatusCode::UNAUTHORIZED, Some(ApiKeyRejection::Revoked))
    );
    assert_eq!(
        second.call(key).await,
        (StatusCode::UNAUTHORIZED, Some(ApiKeyRejection::Revoked))
    );
    assert!(delay < PROPAGATION_LIMIT, "took {delay:?}");
}

/// Checks that after a rotation both keys work in both processes until the
/// deadline, and only the new key after it, even from a warm cache.
async fn check_rotation_deadline_across_processes(fixture: StoreFixture) {
    let hour = Duration::from_secs(3_600);
    let first = Process::new(fixture.store.clone(), hour);
    let second = Process::new((fixture.reconnect)().await, hour);
    let old = first.manager.create(NewKey::new("acme")).await.unwrap();
    assert_eq!(second.call(old.secret.expose()).await.0, StatusCode::OK);

    let grace = Duration::from_secs(2);
    let new = first.manager.rotate(&old.record.id, grace).await.unwrap();
    let deadline = first
        .manager
        .get(&old.record.id)
        .await
        .unwrap()
        .revoked_at
        .unwrap();
    for process in [&first, &second] {
        assert_eq!(process.call(old.secret.expose()).await.0, StatusCode::OK);
        assert_eq!(process.call(new.secret.expose()).await.0, StatusCode::OK);
    }

    let wait = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(10)).await;

    for process in [&first, &second] {
        assert_eq!(
            process.call(old.secret.expose()).await,
            (StatusCode::UNAUTHORIZED, Some(ApiKeyRejection::Revoked))
        );
        assert_eq!(process.call(new.secret.expose()).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn memory_revocation_reaches_second_layer() {
    check_revocation_propagates(support::memory()).await;
}

#[tokio::test]
async fn memory_rotation_deadline_in_both_layers() {
    check_rotation_deadline_across_processes(support::memory()).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_revocation_reaches_second_layer() {
    check_revocation_propagates(support::redis().await).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_rotation_deadline_in_both_layers() {
    check_rotation_deadline_across_processes(support::redis().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_revocation_reaches_second_layer() {
    check_revocation_propagates(support::postgres().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_rotation_deadline_in_both_layers() {
    check_rotation_deadline_across_processes(support::postgres().await).await;
}

/// A store that hides the invalidations of the store it wraps, as a store
/// without notifications would.
#[derive(Debug)]
struct SilentStore(Arc<dyn KeyStore>);

impl KeyStore for SilentStore {
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()> {
        self.0.insert(record)
    }

    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        self.0.find_by_digest(digest)
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        self.0.get(id)
    }

    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        self.0.list_by_owner(owner)
    }

    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        self.0.revoke(id, at)
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord> {
        self.0.delete(id)
    }

    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        self.0.record_last_used(uses)
    }

    fn subscribe_invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<Invalidation>> {
        None
    }
}

#[tokio::test]
async fn silent_store_revocation_bounded_by_ttl() {
    let ttl = Duration::from_millis(300);
    let shared: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let first = Process::new(shared.clone(), ttl);
    let second = Process::new(Arc::new(SilentStore(shared)), ttl);
    let created = first.manager.create(NewKey::new("acme")).await.unwrap();
    let key = created.secret.expose();
    assert_eq!(second.call(key).await.0, StatusCode::OK);

    first.manager.revoke(&created.record.id).await.unwrap();
    let still_cached = second.call(key).await.0;
    let delay = second.wait_for_rejection(key, ttl * 3).await;

    // Without notifications the second process keeps its cached record until
    // the TTL ends, and not longer.
    assert_eq!(still_cached, StatusCode::OK);
    assert!(delay <= ttl + Duration::from_millis(200), "took {delay:?}");
}

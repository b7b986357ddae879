//! Store fixtures shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zerotrust_apikey::{KeyDigest, KeyRecord, KeyStore, MemoryKeyStore};
use zerotrust_core::Scopes;
#[cfg(feature = "postgres")]
use zerotrust_testkit::postgres::PostgresDatabase;
#[cfg(feature = "redis")]
use zerotrust_testkit::redis::RedisServer;

/// A store under test and the fixture that keeps its backend alive.
pub struct StoreFixture {
    pub store: Arc<dyn KeyStore>,
    /// Connects another store to the same backend, as a second process would.
    pub reconnect: Box<dyn Fn() -> ConnectFuture + Send + Sync>,
    _backend: Backend,
}

/// Keeps a backend alive for as long as the fixture lives.
enum Backend {
    None,
    #[cfg(feature = "redis")]
    Redis(RedisServer),
    #[cfg(feature = "postgres")]
    Postgres(PostgresDatabase),
}

/// A future that connects a second store to the same backend.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Arc<dyn KeyStore>> + Send>>;

/// Returns a memory store. A second "process" shares the same instance,
/// because a memory store lives in one process.
pub fn memory() -> StoreFixture {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let shared = store.clone();
    StoreFixture {
        store,
        reconnect: Box::new(move || {
            let shared = shared.clone();
            Box::pin(async move { shared })
        }),
        _backend: Backend::None,
    }
}

/// Returns a Redis store on a fresh server, or on `ZEROTRUST_TEST_REDIS_URL` with a
/// unique key prefix.
#[cfg(feature = "redis")]
pub async fn redis() -> StoreFixture {
    use zerotrust_apikey::RedisKeyStore;

    let server = RedisServer::start().await.expect("start redis");
    let url = server.url().to_owned();
    let prefix = server.key_prefix().to_owned();
    let store = RedisKeyStore::connect_with_prefix(&url, &prefix)
        .await
        .expect("connect to redis");
    StoreFixture {
        store: Arc::new(store),
        reconnect: Box::new(move || {
            let url = url.clone();
            let prefix = prefix.clone();
            Box::pin(async move {
                let store = RedisKeyStore::connect_with_prefix(&url, &prefix)
                    .await
                    .expect("connect to redis");
                Arc::new(store) as Arc<dyn KeyStore>
            })
        }),
        _backend: Backend::Redis(server),
    }
}

/// Returns a PostgreSQL store on a fresh database.
#[cfg(feature = "postgres")]
pub async fn postgres() -> StoreFixture {
    use zerotrust_apikey::PostgresKeyStore;

    let database = PostgresDatabase::create().await.expect("create database");
    let url = database.url().to_owned();
    let store = PostgresKeyStore::connect(&url)
        .await
        .expect("connect to postgres");
    StoreFixture {
        store: Arc::new(store),
        reconnect: Box::new(move || {
            let url = url.clone();
            Box::pin(async move {
                let store = PostgresKeyStore::connect(&url)
                    .await
                    .expect("connect to postgres");
                Arc::new(store) as Arc<dyn KeyStore>
            })
        }),
        _backend: Backend::Postgres(database),
    }
}

/// Returns a record with whole-microsecond times, created `created_offset` seconds
/// after a fixed start.
pub fn record(id: &str, owner: &str, digest_byte: u8, created_offset: u64) -> KeyRecord {
    let created_at = start() + Duration::from_secs(created_offset);
    KeyRecord {
        id: id.into(),
        owner: owner.into(),
        scopes: Scopes::parse("orders:read orders:write"),
        created_at,
        expires_at: created_at + Duration::from_secs(3_600),
        revoked_at: None,
        last_used_at: None,
        digest: KeyDigest::from_bytes([digest_byte; 32]),
    }
}

/// Returns a fixed start time with a fractional part in microseconds.
pub fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000)
}

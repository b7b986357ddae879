//! Store failures against a real redis-server that the tests stop, pause and
//! restart: fail open with a local fallback, fail closed with 503, recovery,
//! and the local cache of blocked identifiers.

#![cfg(feature = "redis")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::interfaces::KeysInterface as _;
use http::StatusCode;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use zerotrust_anomaly::{
    AnomalyLayer, Identifier, IdentifierKind, OnStoreError, RedisCounterStore,
    StoreUnavailableRejection,
};
use zerotrust_core::{EventKind, MemorySink};
use zerotrust_testkit::redis::RedisServer;

use common::{TestApp, assert_blocked_response, small_policy};

/// The maximum duration of a load phase, and the maximum of requests it sends.
const LOAD_DEADLINE: Duration = Duration::from_secs(6);
const LOAD_MAX_REQUESTS: usize = 3_000;

async fn store_for(server: &RedisServer) -> RedisCounterStore {
    RedisCounterStore::connect(server.url())
        .await
        .expect("connect to the fixture redis")
        .with_key_prefix(server.key_prefix())
        .expect("fixture prefixes are valid")
}

fn app_with(store: RedisCounterStore, policy: OnStoreError) -> TestApp {
    let sink = Arc::new(MemorySink::default());
    let layer = AnomalyLayer::builder(Arc::new(store))
        .service_name("orders")
        .event_sink(sink.clone())
        .policy(IdentifierKind::ApiKey, small_policy())
        .store_timeout(Duration::from_millis(250))
        .store_retry_interval(Duration::from_millis(200))
        .on_store_error(policy)
        .build()
        .unwrap();
    TestApp::with_layer(layer, sink)
}

/// Sends requests from two concurrent clients until `stop` is set, the deadline
/// passes or the request limit is reached. Each key is used twice, below the
/// alert threshold, so every refusal comes from the failure policy.
fn spawn_load(
    app: &TestApp,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<HashMap<StatusCode, usize>> {
    let app = app.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut statuses = HashMap::new();
        for i in 0..LOAD_MAX_REQUESTS / 2 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) || started.elapsed() > LOAD_DEADLINE {
                break;
            }
            let key = format!("load-{i}");
            let (first, second) = tokio::join!(app.send_as_key(&key), app.send_as_key(&key));
            for response in [first, second] {
                *statuses.entry(response.status()).or_insert(0) += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        statuses
    })
}

/// Waits, bounded, until a request for `key_id` is counted in Redis.
async fn wait_until_counted_in_redis(app: &TestApp, store: &RedisCounterStore, key_id: &str) {
    let identifier = Identifier::new(IdentifierKind::ApiKey, key_id);
    let [count_key, _] = store.keys(&identifier);
    for _ in 0..50 {
        let _ = app.send_as_key(key_id).await;
        let count: Option<i64> = store.client().get(&count_key).await.unwrap_or(None);
        if count.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no request for {key_id} was counted in redis within 5 s of the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_survives_restart_under_load() {
    let mut server = RedisServer::spawn().await.unwrap();
    let store = store_for(&server).await;
    let app = app_with(store.clone(), OnStoreError::FailOpen);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let load = spawn_load(&app, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    server.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();

    let total: usize = statuses.values().sum();
    assert!(total > 50, "load sent only {total} requests");
    assert_eq!(statuses.get(&StatusCode::OK), Some(&total), "{statuses:?}");
    assert_eq!(app.sink.count(EventKind::StoreDegraded), 1);
    assert_eq!(app.sink.count(EventKind::Blocked), 0);
    wait_until_counted_in_redis(&app, &store, "after-restart").await;
}

#[tokio::test]
async fn fail_open_blocks_in_fallback_while_down() {
    let mut server = RedisServer::spawn().await.unwrap();
    let app = app_with(store_for(&server).await, OnStoreError::FailOpen);
    server.stop().unwrap();

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.send_as_key("flood").await.status());
    }
    let fifth = app.send_as_key("flood").await;

    assert_eq!(statuses, [StatusCode::OK; 4]);
    assert_blocked_response(fifth).await;
    assert_eq!(app.sink.count(EventKind::RateAnomaly), 1);
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
    assert_eq!(app.sink.count(EventKind::StoreDegraded), 1);
    assert_eq!(app.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_until_restart() {
    let mut server = RedisServer::spawn().await.unwrap();
    let store = store_for(&server).await;
    let app = app_with(store.clone(), OnStoreError::FailClosed);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let load = spawn_load(&app, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let while_down = app.send_as_key("probe").await;
    server.restart().await.unwrap();
    wait_until_counted_in_redis(&app, &store, "after-restart").await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();

    assert_eq!(while_down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        while_down.headers()[CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(while_down.headers().contains_key(RETRY_AFTER));
    assert!(
        while_down
            .extensions()
            .get::<StoreUnavailableRejection>()
            .is_some()
    );
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|status| !matches!(**status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE))
        .collect();
    assert!(unexpected.is_empty(), "{statuses:?}");
    assert!(
        statuses.contains_key(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert_eq!(app.sink.count(EventKind::StoreDegraded), 1);
    let events = app.sink.events();
    let degraded = events
        .iter()
        .find(|e| e.kind == EventKind::StoreDegraded)
        .unwrap();
    assert_eq!(degraded.status, Some(503), "{events:?}");
    let after = app.send_as_key("after-recovery").await;
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn blocked_caller_needs_no_redis_round_trip() {
    let server = RedisServer::spawn().await.unwrap();
    let app = app_with(store_for(&server).await, OnStoreError::FailClosed);
    for _ in 0..4 {
        assert_eq!(app.send_as_key("blocked").await.status(), StatusCode::OK);
    }
    assert_blocked_response(app.send_as_key("blocked").await).await;

    server.pause().unwrap();
    let started = Instant::now();
    let mut during_pause = Vec::new();
    for _ in 0..20 {
        during_pause.push(app.send_as_key("blocked").await);
    }
    let elapsed = started.elapsed();
    let other = app.send_as_key("other").await;
    server.resume().unwrap();

    for response in during_pause {
        assert_blocked_response(response).await;
    }
    assert!(elapsed < Duration::from_millis(200), "took {elapsed:?}");
    assert_eq!(
        other.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a caller not in the cache needs redis"
    );
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
}

#[tokio::test]
async fn counter_without_ttl_is_repaired() {
    let server = RedisServer::start().await.unwrap();
    let store = store_for(&server).await;
    let identifier = Identifier::new(IdentifierKind::ApiKey, "no-ttl");
    let [count_key, block_key] = store.keys(&identifier);
    let blocked = Identifier::new(IdentifierKind::ApiKey, "no-ttl-block");
    let [_, blocked_marker] = store.keys(&blocked);
    let _: () = store
        .client()
        .set(&count_key, 2, None, None, false)
        .await
        .unwrap();
    let _: () = store
        .client()
        .set(&blocked_marker, 1, None, None, false)
        .await
        .unwrap();
    let before: i64 = store.client().ttl(&count_key).await.unwrap();

    let policy = small_policy();
    let outcome = zerotrust_anomaly::CounterStore::hit(&store, &identifier, &policy)
        .await
        .unwrap();
    let blocked_outcome = zerotrust_anomaly::CounterStore::hit(&store, &blocked, &policy)
        .await
        .unwrap();
    let count_ttl: i64 = store.client().ttl(&count_key).await.unwrap();
    let marker_ttl: i64 = store.client().ttl(&blocked_marker).await.unwrap();
    let block_ttl: i64 = store.client().ttl(&block_key).await.unwrap();

    assert_eq!(before, -1, "the test key starts without a TTL");
    assert_eq!(
        outcome.decision,
        zerotrust_anomaly::HitDecision::Counted { count: 3 }
    );
    assert!(outcome.alert_crossed);
    assert!(count_ttl > 0, "count TTL {count_ttl}");
    assert_eq!(block_ttl, -2, "no block marker for the counted identifier");
    assert!(matches!(
        blocked_outcome.decision,
        zerotrust_anomaly::HitDecision::Blocked { .. }
    ));
    assert!(marker_ttl > 0, "block marker TTL {marker_ttl}");
}

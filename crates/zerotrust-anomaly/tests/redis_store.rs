//! The anomaly layer on the Redis store, against a real redis-server.

#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::KeysInterface as _;
use http::StatusCode;
use zerotrust_anomaly::{
    AnomalyPolicy, CounterStore, HitDecision, Identifier, IdentifierKind, RedisCounterStore,
    StoreError,
};
use zerotrust_core::{EventKind, MemorySink};
use zerotrust_testkit::redis::RedisServer;

use common::{
    BLOCK_FOR, TestApp, WINDOW, assert_blocked_response, run_threshold_scenario, small_policy,
};

async fn store_for(server: &RedisServer) -> RedisCounterStore {
    RedisCounterStore::connect(server.url())
        .await
        .expect("connect to the fixture redis")
        .with_key_prefix(server.key_prefix())
        .expect("fixture prefixes are valid")
}

#[tokio::test]
async fn redis_layer_alerts_then_blocks() {
    let server = RedisServer::start().await.unwrap();
    let app = TestApp::new(Arc::new(store_for(&server).await), small_policy());

    run_threshold_scenario(&app, "key_a", "key_b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replicas_send_one_alert_and_one_block() {
    let server = RedisServer::start().await.unwrap();
    let policy = AnomalyPolicy::new(WINDOW, 50, 100, BLOCK_FOR).unwrap();
    let sink = Arc::new(MemorySink::default());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(store_for(&server).await);
        replicas.push(TestApp::with_sink(
            store,
            policy,
            sink.clone(),
            Duration::from_secs(5),
        ));
    }

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = replicas[i % replicas.len()].clone();
        tasks.spawn(async move { app.send_as_key("busy").await.status() });
    }
    let mut ok = 0;
    let mut too_many = 0;
    while let Some(status) = tokio::time::timeout(Duration::from_secs(30), tasks.join_next())
        .await
        .expect("requests finish within 30 s")
    {
        match status.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => too_many += 1,
            other => panic!("unexpected status {other}"),
        }
    }

    assert_eq!(sink.count(EventKind::StoreDegraded), 0, "no store errors");
    assert_eq!(ok, 99, "requests 1 to 99 pass");
    assert_eq!(too_many, 101, "request 100 and later are rejected");
    assert_eq!(sink.count(EventKind::RateAnomaly), 1);
    assert_eq!(sink.count(EventKind::Blocked), 1);
    let handler_calls: usize = replicas.iter().map(TestApp::calls).sum();
    assert_eq!(handler_calls, 99);
}

#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::start().await.unwrap();
    let store = store_for(&server).await;
    let policy = small_policy();
    let identifier = Identifier::new(IdentifierKind::ApiKey, "ttl");
    let [count_key, block_key] = store.keys(&identifier);

    for _ in 0..2 {
        store.hit(&identifier, &policy).await.unwrap();
    }
    let count_ttl: i64 = store.client().ttl(&count_key).await.unwrap();
    assert!(
        (1..=WINDOW.as_secs() as i64).contains(&count_ttl),
        "count TTL {count_ttl}"
    );

    for _ in 0..3 {
        store.hit(&identifier, &policy).await.unwrap();
    }
    let block_ttl: i64 = store.client().ttl(&block_key).await.unwrap();
    let count_ttl_after_block: i64 = store.client().ttl(&count_key).await.unwrap();
    assert!(
        (1..=BLOCK_FOR.as_secs() as i64).contains(&block_ttl),
        "block TTL {block_ttl}"
    );
    assert_eq!(
        count_ttl_after_block, -2,
        "the count is reset when the block starts"
    );
}

#[tokio::test]
async fn blocked_hits_do_not_extend_the_block() {
    let server = RedisServer::start().await.unwrap();
    let store = store_for(&server).await;
    let policy = AnomalyPolicy::new(WINDOW, 1, 1, Duration::from_secs(3)).unwrap();
    let identifier = Identifier::new(IdentifierKind::ApiKey, "short-block");

    let first = store.hit(&identifier, &policy).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let during = store.hit(&identifier, &policy).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let after = store.hit(&identifier, &policy).await.unwrap();

    assert!(first.block_started);
    assert!(
        first.alert_crossed,
        "equal thresholds alert on the blocking request"
    );
    match during.decision {
        HitDecision::Blocked { retry_after } => {
            assert!(
                retry_after <= Duration::from_millis(1_950),
                "left {retry_after:?}"
            );
        }
        other => panic!("expected a block, got {other:?}"),
    }
    assert!(
        after.block_started,
        "after the block, counting starts from zero"
    );
}

#[tokio::test]
async fn hostile_identifier_stays_in_its_hash_tag() {
    let server = RedisServer::start().await.unwrap();
    let store = store_for(&server).await;
    let hostile = Identifier::new(IdentifierKind::Subject, "x}:count{other");
    let plain = Identifier::new(IdentifierKind::Subject, "other");

    let [count_key, block_key] = store.keys(&hostile);
    store.hit(&hostile, &small_policy()).await.unwrap();
    let plain_outcome = store.hit(&plain, &small_policy()).await.unwrap();

    for key in [&count_key, &block_key] {
        assert_eq!(key.matches('{').count(), 1, "{key}");
        assert_eq!(key.matches('}').count(), 1, "{key}");
    }
    assert!(
        count_key.contains("{subject:x%7d:count%7bother}"),
        "{count_key}"
    );
    assert_eq!(plain_outcome.decision, HitDecision::Counted { count: 1 });
}

#[tokio::test]
async fn paused_redis_fails_open_within_timeout() {
    // Only a private server can be paused, even when ZEROTRUST_TEST_REDIS_URL is set.
    let server = RedisServer::spawn().await.unwrap();
    let sink = Arc::new(MemorySink::default());
    let store = Arc::new(store_for(&server).await);
    let app = TestApp::with_sink(
        store,
        small_policy(),
        sink.clone(),
        Duration::from_millis(250),
    );
    assert_eq!(app.send_as_key("k").await.status(), StatusCode::OK);

    server.pause().unwrap();
    let started = std::time::Instant::now();
    let first = app.send_as_key("k").await;
    let second = app.send_as_key("k").await;
    let elapsed = started.elapsed();
    server.resume().unwrap();

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(app.calls(), 3);
    assert_eq!(sink.count(EventKind::StoreDegraded), 1);
    assert_eq!(sink.events()[0].reason, Some("store_timeout"));
}

#[tokio::test]
async fn restarted_redis_is_used_again() {
    // Only a private server can be restarted, even when ZEROTRUST_TEST_REDIS_URL is set.
    let mut server = RedisServer::spawn().await.unwrap();
    let sink = Arc::new(MemorySink::default());
    let store = Arc::new(store_for(&server).await);
    let app = TestApp::with_sink(
        store,
        small_policy(),
        sink.clone(),
        Duration::from_millis(250),
    );

    server.stop().unwrap();
    let while_down = app.send_as_key("k").await;
    server.restart().await.unwrap();

    assert_eq!(
        while_down.status(),
        StatusCode::OK,
        "fail open while redis is down"
    );
    assert_eq!(sink.count(EventKind::StoreDegraded), 1);
    // The restarted server lost the script cache, so this also covers the
    // reload on NOSCRIPT. Reconnection takes a moment: poll, bounded.
    let mut blocked = None;
    for _ in 0..50 {
        let response = app.send_as_key("k").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            blocked = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_blocked_response(blocked.expect("blocked within 50 requests after restart")).await;
}

#[tokio::test]
async fn connect_to_closed_port_fails() {
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        RedisCounterStore::connect("redis://127.0.0.1:1"),
    )
    .await
    .expect("connect gives up within 15 s");

    assert!(matches!(result, Err(StoreError::Connect(_))));
}

#[test]
fn invalid_key_prefixes_are_rejected() {
    let client = fred::types::Builder::default_centralized().build().unwrap();
    let store = RedisCounterStore::new(client);

    for prefix in ["{app}:", "has space:", &"a".repeat(65)] {
        assert!(store.clone().with_key_prefix(prefix).is_err(), "{prefix}");
    }
    assert!(store.with_key_prefix("app:anomaly:").is_ok());
}

/// Sleeps until `offset` after the next boundary of `window`-second windows,
/// by this machine's clock, which the loopback Redis server shares.
async fn sleep_until_window_offset(window: u64, offset: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next = Duration::from_secs((now.as_secs() / window + 1) * window);
    tokio::time::sleep(next - now + offset).await;
}

#[tokio::test]
async fn redis_sliding_window_carries_previous_count() {
    let server = RedisServer::start().await.unwrap();
    let store = store_for(&server).await;
    let window = 4;
    let fixed = AnomalyPolicy::new(Duration::from_secs(window), 8, 50, Duration::from_secs(60)).unwrap();
    let sliding = fixed.with_window_mode(zerotrust_anomaly::WindowMode::Sliding);
    let (a, b) = (
        Identifier::new(IdentifierKind::ApiKey, "sliding"),
        Identifier::new(IdentifierKind::ApiKey, "fixed"),
    );

    sleep_until_window_offset(window, Duration::from_millis(100)).await;
    for _ in 0..6 {
        store.hit(&a, &sliding).await.unwrap();
        store.hit(&b, &fixed).await.unwrap();
    }
    // Early in the next window floor(6 × (1 − elapsed)) is 5 while less than a
    // sixth of the window (0.66 s) has passed.
    sleep_until_window_offset(window, Duration::from_millis(100)).await;
    let mut sliding_outcomes = Vec::new();
    let mut fixed_outcomes = Vec::new();
    for _ in 0..3 {
        sliding_outcomes.push(store.hit(&a, &sliding).await.unwrap());
        fixed_outcomes.push(store.hit(&b, &fixed).await.unwrap());
    }

    assert_eq!(sliding_outcomes[2].decision, HitDecision::Counted { count: 8 });
    assert!(sliding_outcomes[2].alert_crossed);
    assert_eq!(sliding_outcomes.iter().filter(|o| o.alert_crossed).count(), 1);
    assert_eq!(fixed_outcomes[2].decision, HitDecision::Counted { count: 3 });
    assert!(fixed_outcomes.iter().all(|o| !o.alert_crossed));
    let sliding_key = format!("{}:sliding", store.keys(&a)[0]);
    let ttl: i64 = store.client().ttl(&sliding_key).await.unwrap();
    assert!(ttl > 0 && ttl <= 2 * window as i64, "ttl {ttl}");
}

//! The Redis store on a real three-node Redis Cluster.

#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use zerotrust_anomaly::{
    AnomalyPolicy, CounterStore, HitDecision, Identifier, IdentifierKind, RedisCounterStore,
};
use zerotrust_core::{EventKind, MemorySink};
use zerotrust_testkit::redis::RedisCluster;

use common::{BLOCK_FOR, TestApp, WINDOW};

async fn cluster_store(cluster: &RedisCluster) -> RedisCounterStore {
    RedisCounterStore::connect(&cluster.url())
        .await
        .expect("connect to the fixture cluster")
        .with_key_prefix(cluster.key_prefix())
        .expect("fixture prefixes are valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicas_send_one_alert_and_one_block() {
    let cluster = RedisCluster::start().await.unwrap();
    let policy = AnomalyPolicy::new(WINDOW, 50, 100, BLOCK_FOR).unwrap();
    let sink = Arc::new(MemorySink::default());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(cluster_store(&cluster).await);
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
}

#[tokio::test]
async fn identifiers_on_every_node_are_counted() {
    let cluster = RedisCluster::start().await.unwrap();
    let store = cluster_store(&cluster).await;
    let policy = AnomalyPolicy::new(WINDOW, 2, 3, BLOCK_FOR).unwrap();

    // Sixty identifiers spread over the 16,384 slots, so that every node stores
    // some of them; the check after the loop confirms it.
    for i in 0..60 {
        let identifier = Identifier::new(IdentifierKind::Subject, format!("user-{i}"));
        let mut decisions = Vec::new();
        for _ in 0..3 {
            decisions.push(store.hit(&identifier, &policy).await.unwrap().decision);
        }

        assert_eq!(
            decisions[0],
            HitDecision::Counted { count: 1 },
            "{identifier}"
        );
        assert_eq!(
            decisions[1],
            HitDecision::Counted { count: 2 },
            "{identifier}"
        );
        assert!(
            matches!(decisions[2], HitDecision::Blocked { .. }),
            "{identifier}"
        );
    }
    for port in cluster.ports() {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "dbsize"])
            .output()
            .unwrap();
        let keys: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(keys > 0, "node on port {port} holds no keys");
    }
}

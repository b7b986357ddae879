//! The demo mesh's tour as a test: every step must match, in memory and on Redis.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mesh/main.rs"]
mod mesh;

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zt-mesh-{name}-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_passes_with_memory_counters() {
    let options = mesh::Options {
        tour_only: true,
        print_events: false,
        dir: Some(temp_dir("memory")),
        redis_url: None,
    };

    let passed = mesh::run(options).await.expect("mesh runs");

    assert!(passed, "a tour step failed; run `cargo run --example mesh -- --tour` to see which");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_passes_with_redis_counters() {
    let redis = zerotrust_testkit::redis::RedisServer::start().await.expect("a Redis server for the test");
    let options = mesh::Options {
        tour_only: true,
        print_events: false,
        dir: Some(temp_dir("redis")),
        redis_url: Some(redis.url().to_owned()),
    };

    let passed = mesh::run(options).await.expect("mesh runs");

    assert!(passed, "a tour step failed with Redis counters");
}

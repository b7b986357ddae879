//! The webhook sink against real local HTTP servers: a healthy one, a slow
//! one, one that fails and then recovers, and a closed port.

#![cfg(feature = "webhook")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use zerotrust_core::sinks::{WebhookConfig, WebhookError, WebhookSink};
use zerotrust_core::{EventKind, EventSink as _, SecurityEvent};

/// The requests a test server received, and how it responds.
#[derive(Default)]
struct Collector {
    requests: AtomicUsize,
    events: AtomicUsize,
    largest_batch: AtomicUsize,
    /// The number of first requests rejected with 503.
    fail_first: AtomicUsize,
    delay: std::sync::Mutex<Duration>,
}

async fn receive(State(collector): State<Arc<Collector>>, body: String) -> StatusCode {
    let request = collector.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *collector.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if request < collector.fail_first.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let events = batch.as_array().unwrap().len();
    collector.events.fetch_add(events, Ordering::SeqCst);
    collector.largest_batch.fetch_max(events, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn start_server(collector: Arc<Collector>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(collector);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/events")
}

fn event(n: u64) -> SecurityEvent {
    SecurityEvent::new(EventKind::RateAnomaly)
        .identifier(format!("api_key:k{n}"))
        .count(n)
}

/// Polls `condition` every 20 ms for at most `limit`.
async fn wait_for(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn healthy_endpoint_receives_every_event_in_batches() {
    let collector = Arc::new(Collector::default());
    let url = start_server(collector.clone()).await;
    let config = WebhookConfig::new(&url)
        .unwrap()
        .max_batch(10)
        .flush_interval(Duration::from_millis(50));
    let sink = WebhookSink::spawn(config).unwrap();

    for n in 0..95 {
        sink.send(event(n));
    }
    let delivered = wait_for(Duration::from_secs(5), || sink.delivered() == 95).await;

    assert!(delivered, "delivered {}", sink.delivered());
    assert_eq!(collector.events.load(Ordering::SeqCst), 95);
    assert!(collector.largest_batch.load(Ordering::SeqCst) <= 10);
    assert!(collector.requests.load(Ordering::SeqCst) >= 10);
    assert_eq!(sink.dropped(), 0);
}

#[tokio::test]
async fn slow_endpoint_never_blocks_send() {
    let collector = Arc::new(Collector::default());
    *collector.delay.lock().unwrap() = Duration::from_secs(2);
    let url = start_server(collector.clone()).await;
    let config = WebhookConfig::new(&url)
        .unwrap()
        .queue_capacity(10)
        .max_batch(5)
        .flush_interval(Duration::from_millis(10))
        .request_timeout(Duration::from_millis(100))
        .retries(1, Duration::from_millis(10), Duration::from_millis(20));
    let sink = WebhookSink::spawn(config).unwrap();

    let started = Instant::now();
    for n in 0..1_000 {
        sink.send(event(n));
    }
    let send_time = started.elapsed();
    let all_dropped = wait_for(Duration::from_secs(10), || sink.dropped() == 1_000).await;

    assert!(
        send_time < Duration::from_millis(200),
        "1,000 sends took {send_time:?}"
    );
    assert!(all_dropped, "dropped {}", sink.dropped());
    assert!(sink.retries() >= 1);
    assert_eq!(sink.delivered(), 0);
}

#[tokio::test]
async fn failing_endpoint_is_retried_until_it_accepts() {
    let collector = Arc::new(Collector::default());
    collector.fail_first.store(2, Ordering::SeqCst);
    let url = start_server(collector.clone()).await;
    let config = WebhookConfig::new(&url)
        .unwrap()
        .flush_interval(Duration::from_millis(10))
        .retries(3, Duration::from_millis(10), Duration::from_millis(40));
    let sink = WebhookSink::spawn(config).unwrap();

    sink.send(event(1));
    let delivered = wait_for(Duration::from_secs(5), || sink.delivered() == 1).await;

    assert!(delivered);
    assert_eq!(sink.retries(), 2);
    assert_eq!(collector.requests.load(Ordering::SeqCst), 3);
    assert_eq!(sink.dropped(), 0);
}

#[tokio::test]
async fn closed_port_drops_after_retries() {
    // Bind and release a port, so nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = WebhookConfig::new(&format!("http://127.0.0.1:{port}/events"))
        .unwrap()
        .flush_interval(Duration::from_millis(10))
        .retries(2, Duration::from_millis(10), Duration::from_millis(20));
    let sink = WebhookSink::spawn(config).unwrap();

    let started = Instant::now();
    for n in 0..3 {
        sink.send(event(n));
    }
    let send_time = started.elapsed();
    let dropped = wait_for(Duration::from_secs(5), || sink.dropped() == 3).await;

    assert!(send_time < Duration::from_millis(50), "{send_time:?}");
    assert!(dropped, "dropped {}", sink.dropped());
    assert_eq!(sink.retries(), 2);
    assert_eq!(sink.delivered(), 0);
}

#[test]
fn config_rejects_invalid_values() {
    for url in [
        "https://siem.example/events",
        "not a url",
        "/events",
        "ftp://host/x",
    ] {
        assert!(
            matches!(
                WebhookConfig::new(url),
                Err(WebhookError::InvalidUrl { .. })
            ),
            "{url}"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = WebhookConfig::new("http://127.0.0.1:9/events")
        .unwrap()
        .queue_capacity(0);

    let result = runtime.block_on(async { WebhookSink::spawn(config).map(|_| ()) });

    assert_eq!(
        result,
        Err(WebhookError::Zero {
            field: "queue_capacity"
        })
    );
    assert!(
        !WebhookError::Zero { field: "max_batch" }
            .to_string()
            .is_empty()
    );
}

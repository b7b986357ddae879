//! The default thresholds, request by request: nothing before 100, one
//! RATE_ANOMALY at 100, a block that starts at 500 and rejects that request,
//! blocked requests that neither count nor extend the block, and fresh counting
//! after the block.

mod common;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use zerotrust_anomaly::{AnomalyPolicy, MemoryCounterStore};
use zerotrust_core::EventKind;

use common::{BLOCK_FOR, TestApp, WINDOW, assert_blocked_response};

#[tokio::test]
async fn default_thresholds_request_by_request() {
    let defaults = AnomalyPolicy::default();
    let policy =
        AnomalyPolicy::new(WINDOW, defaults.alert_at(), defaults.block_at(), BLOCK_FOR).unwrap();
    let app = TestApp::new(Arc::new(MemoryCounterStore::new()), policy);

    for n in 1..=99 {
        assert_eq!(
            app.send_as_key("k").await.status(),
            StatusCode::OK,
            "request {n}"
        );
    }
    assert!(
        app.sink.events().is_empty(),
        "no event for requests 1 to 99"
    );

    assert_eq!(app.send_as_key("k").await.status(), StatusCode::OK);
    assert_eq!(
        app.sink.count(EventKind::RateAnomaly),
        1,
        "one alert at 100"
    );
    assert_eq!(app.sink.events()[0].count, Some(100));

    for n in 101..=499 {
        assert_eq!(
            app.send_as_key("k").await.status(),
            StatusCode::OK,
            "request {n}"
        );
    }
    assert_eq!(
        app.sink.count(EventKind::RateAnomaly),
        1,
        "still one alert at 499"
    );
    assert_eq!(app.sink.count(EventKind::Blocked), 0);

    assert_blocked_response(app.send_as_key("k").await).await;
    assert_eq!(app.calls(), 499, "request 500 is rejected");
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
    assert_eq!(app.sink.events()[1].count, Some(500));

    for _ in 0..50 {
        assert_blocked_response(app.send_as_key("k").await).await;
    }
    assert_eq!(app.calls(), 499);
    assert_eq!(
        app.sink.events().len(),
        2,
        "blocked requests send no events"
    );
}

#[tokio::test]
async fn counting_restarts_after_block_ends() {
    let policy = AnomalyPolicy::new(WINDOW, 2, 3, Duration::from_secs(1)).unwrap();
    let app = TestApp::new(Arc::new(MemoryCounterStore::new()), policy);
    for _ in 0..2 {
        assert_eq!(app.send_as_key("k").await.status(), StatusCode::OK);
    }
    let third = app.send_as_key("k").await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);

    // Blocked requests during the block must not push its end further out.
    for _ in 0..5 {
        let response = app.send_as_key("k").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first_after = app.send_as_key("k").await;
    let alerts_after_one = app.sink.count(EventKind::RateAnomaly);
    let second_after = app.send_as_key("k").await;

    assert_eq!(first_after.status(), StatusCode::OK, "the 1 s block ended");
    assert_eq!(second_after.status(), StatusCode::OK);
    assert_eq!(alerts_after_one, 1, "counting restarted from zero");
    assert_eq!(
        app.sink.count(EventKind::RateAnomaly),
        2,
        "a fresh count alerts again"
    );
    assert_eq!(app.sink.count(EventKind::Blocked), 1);
}

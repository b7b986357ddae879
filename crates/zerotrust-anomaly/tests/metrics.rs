//! Metrics recorded through the `metrics` facade.

mod common;

use std::sync::Arc;

use common::{TestApp, small_policy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use zerotrust_anomaly::MemoryCounterStore;

/// One counter: its name, its labels and its value.
type CounterRow = (String, Vec<(String, String)>, u64);

fn counter(snapshot: &[CounterRow], name: &str, label: (&str, &str)) -> u64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1))
        .map(|(_, _, value)| *value)
        .sum()
}

#[test]
fn layer_records_requests_alerts_blocks_and_rejections() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // The local recorder covers this thread, where the current-thread runtime
    // runs every future.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let app = TestApp::new(Arc::new(MemoryCounterStore::new()), small_policy());
            for _ in 0..7 {
                app.send_as_key("key_metrics").await;
            }
        })
    });

    let snapshot: Vec<CounterRow> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => Some((
                key.key().name().to_owned(),
                key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect(),
                count,
            )),
            _ => None,
        })
        .collect();
    let policy = small_policy();
    let blocked = 7 - policy.block_at() + 1;
    assert_eq!(counter(&snapshot, "zerotrust_anomaly_requests_total", ("kind", "api_key")), policy.block_at());
    assert_eq!(counter(&snapshot, "zerotrust_anomaly_alerts_total", ("kind", "api_key")), 1);
    assert_eq!(counter(&snapshot, "zerotrust_anomaly_blocks_total", ("kind", "api_key")), 1);
    assert_eq!(counter(&snapshot, "zerotrust_anomaly_rejections_total", ("reason", "blocked")), blocked);
}

//! Metrics through the `metrics` crate facade.
//!
//! Nothing is recorded unless the program installs a recorder (for example a
//! Prometheus exporter). Every metric carries a `service` label.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `zerotrust_anomaly_requests_total` | counter | `service`, `kind` (identifier kind) |
//! | `zerotrust_anomaly_alerts_total` | counter | `service`, `kind` |
//! | `zerotrust_anomaly_blocks_total` | counter | `service`, `kind` |
//! | `zerotrust_anomaly_rejections_total` | counter | `service`, `reason` (`blocked`, `store_unavailable`) |
//! | `zerotrust_anomaly_store_errors_total` | counter | `service`, `reason` |
//! | `zerotrust_anomaly_store_latency_seconds` | histogram | `service` |

use std::time::Duration;

use metrics::{SharedString, counter, histogram};

use crate::identifier::IdentifierKind;

/// The label values a layer attaches to every metric.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    service: SharedString,
}

impl Metrics {
    pub(crate) fn new(service: Option<&str>) -> Self {
        Self {
            service: SharedString::from(service.unwrap_or("").to_owned()),
        }
    }

    pub(crate) fn request(&self, kind: IdentifierKind) {
        counter!("zerotrust_anomaly_requests_total", "service" => self.service.clone(), "kind" => kind.as_str())
            .increment(1);
    }

    pub(crate) fn alert(&self, kind: IdentifierKind) {
        counter!("zerotrust_anomaly_alerts_total", "service" => self.service.clone(), "kind" => kind.as_str())
            .increment(1);
    }

    pub(crate) fn block(&self, kind: IdentifierKind) {
        counter!("zerotrust_anomaly_blocks_total", "service" => self.service.clone(), "kind" => kind.as_str())
            .increment(1);
    }

    pub(crate) fn rejection(&self, reason: &'static str) {
        counter!("zerotrust_anomaly_rejections_total", "service" => self.service.clone(), "reason" => reason)
            .increment(1);
    }

    pub(crate) fn store_error(&self, reason: &'static str) {
        counter!("zerotrust_anomaly_store_errors_total", "service" => self.service.clone(), "reason" => reason)
            .increment(1);
    }

    pub(crate) fn store_latency(&self, elapsed: Duration) {
        histogram!("zerotrust_anomaly_store_latency_seconds", "service" => self.service.clone())
            .record(elapsed.as_secs_f64());
    }
}

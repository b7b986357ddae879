//! Security events as OCSF-shaped JSON, one object per line.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use crate::event::{EventKind, SecurityEvent};
use crate::sink::EventSink;

/// The OCSF schema version that [`ocsf_json`] follows.
pub const OCSF_VERSION: &str = "1.3.0";

const AUTHENTICATION_CLASS: u32 = 3002;
const IDENTITY_CATEGORY: u32 = 3;
const DETECTION_FINDING_CLASS: u32 = 2004;
const FINDINGS_CATEGORY: u32 = 2;

/// Converts an event into an object shaped after the OCSF schema 1.3.0.
///
/// - `AUTHENTICATION_DENIED` becomes an Authentication event (`class_uid`
///   3002, category 3) with activity Logon (1) and status Failure (2).
/// - Every other kind becomes a Detection Finding (`class_uid` 2004,
///   category 2) with activity Create (1), whose `finding_info.types` contains
///   the event kind, such as `RATE_ANOMALY`.
///
/// `type_uid` is `class_uid * 100 + activity_id`, and `time` is milliseconds
/// since the Unix epoch, as OCSF defines them. The fields OCSF has no place for
/// (identifier, count, request id) go under `unmapped`.
///
/// NOTE: the objects are shaped after OCSF, not validated against its schema.
pub fn ocsf_json(event: &SecurityEvent) -> Value {
    let time_ms = event
        .time
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let denied = event.status.is_some_and(|status| status >= 400);
    let metadata = json!({
        "version": OCSF_VERSION,
        "product": { "name": "zerotrust", "vendor_name": "zerotrust" },
        "uid": event.request_id,
    });
    let unmapped = json!({
        "kind": event.kind.as_str(),
        "identifier": event.identifier,
        "service": event.service,
        "count": event.count,
        "reason": event.reason,
        "http_status": event.status,
    });

    if event.kind == EventKind::AuthenticationDenied {
        return json!({
            "class_uid": AUTHENTICATION_CLASS,
            "category_uid": IDENTITY_CATEGORY,
            "activity_id": 1,
            "type_uid": AUTHENTICATION_CLASS * 100 + 1,
            "time": time_ms,
            "severity_id": 3,
            "status_id": 2,
            "status_detail": event.reason,
            "message": event.to_string(),
            "metadata": metadata,
            "user": { "uid": event.identifier },
            "service": { "name": event.service },
            "unmapped": unmapped,
        });
    }

    let (severity_id, title) = match event.kind {
        EventKind::Blocked => (4, "caller blocked"),
        EventKind::RateAnomaly => (3, "request rate anomaly"),
        EventKind::AuthorizationDenied => (3, "authorization denied"),
        EventKind::StoreDegraded => (2, "security store degraded"),
        EventKind::TlsReloadFailed => (3, "TLS reload failed"),
        EventKind::CredentialExpiring => (2, "credential near expiry"),
        _ => (1, "security event"),
    };
    json!({
        "class_uid": DETECTION_FINDING_CLASS,
        "category_uid": FINDINGS_CATEGORY,
        "activity_id": 1,
        "type_uid": DETECTION_FINDING_CLASS * 100 + 1,
        "time": time_ms,
        "severity_id": severity_id,
        // action_id and disposition_id: 1 is Allowed; 2 is Denied and Blocked.
        "action_id": if denied { 2 } else { 1 },
        "disposition_id": if denied { 2 } else { 1 },
        "message": event.to_string(),
        "metadata": metadata,
        "finding_info": {
            "uid": finding_uid(event, time_ms),
            "title": title,
            "types": [event.kind.as_str()],
        },
        "unmapped": unmapped,
    })
}

/// Builds a finding id from the kind, identifier and time, so repeated sends of
/// one event carry one id.
fn finding_uid(event: &SecurityEvent, time_ms: u64) -> String {
    format!(
        "{}:{}:{time_ms}",
        event.kind.as_str(),
        event.identifier.as_deref().unwrap_or("-")
    )
}

/// Writes each event as one line of OCSF-shaped JSON (see [`ocsf_json`]) to a
/// writer, such as standard output or a file that a log shipper reads.
///
/// `send` writes under a mutex on the calling thread, so give it a writer that
/// does not block for long. For a network destination use the webhook sink. A failed write
/// is counted in [`write_errors`](Self::write_errors) and never fails the
/// request.
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
    write_errors: AtomicU64,
}

impl<W: Write + Send + 'static> JsonLinesSink<W> {
    /// Creates a sink that writes to `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
            write_errors: AtomicU64::new(0),
        }
    }

    /// Returns how many events could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Returns the writer, for tests that write to a `Vec<u8>`.
    pub fn into_inner(self) -> W {
        self.writer
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<W> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("write_errors", &self.write_errors)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> EventSink for JsonLinesSink<W> {
    fn send(&self, event: SecurityEvent) {
        let mut line = ocsf_json(&event).to_string();
        line.push('\n');

        // A panic while writing leaves at worst a partial line, so a poisoned
        // writer is still usable.
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.flush());
        if let Err(error) = written {
            let failures = self.write_errors.fetch_add(1, Ordering::Relaxed);
            // Log the first failure and then every 1,000th, so a broken writer
            // cannot flood the logs.
            if failures.is_multiple_of(1_000) {
                tracing::error!(target: "zerotrust::security", %error, failures = failures + 1, "writing security event failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(sink: JsonLinesSink<Vec<u8>>) -> Vec<Value> {
        let output = String::from_utf8(sink.into_inner()).unwrap();
        output
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn anomaly_becomes_detection_finding() {
        let sink = JsonLinesSink::new(Vec::new());
        let event = SecurityEvent::new(EventKind::Blocked)
            .identifier("api_key:key_1")
            .service("orders")
            .count(500)
            .reason("block_threshold")
            .status(429);

        sink.send(event);

        let lines = lines(sink);
        assert_eq!(lines.len(), 1);
        let finding = &lines[0];
        assert_eq!(finding["class_uid"], 2004);
        assert_eq!(finding["category_uid"], 2);
        assert_eq!(finding["type_uid"], 200_401);
        assert_eq!(finding["severity_id"], 4);
        assert_eq!(finding["disposition_id"], 2);
        assert_eq!(finding["finding_info"]["types"][0], "BLOCKED");
        assert_eq!(finding["unmapped"]["identifier"], "api_key:key_1");
        assert_eq!(finding["unmapped"]["count"], 500);
        assert_eq!(finding["metadata"]["version"], OCSF_VERSION);
        assert!(
            finding["time"].as_u64().unwrap() > 1_600_000_000_000,
            "milliseconds"
        );
    }

    #[test]
    fn authentication_denial_becomes_authentication_event() {
        let sink = JsonLinesSink::new(Vec::new());
        let event = SecurityEvent::new(EventKind::AuthenticationDenied)
            .identifier("client_address:203.0.113.7")
            .reason("token_expired")
            .status(401)
            .request_id(Some("req-1".into()));

        sink.send(event.clone());
        sink.send(event);

        let lines = lines(sink);
        assert_eq!(lines.len(), 2, "one line per event");
        let authentication = &lines[0];
        assert_eq!(authentication["class_uid"], 3002);
        assert_eq!(authentication["category_uid"], 3);
        assert_eq!(authentication["type_uid"], 300_201);
        assert_eq!(authentication["status_id"], 2);
        assert_eq!(authentication["status_detail"], "token_expired");
        assert_eq!(authentication["metadata"]["uid"], "req-1");
    }

    #[test]
    fn every_event_kind_converts() {
        let kinds = [
            EventKind::AuthenticationDenied,
            EventKind::AuthorizationDenied,
            EventKind::RateAnomaly,
            EventKind::Blocked,
            EventKind::StoreDegraded,
            EventKind::TlsReloadFailed,
            EventKind::CredentialExpiring,
        ];

        for kind in kinds {
            let value = ocsf_json(&SecurityEvent::new(kind));
            assert!(value["class_uid"].is_u64(), "{kind}");
            assert_eq!(value["unmapped"]["kind"], kind.as_str());
        }
    }

    #[derive(Debug)]
    struct BrokenWriter;

    impl Write for BrokenWriter {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_failure_is_counted_not_raised() {
        let sink = JsonLinesSink::new(BrokenWriter);

        for _ in 0..3 {
            sink.send(SecurityEvent::new(EventKind::RateAnomaly));
        }

        assert_eq!(sink.write_errors(), 3);
    }
}

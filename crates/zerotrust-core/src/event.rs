//! Security events for denials and anomalies.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kind of incident a [`SecurityEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A request was refused because its credential was missing or invalid.
    AuthenticationDenied,
    /// An authenticated caller was refused because it may not call this route.
    AuthorizationDenied,
    /// An identifier reached the alert threshold in a window.
    RateAnomaly,
    /// An identifier reached the block threshold and is now blocked.
    Blocked,
    /// A backing store failed and a layer fell back to its failure policy.
    StoreDegraded,
    /// Reloading TLS material failed; the previous configuration stays in use.
    TlsReloadFailed,
    /// A credential was used close to its expiry or revocation deadline.
    CredentialExpiring,
}

impl EventKind {
    /// Returns the stable upper-case name used in logs and SIEM payloads.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::AuthenticationDenied => "AUTHENTICATION_DENIED",
            EventKind::AuthorizationDenied => "AUTHORIZATION_DENIED",
            EventKind::RateAnomaly => "RATE_ANOMALY",
            EventKind::Blocked => "BLOCKED",
            EventKind::StoreDegraded => "STORE_DEGRADED",
            EventKind::TlsReloadFailed => "TLS_RELOAD_FAILED",
            EventKind::CredentialExpiring => "CREDENTIAL_EXPIRING",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One denial or anomaly, as it is sent to the SIEM.
///
/// Events carry identifiers (a SPIFFE ID, an API key id, a token subject, a client
/// address) and never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// What happened.
    pub kind: EventKind,
    /// The caller concerned, if known: `service:gateway`, a key id, an address.
    pub identifier: Option<String>,
    /// The service that observed it.
    pub service: Option<String>,
    /// The request count in the current window, for rate events.
    pub count: Option<u64>,
    /// A stable machine-readable reason, such as `audience_mismatch`.
    pub reason: Option<&'static str>,
    /// The HTTP status the caller received, if the event refused a request.
    pub status: Option<u16>,
    /// The client's `x-request-id`, if it sent a well-formed one.
    pub request_id: Option<String>,
    /// When the event happened.
    pub time: SystemTime,
}

impl SecurityEvent {
    /// Creates an event of `kind` at the current time with no other fields set.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            identifier: None,
            service: None,
            count: None,
            reason: None,
            status: None,
            request_id: None,
            time: SystemTime::now(),
        }
    }

    /// Sets the identifier.
    #[must_use]
    pub fn identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// Sets the observing service.
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Sets the window count.
    #[must_use]
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Sets the machine-readable reason.
    #[must_use]
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the HTTP status returned to the caller.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// Returns the event time as seconds since the Unix epoch.
    pub fn unix_time(&self) -> u64 {
        self.time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

impl fmt::Display for SecurityEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(service) = &self.service {
            write!(f, " service={service}")?;
        }
        if let Some(identifier) = &self.identifier {
            write!(f, " identifier={identifier}")?;
        }
        if let Some(count) = self.count {
            write!(f, " count={count}")?;
        }
        if let Some(reason) = self.reason {
            write!(f, " reason={reason}")?;
        }
        if let Some(status) = self.status {
            write!(f, " status={status}")?;
        }
        if let Some(request_id) = &self.request_id {
            write!(f, " request_id={request_id}")?;
        }
        Ok(())
    }
}

//! The 429 response for blocked identifiers and the 503 response when the
//! counter store fails under [`OnStoreError::FailClosed`](crate::OnStoreError).

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use zerotrust_core::Rejection;

/// The rejection of [`AnomalyService`](crate::AnomalyService): the caller's
/// identifier is blocked.
///
/// The response is 429 with `Retry-After` in whole seconds, rounded up and at
/// least 1 (RFC 9110 section 10.2.3), so a client that honours it does not come
/// back while the block still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRejection {
    /// How long the block still lasts.
    pub retry_after: Duration,
}

impl AnomalyRejection {
    /// Returns the `Retry-After` value in seconds: the time left, rounded up, at
    /// least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        rounded.max(1)
    }
}

impl Rejection for AnomalyRejection {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn problem_type(&self) -> &'static str {
        "urn:zerotrust:problem:blocked"
    }

    fn title(&self) -> &'static str {
        "too many requests"
    }

    fn reason(&self) -> &'static str {
        "identifier_blocked"
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after_secs()));
    }
}

/// The rejection of [`AnomalyService`](crate::AnomalyService) under
/// [`OnStoreError::FailClosed`](crate::OnStoreError::FailClosed): the counter
/// store failed, so the request cannot be counted.
///
/// The response is 503 with `Retry-After` in whole seconds, at least 1: the
/// time until the layer calls the store again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUnavailableRejection {
    /// How long until the layer calls the store again.
    pub retry_after: Duration,
}

impl Rejection for StoreUnavailableRejection {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem_type(&self) -> &'static str {
        "urn:zerotrust:problem:unavailable"
    }

    fn title(&self) -> &'static str {
        "service unavailable"
    }

    fn reason(&self) -> &'static str {
        "counter_store_unavailable"
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        let seconds = AnomalyRejection {
            retry_after: self.retry_after,
        }
        .retry_after_secs();
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_one_second() {
        let cases = [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(1000), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(3600), 3600),
        ];

        for (retry_after, expected) in cases {
            assert_eq!(
                AnomalyRejection { retry_after }.retry_after_secs(),
                expected,
                "{retry_after:?}"
            );
        }
    }
}

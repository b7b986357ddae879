//! Configuration and store errors.

use std::time::Duration;

/// An invalid policy, layer or store setting, reported when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnomalyConfigError {
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The setting, such as `window`.
        field: &'static str,
    },
    /// A duration that stores count in seconds has a fractional part.
    #[error("{field} must be a whole number of seconds, got {value:?}")]
    FractionalSeconds {
        /// The setting, such as `block_for`.
        field: &'static str,
        /// The value that was given.
        value: Duration,
    },
    /// A duration is longer than the supported maximum.
    #[error("{field} must be at most {max:?}, got {value:?}")]
    DurationTooLong {
        /// The setting, such as `window`.
        field: &'static str,
        /// The value that was given.
        value: Duration,
        /// The maximum accepted.
        max: Duration,
    },
    /// The alert threshold is zero.
    #[error("alert_at must be at least 1")]
    ZeroAlertThreshold,
    /// The alert threshold is above the block threshold, so alerts would never fire.
    #[error("alert_at ({alert_at}) must not exceed block_at ({block_at})")]
    AlertAboveBlock {
        /// The alert threshold that was given.
        alert_at: u64,
        /// The block threshold that was given.
        block_at: u64,
    },
    /// The block threshold is larger than the counters can represent exactly.
    #[error("block_at ({block_at}) must be at most {max}")]
    ThresholdTooLarge {
        /// The block threshold that was given.
        block_at: u64,
        /// The maximum accepted.
        max: u64,
    },
    /// A count setting that must be positive is zero.
    #[error("{field} must be at least 1")]
    ZeroCount {
        /// The setting, such as `max_identifiers`.
        field: &'static str,
    },
    /// A network prefix length is longer than its address family allows.
    #[error("prefix length {prefix_len} is invalid: the maximum is {max}")]
    InvalidPrefixLength {
        /// The prefix length that was given.
        prefix_len: u8,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// A trusted-proxy network is not in CIDR notation.
    #[error(
        "invalid network {value:?}: expected an address or address/prefix_len, such as 10.0.0.0/8"
    )]
    InvalidNetwork {
        /// The value that was given.
        value: String,
    },
    /// A Redis key prefix would put a hash tag or control characters into key names.
    #[error(
        "invalid redis key prefix {prefix:?}: use at most 64 visible ASCII characters \
         without '{{' or '}}'"
    )]
    InvalidKeyPrefix {
        /// The prefix that was given.
        prefix: String,
    },
}

/// A failed [`CounterStore::hit`](crate::CounterStore::hit).
///
/// The layer never turns one into a 500 or 429: it follows its
/// [`OnStoreError`](crate::OnStoreError) policy and reports a `STORE_DEGRADED`
/// event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not reply within the layer's timeout.
    #[error("counter store timed out after {0:?}")]
    Timeout(Duration),
    /// The memory store already tracks its maximum number of identifiers, so a
    /// new identifier is not counted.
    #[error(
        "counter store is full: it tracks {max_identifiers} identifiers and none has \
         expired; raise max_identifiers or use the Redis store"
    )]
    CapacityExceeded {
        /// The configured maximum.
        max_identifiers: usize,
    },
    /// The store's backend, such as Redis, returned an error.
    #[error("counter store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend returned a reply the store cannot parse.
    #[error("unexpected reply from counter store: {0}")]
    UnexpectedReply(String),
    /// Connecting to the backend failed.
    #[error("connecting to the counter store failed: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store failed moments ago, so the layer did not call it; it tries
    /// again after `retry_in`.
    #[error("counter store failed recently and is not called for another {retry_in:?}")]
    Unavailable {
        /// The time until the layer calls the store again.
        retry_in: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_variant_formats() {
        let config_errors = [
            AnomalyConfigError::ZeroDuration { field: "window" },
            AnomalyConfigError::FractionalSeconds {
                field: "block_for",
                value: Duration::from_millis(1500),
            },
            AnomalyConfigError::DurationTooLong {
                field: "window",
                value: Duration::from_secs(10),
                max: Duration::from_secs(5),
            },
            AnomalyConfigError::ZeroAlertThreshold,
            AnomalyConfigError::AlertAboveBlock {
                alert_at: 5,
                block_at: 3,
            },
            AnomalyConfigError::ThresholdTooLarge {
                block_at: u64::MAX,
                max: 1,
            },
            AnomalyConfigError::ZeroCount {
                field: "max_identifiers",
            },
            AnomalyConfigError::InvalidKeyPrefix {
                prefix: "{bad}".into(),
            },
            AnomalyConfigError::InvalidPrefixLength {
                prefix_len: 33,
                max: 32,
            },
            AnomalyConfigError::InvalidNetwork {
                value: "10.0.0/8".into(),
            },
        ];
        for error in &config_errors {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert_eq!(message, message.trim());
        }
        assert_eq!(
            config_errors[4].to_string(),
            "alert_at (5) must not exceed block_at (3)"
        );
        assert!(config_errors[7].to_string().contains("without '{' or '}'"));

        let store_errors = [
            StoreError::Timeout(Duration::from_millis(250)),
            StoreError::CapacityExceeded {
                max_identifiers: 10,
            },
            StoreError::Backend("connection reset".into()),
            StoreError::UnexpectedReply("nil".into()),
            StoreError::Connect("refused".into()),
            StoreError::Unavailable {
                retry_in: Duration::from_millis(400),
            },
        ];
        for error in &store_errors {
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            store_errors[0].to_string(),
            "counter store timed out after 250ms"
        );
        assert!(store_errors[2].to_string().ends_with("connection reset"));
    }
}

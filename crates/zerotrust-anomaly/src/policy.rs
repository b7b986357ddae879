//! Window, thresholds and block length for one kind of identifier.

use std::time::Duration;

use crate::error::AnomalyConfigError;

/// The maximum window or block length: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The maximum block threshold: 2^53, the largest integer that the
/// double-precision numbers of Redis Lua scripts hold exactly.
pub const MAX_THRESHOLD: u64 = 1 << 53;

/// When an identifier raises an alert and when it is blocked.
///
/// Requests are counted in fixed windows of `window` aligned to the Unix epoch.
/// The request whose count reaches `alert_at` in a window raises one alert. The
/// request whose count reaches `block_at` starts a block of `block_for` and is
/// itself rejected. Durations are whole seconds, because the Redis store sets
/// expiry in seconds.
///
/// ```
/// use std::time::Duration;
/// use zerotrust_anomaly::AnomalyPolicy;
///
/// let policy = AnomalyPolicy::new(Duration::from_secs(60), 50, 200, Duration::from_secs(900))?;
/// assert_eq!(policy.block_at(), 200);
/// assert!(AnomalyPolicy::new(Duration::from_secs(60), 300, 200, Duration::from_secs(900)).is_err());
/// # Ok::<(), zerotrust_anomaly::AnomalyConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnomalyPolicy {
    window: Duration,
    alert_at: u64,
    block_at: u64,
    block_for: Duration,
    window_mode: WindowMode,
}

/// How requests are counted over time.
///
/// With fixed windows a caller can send up to `alert_at - 1` requests at the
/// end of one window and as many again at the start of the next without an
/// alert: twice the threshold within a few seconds. The sliding mode closes
/// that gap by weighting the previous window's count by the part of it still
/// inside a window-long span ending now:
///
/// ```text
/// count = previous × (1 − elapsed / window) + current
/// ```
///
/// For example, with a 300-second window, 90 requests in the previous window
/// and 30 so far, 60 seconds into the current one, the count is
/// 90 × 0.8 + 30 = 102, so a threshold of 100 has been crossed where fixed
/// windows would count 30. This two-window estimate assumes the previous
/// window's requests were spread evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WindowMode {
    /// Count each window from zero. This is the default: one counter per
    /// identifier, and the exact "request 100 alerts" semantics.
    #[default]
    Fixed,
    /// Estimate a sliding window from the previous and the current window. In
    /// this mode an alert is sent at most once per window, on the first request
    /// whose estimated count reaches `alert_at`.
    Sliding,
}

impl AnomalyPolicy {
    /// Creates a policy after checking it.
    ///
    /// # Errors
    ///
    /// Returns an [`AnomalyConfigError`] if `window` or `block_for` is zero, not a
    /// whole number of seconds or longer than [`MAX_DURATION`], if `alert_at` is
    /// zero or above `block_at`, or if `block_at` exceeds [`MAX_THRESHOLD`].
    pub fn new(
        window: Duration,
        alert_at: u64,
        block_at: u64,
        block_for: Duration,
    ) -> Result<Self, AnomalyConfigError> {
        check_duration("window", window)?;
        check_duration("block_for", block_for)?;
        if alert_at == 0 {
            return Err(AnomalyConfigError::ZeroAlertThreshold);
        }
        if alert_at > block_at {
            return Err(AnomalyConfigError::AlertAboveBlock { alert_at, block_at });
        }
        if block_at > MAX_THRESHOLD {
            return Err(AnomalyConfigError::ThresholdTooLarge {
                block_at,
                max: MAX_THRESHOLD,
            });
        }

        Ok(Self {
            window,
            alert_at,
            block_at,
            block_for,
            window_mode: WindowMode::Fixed,
        })
    }

    /// Returns the default for service principals: 5-minute windows, an alert at 10,000
    /// requests, a 1-hour block at 50,000.
    ///
    /// Services such as a gateway carry many customers' traffic, so one noisy
    /// customer must not get the whole gateway blocked downstream.
    pub const fn service_default() -> Self {
        Self {
            window: Duration::from_secs(300),
            alert_at: 10_000,
            block_at: 50_000,
            block_for: Duration::from_secs(3600),
            window_mode: WindowMode::Fixed,
        }
    }

    /// Returns the default for authentication failures per client address:
    /// 5-minute windows, an alert at 20 responses with status 401, a 15-minute
    /// block at 50.
    ///
    /// These are starting points, not measured values: a client that retries a
    /// wrong credential a few times stays well below them, and guessing
    /// credentials at more than one attempt every six seconds is blocked.
    pub const fn authentication_failure_default() -> Self {
        Self {
            window: Duration::from_secs(300),
            alert_at: 20,
            block_at: 50,
            block_for: Duration::from_secs(900),
            window_mode: WindowMode::Fixed,
        }
    }

    /// Returns the length of a counting window.
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Returns the count in a window at which one alert is raised.
    pub const fn alert_at(&self) -> u64 {
        self.alert_at
    }

    /// Returns the count in a window at which the identifier is blocked.
    pub const fn block_at(&self) -> u64 {
        self.block_at
    }

    /// Returns how long a block lasts.
    pub const fn block_for(&self) -> Duration {
        self.block_for
    }

    /// Returns how requests are counted over time.
    pub const fn window_mode(&self) -> WindowMode {
        self.window_mode
    }

    /// Returns this policy with another window mode. By default
    /// [`WindowMode::Fixed`].
    #[must_use]
    pub const fn with_window_mode(mut self, mode: WindowMode) -> Self {
        self.window_mode = mode;
        self
    }
}

impl Default for AnomalyPolicy {
    /// 5-minute windows, an alert at 100 requests, a 1-hour block at 500.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            alert_at: 100,
            block_at: 500,
            block_for: Duration::from_secs(3600),
            window_mode: WindowMode::Fixed,
        }
    }
}

fn check_duration(field: &'static str, value: Duration) -> Result<(), AnomalyConfigError> {
    if value.is_zero() {
        return Err(AnomalyConfigError::ZeroDuration { field });
    }
    if value.subsec_nanos() != 0 {
        return Err(AnomalyConfigError::FractionalSeconds { field, value });
    }
    if value > MAX_DURATION {
        return Err(AnomalyConfigError::DurationTooLong {
            field,
            value,
            max: MAX_DURATION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn defaults_match_documented_values() {
        let policy = AnomalyPolicy::default();
        let service = AnomalyPolicy::service_default();

        assert_eq!(policy.window(), Duration::from_secs(300));
        assert_eq!(policy.alert_at(), 100);
        assert_eq!(policy.block_at(), 500);
        assert_eq!(policy.block_for(), Duration::from_secs(3600));
        assert_eq!(service.alert_at(), 10_000);
        assert_eq!(service.block_at(), 50_000);
        assert!(AnomalyPolicy::new(policy.window(), 100, 500, policy.block_for()).is_ok());
        assert!(AnomalyPolicy::new(service.window(), 10_000, 50_000, service.block_for()).is_ok());
    }

    #[test]
    fn new_accepts_equal_thresholds() {
        let policy = AnomalyPolicy::new(MINUTE, 5, 5, MINUTE).unwrap();

        assert_eq!(policy.alert_at(), 5);
        assert_eq!(policy.block_at(), 5);
    }

    #[test]
    fn new_rejects_invalid_values() {
        let cases = [
            (
                AnomalyPolicy::new(Duration::ZERO, 1, 2, MINUTE),
                AnomalyConfigError::ZeroDuration { field: "window" },
            ),
            (
                AnomalyPolicy::new(MINUTE, 1, 2, Duration::ZERO),
                AnomalyConfigError::ZeroDuration { field: "block_for" },
            ),
            (
                AnomalyPolicy::new(Duration::from_millis(1500), 1, 2, MINUTE),
                AnomalyConfigError::FractionalSeconds {
                    field: "window",
                    value: Duration::from_millis(1500),
                },
            ),
            (
                AnomalyPolicy::new(MINUTE, 1, 2, Duration::from_millis(10)),
                AnomalyConfigError::FractionalSeconds {
                    field: "block_for",
                    value: Duration::from_millis(10),
                },
            ),
            (
                AnomalyPolicy::new(MAX_DURATION + Duration::from_secs(1), 1, 2, MINUTE),
                AnomalyConfigError::DurationTooLong {
                    field: "window",
                    value: MAX_DURATION + Duration::from_secs(1),
                    max: MAX_DURATION,
                },
            ),
            (
                AnomalyPolicy::new(MINUTE, 0, 2, MINUTE),
                AnomalyConfigError::ZeroAlertThreshold,
            ),
            (
                AnomalyPolicy::new(MINUTE, 3, 2, MINUTE),
                AnomalyConfigError::AlertAboveBlock {
                    alert_at: 3,
                    block_at: 2,
                },
            ),
            (
                AnomalyPolicy::new(MINUTE, 1, MAX_THRESHOLD + 1, MINUTE),
                AnomalyConfigError::ThresholdTooLarge {
                    block_at: MAX_THRESHOLD + 1,
                    max: MAX_THRESHOLD,
                },
            ),
        ];

        for (result, expected) in cases {
            assert_eq!(result, Err(expected));
        }
    }
}

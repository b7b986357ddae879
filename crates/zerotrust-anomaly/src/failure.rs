//! What the layer does when the counter store fails, and whether it enforces.

/// What the layer does with a request while the counter store fails or times
/// out.
///
/// Either way the layer never answers 500 or 429 because of the store, and it
/// sends a `STORE_DEGRADED` event at most once per degraded-event interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Count in a local in-memory fallback store until the store answers again,
    /// so a caller can still be alerted on and blocked, per replica. This is
    /// the default, because a store outage should not take the service down.
    #[default]
    FailOpen,
    /// Reject the request with 503 and a problem+json body, so nothing goes
    /// through uncounted.
    FailClosed,
}

/// Whether the layer rejects the requests that its thresholds would block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Enforcement {
    /// Reject blocked callers with 429, and with 503 on store errors under
    /// [`OnStoreError::FailClosed`]. This is the default.
    #[default]
    Enforce,
    /// Count, alert and send `BLOCKED` events as in `Enforce`, but let every
    /// request through, so thresholds can be tried on live traffic first. Each
    /// request that would have been rejected is logged at DEBUG on the
    /// `zerotrust::anomaly` target.
    Shadow,
}

/// Whether allowed responses carry the IETF `RateLimit-Policy` and `RateLimit`
/// headers (draft-ietf-httpapi-ratelimit-headers).
///
/// The quota is the block threshold per window. `r` is how many requests are
/// left before a block, and `t` the seconds until the window ends by this
/// replica's clock. With the Redis store the window follows the Redis server's
/// clock, so `t` may be off by the skew between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// Send no rate-limit headers. This is the default, because the headers
    /// tell a caller exactly how much headroom it has.
    #[default]
    Omit,
    /// Send both headers on responses to counted requests.
    Send,
}

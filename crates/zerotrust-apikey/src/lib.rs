//! API keys for axum: issued with a checksum, stored as SHA-256 digests,
//! checked on every request.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use zerotrust_apikey::{ApiKeyLayer, KeyManager, MemoryKeyStore, NewKey};
//! use zerotrust_core::{Principal, RequireScopeLayer, Scopes};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryKeyStore::new());
//! let manager = KeyManager::new(store.clone());
//! let created = manager
//!     .create(NewKey::new("acme").scopes(Scopes::parse("orders:read")))
//!     .await?;
//!
//! let app = Router::new()
//!     .route(
//!         "/orders",
//!         get(|principal: Principal| async move { format!("orders of {:?}", principal.owner()) })
//!             .layer(RequireScopeLayer::new("orders:read")),
//!     )
//!     .layer(ApiKeyLayer::builder(store).service_name("orders").build()?);
//!
//! let request = Request::get("/orders")
//!     .header("x-api-key", created.secret.expose())
//!     .body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! Rules:
//!
//! 1. The key is read from `X-API-Key: <key>` or `Authorization: Bearer <key>`.
//!    The scheme is matched case-insensitively and the key exactly. The query
//!    string is read only from the parameter that
//!    [`allow_query_parameter`](ApiKeyLayerBuilder::allow_query_parameter)
//!    names. A credential header longer than 256 bytes, a bearer token followed
//!    by whitespace, and a value that is not visible ASCII are rejected as
//!    malformed before any parsing.
//! 2. A request without a key gets 401 with a bare `WWW-Authenticate: Bearer`
//!    challenge (RFC 6750 section 3.1).
//! 3. A repeated header, or both headers with different values, gets 400 with
//!    `Bearer error="invalid_request"`. Both headers with the same key count as
//!    one credential.
//! 4. A malformed key (wrong prefix, length, alphabet or checksum) is rejected
//!    without a store lookup. A well-formed key is looked up by its SHA-256
//!    digest. Malformed, unknown, expired and revoked keys all get the same
//!    401 `Bearer error="invalid_token"` problem body, so a client cannot tell
//!    which check failed. The exact reason is in the [`ApiKeyRejection`] in the
//!    response extensions, in a `debug!` log line, and in the
//!    `AUTHENTICATION_DENIED` security event.
//! 5. When the store fails or does not respond within the lookup timeout (2
//!    seconds by default), the request gets 503 and a `STORE_DEGRADED` event:
//!    the layer fails closed and never responds with 500.
//! 6. An accepted request gets a [`Principal`](zerotrust_core::Principal) of
//!    kind `ApiKey` with the key's public id, owner and scopes, and the key's
//!    details (no digest) as `Extension<`[`KeySummary`]`>` for handlers. Scope
//!    checks belong to [`RequireScopeLayer`](zerotrust_core::RequireScopeLayer)
//!    on the routes, and other rules to
//!    [`RequirePrincipalLayer`](zerotrust_core::RequirePrincipalLayer).
//! 7. Keys never appear in logs, `Debug` output, events or response bodies:
//!    logs and events name a key by its public id (`key_…`), and only after a
//!    store record was found.
//! 8. A key that ends within 14 days (set by
//!    [`sunset_warning`](ApiKeyLayerBuilder::sunset_warning)), by expiry or by
//!    a rotation deadline, gets a `Sunset` header (RFC 8594) on its responses
//!    and an `info!` log line once per key per hour.
//! 9. The time of each key's last use is written to the store in one batch per
//!    minute (set by
//!    [`last_used_interval`](ApiKeyLayerBuilder::last_used_interval)), in the
//!    background, so a slow store never delays a request.
//!
//! # Stores and caching
//!
//! [`MemoryKeyStore`] keeps records in the process. With the `postgres`
//! feature, `PostgresKeyStore` keeps them durably in PostgreSQL 14 or newer,
//! and with the `redis` feature, `RedisKeyStore` keeps them in Redis. The
//! `cli` feature builds the `zerotrust-keys` admin tool on both, and
//! [`admin_router`] serves the same operations over HTTP to callers with an
//! admin scope.
//!
//! Wrap any store in a [`CachedKeyStore`] and give the same `Arc` to the
//! [`KeyManager`] and the layer. Found keys and unknown digests are then
//! served from memory for 10 seconds each by default. A revocation takes
//! effect at once in the process that made it. Other processes drop the
//! record when the store's notification arrives (PostgreSQL `LISTEN/NOTIFY`,
//! Redis pub/sub), and at the latest when the positive TTL ends if
//! notifications are lost. Expiry and rotation deadlines are checked against
//! the clock on every request, cached or not.//!
//! Keys look like `mk_` + 43 base62 characters of secret (about 256 bits) + 6
//! base62 characters of CRC-32, 52 characters in all. See [`KeyFormat`].
//!
//! # Deployment caveats
//!
//! - Without a [`CachedKeyStore`], every request costs one store lookup, and a
//!   remote store's latency is added to each request, bounded by the lookup
//!   timeout. With it, a revoked key can still be accepted by another process
//!   for up to the positive TTL when notifications are lost.
//! - [`MemoryKeyStore`] is per process, so with several replicas use a shared
//!   store. Redis keeps keys only as long as its persistence settings allow:
//!   the PostgreSQL store is the durable one.
//! - Behind a proxy, make sure the proxy neither logs nor forwards the
//!   `X-API-Key` header to other upstreams.
//! - A route behind both this layer and a JWT layer cannot take a JWT in
//!   `Authorization` and an API key in `X-API-Key` at once: differing values in
//!   the two headers are rejected as ambiguous.
//!
//! # Known limitations
//!
//! - Use of a key near its end is logged, not sent as a security event, until
//!   `zerotrust-core` has an event kind for it.
//! - `last_used_at` lags real use by up to one flush interval, and a batch that
//!   fails or times out is dropped.
//! - The stores connect without TLS, because this crate enables no sqlx or
//!   fred TLS feature. Reach remote databases over a private network, or pass
//!   your own pool or client built with TLS.
//! - The plaintext key in the request's header map is owned by `http` and is not
//!   zeroized. The layer's own copy is zeroized as soon as the digest is taken.
//! - A failed lookup is not rate-limited here. Put an anomaly layer keyed by
//!   client address in front to slow down key guessing.
//! - Security events are sent for every denial, so a sink that forwards them
//!   over the network must batch or rate-limit them itself.

mod admin;
mod cache;
mod codec;
mod digest;
mod extract;
mod key;
mod layer;
mod manager;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod random;
mod record;
#[cfg(feature = "redis")]
mod redis;
mod rejection;
mod service;
mod store;
mod summary;
mod throttle;
mod usage;

pub use admin::admin_router;
pub use cache::{
    CacheConfig, CachedKeyStore, DEFAULT_MAX_ENTRIES, DEFAULT_NEGATIVE_TTL, DEFAULT_POSITIVE_TTL,
};
pub use digest::KeyDigest;
pub use key::{
    ApiKeySecret, CHECKSUM_LEN, DEFAULT_PREFIX, KeyFormat, KeyFormatError, KeyParseError,
    MAX_PREFIX_LEN, SECRET_LEN,
};
pub use layer::{
    ApiKeyConfigError, ApiKeyLayer, ApiKeyLayerBuilder, DEFAULT_LAST_USED_INTERVAL,
    DEFAULT_LOOKUP_TIMEOUT, DEFAULT_SUNSET_WARNING,
};
pub use manager::{
    ApiKeyError, CreatedKey, DEFAULT_KEY_LIFETIME, DEFAULT_ROTATION_GRACE, KeyManager,
    MAX_KEY_LIFETIME, MAX_OWNER_LEN, MAX_ROTATION_GRACE, NewKey,
};
pub use memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_ACQUIRE_TIMEOUT, MIGRATIONS_TABLE, NOTIFY_CHANNEL, PostgresKeyStore};
pub use record::{KEY_ID_PREFIX, KeyRecord, KeyStatus};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_REDIS_COMMAND_TIMEOUT, DEFAULT_REDIS_KEY_PREFIX, RedisKeyStore};
pub use rejection::ApiKeyRejection;
pub use service::{ApiKeyFuture, ApiKeyService};
pub use store::{BoxError, Invalidation, KeyStore, StoreError, StoreFuture};
pub use summary::{KeySummary, format_rfc3339};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zerotrust_core::Rejection;

    use super::*;

    #[test]
    fn every_error_variant_formats_without_secrets() {
        let key = KeyFormat::default().generate().unwrap();
        let secret_part = &key.expose()[3..];
        let random_error = getrandom::Error::UNSUPPORTED;

        let messages = [
            KeyFormatError::InvalidPrefixLength {
                prefix: String::new(),
                len: 0,
            }
            .to_string(),
            KeyFormatError::InvalidPrefixCharacter {
                prefix: "Mk_".into(),
                character: 'M',
            }
            .to_string(),
            KeyFormatError::PrefixWithoutUnderscore {
                prefix: "mk".into(),
            }
            .to_string(),
            KeyParseError::WrongPrefix {
                expected: "mk_".into(),
            }
            .to_string(),
            KeyParseError::WrongLength {
                expected: 52,
                actual: 51,
            }
            .to_string(),
            KeyParseError::InvalidCharacter { position: 7 }.to_string(),
            KeyParseError::ChecksumMismatch.to_string(),
            StoreError::AlreadyExists { id: "key_a".into() }.to_string(),
            StoreError::NotFound { id: "key_a".into() }.to_string(),
            StoreError::Unavailable {
                store: "postgres",
                source: "connection refused".into(),
            }
            .to_string(),
            StoreError::TimedOut {
                store: "redis",
                after: Duration::from_millis(250),
            }
            .to_string(),
            StoreError::InvalidRecord {
                store: "postgres",
                id: "key_a".into(),
                detail: "scopes column is not text".into(),
            }
            .to_string(),
            ApiKeyError::InvalidOwner {
                owner: String::new(),
                reason: "it is empty",
            }
            .to_string(),
            ApiKeyError::InvalidLifetime {
                requested: Duration::ZERO,
                max: MAX_KEY_LIFETIME,
            }
            .to_string(),
            ApiKeyError::InvalidGracePeriod {
                requested: Duration::from_secs(1),
                max: MAX_ROTATION_GRACE,
            }
            .to_string(),
            ApiKeyError::TimeOverflow.to_string(),
            ApiKeyError::NotFound { id: "key_a".into() }.to_string(),
            ApiKeyError::NotActive { id: "key_a".into() }.to_string(),
            ApiKeyError::Random(random_error).to_string(),
            ApiKeyError::Store(StoreError::NotFound { id: "key_a".into() }).to_string(),
            ApiKeyConfigError::InvalidServiceName {
                name: String::new(),
            }
            .to_string(),
            ApiKeyConfigError::ZeroLookupTimeout.to_string(),
            ApiKeyConfigError::InvalidQueryParameter {
                name: String::new(),
            }
            .to_string(),
            format!("{key:?}"),
            format!("{:?}", key.digest()),
        ];

        for message in &messages {
            assert!(!message.is_empty());
            assert!(!message.contains(secret_part), "secret in {message:?}");
        }
    }

    #[test]
    fn every_rejection_has_distinct_reason() {
        let rejections = [
            ApiKeyRejection::Missing,
            ApiKeyRejection::Ambiguous,
            ApiKeyRejection::Malformed,
            ApiKeyRejection::Unknown,
            ApiKeyRejection::Expired,
            ApiKeyRejection::Revoked,
            ApiKeyRejection::StoreUnavailable,
        ];

        let mut reasons: Vec<&str> = rejections.iter().map(|r| r.reason()).collect();
        for rejection in &rejections {
            assert_eq!(rejection.to_string(), rejection.reason());
            assert!(!rejection.title().is_empty());
            assert!(
                rejection
                    .problem_type()
                    .starts_with("urn:zerotrust:problem:")
            );
        }
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), rejections.len());
    }
}

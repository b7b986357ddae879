//! A bounded cache of verified tokens, keyed by the token's SHA-256 digest.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::claims::{TimeClaims, VerifiedClaims};
use crate::keys::VerificationKey;

/// The number of verified tokens kept unless a capacity is set.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// A token that passed every check, as cached.
#[derive(Debug)]
pub(crate) struct CachedToken {
    pub(crate) claims: VerifiedClaims,
    pub(crate) times: TimeClaims,
    pub(crate) kid: String,
    /// The key that verified it. A hit counts only while the key set still maps
    /// `kid` to this same key, so a removed or replaced key forces a full check.
    pub(crate) key: Arc<VerificationKey>,
    /// How long the entry may live: until `exp`, as seen at insertion.
    pub(crate) time_to_live: Duration,
}

/// Verified tokens by SHA-256 digest. The cache keys are digests, so they are not
/// usable credentials.
pub(crate) struct TokenCache {
    entries: Cache<[u8; 32], Arc<CachedToken>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

struct UntilTokenExpiry;

impl Expiry<[u8; 32], Arc<CachedToken>> for UntilTokenExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Arc<CachedToken>, _created_at: Instant) -> Option<Duration> {
        Some(value.time_to_live)
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTokenExpiry)
                .build(),
        }
    }

    pub(crate) fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Arc<CachedToken>> {
        self.entries.get(digest)
    }

    pub(crate) fn insert(&self, digest: [u8; 32], token: CachedToken) {
        self.entries.insert(digest, Arc::new(token));
    }

    pub(crate) fn remove(&self, digest: &[u8; 32]) {
        self.entries.invalidate(digest);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

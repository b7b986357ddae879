//! A local cache of blocked identifiers, so that a blocked caller costs no
//! store round trip until its block ends.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::identifier::Identifier;

/// The default maximum of identifiers in the blocked cache.
pub const DEFAULT_BLOCKED_CACHE_CAPACITY: usize = 10_000;

/// Identifiers known to be blocked, with the instant their block ends.
///
/// A block lifted early in the store (an operator deleting the key) still
/// holds on this replica until the cached end. When full, expired entries are
/// dropped first; if none has expired, the new block is not cached, and that
/// caller costs a store call per request as it would without the cache.
#[derive(Debug)]
pub(crate) struct BlockedCache {
    entries: Mutex<HashMap<Identifier, Instant>>,
    capacity: usize,
}

impl BlockedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Returns how long `identifier` stays blocked, if the cache knows it is.
    pub(crate) fn remaining(&self, identifier: &Identifier) -> Option<Duration> {
        if self.capacity == 0 {
            return None;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        let until = *entries.get(identifier)?;
        if until > now {
            Some(until - now)
        } else {
            entries.remove(identifier);
            None
        }
    }

    /// Records that `identifier` is blocked for `retry_after` from now.
    pub(crate) fn insert(&self, identifier: &Identifier, retry_after: Duration) {
        if self.capacity == 0 || retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(identifier) {
            entries.retain(|_, until| *until > now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(identifier.clone(), now + retry_after);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Identifier, Instant>> {
        // Each update is a single map operation, so a poisoned map is consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::IdentifierKind;

    fn key(value: &str) -> Identifier {
        Identifier::new(IdentifierKind::ApiKey, value)
    }

    #[test]
    fn entry_expires_with_its_block() {
        let cache = BlockedCache::new(10);
        cache.insert(&key("a"), Duration::from_millis(30));

        assert!(cache.remaining(&key("a")).is_some());
        assert!(cache.remaining(&key("b")).is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.remaining(&key("a")).is_none());
        assert_eq!(cache.len(), 0, "expired entry removed on lookup");
    }

    #[test]
    fn full_cache_keeps_existing_blocks() {
        let cache = BlockedCache::new(2);
        cache.insert(&key("a"), Duration::from_secs(60));
        cache.insert(&key("b"), Duration::from_secs(60));

        cache.insert(&key("c"), Duration::from_secs(60));

        assert_eq!(cache.len(), 2);
        assert!(cache.remaining(&key("a")).is_some());
        assert!(cache.remaining(&key("c")).is_none());
    }

    #[test]
    fn full_cache_drops_expired_entries_first() {
        let cache = BlockedCache::new(1);
        cache.insert(&key("a"), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));

        cache.insert(&key("b"), Duration::from_secs(60));

        assert!(cache.remaining(&key("b")).is_some());
    }

    #[test]
    fn zero_capacity_disables_cache() {
        let cache = BlockedCache::new(0);
        cache.insert(&key("a"), Duration::from_secs(60));

        assert!(cache.remaining(&key("a")).is_none());
    }
}

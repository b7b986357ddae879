//! A bounded cache of digest lookups in front of another key store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use crate::digest::KeyDigest;
use crate::record::KeyRecord;
use crate::store::{Invalidation, KeyStore, StoreError, StoreFuture};

/// How long a found record is served from the cache by default: 10 seconds.
///
/// This is the longest a revocation made by another process can go unnoticed
/// when the store's notifications are lost.
pub const DEFAULT_POSITIVE_TTL: Duration = Duration::from_secs(10);

/// How long a digest with no record is remembered by default: 10 seconds.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// The default maximum number of entries in each of the two caches.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Sizes and lifetimes of the caches of a [`CachedKeyStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CacheConfig {
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            positive_ttl: DEFAULT_POSITIVE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CacheConfig {
    /// Sets how long a found record is served without asking the store. By
    /// default it is [`DEFAULT_POSITIVE_TTL`]. Zero turns the positive cache off.
    pub fn positive_ttl(mut self, ttl: Duration) -> Self {
        self.positive_ttl = ttl;
        self
    }

    /// Sets how long a digest without a record is remembered, so that lookups
    /// of it skip the store. By default it is [`DEFAULT_NEGATIVE_TTL`]. Zero turns the negative cache
    /// off.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Sets the maximum number of entries in each cache. By default it is
    /// [`DEFAULT_MAX_ENTRIES`]. The least useful entries are evicted first.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }
}

/// A [`KeyStore`] that caches `find_by_digest` results of another store.
///
/// Found records are cached for the positive TTL and unknown digests for the
/// negative TTL, in two caches of bounded size, so repeated keys and repeated
/// junk keys reach the backing store once per TTL. Store errors are never
/// cached. The layer checks expiry and scheduled revocation times against the
/// clock on every request, so a cached record is rejected from its expiry or
/// rotation deadline on, to the microsecond.
///
/// A revocation or deletion through this store drops the cached record before
/// the call returns. Changes made by other processes arrive through the
/// backing store's [`subscribe_invalidations`](KeyStore::subscribe_invalidations)
/// (PostgreSQL `NOTIFY`, Redis pub/sub), usually within milliseconds. If a
/// notification is lost, the positive TTL bounds how long a revoked key is
/// still accepted.
///
/// Share one `Arc<CachedKeyStore>` between the [`KeyManager`](crate::KeyManager)
/// and the [`ApiKeyLayer`](crate::ApiKeyLayer) of a process, so that its own
/// revocations take effect at once.
#[derive(Debug)]
pub struct CachedKeyStore {
    inner: Arc<dyn KeyStore>,
    caches: Caches,
    _listener: Option<AbortOnDrop>,
}

#[derive(Debug, Clone)]
struct Caches {
    positive: Cache<KeyDigest, KeyRecord>,
    negative: Cache<KeyDigest, ()>,
    /// Counts invalidations, so that a lookup that raced with one does not put
    /// a stale record back.
    generation: Arc<AtomicU64>,
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl CachedKeyStore {
    /// Caches lookups of `inner` with the sizes and TTLs of `config`.
    ///
    /// When `inner` publishes invalidations, a task on the current Tokio
    /// runtime applies them. Outside a runtime no task is started and only the
    /// TTLs bound staleness.
    pub fn new(inner: Arc<dyn KeyStore>, config: CacheConfig) -> Self {
        let caches = Caches {
            positive: build_cache(config.positive_ttl, config.max_entries),
            negative: build_cache(config.negative_ttl, config.max_entries),
            generation: Arc::new(AtomicU64::new(0)),
        };

        let listener = match (
            inner.subscribe_invalidations(),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(receiver), Ok(runtime)) => Some(AbortOnDrop(
                runtime.spawn(apply_invalidations(receiver, caches.clone())),
            )),
            (Some(_), Err(_)) => {
                tracing::warn!(
                    target: "zerotrust::apikey",
                    "key cache built outside a Tokio runtime; revocations by other processes wait for the cache TTL"
                );
                None
            }
            (None, _) => None,
        };

        Self {
            inner,
            caches,
            _listener: listener,
        }
    }

    /// Returns the backing store.
    pub fn inner(&self) -> &Arc<dyn KeyStore> {
        &self.inner
    }

    /// Drops the cached lookup of `digest`.
    pub fn invalidate(&self, digest: &KeyDigest) {
        self.caches.invalidate(digest);
    }

    /// Drops every cached lookup.
    pub fn invalidate_all(&self) {
        self.caches.invalidate_all();
    }

    async fn find_by_digest_inner(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        if let Some(record) = self.caches.positive.get(digest) {
            return Ok(Some(record));
        }
        if self.caches.negative.contains_key(digest) {
            return Ok(None);
        }

        let generation = self.caches.generation.load(Ordering::Acquire);
        let found = self.inner.find_by_digest(digest).await?;
        // An invalidation that arrived during the lookup may concern this
        // record, so the result is returned but not cached.
        if self.caches.generation.load(Ordering::Acquire) == generation {
            match &found {
                Some(record) => self.caches.positive.insert(*digest, record.clone()),
                None => self.caches.negative.insert(*digest, ()),
            }
        }
        Ok(found)
    }

    async fn insert_inner(&self, record: KeyRecord) -> Result<(), StoreError> {
        let digest = record.digest;
        let result = self.inner.insert(record).await;
        self.caches.invalidate(&digest);
        result
    }

    /// Runs a change and drops the changed record from the cache. A failed
    /// change may still have been applied, so a failure drops everything.
    async fn change(&self, change: StoreFuture<'_, KeyRecord>) -> Result<KeyRecord, StoreError> {
        match change.await {
            Ok(record) => {
                self.caches.invalidate(&record.digest);
                Ok(record)
            }
            Err(error) => {
                if !matches!(error, StoreError::NotFound { .. }) {
                    self.caches.invalidate_all();
                }
                Err(error)
            }
        }
    }
}

impl Caches {
    fn invalidate(&self, digest: &KeyDigest) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.positive.invalidate(digest);
        self.negative.invalidate(digest);
    }

    fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }
}

fn build_cache<V: Clone + Send + Sync + 'static>(
    ttl: Duration,
    max_entries: u64,
) -> Cache<KeyDigest, V> {
    let max_entries = if ttl.is_zero() { 0 } else { max_entries };
    Cache::builder()
        .max_capacity(max_entries)
        .time_to_live(ttl.max(Duration::from_millis(1)))
        .build()
}

/// Applies invalidations until the store is dropped or the channel closes.
async fn apply_invalidations(mut receiver: broadcast::Receiver<Invalidation>, caches: Caches) {
    loop {
        match receiver.recv().await {
            Ok(Invalidation::Key(digest)) => caches.invalidate(&digest),
            Ok(Invalidation::All) => caches.invalidate_all(),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    target: "zerotrust::apikey",
                    missed,
                    "key cache fell behind on invalidations; dropping every cached record"
                );
                caches.invalidate_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl KeyStore for CachedKeyStore {
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.insert_inner(record))
    }

    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(self.find_by_digest_inner(digest))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        self.inner.get(id)
    }

    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        self.inner.list_by_owner(owner)
    }

    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        Box::pin(self.change(self.inner.revoke(id, at)))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord> {
        Box::pin(self.change(self.inner.delete(id)))
    }

    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        self.inner.record_last_used(uses)
    }

    fn subscribe_invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.inner.subscribe_invalidations()
    }
}

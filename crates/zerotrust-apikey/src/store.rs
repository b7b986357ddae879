//! The storage interface for key records.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use crate::digest::KeyDigest;
use crate::record::KeyRecord;

/// The future a [`KeyStore`] method returns.
///
/// Boxed so that the trait stays dyn-compatible: layers hold `Arc<dyn KeyStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A boxed error from a store's backend, such as a database driver error.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Storage for key records.
///
/// Implementations store records by id and by digest, and never see a key's
/// plaintext. Every method may fail with a [`StoreError`]. The verification
/// layer responds with 503 on any failure rather than guess.
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    /// Adds a new record.
    ///
    /// Fails with [`StoreError::AlreadyExists`] if a record with the same id or
    /// digest is already stored, and never overwrites one.
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()>;

    /// Finds the record whose digest equals `digest`.
    ///
    /// This is the lookup on every authenticated request, so stores index it.
    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>>;

    /// Returns the record with the public id `id`.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;

    /// Returns every record of `owner`, revoked and expired ones included,
    /// oldest first.
    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>>;

    /// Revokes the key `id` from `at` on and returns the updated record.
    ///
    /// If the key already has an earlier revocation time, that time is kept, so
    /// a revocation can be brought forward but never postponed. Fails with
    /// [`StoreError::NotFound`] for an unknown id.
    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord>;

    /// Deletes the record `id` and returns it.
    ///
    /// Deleting forgets the key: an audit trail that needs old keys should
    /// revoke them instead. Fails with [`StoreError::NotFound`] for an unknown id.
    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord>;

    /// Records when keys were last used, as a batch of `(id, time)` pairs.
    ///
    /// A stored time is only moved forward, and unknown ids are skipped, so a
    /// batch that arrives late or after a delete does no harm.
    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()>;

    /// Subscribes to the revocations and deletions that this store makes
    /// visible, including those made by other processes where the backend can
    /// publish them (PostgreSQL `NOTIFY`, Redis pub/sub).
    ///
    /// Caches use this to drop records early. Returns `None` if the store
    /// publishes nothing, and then a cache relies on its TTL alone.
    fn subscribe_invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        None
    }
}

/// A change that makes cached copies of key records stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// The record with this digest was revoked or deleted.
    Key(KeyDigest),
    /// Notifications may have been lost, for example while a listener
    /// reconnected, so every cached record is suspect.
    All,
}

/// A [`KeyStore`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this id or digest is already stored.
    #[error("key record {id:?} was not stored: a record with the same id or digest already exists")]
    AlreadyExists {
        /// Id of the record that was not stored.
        id: String,
    },
    /// No record has this id.
    #[error("key record {id:?} not found")]
    NotFound {
        /// The id that was looked up.
        id: String,
    },
    /// The backend failed or could not be reached.
    #[error("{store} key store unavailable: {source}")]
    Unavailable {
        /// Name of the store, such as `postgres`.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The backend did not respond in time.
    #[error("{store} key store timed out after {after:?}")]
    TimedOut {
        /// Name of the store.
        store: &'static str,
        /// How long the caller waited.
        after: Duration,
    },
    /// A stored record could not be decoded.
    #[error("key record {id:?} in the {store} store is invalid: {detail}")]
    InvalidRecord {
        /// Name of the store.
        store: &'static str,
        /// Id of the record, if it could be read.
        id: String,
        /// A description of the problem.
        detail: String,
    },
}

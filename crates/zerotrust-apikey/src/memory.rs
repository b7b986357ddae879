//! An in-process key store for demos and tests.

use std::collections::HashMap;
use std::future::ready;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::digest::KeyDigest;
use crate::record::KeyRecord;
use crate::store::{Invalidation, KeyStore, StoreError, StoreFuture};

/// How many invalidations a slow subscriber may fall behind before it is told
/// to drop everything ([`Invalidation::All`] is what a lagging cache assumes).
const INVALIDATION_CAPACITY: usize = 256;

/// Keeps key records in memory, indexed by id and by digest.
///
/// Records are lost when the process exits and are not shared between
/// processes, so this store suits demos, tests and single-process tools. Every
/// operation finishes without awaiting, and no lock is held across an `.await`.
///
/// NOTE: the store is unbounded. Only key creation adds records, so its size
/// follows the number of keys an operator issues, not request traffic.
#[derive(Debug)]
pub struct MemoryKeyStore {
    state: RwLock<State>,
    invalidations: broadcast::Sender<Invalidation>,
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            invalidations: broadcast::channel(INVALIDATION_CAPACITY).0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    by_id: HashMap<String, KeyRecord>,
    id_by_digest: HashMap<KeyDigest, String>,
}

impl MemoryKeyStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of stored records, revoked and expired ones included.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Returns `true` if no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // Writers update both maps before releasing the lock, so a poisoned lock
    // still guards consistent maps and is safe to use.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert_now(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut state = self.write();
        if state.by_id.contains_key(&record.id) || state.id_by_digest.contains_key(&record.digest) {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        state.id_by_digest.insert(record.digest, record.id.clone());
        state.by_id.insert(record.id.clone(), record);
        Ok(())
    }

    fn find_by_digest_now(&self, digest: &KeyDigest) -> Option<KeyRecord> {
        let state = self.read();
        let id = state.id_by_digest.get(digest)?;
        state.by_id.get(id).cloned()
    }

    fn list_by_owner_now(&self, owner: &str) -> Vec<KeyRecord> {
        let mut records: Vec<KeyRecord> = self
            .read()
            .by_id
            .values()
            .filter(|record| record.owner == owner)
            .cloned()
            .collect();
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        records
    }

    fn revoke_now(&self, id: &str, at: SystemTime) -> Result<KeyRecord, StoreError> {
        let mut state = self.write();
        let Some(record) = state.by_id.get_mut(id) else {
            return Err(StoreError::NotFound { id: id.to_owned() });
        };
        let revoked_at = match record.revoked_at {
            Some(earlier) if earlier <= at => earlier,
            _ => at,
        };
        record.revoked_at = Some(revoked_at);
        let record = record.clone();
        drop(state);

        // Sending fails only when nobody subscribed, which is fine.
        let _ = self.invalidations.send(Invalidation::Key(record.digest));
        Ok(record)
    }

    fn delete_now(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let mut state = self.write();
        let Some(record) = state.by_id.remove(id) else {
            return Err(StoreError::NotFound { id: id.to_owned() });
        };
        state.id_by_digest.remove(&record.digest);
        drop(state);

        let _ = self.invalidations.send(Invalidation::Key(record.digest));
        Ok(record)
    }

    fn record_last_used_now(&self, uses: &[(String, SystemTime)]) {
        let mut state = self.write();
        for (id, at) in uses {
            if let Some(record) = state.by_id.get_mut(id) {
                record.last_used_at = record.last_used_at.max(Some(*at));
            }
        }
    }
}

impl KeyStore for MemoryKeyStore {
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()> {
        Box::pin(ready(self.insert_now(record)))
    }

    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(ready(Ok(self.find_by_digest_now(digest))))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(ready(Ok(self.read().by_id.get(id).cloned())))
    }

    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(ready(Ok(self.list_by_owner_now(owner))))
    }

    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        Box::pin(ready(self.revoke_now(id, at)))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord> {
        Box::pin(ready(self.delete_now(id)))
    }

    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        self.record_last_used_now(uses);
        Box::pin(ready(Ok(())))
    }

    fn subscribe_invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        Some(self.invalidations.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use zerotrust_core::Scopes;

    fn record(id: &str, owner: &str, digest_byte: u8, created_secs: u64) -> KeyRecord {
        let created_at = SystemTime::UNIX_EPOCH + Duration::from_secs(created_secs);
        KeyRecord {
            id: id.into(),
            owner: owner.into(),
            scopes: Scopes::default(),
            created_at,
            expires_at: created_at + Duration::from_secs(3_600),
            revoked_at: None,
            last_used_at: None,
            digest: KeyDigest::from_bytes([digest_byte; 32]),
        }
    }

    #[tokio::test]
    async fn memory_store_finds_by_digest_and_id() {
        let store = MemoryKeyStore::new();
        store.insert(record("key_a", "acme", 1, 10)).await.unwrap();

        let by_digest = store
            .find_by_digest(&KeyDigest::from_bytes([1; 32]))
            .await
            .unwrap();
        let by_id = store.get("key_a").await.unwrap();
        let missing = store
            .find_by_digest(&KeyDigest::from_bytes([2; 32]))
            .await
            .unwrap();

        assert_eq!(by_digest.unwrap().id, "key_a");
        assert_eq!(by_id.unwrap().owner, "acme");
        assert!(missing.is_none());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn memory_store_rejects_duplicate_id_and_digest() {
        let store = MemoryKeyStore::new();
        store.insert(record("key_a", "acme", 1, 10)).await.unwrap();

        let same_id = store
            .insert(record("key_a", "acme", 2, 10))
            .await
            .unwrap_err();
        let same_digest = store
            .insert(record("key_b", "acme", 1, 10))
            .await
            .unwrap_err();

        assert!(matches!(same_id, StoreError::AlreadyExists { id } if id == "key_a"));
        assert!(matches!(same_digest, StoreError::AlreadyExists { id } if id == "key_b"));
        assert_eq!(store.len(), 1);
        assert!(store.get("key_b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn memory_store_lists_owner_oldest_first() {
        let store = MemoryKeyStore::new();
        store
            .insert(record("key_new", "acme", 1, 20))
            .await
            .unwrap();
        store
            .insert(record("key_old", "acme", 2, 10))
            .await
            .unwrap();
        store
            .insert(record("key_other", "globex", 3, 5))
            .await
            .unwrap();

        let listed = store.list_by_owner("acme").await.unwrap();

        let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["key_old", "key_new"]);
    }

    #[tokio::test]
    async fn memory_store_revoke_keeps_earlier_time() {
        let store = MemoryKeyStore::new();
        store.insert(record("key_a", "acme", 1, 10)).await.unwrap();
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(200);

        let first = store.revoke("key_a", late).await.unwrap();
        let brought_forward = store.revoke("key_a", early).await.unwrap();
        let postponed = store.revoke("key_a", late).await.unwrap();

        assert_eq!(first.revoked_at, Some(late));
        assert_eq!(brought_forward.revoked_at, Some(early));
        assert_eq!(postponed.revoked_at, Some(early));
        let stored = store
            .find_by_digest(&KeyDigest::from_bytes([1; 32]))
            .await
            .unwrap();
        assert_eq!(stored.unwrap().revoked_at, Some(early));
    }

    #[tokio::test]
    async fn memory_store_revoke_unknown_is_not_found() {
        let store = MemoryKeyStore::new();

        let error = store
            .revoke("key_missing", SystemTime::now())
            .await
            .unwrap_err();

        assert!(matches!(error, StoreError::NotFound { id } if id == "key_missing"));
    }
}

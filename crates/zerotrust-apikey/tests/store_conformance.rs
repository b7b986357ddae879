//! One behavioural suite, run against every key store.

mod support;

use std::time::Duration;

use tokio::sync::broadcast;
use zerotrust_apikey::{Invalidation, KeyDigest, KeyStore, StoreError};
use zerotrust_core::Scopes;

use support::{StoreFixture, record, start};

/// How long a published invalidation may take to arrive in these tests.
const INVALIDATION_WAIT: Duration = Duration::from_secs(5);

/// Runs every check of the [`KeyStore`] contract against `fixture`.
async fn check_store_contract(fixture: StoreFixture) {
    let store = fixture.store.clone();

    check_round_trip(&*store).await;
    check_duplicates_rejected(&*store).await;
    check_missing_lookups(&*store).await;
    check_owner_listing(&*store).await;
    check_revoke(&*store).await;
    check_delete(&*store).await;
    check_last_used(&*store).await;
    check_invalidations(&fixture).await;
}

async fn check_round_trip(store: &dyn KeyStore) {
    let mut stored = record("key_roundtrip", "Ünïcode {owner}", 1, 0);
    stored.scopes = Scopes::from_iter(["orders:read", "a scope with spaces"]);
    stored.revoked_at = Some(start() + Duration::new(10, 1_000));
    stored.last_used_at = Some(start() + Duration::new(5, 999_000));

    store.insert(stored.clone()).await.unwrap();

    let by_digest = store.find_by_digest(&stored.digest).await.unwrap();
    let by_id = store.get(&stored.id).await.unwrap();
    assert_eq!(by_digest.as_ref(), Some(&stored), "round trip by digest");
    assert_eq!(by_id.as_ref(), Some(&stored), "round trip by id");
}

async fn check_duplicates_rejected(store: &dyn KeyStore) {
    store.insert(record("key_dup", "acme", 2, 0)).await.unwrap();

    let same_id = store.insert(record("key_dup", "acme", 3, 0)).await;
    let same_digest = store.insert(record("key_dup_other", "acme", 2, 0)).await;

    assert!(
        matches!(same_id, Err(StoreError::AlreadyExists { ref id }) if id == "key_dup"),
        "duplicate id: {same_id:?}"
    );
    assert!(
        matches!(same_digest, Err(StoreError::AlreadyExists { ref id }) if id == "key_dup_other"),
        "duplicate digest: {same_digest:?}"
    );
    assert!(store.get("key_dup_other").await.unwrap().is_none());
    let unchanged = store
        .find_by_digest(&KeyDigest::from_bytes([3; 32]))
        .await
        .unwrap();
    assert!(unchanged.is_none(), "rejected insert left a digest entry");
}

async fn check_missing_lookups(store: &dyn KeyStore) {
    let by_digest = store
        .find_by_digest(&KeyDigest::from_bytes([0xee; 32]))
        .await
        .unwrap();
    let by_id = store.get("key_missing").await.unwrap();
    let listed = store.list_by_owner("nobody").await.unwrap();

    assert!(by_digest.is_none());
    assert!(by_id.is_none());
    assert!(listed.is_empty());
}

async fn check_owner_listing(store: &dyn KeyStore) {
    store
        .insert(record("key_list_b", "lister", 10, 20))
        .await
        .unwrap();
    store
        .insert(record("key_list_a", "lister", 11, 10))
        .await
        .unwrap();
    store
        .insert(record("key_list_c", "lister", 12, 20))
        .await
        .unwrap();
    store
        .insert(record("key_list_x", "other", 13, 5))
        .await
        .unwrap();
    store.revoke("key_list_c", start()).await.unwrap();

    let listed = store.list_by_owner("lister").await.unwrap();

    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["key_list_a", "key_list_b", "key_list_c"],
        "oldest first, ties by id"
    );
    assert_eq!(
        listed[2].revoked_at,
        Some(start()),
        "revoked keys are listed"
    );
}

async fn check_revoke(store: &dyn KeyStore) {
    store
        .insert(record("key_revoke", "acme", 20, 0))
        .await
        .unwrap();
    let early = start() + Duration::from_secs(100);
    let late = start() + Duration::from_secs(200);

    let first = store.revoke("key_revoke", late).await.unwrap();
    let brought_forward = store.revoke("key_revoke", early).await.unwrap();
    let postponed = store.revoke("key_revoke", late).await.unwrap();
    let unknown = store.revoke("key_missing", early).await;

    assert_eq!(first.revoked_at, Some(late));
    assert_eq!(brought_forward.revoked_at, Some(early));
    assert_eq!(
        postponed.revoked_at,
        Some(early),
        "a revocation is never postponed"
    );
    let stored = store
        .find_by_digest(&KeyDigest::from_bytes([20; 32]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_at, Some(early));
    assert!(matches!(unknown, Err(StoreError::NotFound { ref id }) if id == "key_missing"));
}

async fn check_delete(store: &dyn KeyStore) {
    let original = record("key_delete", "deleter", 30, 0);
    store.insert(original.clone()).await.unwrap();

    let deleted = store.delete("key_delete").await.unwrap();
    let again = store.delete("key_delete").await;

    assert_eq!(deleted, original);
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert!(store.get("key_delete").await.unwrap().is_none());
    assert!(
        store
            .find_by_digest(&original.digest)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_by_owner("deleter").await.unwrap().is_empty());
    // Every index entry is gone, so the id and digest can be used again.
    store.insert(original.clone()).await.unwrap();
    store.delete("key_delete").await.unwrap();
}

async fn check_last_used(store: &dyn KeyStore) {
    store
        .insert(record("key_used", "acme", 40, 0))
        .await
        .unwrap();
    let first = start() + Duration::new(50, 7_000);
    let later = start() + Duration::from_secs(60);

    store
        .record_last_used(&[("key_used".into(), first), ("key_missing".into(), later)])
        .await
        .unwrap();
    let after_first = store.get("key_used").await.unwrap().unwrap();
    store
        .record_last_used(&[("key_used".into(), later), ("key_used".into(), first)])
        .await
        .unwrap();
    let after_later = store.get("key_used").await.unwrap().unwrap();
    store
        .record_last_used(&[("key_used".into(), first)])
        .await
        .unwrap();
    let after_older = store.get("key_used").await.unwrap().unwrap();
    store.record_last_used(&[]).await.unwrap();

    assert_eq!(after_first.last_used_at, Some(first));
    assert_eq!(after_later.last_used_at, Some(later));
    assert_eq!(
        after_older.last_used_at,
        Some(later),
        "last use never moves back"
    );
    assert!(store.get("key_missing").await.unwrap().is_none());
}

async fn check_invalidations(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    let other = (fixture.reconnect)().await;
    let mut local = store.subscribe_invalidations().expect("store publishes");
    let mut remote = other.subscribe_invalidations().expect("store publishes");
    let revoked = record("key_published", "acme", 50, 0);
    let deleted = record("key_published_2", "acme", 51, 0);
    store.insert(revoked.clone()).await.unwrap();
    store.insert(deleted.clone()).await.unwrap();

    store.revoke(&revoked.id, start()).await.unwrap();
    other.delete(&deleted.id).await.unwrap();

    for receiver in [&mut local, &mut remote] {
        let first = next_key_invalidation(receiver).await;
        let second = next_key_invalidation(receiver).await;
        assert_eq!(first, revoked.digest, "revocation announced");
        assert_eq!(second, deleted.digest, "deletion announced");
    }
}

/// Waits for the next per-key invalidation, skipping `All`, which a listener
/// may send when it (re)connects.
async fn next_key_invalidation(receiver: &mut broadcast::Receiver<Invalidation>) -> KeyDigest {
    let deadline = tokio::time::Instant::now() + INVALIDATION_WAIT;
    loop {
        let received = tokio::time::timeout_at(deadline, receiver.recv())
            .await
            .expect("invalidation within the wait")
            .expect("channel open");
        if let Invalidation::Key(digest) = received {
            return digest;
        }
    }
}

#[tokio::test]
async fn memory_store_meets_contract() {
    check_store_contract(support::memory()).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_meets_contract() {
    check_store_contract(support::redis().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_meets_contract() {
    check_store_contract(support::postgres().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_migrations_run_twice() {
    let fixture = support::postgres().await;
    let second = (fixture.reconnect)().await;

    second
        .insert(record("key_after_migrate", "acme", 60, 0))
        .await
        .unwrap();

    let found = fixture.store.get("key_after_migrate").await.unwrap();
    assert!(found.is_some());
}

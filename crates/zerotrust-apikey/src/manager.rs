//! Issuing, rotating and revoking keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zerotrust_core::{Clock, Scopes, SystemClock};

use crate::codec::truncate_to_micros;
use crate::key::{ApiKeySecret, KeyFormat};
use crate::record::{KeyRecord, KeyStatus, generate_key_id};
use crate::store::{KeyStore, StoreError};
use crate::summary::KeySummary;

/// The lifetime of a key when [`NewKey::expires_in`] is not called: 90 days.
pub const DEFAULT_KEY_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// The maximum lifetime of a key: 365 days.
///
/// A leaked key stays useful until it expires, so keys that must live longer
/// are rotated instead.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The time an old key stays valid after a rotation when the caller does not
/// choose one: 24 hours. [`KeyManager::rotate`] takes the grace period as an
/// argument, and the admin CLI uses this value for it by default.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The maximum time an old key stays valid after [`KeyManager::rotate`]: 30 days.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The maximum length of an owner name, in bytes.
pub const MAX_OWNER_LEN: usize = 256;

/// Issues, rotates and revokes keys in a [`KeyStore`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), zerotrust_apikey::ApiKeyError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use zerotrust_apikey::{KeyManager, MemoryKeyStore, NewKey};
/// use zerotrust_core::Scopes;
///
/// let manager = KeyManager::new(Arc::new(MemoryKeyStore::new()));
/// let created = manager
///     .create(
///         NewKey::new("acme")
///             .scopes(Scopes::parse("orders:read"))
///             .expires_in(Duration::from_secs(30 * 24 * 60 * 60)),
///     )
///     .await?;
///
/// // Show `created.secret.expose()` to the owner once. Only its digest is stored.
/// assert!(created.secret.expose().starts_with("mk_"));
/// assert!(created.record.id.starts_with("key_"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyManager {
    store: Arc<dyn KeyStore>,
    format: KeyFormat,
    clock: Arc<dyn Clock>,
}

impl KeyManager {
    /// Creates a manager over `store` with the default `mk_` format and the
    /// system clock.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            format: KeyFormat::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Issues keys in `format`. It must match the format the layer accepts.
    #[must_use]
    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// Reads creation, expiry and revocation times from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// Generates a key, stores its record and returns both.
    ///
    /// The plaintext in [`CreatedKey::secret`] is not kept anywhere: it can be
    /// shown once and never recovered.
    pub async fn create(&self, new_key: NewKey) -> Result<CreatedKey, ApiKeyError> {
        validate_owner(&new_key.owner)?;
        validate_scopes(&new_key.scopes)?;
        if new_key.expires_in.is_zero() || new_key.expires_in > MAX_KEY_LIFETIME {
            return Err(ApiKeyError::InvalidLifetime {
                requested: new_key.expires_in,
                max: MAX_KEY_LIFETIME,
            });
        }
        let created_at = self.now();
        let expires_at = add_time(created_at, new_key.expires_in)?;

        let secret = self.format.generate()?;
        let record = KeyRecord {
            id: generate_key_id()?,
            owner: new_key.owner,
            scopes: new_key.scopes,
            created_at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            digest: secret.digest(),
        };
        self.store.insert(record.clone()).await?;

        tracing::debug!(
            target: "zerotrust::apikey",
            key_id = %record.id,
            owner = %record.owner,
            "API key created"
        );
        Ok(CreatedKey { secret, record })
    }

    /// Returns the clock's time, rounded down to the microsecond so that every
    /// store keeps it exactly.
    fn now(&self) -> SystemTime {
        truncate_to_micros(self.clock.now())
    }

    /// Revokes the key `id` at once and returns its updated record.
    ///
    /// A layer that reads the store directly rejects the key from its next
    /// lookup on. A layer behind a [`CachedKeyStore`](crate::CachedKeyStore)
    /// rejects it at once if this manager uses the same cached store, and
    /// otherwise when the store's invalidation arrives or the cache TTL ends,
    /// whichever comes first.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, ApiKeyError> {
        let record = self
            .store
            .revoke(id, self.now())
            .await
            .map_err(not_found_to_api)?;

        tracing::debug!(target: "zerotrust::apikey", key_id = %record.id, "API key revoked");
        Ok(record)
    }

    /// Issues a replacement for the key `id` with the same owner and scopes, and
    /// keeps the old key valid for `grace`.
    ///
    /// The new key gets the old key's original lifetime. The new record is
    /// stored before the old one is scheduled for revocation, so a failure in
    /// between leaves both keys valid rather than neither. Rotating a key that is
    /// already expired or revoked fails with [`ApiKeyError::NotActive`].
    pub async fn rotate(&self, id: &str, grace: Duration) -> Result<CreatedKey, ApiKeyError> {
        if grace > MAX_ROTATION_GRACE {
            return Err(ApiKeyError::InvalidGracePeriod {
                requested: grace,
                max: MAX_ROTATION_GRACE,
            });
        }
        let Some(old) = self.store.get(id).await? else {
            return Err(ApiKeyError::NotFound { id: id.to_owned() });
        };
        let now = self.now();
        if old.status_at(now) != KeyStatus::Active {
            return Err(ApiKeyError::NotActive { id: old.id });
        }
        // A key already scheduled for revocation was rotated before; rotating
        // it again would leave several live successors.
        if old.revoked_at.is_some() {
            return Err(ApiKeyError::AlreadyRotated { id: old.id });
        }

        let lifetime = old
            .expires_at
            .duration_since(old.created_at)
            .unwrap_or(DEFAULT_KEY_LIFETIME)
            .clamp(Duration::from_secs(1), MAX_KEY_LIFETIME);
        let created = self
            .create(
                NewKey::new(old.owner.clone())
                    .scopes(old.scopes.clone())
                    .expires_in(lifetime),
            )
            .await?;
        let old = self
            .store
            .revoke(&old.id, add_time(now, grace)?)
            .await
            .map_err(not_found_to_api)?;

        tracing::debug!(
            target: "zerotrust::apikey",
            old_key_id = %old.id,
            new_key_id = %created.record.id,
            grace_secs = grace.as_secs(),
            "API key rotated"
        );
        Ok(created)
    }

    /// Returns every key of `owner`, revoked and expired ones included, oldest
    /// first, without digests.
    pub async fn list(&self, owner: &str) -> Result<Vec<KeySummary>, ApiKeyError> {
        let records = self.store.list_by_owner(owner).await?;
        Ok(records.into_iter().map(KeySummary::from).collect())
    }

    /// Returns the key `id`, without its digest.
    pub async fn get(&self, id: &str) -> Result<KeySummary, ApiKeyError> {
        match self.store.get(id).await? {
            Some(record) => Ok(record.into()),
            None => Err(ApiKeyError::NotFound { id: id.to_owned() }),
        }
    }

    /// Deletes the key `id` and returns its last state.
    ///
    /// The key stops working like a revoked one, and its record is gone:
    /// prefer [`revoke`](Self::revoke) where old keys must stay auditable.
    pub async fn delete(&self, id: &str) -> Result<KeySummary, ApiKeyError> {
        let record = self.store.delete(id).await.map_err(not_found_to_api)?;

        tracing::debug!(target: "zerotrust::apikey", key_id = %record.id, "API key deleted");
        Ok(record.into())
    }
}

/// Checks each scope against the RFC 6749 section 3.3 grammar: printable ASCII
/// without space, `"` or `\`.
fn validate_scopes(scopes: &Scopes) -> Result<(), ApiKeyError> {
    for scope in scopes.iter() {
        let valid = scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(ApiKeyError::InvalidScope {
                scope: scope.chars().take(64).collect(),
            });
        }
    }
    Ok(())
}

fn validate_owner(owner: &str) -> Result<(), ApiKeyError> {
    let reason = if owner.trim().is_empty() {
        "it is empty"
    } else if owner.len() > MAX_OWNER_LEN {
        "it is longer than 256 bytes"
    } else if owner.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(ApiKeyError::InvalidOwner {
        owner: owner.chars().take(64).collect(),
        reason,
    })
}

fn add_time(start: SystemTime, duration: Duration) -> Result<SystemTime, ApiKeyError> {
    start.checked_add(duration).ok_or(ApiKeyError::TimeOverflow)
}

fn not_found_to_api(error: StoreError) -> ApiKeyError {
    match error {
        StoreError::NotFound { id } => ApiKeyError::NotFound { id },
        other => ApiKeyError::Store(other),
    }
}

/// The request for a new key: owner, scopes and lifetime.
#[derive(Debug, Clone)]
#[must_use]
pub struct NewKey {
    owner: String,
    scopes: Scopes,
    expires_in: Duration,
}

impl NewKey {
    /// Requests a key for `owner` with no scopes and a 90-day lifetime.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            scopes: Scopes::default(),
            expires_in: DEFAULT_KEY_LIFETIME,
        }
    }

    /// Sets the scopes the key grants. By default it grants none.
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the lifetime. It must be positive and at most [`MAX_KEY_LIFETIME`];
    /// [`KeyManager::create`] rejects anything else.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = lifetime;
        self
    }
}

/// A newly issued key: its plaintext, which is returned only this once, and its
/// stored record.
#[derive(Debug)]
pub struct CreatedKey {
    /// The plaintext key to hand to the owner.
    pub secret: ApiKeySecret,
    /// The record as stored.
    pub record: KeyRecord,
}

/// A [`KeyManager`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The owner name is empty, too long or contains control characters.
    #[error("invalid key owner {owner:?}: {reason}")]
    InvalidOwner {
        /// The rejected owner, cut to 64 characters.
        owner: String,
        /// The reason for the rejection.
        reason: &'static str,
    },
    /// A scope contains a character outside the RFC 6749 scope grammar
    /// (printable ASCII without space, `"` or `\`).
    #[error("invalid scope {scope:?}: use printable ASCII without spaces, quotes or backslashes")]
    InvalidScope {
        /// The rejected scope, cut to 64 characters.
        scope: String,
    },
    /// The requested lifetime is zero or longer than the maximum.
    #[error("invalid key lifetime {requested:?}: expected more than zero and at most {max:?}")]
    InvalidLifetime {
        /// The requested lifetime.
        requested: Duration,
        /// The maximum lifetime.
        max: Duration,
    },
    /// The requested rotation grace period is longer than the maximum.
    #[error("invalid rotation grace period {requested:?}: expected at most {max:?}")]
    InvalidGracePeriod {
        /// The requested grace period.
        requested: Duration,
        /// The maximum grace period.
        max: Duration,
    },
    /// The clock's time plus the lifetime cannot be represented.
    #[error("the key's expiry time overflows the system time range; check the clock")]
    TimeOverflow,
    /// No key has this id.
    #[error("API key {id:?} not found")]
    NotFound {
        /// The id that was looked up.
        id: String,
    },
    /// The key is expired or revoked, so it cannot be rotated.
    #[error("API key {id:?} is expired or revoked; create a new key instead of rotating it")]
    NotActive {
        /// The key's id.
        id: String,
    },
    /// The key was rotated already and is waiting for its deadline.
    #[error("API key {id:?} was already rotated; rotate its successor instead")]
    AlreadyRotated {
        /// The key's id.
        id: String,
    },
    /// The operating system's random number generator failed.
    #[error("failed to generate an API key: the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKeyStore;
    use std::sync::Mutex;

    /// A clock that tests move by hand.
    #[derive(Debug)]
    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn manager() -> (KeyManager, Arc<MemoryKeyStore>, Arc<ManualClock>) {
        let store = Arc::new(MemoryKeyStore::new());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Arc::new(ManualClock(Mutex::new(start)));
        let manager = KeyManager::new(store.clone()).with_clock(clock.clone());
        (manager, store, clock)
    }

    #[tokio::test]
    async fn create_stores_digest_and_default_expiry() {
        let (manager, store, clock) = manager();

        let created = manager
            .create(NewKey::new("acme").scopes(Scopes::parse("orders:read")))
            .await
            .unwrap();

        let stored = store
            .find_by_digest(&created.secret.digest())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, created.record);
        assert_eq!(stored.created_at, clock.now());
        assert_eq!(stored.expires_at, clock.now() + DEFAULT_KEY_LIFETIME);
        assert!(stored.scopes.contains("orders:read"));
        assert!(KeyFormat::default().parse(created.secret.expose()).is_ok());
        assert!(!format!("{stored:?}").contains(created.secret.expose()));
    }

    #[tokio::test]
    async fn create_rejects_zero_and_too_long_lifetimes() {
        let (manager, store, _) = manager();

        let zero = manager
            .create(NewKey::new("acme").expires_in(Duration::ZERO))
            .await;
        let long = manager
            .create(NewKey::new("acme").expires_in(MAX_KEY_LIFETIME + Duration::from_secs(1)))
            .await;
        let max = manager
            .create(NewKey::new("acme").expires_in(MAX_KEY_LIFETIME))
            .await;

        assert!(matches!(zero, Err(ApiKeyError::InvalidLifetime { .. })));
        assert!(matches!(long, Err(ApiKeyError::InvalidLifetime { .. })));
        assert!(max.is_ok());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn create_rejects_bad_owners() {
        let (manager, store, _) = manager();

        for owner in ["", "   ", "a\nb", &"x".repeat(MAX_OWNER_LEN + 1)] {
            let result = manager.create(NewKey::new(owner)).await;

            assert!(
                matches!(result, Err(ApiKeyError::InvalidOwner { .. })),
                "owner {owner:?}"
            );
        }
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn created_key_expires_after_lifetime() {
        let (manager, _, clock) = manager();
        let created = manager
            .create(NewKey::new("acme").expires_in(Duration::from_secs(60)))
            .await
            .unwrap();

        clock.advance(Duration::from_secs(59));
        assert!(created.record.is_active_at(clock.now()));

        clock.advance(Duration::from_secs(1));
        assert!(!created.record.is_active_at(clock.now()));
    }

    #[tokio::test]
    async fn revoke_takes_effect_at_once() {
        let (manager, store, clock) = manager();
        let created = manager.create(NewKey::new("acme")).await.unwrap();

        let revoked = manager.revoke(&created.record.id).await.unwrap();

        assert_eq!(revoked.revoked_at, Some(clock.now()));
        let stored = store.get(&created.record.id).await.unwrap().unwrap();
        assert!(!stored.is_active_at(clock.now()));
    }

    #[tokio::test]
    async fn revoke_unknown_id_is_not_found() {
        let (manager, _, _) = manager();

        let error = manager.revoke("key_missing").await.unwrap_err();

        assert!(matches!(error, ApiKeyError::NotFound { id } if id == "key_missing"));
    }

    #[tokio::test]
    async fn rotate_keeps_old_key_for_grace_period() {
        let (manager, store, clock) = manager();
        let old = manager
            .create(NewKey::new("acme").scopes(Scopes::parse("orders:read")))
            .await
            .unwrap();

        let new = manager
            .rotate(&old.record.id, Duration::from_secs(300))
            .await
            .unwrap();

        let old_record = store.get(&old.record.id).await.unwrap().unwrap();
        assert_ne!(new.record.id, old.record.id);
        assert_eq!(new.record.owner, "acme");
        assert_eq!(new.record.scopes, old.record.scopes);
        assert!(old_record.is_active_at(clock.now() + Duration::from_secs(299)));
        assert!(!old_record.is_active_at(clock.now() + Duration::from_secs(300)));
        assert!(
            new.record
                .is_active_at(clock.now() + Duration::from_secs(300))
        );
    }

    #[tokio::test]
    async fn rotate_twice_is_rejected() {
        let (manager, _, _) = manager();
        let old = manager.create(NewKey::new("acme")).await.unwrap();
        manager.rotate(&old.record.id, Duration::from_secs(300)).await.unwrap();

        let again = manager.rotate(&old.record.id, Duration::from_secs(300)).await;

        assert!(matches!(again, Err(ApiKeyError::AlreadyRotated { .. })), "{again:?}");
        assert_eq!(manager.list("acme").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn create_rejects_scopes_outside_rfc6749() {
        let (manager, _, _) = manager();

        for scope in ["a\"b", "a\\b", "\u{fc}n\u{ef}", "a\tb"] {
            let result = manager.create(NewKey::new("acme").scopes(Scopes::parse(scope))).await;

            assert!(matches!(result, Err(ApiKeyError::InvalidScope { .. })), "{scope:?}: {result:?}");
        }
        assert!(manager.create(NewKey::new("acme").scopes(Scopes::parse("orders:read a,b"))).await.is_ok());
    }

    #[tokio::test]
    async fn rotate_revoked_key_is_rejected() {
        let (manager, _, _) = manager();
        let old = manager.create(NewKey::new("acme")).await.unwrap();
        manager.revoke(&old.record.id).await.unwrap();

        let error = manager
            .rotate(&old.record.id, Duration::ZERO)
            .await
            .unwrap_err();

        assert!(matches!(error, ApiKeyError::NotActive { .. }));
    }

    #[tokio::test]
    async fn rotate_rejects_long_grace_period() {
        let (manager, _, _) = manager();
        let old = manager.create(NewKey::new("acme")).await.unwrap();

        let error = manager
            .rotate(&old.record.id, MAX_ROTATION_GRACE + Duration::from_secs(1))
            .await
            .unwrap_err();

        assert!(matches!(error, ApiKeyError::InvalidGracePeriod { .. }));
    }

    #[tokio::test]
    async fn get_and_delete_return_summaries() {
        let (manager, store, _) = manager();
        let created = manager.create(NewKey::new("acme")).await.unwrap();

        let fetched = manager.get(&created.record.id).await.unwrap();
        let deleted = manager.delete(&created.record.id).await.unwrap();
        let fetched_again = manager.get(&created.record.id).await;
        let deleted_again = manager.delete(&created.record.id).await;

        assert_eq!(fetched, KeySummary::from(created.record.clone()));
        assert_eq!(deleted, fetched);
        assert!(matches!(fetched_again, Err(ApiKeyError::NotFound { .. })));
        assert!(matches!(deleted_again, Err(ApiKeyError::NotFound { .. })));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn create_stores_times_to_microsecond() {
        let store = Arc::new(MemoryKeyStore::new());
        let start = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let clock = Arc::new(ManualClock(Mutex::new(start)));
        let manager = KeyManager::new(store).with_clock(clock);

        let created = manager.create(NewKey::new("acme")).await.unwrap();

        let micros = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        assert_eq!(created.record.created_at, micros);
        assert_eq!(created.record.expires_at, micros + DEFAULT_KEY_LIFETIME);
    }

    #[tokio::test]
    async fn list_returns_owner_keys() {
        let (manager, _, _) = manager();
        let first = manager.create(NewKey::new("acme")).await.unwrap();
        manager.create(NewKey::new("globex")).await.unwrap();

        let listed = manager.list("acme").await.unwrap();

        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, first.record.id);
    }
}

//! The stored form of one key.

use std::time::SystemTime;

use zerotrust_core::Scopes;

use crate::digest::KeyDigest;
use crate::random::push_base62;

/// The prefix of every key id.
pub const KEY_ID_PREFIX: &str = "key_";

/// Number of random base62 characters after [`KEY_ID_PREFIX`], about 95 bits.
const KEY_ID_RANDOM_LEN: usize = 16;

/// One issued key, as a store keeps it.
///
/// It contains the key's digest and never its plaintext, so the whole record,
/// `Debug` output included, is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The public id, `key_` and 16 base62 characters. It names the key in logs,
    /// events and the admin CLI, and proves nothing.
    pub id: String,
    /// The key's owner, such as a customer or team name.
    pub owner: String,
    /// The scopes that requests with this key are granted.
    pub scopes: Scopes,
    /// When the key was issued.
    pub created_at: SystemTime,
    /// The first instant at which the key is no longer accepted.
    pub expires_at: SystemTime,
    /// The first instant at which the key is revoked. A time in the future
    /// schedules the revocation, which is how rotation keeps an old key valid for
    /// a grace period.
    pub revoked_at: Option<SystemTime>,
    /// When a request last used the key, as far as the store knows. The layer
    /// writes it in batches, so it may lag real use by a flush interval.
    pub last_used_at: Option<SystemTime>,
    /// SHA-256 of the full key.
    pub digest: KeyDigest,
}

/// Whether a [`KeyRecord`] is accepted at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// The key is accepted.
    Active,
    /// The key reached its expiry time.
    Expired,
    /// The key reached its revocation time.
    Revoked,
}

impl KeyRecord {
    /// Returns the key's status at `now`.
    ///
    /// Revocation wins over expiry when both have passed, because it is the
    /// deliberate act and the more useful fact in logs.
    pub fn status_at(&self, now: SystemTime) -> KeyStatus {
        if self.revoked_at.is_some_and(|revoked_at| revoked_at <= now) {
            KeyStatus::Revoked
        } else if self.expires_at <= now {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Returns `true` if the key is accepted at `now`: not expired and not revoked.
    pub fn is_active_at(&self, now: SystemTime) -> bool {
        self.status_at(now) == KeyStatus::Active
    }
}

/// Generates a fresh key id from the OS RNG.
pub(crate) fn generate_key_id() -> Result<String, getrandom::Error> {
    let mut id = String::with_capacity(KEY_ID_PREFIX.len() + KEY_ID_RANDOM_LEN);
    id.push_str(KEY_ID_PREFIX);
    push_base62(&mut id, KEY_ID_RANDOM_LEN)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(created_at: SystemTime, lifetime: Duration) -> KeyRecord {
        KeyRecord {
            id: "key_test".into(),
            owner: "acme".into(),
            scopes: Scopes::parse("orders:read"),
            created_at,
            expires_at: created_at + lifetime,
            revoked_at: None,
            last_used_at: None,
            digest: KeyDigest::from_bytes([1; 32]),
        }
    }

    #[test]
    fn record_active_before_expiry() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let record = record(start, Duration::from_secs(60));

        assert!(record.is_active_at(start));
        assert!(record.is_active_at(start + Duration::from_secs(59)));
    }

    #[test]
    fn record_expired_at_and_after_expiry() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let record = record(start, Duration::from_secs(60));

        assert_eq!(
            record.status_at(start + Duration::from_secs(60)),
            KeyStatus::Expired
        );
        assert_eq!(
            record.status_at(start + Duration::from_secs(61)),
            KeyStatus::Expired
        );
        assert!(!record.is_active_at(start + Duration::from_secs(60)));
    }

    #[test]
    fn record_scheduled_revocation_applies_from_its_time() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut record = record(start, Duration::from_secs(600));
        record.revoked_at = Some(start + Duration::from_secs(30));

        assert_eq!(
            record.status_at(start + Duration::from_secs(29)),
            KeyStatus::Active
        );
        assert_eq!(
            record.status_at(start + Duration::from_secs(30)),
            KeyStatus::Revoked
        );
    }

    #[test]
    fn record_revocation_wins_over_expiry() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut record = record(start, Duration::from_secs(60));
        record.revoked_at = Some(start + Duration::from_secs(10));

        assert_eq!(
            record.status_at(start + Duration::from_secs(120)),
            KeyStatus::Revoked
        );
    }

    #[test]
    fn key_id_has_prefix_and_random_part() {
        let first = generate_key_id().unwrap();
        let second = generate_key_id().unwrap();

        assert!(first.starts_with("key_"));
        assert_eq!(first.len(), 4 + 16);
        assert!(first[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(first, second);
    }
}

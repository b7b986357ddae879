//! The display form of a key record.

use std::time::SystemTime;

use serde_json::{Value, json};
use zerotrust_core::Scopes;

use crate::record::{KeyRecord, KeyStatus};

/// A key record without its digest, for listings, admin output and logs.
///
/// It contains nothing that helps to find or forge the key, so it can be shown
/// to operators and owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    /// The public id, such as `key_…`.
    pub id: String,
    /// The key's owner.
    pub owner: String,
    /// The scopes the key grants.
    pub scopes: Scopes,
    /// When the key was issued.
    pub created_at: SystemTime,
    /// The first instant at which the key is no longer accepted.
    pub expires_at: SystemTime,
    /// The first instant at which the key is revoked, possibly in the future
    /// after a rotation.
    pub revoked_at: Option<SystemTime>,
    /// When a request last used the key, as last recorded in the store.
    pub last_used_at: Option<SystemTime>,
}

impl KeySummary {
    /// Returns the key's status at `now`, with the rules of
    /// [`KeyRecord::status_at`].
    pub fn status_at(&self, now: SystemTime) -> KeyStatus {
        if self.revoked_at.is_some_and(|revoked_at| revoked_at <= now) {
            KeyStatus::Revoked
        } else if self.expires_at <= now {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

impl KeySummary {
    /// Returns the summary as a JSON object with RFC 3339 times and the status
    /// at `now`, as the admin CLI and router print it.
    pub fn to_json(&self, now: SystemTime) -> Value {
        json!({
            "key_id": self.id,
            "owner": self.owner,
            "status": self.status_at(now).as_str(),
            "scopes": self.scopes.iter().collect::<Vec<_>>(),
            "created_at": format_rfc3339(self.created_at),
            "expires_at": format_rfc3339(self.expires_at),
            "revoked_at": self.revoked_at.map(format_rfc3339),
            "last_used_at": self.last_used_at.map(format_rfc3339),
        })
    }
}

impl From<KeyRecord> for KeySummary {
    fn from(record: KeyRecord) -> Self {
        Self {
            id: record.id,
            owner: record.owner,
            scopes: record.scopes,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
        }
    }
}

impl KeyStatus {
    /// Returns the status in lower case: `active`, `expired` or `revoked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// Formats `time` as RFC 3339 in UTC to the second, such as
/// `2026-12-04T21:15:36Z`, as the admin CLI and router print times. Times
/// before 1970 print as the epoch.
pub fn format_rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// The count is shifted to start on 0000-03-01 and split into 400-year eras
/// of 146,097 days, so that leap days fall at the end of each year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::digest::KeyDigest;

    #[test]
    fn summary_drops_digest_and_keeps_status() {
        let created_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let record = KeyRecord {
            id: "key_a".into(),
            owner: "acme".into(),
            scopes: Scopes::parse("orders:read"),
            created_at,
            expires_at: created_at + Duration::from_secs(60),
            revoked_at: Some(created_at + Duration::from_secs(30)),
            last_used_at: None,
            digest: KeyDigest::from_bytes([7; 32]),
        };
        let digest_hex = record.digest.to_hex();

        let summary = KeySummary::from(record.clone());

        assert!(!format!("{summary:?}").contains(&digest_hex[..8]));
        for offset in [0, 29, 30, 60, 90] {
            let now = created_at + Duration::from_secs(offset);
            assert_eq!(
                summary.status_at(now),
                record.status_at(now),
                "at +{offset}s"
            );
        }
        assert_eq!(summary.status_at(created_at).as_str(), "active");
    }

    #[test]
    fn rfc3339_formats_known_dates() {
        let at = |seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);

        assert_eq!(format_rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(at(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(at(4_102_444_799)), "2099-12-31T23:59:59Z");
    }
}

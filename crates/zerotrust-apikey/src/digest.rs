//! The SHA-256 digest under which a key is stored.

use std::fmt;
use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::key::ApiKeySecret;

/// The SHA-256 digest of a full key string, prefix and checksum included.
///
/// Stores keep only this digest, never the plaintext. A plain hash without salt
/// or stretching is enough here because the key carries about 256 bits of
/// randomness: a dictionary or brute-force search over the digest is hopeless,
/// unlike for passwords.
///
/// Equality runs in constant time. `Debug` shows only the first 4 bytes in hex.
#[derive(Clone, Copy)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Computes the digest of `secret`.
    pub fn of(secret: &ApiKeySecret) -> Self {
        Self(Sha256::digest(secret.expose().as_bytes()).into())
    }

    /// Wraps digest bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the digest bytes, for stores.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the digest as 64 lower-case hex characters, for stores keyed by text.
    pub fn to_hex(&self) -> String {
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            push_hex(&mut hex, byte);
        }
        hex
    }
}

impl KeyDigest {
    /// Parses 64 hex characters, as [`to_hex`](Self::to_hex) writes them.
    /// Returns `None` for any other input.
    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            *byte = u8::try_from(high * 16 + low).ok()?;
        }
        Some(Self(bytes))
    }
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for KeyDigest {}

// Hashing is consistent with the constant-time `eq`: equal digests have equal bytes.
impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut short = String::with_capacity(8);
        for byte in &self.0[..4] {
            push_hex(&mut short, *byte);
        }
        write!(f, "KeyDigest({short}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyFormat;

    #[test]
    fn digest_hex_round_trips() {
        let digest = KeyDigest::from_bytes([0xab; 32]);

        assert_eq!(KeyDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(KeyDigest::from_hex("ab"), None);
        assert_eq!(KeyDigest::from_hex(&"zz".repeat(32)), None);
        assert_eq!(KeyDigest::from_hex(&"\u{e9}".repeat(32)), None);
    }

    #[test]
    fn digest_is_sha256_of_full_key() {
        let secret = KeyFormat::default().generate().unwrap();

        let digest = secret.digest();

        let expected: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        assert_eq!(digest.as_bytes(), &expected);
    }

    #[test]
    fn digest_known_vector() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        let format = KeyFormat::default();
        let digest = KeyDigest::from_bytes(Sha256::digest(b"abc").into());

        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(format.generate().unwrap().digest(), digest);
    }

    #[test]
    fn digest_equality_compares_all_bytes() {
        let base = KeyDigest::from_bytes([7; 32]);
        let mut last_differs = [7; 32];
        last_differs[31] = 8;

        assert_eq!(base, KeyDigest::from_bytes([7; 32]));
        assert_ne!(base, KeyDigest::from_bytes(last_differs));
    }

    #[test]
    fn digest_debug_shows_short_prefix_only() {
        let digest = KeyFormat::default().generate().unwrap().digest();

        let debug = format!("{digest:?}");

        assert_eq!(debug, format!("KeyDigest({}…)", &digest.to_hex()[..8]));
        assert!(!debug.contains(&digest.to_hex()[..9]));
    }
}

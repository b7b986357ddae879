//! The API key format: prefix, random secret and checksum.
//!
//! A key reads `<prefix><secret><checksum>`, for example
//! `mk_4Fq…` with 43 base62 characters of secret and 6 of checksum:
//!
//! - the prefix (`mk_` by default) lets secret scanners find leaked keys with
//!   a pattern such as `mk_[0-9A-Za-z]{49}`;
//! - the secret is 43 characters drawn uniformly from the 62-character alphabet
//!   with the OS RNG, about 256 bits (62^43 ≈ 2^256);
//! - the checksum is the CRC-32 of prefix and secret as 6 base62 digits, so a
//!   typo or a truncated key is rejected before any store lookup.
//!
//! The checksum only catches mistakes. Anyone can compute it, so it adds no
//! security: a key is genuine only when its digest is found in the store.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::digest::KeyDigest;
use crate::random::{decode_base62, encode_base62_fixed, is_base62, push_base62};

/// The prefix of keys made with [`KeyFormat::default`].
pub const DEFAULT_PREFIX: &str = "mk_";

/// Length of the random part of a key, in base62 characters.
pub const SECRET_LEN: usize = 43;

/// Length of the checksum at the end of a key, in base62 characters.
pub const CHECKSUM_LEN: usize = 6;

/// The maximum length of a prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 16;

/// The shape of the keys a deployment issues and accepts.
///
/// Cheap to clone. The default prefix is `mk_`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: Arc<str>,
}

impl KeyFormat {
    /// Creates a format with `prefix`.
    ///
    /// A prefix has 1 to 16 characters from `[a-z0-9_]` and ends in `_`, so it
    /// cannot run into the base62 secret that follows it.
    pub fn new(prefix: &str) -> Result<Self, KeyFormatError> {
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
            return Err(KeyFormatError::InvalidPrefixLength {
                prefix: prefix.to_owned(),
                len: prefix.len(),
            });
        }
        if let Some(character) = prefix
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(KeyFormatError::InvalidPrefixCharacter {
                prefix: prefix.to_owned(),
                character,
            });
        }
        if !prefix.ends_with('_') {
            return Err(KeyFormatError::PrefixWithoutUnderscore {
                prefix: prefix.to_owned(),
            });
        }

        Ok(Self {
            prefix: prefix.into(),
        })
    }

    /// Returns the prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Returns the length of every key in this format, in bytes.
    pub fn key_len(&self) -> usize {
        self.prefix.len() + SECRET_LEN + CHECKSUM_LEN
    }

    /// Generates a new key from the operating system's RNG.
    ///
    /// Fails only when the OS RNG fails, which callers should treat as fatal for
    /// key creation rather than retry with a weaker source.
    pub fn generate(&self) -> Result<ApiKeySecret, getrandom::Error> {
        // The capacity is exact, so the string never reallocates and leaves
        // no unzeroized copy of the secret behind.
        let mut key = Zeroizing::new(String::with_capacity(self.key_len()));
        key.push_str(&self.prefix);
        push_base62(&mut key, SECRET_LEN)?;

        let checksum = crc32fast::hash(key.as_bytes());
        encode_base62_fixed(u64::from(checksum), CHECKSUM_LEN, &mut key);

        Ok(ApiKeySecret {
            key,
            prefix_len: self.prefix.len(),
        })
    }

    /// Parses a key presented by a client, without any store lookup.
    ///
    /// Checks, in order: the prefix, the length, the alphabet, and the checksum.
    /// The error never contains the key.
    pub fn parse(&self, input: &str) -> Result<ApiKeySecret, KeyParseError> {
        let Some(rest) = input.strip_prefix(&*self.prefix) else {
            return Err(KeyParseError::WrongPrefix {
                expected: self.prefix.to_string(),
            });
        };
        if rest.len() != SECRET_LEN + CHECKSUM_LEN {
            return Err(KeyParseError::WrongLength {
                expected: self.key_len(),
                actual: input.len(),
            });
        }
        if let Some(offset) = rest.bytes().position(|b| !is_base62(b)) {
            return Err(KeyParseError::InvalidCharacter {
                position: self.prefix.len() + offset,
            });
        }

        // Every byte after the prefix is ASCII now, so this split is on a
        // character boundary.
        let (body, checksum) = input.split_at(input.len() - CHECKSUM_LEN);
        let expected = u64::from(crc32fast::hash(body.as_bytes()));
        if decode_base62(checksum) != Some(expected) {
            return Err(KeyParseError::ChecksumMismatch);
        }

        Ok(ApiKeySecret {
            key: Zeroizing::new(input.to_owned()),
            prefix_len: self.prefix.len(),
        })
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFormat")
            .field("prefix", &&*self.prefix)
            .finish()
    }
}

/// The plaintext of an API key.
///
/// It is shown to the key's owner once, at creation, and parsed from requests.
/// `Debug` prints only the prefix, and the memory is zeroized on drop. It is
/// deliberately neither `Clone` nor `Display`, so copies are explicit.
pub struct ApiKeySecret {
    key: Zeroizing<String>,
    prefix_len: usize,
}

impl ApiKeySecret {
    /// Returns the full key, to hand to its owner or to send in a request.
    ///
    /// Anything this string is copied into is not zeroized, so keep copies
    /// short-lived and never log them.
    pub fn expose(&self) -> &str {
        &self.key
    }

    /// Returns the prefix the key was issued with, which is safe to show.
    pub fn prefix(&self) -> &str {
        &self.key[..self.prefix_len]
    }

    /// Computes the SHA-256 digest under which stores keep the key.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(self)
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("prefix", &self.prefix())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A [`KeyFormat`] could not be built from a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// The prefix is empty or longer than [`MAX_PREFIX_LEN`].
    #[error(
        "invalid key prefix {prefix:?}: it is {len} bytes long, expected 1 to {MAX_PREFIX_LEN}"
    )]
    InvalidPrefixLength {
        /// The rejected prefix.
        prefix: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The prefix contains a character outside `[a-z0-9_]`.
    #[error("invalid key prefix {prefix:?}: character {character:?} is not one of a-z, 0-9 or _")]
    InvalidPrefixCharacter {
        /// The rejected prefix.
        prefix: String,
        /// The first character outside the allowed set.
        character: char,
    },
    /// The prefix does not end in `_`.
    #[error("invalid key prefix {prefix:?}: it must end with '_', as in \"mk_\"")]
    PrefixWithoutUnderscore {
        /// The rejected prefix.
        prefix: String,
    },
}

/// A string is not a well-formed key of a [`KeyFormat`].
///
/// No variant contains any part of the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The key does not start with the configured prefix.
    #[error("invalid API key: expected the prefix {expected:?}")]
    WrongPrefix {
        /// The configured prefix.
        expected: String,
    },
    /// The key has the prefix but the wrong length.
    #[error("invalid API key: expected {expected} bytes, got {actual}")]
    WrongLength {
        /// The length of every key in the format.
        expected: usize,
        /// The length of the input.
        actual: usize,
    },
    /// A character after the prefix is not base62.
    #[error("invalid API key: the character at byte {position} is not in [0-9A-Za-z]")]
    InvalidCharacter {
        /// Byte offset of the first invalid character.
        position: usize,
    },
    /// The checksum does not match, usually because of a typo.
    #[error("invalid API key: the checksum does not match; check the key for typos")]
    ChecksumMismatch,
}

impl KeyParseError {
    /// Returns a stable machine-readable name for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyParseError::WrongPrefix { .. } => "wrong_prefix",
            KeyParseError::WrongLength { .. } => "wrong_length",
            KeyParseError::InvalidCharacter { .. } => "invalid_character",
            KeyParseError::ChecksumMismatch => "checksum_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces the byte at `index` with another base62 character.
    fn with_typo(key: &str, index: usize) -> String {
        let mut bytes = key.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn generate_has_prefix_length_and_alphabet() {
        let format = KeyFormat::default();

        let secret = format.generate().unwrap();

        let key = secret.expose();
        assert!(key.starts_with("mk_"));
        assert_eq!(key.len(), 3 + SECRET_LEN + CHECKSUM_LEN);
        assert_eq!(key.len(), format.key_len());
        assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(secret.prefix(), "mk_");
    }

    #[test]
    fn generate_never_repeats() {
        let format = KeyFormat::default();

        let first = format.generate().unwrap();
        let second = format.generate().unwrap();

        assert_ne!(first.expose(), second.expose());
    }

    #[test]
    fn parse_accepts_generated_key() {
        let format = KeyFormat::new("acme_live_").unwrap();
        let secret = format.generate().unwrap();

        let parsed = format.parse(secret.expose()).unwrap();

        assert_eq!(parsed.expose(), secret.expose());
        assert_eq!(parsed.digest(), secret.digest());
    }

    #[test]
    fn parse_wrong_prefix_is_rejected() {
        let secret = KeyFormat::new("other_").unwrap().generate().unwrap();

        let error = KeyFormat::default().parse(secret.expose()).unwrap_err();

        assert_eq!(
            error,
            KeyParseError::WrongPrefix {
                expected: "mk_".into()
            }
        );
    }

    #[test]
    fn parse_prefix_is_case_sensitive() {
        let secret = KeyFormat::default().generate().unwrap();
        let upper = format!("MK_{}", &secret.expose()[3..]);

        let error = KeyFormat::default().parse(&upper).unwrap_err();

        assert!(matches!(error, KeyParseError::WrongPrefix { .. }));
    }

    #[test]
    fn parse_one_character_typo_fails_checksum() {
        let format = KeyFormat::default();
        let secret = format.generate().unwrap();

        for index in [
            3,
            20,
            format.key_len() - CHECKSUM_LEN - 1,
            format.key_len() - 1,
        ] {
            let typo = with_typo(secret.expose(), index);

            let error = format.parse(&typo).unwrap_err();

            assert_eq!(
                error,
                KeyParseError::ChecksumMismatch,
                "typo at byte {index}"
            );
        }
    }

    #[test]
    fn parse_case_change_fails_checksum() {
        let format = KeyFormat::default();
        let secret = format.generate().unwrap();
        let key = secret.expose();
        let index = key[3..].find(|c: char| c.is_ascii_alphabetic()).unwrap() + 3;
        let mut changed = key.as_bytes().to_vec();
        changed[index] ^= 0x20;

        let error = format
            .parse(std::str::from_utf8(&changed).unwrap())
            .unwrap_err();

        assert_eq!(error, KeyParseError::ChecksumMismatch);
    }

    #[test]
    fn parse_wrong_length_is_rejected() {
        let format = KeyFormat::default();
        let secret = format.generate().unwrap();
        let key = secret.expose();

        let short = format.parse(&key[..key.len() - 1]).unwrap_err();
        let long = format.parse(&format!("{key}0")).unwrap_err();
        let bare = format.parse("mk_").unwrap_err();

        assert_eq!(
            short,
            KeyParseError::WrongLength {
                expected: 52,
                actual: 51
            }
        );
        assert_eq!(
            long,
            KeyParseError::WrongLength {
                expected: 52,
                actual: 53
            }
        );
        assert_eq!(
            bare,
            KeyParseError::WrongLength {
                expected: 52,
                actual: 3
            }
        );
    }

    #[test]
    fn parse_non_base62_is_rejected() {
        let format = KeyFormat::default();
        let secret = format.generate().unwrap();
        let mut bytes = secret.expose().as_bytes().to_vec();
        bytes[10] = b'-';
        let dashed = String::from_utf8(bytes).unwrap();

        let error = format.parse(&dashed).unwrap_err();

        assert_eq!(error, KeyParseError::InvalidCharacter { position: 10 });
    }

    #[test]
    fn parse_multibyte_character_is_rejected() {
        let format = KeyFormat::default();
        // 46 ASCII characters plus one 3-byte character give the right byte length.
        let input = format!("mk_{}€", "a".repeat(SECRET_LEN + CHECKSUM_LEN - 3));

        let error = format.parse(&input).unwrap_err();

        assert_eq!(error, KeyParseError::InvalidCharacter { position: 49 });
    }

    #[test]
    fn prefix_validation_rejects_bad_prefixes() {
        let cases = [
            ("", "length"),
            ("abcdefghijklmnop_", "length"),
            ("Mk_", "character"),
            ("mk-", "character"),
            ("mk", "underscore"),
        ];

        for (prefix, expected) in cases {
            let error = KeyFormat::new(prefix).unwrap_err();

            let kind = match error {
                KeyFormatError::InvalidPrefixLength { .. } => "length",
                KeyFormatError::InvalidPrefixCharacter { .. } => "character",
                KeyFormatError::PrefixWithoutUnderscore { .. } => "underscore",
            };
            assert_eq!(kind, expected, "prefix {prefix:?}");
        }
    }

    #[test]
    fn prefix_validation_accepts_longest_prefix() {
        let format = KeyFormat::new("abcdefghijklmno_").unwrap();

        assert_eq!(format.prefix().len(), MAX_PREFIX_LEN);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = KeyFormat::default().generate().unwrap();

        let debug = format!("{secret:?}");

        assert!(!debug.contains(&secret.expose()[3..]));
        assert!(!debug.contains(&secret.expose()[3..10]));
        assert!(debug.contains("mk_"));
        assert!(debug.contains("<redacted>"));
    }
}

//! Uniform random base62 strings from the operating system's RNG.

use zeroize::Zeroizing;

/// The base62 alphabet: digits, upper-case, then lower-case letters.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Bytes below this bound map uniformly onto the alphabet: 248 = 4 * 62.
const UNBIASED_BOUND: u8 = 248;

/// Returns `true` if `byte` is in [`BASE62`].
pub(crate) fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Appends `count` base62 characters drawn uniformly from the OS RNG to `out`.
///
/// Each random byte at or above 248 is discarded (rejection sampling), so
/// `byte % 62` has no modulo bias. The scratch buffer is zeroized on drop
/// because it contains the secret's raw material.
pub(crate) fn push_base62(out: &mut String, count: usize) -> Result<(), getrandom::Error> {
    let mut buffer = Zeroizing::new([0u8; 64]);
    let mut remaining = count;

    while remaining > 0 {
        getrandom::fill(buffer.as_mut())?;
        for byte in buffer.iter().copied() {
            if remaining == 0 {
                break;
            }
            if byte < UNBIASED_BOUND {
                out.push(char::from(BASE62[usize::from(byte % 62)]));
                remaining -= 1;
            }
        }
    }

    Ok(())
}

/// Encodes `value` as exactly `width` base62 digits, most significant first.
///
/// The caller picks a `width` large enough for `value`: 6 digits hold any `u32`
/// because 62^6 > 2^32.
pub(crate) fn encode_base62_fixed(mut value: u64, width: usize, out: &mut String) {
    let mut digits = [0u8; 11];
    for slot in digits[..width].iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    for &digit in &digits[..width] {
        out.push(char::from(digit));
    }
}

/// Decodes base62 digits into a number, or `None` on a character outside the
/// alphabet or an overflow.
pub(crate) fn decode_base62(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |value, byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            b'a'..=b'z' => byte - b'a' + 36,
            _ => return None,
        };
        value.checked_mul(62)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_base62_appends_exact_count_from_alphabet() {
        let mut out = String::new();

        push_base62(&mut out, 500).unwrap();

        assert_eq!(out.len(), 500);
        assert!(out.bytes().all(is_base62));
    }

    #[test]
    fn push_base62_covers_whole_alphabet() {
        let mut out = String::new();

        // 6,200 draws miss a given character with probability (61/62)^6200, about 1e-44.
        push_base62(&mut out, 6_200).unwrap();

        for &character in BASE62 {
            assert!(
                out.as_bytes().contains(&character),
                "{} never drawn",
                char::from(character)
            );
        }
    }

    #[test]
    fn base62_fixed_round_trips() {
        for value in [0u64, 1, 61, 62, 3_843, u64::from(u32::MAX)] {
            let mut out = String::new();

            encode_base62_fixed(value, 6, &mut out);

            assert_eq!(out.len(), 6);
            assert_eq!(decode_base62(&out), Some(value));
        }
    }

    #[test]
    fn decode_base62_rejects_other_characters() {
        assert_eq!(decode_base62("ab_c"), None);
        assert_eq!(decode_base62("é"), None);
    }
}

//! The JWS algorithms a verification key can be bound to.

use std::fmt;

use jsonwebtoken::Algorithm;

/// A JWS signature algorithm (RFC 7518 section 3, RFC 8037 section 3.1).
///
/// Each verification key is bound to exactly one of these, and a token is
/// checked only with the algorithm of the key its `kid` selects. `none` and the
/// HMAC algorithms have no variant, so they can never be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA with Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [SigningAlgorithm; 5] = [
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Ps256,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::EdDsa,
    ];

    /// Returns the `alg` header value, such as `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Ps256 => "PS256",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses an `alg` header value, compared exactly (JWS names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|algorithm| algorithm.as_str() == name)
    }

    pub(crate) const fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            SigningAlgorithm::Rs256 => Algorithm::RS256,
            SigningAlgorithm::Ps256 => Algorithm::PS256,
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::Es384 => Algorithm::ES384,
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in SigningAlgorithm::ALL {
            assert_eq!(SigningAlgorithm::from_name(algorithm.as_str()), Some(algorithm));
        }
    }

    #[test]
    fn algorithm_rejects_none_hmac_and_case_variants() {
        for name in ["none", "None", "HS256", "HS384", "HS512", "rs256", "RS384", "EDDSA", ""] {
            assert_eq!(SigningAlgorithm::from_name(name), None, "{name}");
        }
    }
}

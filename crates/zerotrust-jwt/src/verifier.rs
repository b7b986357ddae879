//! Token verification: keys, algorithms and claim checks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::{Claims, VerifiedClaims};
use crate::rejection::JwtRejection;

/// The clock leeway for `exp` and `nbf` unless one is set.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The largest leeway the builder accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The largest token, in bytes, that is decoded unless a limit is set.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An invalid [`JwtVerifier`] configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// No audience was set. Every service must have one, or a token minted for any
    /// service would be accepted.
    #[error("missing audience: set the receiving service's audience, such as \"api:orders\"")]
    MissingAudience,
    /// No issuer was set.
    #[error("missing issuer: set the exact `iss` value tokens must carry")]
    MissingIssuer,
    /// No verification key was added.
    #[error("no verification key: add at least one public key with its kid")]
    NoKeys,
    /// A key id is empty or used twice.
    #[error("invalid key id {0:?}: key ids must be non-empty and unique")]
    InvalidKeyId(String),
    /// A public key could not be parsed.
    #[error("invalid public key for kid {kid:?}: {message}")]
    InvalidKey {
        /// The key id.
        kid: String,
        /// The parser's message.
        message: String,
    },
    /// The leeway is larger than [`MAX_LEEWAY`].
    #[error("leeway of {0:?} is too large: use at most 5 minutes")]
    LeewayTooLarge(Duration),
    /// The size limit is zero.
    #[error("the maximum token size must be at least 1 byte")]
    ZeroMaxTokenBytes,
}

struct VerificationKey {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
}

/// Verifies bearer tokens for one service.
///
/// Checks, in order:
///
/// 1. the size, and three dot-separated segments;
/// 2. a header that names a known `kid` and carries no key of its own;
/// 3. the header `alg` equal to the algorithm bound to that key;
/// 4. the signature;
/// 5. the claims: `iss` exactly the configured issuer, `aud` containing the
///    service's audience, `exp` present and in the future, `nbf` (if present) in
///    the past, and `sub` present.
///
/// `exp` and `nbf` get the leeway, 30 seconds by default.
///
/// NOTE: `iat` is not checked and there is no maximum token lifetime yet, so a
/// correctly signed token with a far-future `exp` is accepted.
///
/// ```
/// # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
/// use zerotrust_jwt::JwtVerifier;
///
/// let verifier = JwtVerifier::builder()
///     .issuer("https://issuer.zerotrust.test")
///     .audience("api:orders")
///     .rsa_public_key_pem("k1", &key.public_key_pem)
///     .build()
///     .unwrap();
/// assert_eq!(verifier.audience(), "api:orders");
/// ```
pub struct JwtVerifier {
    keys: HashMap<String, VerificationKey>,
    issuer: String,
    audience: String,
    max_token_bytes: usize,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Starts a builder.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder::default()
    }

    /// Returns the audience this verifier requires.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Returns the issuer this verifier requires.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, JwtRejection> {
        if token.len() > self.max_token_bytes {
            return Err(JwtRejection::TooLarge);
        }
        if token.split('.').count() != 3 {
            return Err(JwtRejection::Malformed);
        }

        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        // A key supplied by the token itself would let the sender choose the key
        // that verifies it (RFC 8725 section 3.10): never use or fetch one.
        if header.jwk.is_some() || header.jku.is_some() || header.x5c.is_some() || header.x5u.is_some() {
            return Err(JwtRejection::DisallowedHeader);
        }
        let kid = header.kid.as_deref().ok_or(JwtRejection::UnknownKey)?;
        let key = self.keys.get(kid).ok_or(JwtRejection::UnknownKey)?;
        // The algorithm comes from configuration, bound to the key, never from the
        // token (RFC 8725 section 3.1).
        if header.alg != key.algorithm {
            return Err(JwtRejection::DisallowedHeader);
        }

        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|error| map_error(error.kind()))?;
        Ok(VerifiedClaims::new(data.claims))
    }
}

fn map_error(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::InvalidSignature => JwtRejection::InvalidSignature,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidAudience => JwtRejection::AudienceMismatch,
        ErrorKind::InvalidIssuer => JwtRejection::IssuerMismatch,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => JwtRejection::AudienceMismatch,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => JwtRejection::IssuerMismatch,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
            JwtRejection::InvalidClaims
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtRejection::DisallowedHeader,
        _ => JwtRejection::Malformed,
    }
}

/// Builder for [`JwtVerifier`]. Audience, issuer and at least one key are required.
#[derive(Default)]
#[must_use]
pub struct JwtVerifierBuilder {
    issuer: Option<String>,
    audience: Option<String>,
    keys: Vec<(String, Result<DecodingKey, String>, Algorithm)>,
    leeway: Option<Duration>,
    max_token_bytes: Option<usize>,
}

impl fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    /// Sets the exact `iss` that tokens must carry.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the receiving service's audience, which `aud` must contain.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds an RSA public key (PEM, SubjectPublicKeyInfo or PKCS#1) for RS256
    /// tokens whose header names `kid`.
    pub fn rsa_public_key_pem(mut self, kid: impl Into<String>, pem: &str) -> Self {
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|error| error.to_string());
        self.keys.push((kid.into(), key, Algorithm::RS256));
        self
    }

    /// Sets the clock leeway for `exp` and `nbf`. By default 30 seconds, at most 5 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Sets the largest token, in bytes, that is decoded. By default 8 KiB.
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = Some(bytes);
        self
    }

    /// Validates the configuration and builds the verifier.
    pub fn build(self) -> Result<JwtVerifier, JwtConfigError> {
        let audience = self
            .audience
            .filter(|a| !a.is_empty())
            .ok_or(JwtConfigError::MissingAudience)?;
        let issuer = self
            .issuer
            .filter(|i| !i.is_empty())
            .ok_or(JwtConfigError::MissingIssuer)?;
        let leeway = self.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            return Err(JwtConfigError::LeewayTooLarge(leeway));
        }
        let max_token_bytes = self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if max_token_bytes == 0 {
            return Err(JwtConfigError::ZeroMaxTokenBytes);
        }
        if self.keys.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }

        let mut keys = HashMap::new();
        for (kid, key, algorithm) in self.keys {
            if kid.is_empty() || keys.contains_key(&kid) {
                return Err(JwtConfigError::InvalidKeyId(kid));
            }
            let key = key.map_err(|message| JwtConfigError::InvalidKey {
                kid: kid.clone(),
                message,
            })?;
            let validation = validation(algorithm, &issuer, &audience, leeway);
            keys.insert(kid, VerificationKey { key, algorithm, validation });
        }

        Ok(JwtVerifier {
            keys,
            issuer,
            audience,
            max_token_bytes,
        })
    }
}

/// Sets every check explicitly: jsonwebtoken does not require `aud` or `iss` just
/// because they are set, and does not check `nbf` by default.
fn validation(algorithm: Algorithm, issuer: &str, audience: &str, leeway: Duration) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.required_spec_claims = HashSet::from(["exp", "iss", "aud", "sub"].map(String::from));
    validation.leeway = leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrust_testkit::tokens::SigningKeyPair;

    #[test]
    fn builder_rejects_incomplete_configuration() {
        let key = SigningKeyPair::generate_rs256("k1").unwrap();
        let complete = || {
            JwtVerifier::builder()
                .issuer("https://issuer.zerotrust.test")
                .audience("api:orders")
                .rsa_public_key_pem("k1", &key.public_key_pem)
        };

        let no_audience = JwtVerifier::builder()
            .issuer("https://issuer.zerotrust.test")
            .rsa_public_key_pem("k1", &key.public_key_pem)
            .build()
            .unwrap_err();
        let empty_audience = complete().audience("").build().unwrap_err();
        let no_issuer = JwtVerifier::builder().audience("api:orders").build().unwrap_err();
        let no_keys = JwtVerifier::builder().issuer("i").audience("a").build().unwrap_err();
        let bad_key = complete().rsa_public_key_pem("k2", "junk").build().unwrap_err();
        let duplicate = complete().rsa_public_key_pem("k1", &key.public_key_pem).build().unwrap_err();
        let leeway = complete().leeway(Duration::from_secs(301)).build().unwrap_err();

        assert!(matches!(no_audience, JwtConfigError::MissingAudience));
        assert!(matches!(empty_audience, JwtConfigError::MissingAudience));
        assert!(matches!(no_issuer, JwtConfigError::MissingIssuer));
        assert!(matches!(no_keys, JwtConfigError::NoKeys));
        assert!(matches!(bad_key, JwtConfigError::InvalidKey { ref kid, .. } if kid == "k2"));
        assert!(matches!(duplicate, JwtConfigError::InvalidKeyId(_)));
        assert!(matches!(leeway, JwtConfigError::LeewayTooLarge(_)));
        assert!(complete().build().is_ok());
    }

    #[test]
    fn every_error_formats_without_key_material() {
        let errors = [
            JwtConfigError::MissingAudience,
            JwtConfigError::MissingIssuer,
            JwtConfigError::NoKeys,
            JwtConfigError::InvalidKeyId(String::new()),
            JwtConfigError::InvalidKey { kid: "k".into(), message: "bad".into() },
            JwtConfigError::LeewayTooLarge(Duration::from_secs(600)),
            JwtConfigError::ZeroMaxTokenBytes,
        ];

        for error in errors {
            let text = error.to_string();
            assert!(!text.is_empty());
            assert!(!text.contains("PRIVATE KEY"));
        }
    }
}

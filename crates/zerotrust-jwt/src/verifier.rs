//! Token verification: keys, algorithms and claim checks.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use zerotrust_core::Clock;

use crate::algorithm::SigningAlgorithm;
use crate::cache::{CachedToken, TokenCache};
use crate::claims::{TimeClaims, VerifiedClaims, read_claims};
use crate::jwks::RemoteJwks;
use crate::keys::{KeySet, VerificationKey};
use crate::rejection::JwtRejection;
use crate::token::{self, ParsedToken};
use crate::verifier_builder::JwtVerifierBuilder;

/// The clock leeway for `exp`, `nbf` and `iat` unless one is set.
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
    #[error("no verification key: add at least one public key with its kid, a JWKS, or a JWKS URL")]
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
    /// A JWKS document could not be read or parsed, or has no usable key.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
    /// The leeway is larger than [`MAX_LEEWAY`].
    #[error("leeway of {0:?} is too large: use at most 5 minutes")]
    LeewayTooLarge(Duration),
    /// The size limit is zero.
    #[error("the maximum token size must be at least 1 byte")]
    ZeroMaxTokenBytes,
    /// The maximum token lifetime is zero.
    #[error("the maximum token lifetime must be at least 1 second")]
    ZeroMaxLifetime,
    /// A required header type or claim name is empty.
    #[error("invalid requirement {0:?}: required token types and claim names must be non-empty")]
    EmptyRequirement(&'static str),
}

/// The claim and header rules a verifier applies after the signature.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway_seconds: f64,
    pub(crate) max_lifetime_seconds: Option<f64>,
    pub(crate) required_claims: Vec<String>,
    /// The required `typ`, normalised by [`normalise_type`].
    pub(crate) required_type: Option<String>,
}

/// The fixed keys and the JWKS URL, if any, a verifier looks keys up in.
pub(crate) struct Keys {
    pub(crate) fixed: KeySet,
    pub(crate) remote: Option<RemoteJwks>,
}

impl Keys {
    fn lookup(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        if let Some(key) = self.fixed.get(kid) {
            return Some(key.clone());
        }
        self.remote.as_ref()?.current().get(kid).cloned()
    }

    /// Returns `true` if `kid` still selects exactly `key`.
    fn still_selects(&self, kid: &str, key: &Arc<VerificationKey>) -> bool {
        self.lookup(kid).is_some_and(|current| Arc::ptr_eq(&current, key))
    }
}

/// Verifies bearer tokens for one service.
///
/// Checks, in order:
///
/// 1. the size, before anything is decoded;
/// 2. the form: three non-empty segments of canonical unpadded base64url, and a
///    header and claims that are JSON objects without duplicate members;
/// 3. the header: it must carry no key of its own (`jwk`, `jku`, `x5c`, `x5u`)
///    and no `crit`. Its `alg` must be a [`SigningAlgorithm`], and its `kid` must
///    name a key exactly. That key's algorithm must equal `alg`, and `typ` must be
///    the required type if one is set;
/// 4. the signature;
/// 5. the claims: `iss`, `sub`, `aud` and `exp` present with their RFC 7519
///    types, `iss` exactly the configured issuer, `aud` containing the service's
///    audience, `exp` in the future, `nbf` (if present) in the past, `iat` (if
///    present) not in the future, `exp - iat` within the maximum lifetime if one
///    is set, and every required claim present.
///
/// `exp`, `nbf` and `iat` get the leeway, 30 seconds by default.
///
/// By default the verifier caches up to [`DEFAULT_TOKEN_CACHE_CAPACITY`](crate::DEFAULT_TOKEN_CACHE_CAPACITY) verified
/// tokens by their SHA-256 digest, each until its `exp`. A cached
/// token skips steps 2 to 4 but is checked again against the current time, and
/// is verified anew once its `kid` no longer selects the key that verified it
/// (after every JWKS refresh, for keys from a [`RemoteJwks`]).
///
/// ```
/// # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
/// use std::time::Duration;
/// use zerotrust_jwt::{JwtVerifier, SigningAlgorithm};
///
/// let verifier = JwtVerifier::builder()
///     .issuer("https://issuer.zerotrust.test")
///     .audience("api:orders")
///     .public_key_pem("k1", SigningAlgorithm::Rs256, &key.public_key_pem)
///     .max_lifetime(Duration::from_secs(300))
///     .build()
///     .unwrap();
/// assert_eq!(verifier.audience(), "api:orders");
/// ```
pub struct JwtVerifier {
    pub(crate) keys: Keys,
    pub(crate) policy: Policy,
    pub(crate) max_token_bytes: usize,
    pub(crate) cache: Option<TokenCache>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.policy.issuer)
            .field("audience", &self.policy.audience)
            .field("keys", &self.keys.fixed)
            .field("remote_jwks", &self.keys.remote)
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
        &self.policy.audience
    }

    /// Returns the issuer this verifier requires.
    pub fn issuer(&self) -> &str {
        &self.policy.issuer
    }

    /// Verifies `token` and returns its claims.
    ///
    /// Runs without I/O. With a JWKS URL, an unknown `kid` makes the refresh task
    /// fetch the key set again (rate-limited), and this token is rejected.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, JwtRejection> {
        if token.len() > self.max_token_bytes {
            return Err(JwtRejection::TooLarge);
        }
        let now = self.now_seconds();

        let digest = self.cache.as_ref().map(|_| TokenCache::digest(token));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest)
            && let Some(cached) = cache.get(digest)
        {
            if self.keys.still_selects(&cached.kid, &cached.key) {
                self.check_times(&cached.times, now)?;
                return Ok(cached.claims.clone());
            }
            cache.remove(digest);
        }

        let parsed = token::parse(token)?;
        let (kid, key) = self.check_header(&parsed)?;
        let (claims, times) = read_claims(&parsed.claims)?;
        self.check_claims(&parsed, &claims, &times, now)?;

        let verified = VerifiedClaims::new(claims);
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            // The entry ends at `exp` itself. A token inside the leeway after `exp`
            // is still accepted, by a full check.
            let time_to_live = Duration::from_secs_f64((times.exp - now).max(0.0));
            cache.insert(
                digest,
                CachedToken {
                    claims: verified.clone(),
                    times,
                    kid,
                    key,
                    time_to_live,
                },
            );
        }
        Ok(verified)
    }

    fn now_seconds(&self) -> f64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Checks the header and the signature, and returns the `kid` and the key used.
    fn check_header(&self, parsed: &ParsedToken<'_>) -> Result<(String, Arc<VerificationKey>), JwtRejection> {
        let header = &parsed.header;
        // The algorithm comes from configuration, bound to the key, never from
        // the token (RFC 8725 section 3.1): the header only has to agree.
        let algorithm = SigningAlgorithm::from_name(&header.alg).ok_or(JwtRejection::DisallowedHeader)?;
        let kid = header.kid.as_deref().ok_or(JwtRejection::UnknownKey)?;
        let Some(key) = self.keys.lookup(kid) else {
            if let Some(remote) = &self.keys.remote {
                remote.request_refresh();
            }
            return Err(JwtRejection::UnknownKey);
        };
        if key.algorithm != algorithm {
            return Err(JwtRejection::DisallowedHeader);
        }
        if let Some(required) = &self.policy.required_type {
            let matches = header.typ.as_deref().is_some_and(|typ| normalise_type(typ) == *required);
            if !matches {
                return Err(JwtRejection::TypeMismatch);
            }
        }

        let valid = jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signing_input.as_bytes(),
            &key.key,
            algorithm.to_jsonwebtoken(),
        );
        match valid {
            Ok(true) => Ok((kid.to_owned(), key)),
            Ok(false) | Err(_) => Err(JwtRejection::InvalidSignature),
        }
    }

    fn check_claims(
        &self,
        parsed: &ParsedToken<'_>,
        claims: &crate::claims::Claims,
        times: &TimeClaims,
        now: f64,
    ) -> Result<(), JwtRejection> {
        let policy = &self.policy;
        if claims.iss != policy.issuer {
            return Err(JwtRejection::IssuerMismatch);
        }
        if !claims.aud.contains(&policy.audience) {
            return Err(JwtRejection::AudienceMismatch);
        }
        let has_required = policy
            .required_claims
            .iter()
            .all(|name| parsed.claims.get(name).is_some_and(|value| !value.is_null()));
        if !has_required {
            return Err(JwtRejection::InvalidClaims);
        }
        self.check_times(times, now)
    }

    fn check_times(&self, times: &TimeClaims, now: f64) -> Result<(), JwtRejection> {
        let leeway = self.policy.leeway_seconds;
        // RFC 7519 section 4.1.4: the current time must be before `exp`.
        if now >= times.exp + leeway {
            return Err(JwtRejection::Expired);
        }
        if times.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(JwtRejection::NotYetValid);
        }
        if times.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(JwtRejection::IssuedInFuture);
        }
        if let Some(max_lifetime) = self.policy.max_lifetime_seconds {
            // Without `iat` the lifetime is unknown, so a maximum makes it required.
            let iat = times.iat.ok_or(JwtRejection::InvalidClaims)?;
            if times.exp - iat > max_lifetime {
                return Err(JwtRejection::LifetimeTooLong);
            }
        }
        Ok(())
    }
}

/// Normalises a `typ` value for comparison: media types are case-insensitive, and
/// RFC 7515 section 4.1.9 lets `application/` be left out.
pub(crate) fn normalise_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
#[path = "verifier_tests.rs"]
mod tests;

//! The builder of [`JwtVerifier`]: keys, claim rules and limits, validated once.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zerotrust_core::{Clock, SystemClock};

use crate::algorithm::SigningAlgorithm;
use crate::cache::{DEFAULT_TOKEN_CACHE_CAPACITY, TokenCache};
use crate::jwks::RemoteJwks;
use crate::keys::{KeySet, VerificationKey, key_from_jwk_json};
use crate::verifier::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, JwtConfigError, JwtVerifier, Keys, MAX_LEEWAY, Policy,
    normalise_type,
};

/// Builder for [`JwtVerifier`]. Audience, issuer and at least one key are required.
#[must_use]
pub struct JwtVerifierBuilder {
    issuer: Option<String>,
    audience: Option<String>,
    keys: Vec<Result<(String, VerificationKey), JwtConfigError>>,
    key_sets: Vec<Result<KeySet, JwtConfigError>>,
    remote: Option<RemoteJwks>,
    leeway: Option<Duration>,
    max_token_bytes: Option<usize>,
    max_lifetime: Option<Duration>,
    required_claims: Vec<String>,
    required_type: Option<String>,
    cache_capacity: Option<u64>,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for JwtVerifierBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            keys: Vec::new(),
            key_sets: Vec::new(),
            remote: None,
            leeway: None,
            max_token_bytes: None,
            max_lifetime: None,
            required_claims: Vec::new(),
            required_type: None,
            cache_capacity: Some(DEFAULT_TOKEN_CACHE_CAPACITY),
            clock: None,
        }
    }
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
    pub fn rsa_public_key_pem(self, kid: impl Into<String>, pem: &str) -> Self {
        self.public_key_pem(kid, SigningAlgorithm::Rs256, pem)
    }

    /// Adds a public key in PEM form, bound to `algorithm`, for tokens whose header
    /// names `kid`. RSA keys may be SubjectPublicKeyInfo or PKCS#1; EC and Ed25519
    /// keys must be SubjectPublicKeyInfo, on the curve `algorithm` names.
    pub fn public_key_pem(mut self, kid: impl Into<String>, algorithm: SigningAlgorithm, pem: &str) -> Self {
        let kid = kid.into();
        let key = VerificationKey::from_pem(algorithm, pem)
            .map(|key| (kid.clone(), key))
            .map_err(|message| JwtConfigError::InvalidKey { kid, message });
        self.keys.push(key);
        self
    }

    /// Adds one public JWK (RFC 7517), with its `kid`. The algorithm is the JWK's
    /// `alg`, or follows from its curve; an RSA JWK without `alg` is bound to RS256.
    pub fn jwk_json(mut self, jwk: &str) -> Self {
        let key = key_from_jwk_json(jwk).map_err(|message| JwtConfigError::InvalidKey {
            kid: kid_hint(jwk),
            message,
        });
        self.keys.push(key);
        self
    }

    /// Adds every usable key of a JWKS document. See [`KeySet::from_jwks_json`] for
    /// which keys are used. A document without a usable key is an error.
    pub fn jwks_json(mut self, jwks: &str) -> Self {
        let keys = KeySet::from_jwks_json(jwks)
            .map_err(JwtConfigError::InvalidJwks)
            .and_then(|(keys, skipped)| {
                for key in &skipped {
                    tracing::debug!(target: "zerotrust::jwt", kid = key.kid.as_deref(), reason = %key.reason, "skipped JWKS key");
                }
                if keys.is_empty() {
                    return Err(JwtConfigError::InvalidJwks("the document has no usable key".to_owned()));
                }
                Ok(keys)
            });
        self.key_sets.push(keys);
        self
    }

    /// Reads a JWKS document from `path` and adds its keys, as [`jwks_json`](Self::jwks_json).
    pub fn jwks_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => self.jwks_json(&text),
            Err(error) => {
                let mut builder = self;
                builder
                    .key_sets
                    .push(Err(JwtConfigError::InvalidJwks(format!("could not read {}: {error}", path.display()))));
                builder
            }
        }
    }

    /// Looks keys up in the key set that `jwks` fetches and refreshes, after the
    /// fixed keys. See [`RemoteJwks`].
    pub fn remote_jwks(mut self, jwks: RemoteJwks) -> Self {
        self.remote = Some(jwks);
        self
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat`. By default 30 seconds, at
    /// most 5 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Sets the largest token, in bytes, that is decoded. By default 8 KiB.
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = Some(bytes);
        self
    }

    /// Rejects tokens whose `exp - iat` exceeds `lifetime`, and makes `iat`
    /// required. By default there is no maximum.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Requires claim `name` to be present and not null, in addition to `iss`,
    /// `sub`, `aud` and `exp`.
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required_claims.push(name.into());
        self
    }

    /// Requires the header `typ`, such as `at+jwt` (RFC 9068). Compared without
    /// case and with an optional `application/` prefix. By default `typ` is not
    /// checked.
    pub fn required_type(mut self, typ: impl Into<String>) -> Self {
        self.required_type = Some(typ.into());
        self
    }

    /// Sets how many verified tokens are cached. By default
    /// [`DEFAULT_TOKEN_CACHE_CAPACITY`].
    pub fn token_cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Verifies every token in full, without a cache.
    pub fn without_token_cache(mut self) -> Self {
        self.cache_capacity = None;
        self
    }

    /// Sets the clock. By default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
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
        if self.max_lifetime.is_some_and(|lifetime| lifetime.is_zero()) {
            return Err(JwtConfigError::ZeroMaxLifetime);
        }
        if self.required_claims.iter().any(String::is_empty) {
            return Err(JwtConfigError::EmptyRequirement("claim name"));
        }
        if self.required_type.as_deref() == Some("") {
            return Err(JwtConfigError::EmptyRequirement("token type"));
        }
        if self.keys.is_empty() && self.key_sets.is_empty() && self.remote.is_none() {
            return Err(JwtConfigError::NoKeys);
        }

        let mut fixed = KeySet::default();
        for key in self.keys {
            let (kid, key) = key?;
            fixed.insert(kid, key).map_err(JwtConfigError::InvalidKeyId)?;
        }
        for keys in self.key_sets {
            fixed.merge(keys?).map_err(JwtConfigError::InvalidKeyId)?;
        }

        Ok(JwtVerifier {
            keys: Keys {
                fixed,
                remote: self.remote,
            },
            policy: Policy {
                issuer,
                audience,
                leeway_seconds: leeway.as_secs_f64(),
                max_lifetime_seconds: self.max_lifetime.map(|lifetime| lifetime.as_secs_f64()),
                required_claims: self.required_claims,
                required_type: self.required_type.as_deref().map(normalise_type),
            },
            max_token_bytes,
            cache: self.cache_capacity.filter(|capacity| *capacity > 0).map(TokenCache::new),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

/// Returns the `kid` of a JWK that failed to parse, for the error message.
fn kid_hint(jwk: &str) -> String {
    serde_json::from_str::<serde_json::Value>(jwk)
        .ok()
        .and_then(|value| value.get("kid")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

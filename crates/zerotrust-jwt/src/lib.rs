//! Per-service JWT audiences, certificate-bound service-to-service tokens, and
//! JWKS key sets.
//!
//! ```
//! # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
//! use std::time::Duration;
//! use zerotrust_jwt::{JwtVerifier, ServiceDirectory, ServiceTokenIssuer, SigningAlgorithm};
//!
//! let directory = ServiceDirectory::new()
//!     .with_service("orders", "api:orders")
//!     .with_service("payments", "api:payments");
//! let issuer = ServiceTokenIssuer::builder()
//!     .issuer("https://issuer.zerotrust.test")
//!     .rsa_private_key_pem("k1", &key.private_key_pem)
//!     .directory(directory)
//!     .build()
//!     .unwrap();
//! let payments = JwtVerifier::builder()
//!     .issuer("https://issuer.zerotrust.test")
//!     .audience("api:payments")
//!     .public_key_pem("k1", SigningAlgorithm::Rs256, &key.public_key_pem)
//!     .max_lifetime(Duration::from_secs(300))
//!     .build()
//!     .unwrap();
//!
//! // A token minted for orders is useless at payments.
//! let for_orders = issuer.mint("gateway", "orders").unwrap();
//! assert!(payments.verify(for_orders.expose()).is_err());
//! let for_payments = issuer.mint("orders", "payments").unwrap();
//! assert_eq!(payments.verify(for_payments.expose()).unwrap().service_name(), Some("orders"));
//! ```
//!
//! Rules:
//!
//! 1. Each key is bound to one [`SigningAlgorithm`] (RS256, PS256, ES256, ES384 or
//!    EdDSA), and a token's `alg` must equal it. `none` and HMAC cannot be
//!    configured. A header with a key of its own (`jwk`, `jku`, `x5c`, `x5u`) or
//!    with `crit` is rejected, and nothing it points to is fetched.
//! 2. A token is parsed strictly before any key is used: a size limit, three
//!    segments of canonical unpadded base64url, and a header and claims without
//!    duplicate JSON members. Claims must have their RFC 7519 types.
//! 3. [`JwtVerifier`] checks signature, issuer, audience, `exp`, `nbf`, `iat`, an
//!    optional maximum lifetime, required claims and an optional `typ`. Building
//!    one without an audience is an error.
//! 4. [`JwtAuthLayer`] applies it to every request and puts [`VerifiedClaims`] and
//!    a [`Principal`](zerotrust_core::Principal) into the request. A token with
//!    `cnf.x5t#S256` (RFC 8705) is accepted only from the mTLS peer whose
//!    certificate it names. The layer can also require every token to be bound,
//!    and the subject to name the peer's service.
//! 5. [`ServiceTokenIssuer`] mints five-minute service tokens, bound to a
//!    certificate with [`ServiceTokenIssuer::mint_bound`].
//!    [`ServiceTokenSource`] shares them across tasks and renews each with one
//!    mint, and [`ServiceTokenLayer`] attaches them to outbound requests.
//! 6. Keys come from PEM, a JWK, a JWKS document or file, or a [`RemoteJwks`]
//!    that a background task refreshes.
//!
//! # Deployment caveats
//!
//! - Every service that verifies tokens needs the issuer's public key; only the
//!   issuer has the private key. In the demo each service mints its own tokens
//!   with a shared key, which is simpler but lets any service mint for any caller.
//! - Certificate binding is only as strong as the mTLS layer in front: the
//!   thumbprint is compared with the `Arc<PeerIdentity>` in the request
//!   extensions, which must come from the TLS acceptor, never from a header that
//!   a client can set.
//! - Verified tokens are cached per verifier. A token stays accepted until its
//!   `exp` even if it is revoked at the issuer, unless the key that signed it
//!   leaves the key set or the JWKS is fetched again. Keep lifetimes short, and use
//!   [`JwtVerifierBuilder::max_lifetime`] to enforce it.
//! - [`RemoteJwks`] needs `spawn_refresh_task` inside a Tokio runtime; without it
//!   the key set is fetched only by explicit `refresh` calls.
//!
//! # Known limitations
//!
//! - NOTE: a token signed with a key that is not yet in the fetched JWKS is
//!   rejected. It triggers a rate-limited refresh in the background, so the
//!   client's retry succeeds, but the first request fails.
//! - NOTE: a [`ServiceTokenSource`] caller that finds no valid token waits for
//!   the one minting caller by blocking its thread for the time of one signature.
//! - NOTE: the cache is per process and per verifier; revocation lists for `jti`
//!   are not implemented.

mod algorithm;
mod auth;
mod cache;
mod claims;
mod issuer;
mod json;
mod jwks;
mod keys;
mod outbound;
mod rejection;
#[cfg(test)]
mod test_support;
mod token;
mod verifier;
mod verifier_builder;

pub use algorithm::SigningAlgorithm;
pub use auth::{JwtAuth, JwtAuthLayer};
pub use cache::DEFAULT_TOKEN_CACHE_CAPACITY;
pub use claims::{Audience, Claims, Confirmation, VerifiedClaims};
pub use jwks::{
    DEFAULT_JWKS_MAX_BODY_BYTES, DEFAULT_JWKS_MAX_REFRESH_INTERVAL, DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
    DEFAULT_JWKS_REFRESH_INTERVAL, DEFAULT_JWKS_TIMEOUT, JwksConfigError, JwksFetchError, RemoteJwks,
    RemoteJwksBuilder,
};
pub use keys::{KeySet, SkippedKey};
pub use issuer::{
    DEFAULT_SERVICE_TOKEN_LIFETIME, IssuerConfigError, MintError, ServiceDirectory, ServiceToken,
    ServiceTokenIssuer, ServiceTokenIssuerBuilder,
};
pub use outbound::{AttachServiceToken, DEFAULT_REFRESH_BEFORE, ServiceTokenLayer, ServiceTokenSource};
pub use rejection::JwtRejection;
pub use verifier::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, JwtConfigError, JwtVerifier, MAX_LEEWAY};
pub use verifier_builder::JwtVerifierBuilder;

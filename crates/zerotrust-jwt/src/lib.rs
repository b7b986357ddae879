//! Per-service JWT audiences and short-lived service-to-service tokens.
//!
//! ```
//! # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
//! use zerotrust_jwt::{JwtVerifier, ServiceDirectory, ServiceTokenIssuer};
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
//!     .rsa_public_key_pem("k1", &key.public_key_pem)
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
//! - [`JwtVerifier`] checks signature, algorithm, issuer, audience and validity.
//!   Building one without an audience is an error.
//! - [`JwtAuthLayer`] applies it to every request and puts [`VerifiedClaims`] and a
//!   [`Principal`](zerotrust_core::Principal) into the request.
//! - [`ServiceTokenIssuer`] mints five-minute service tokens; [`ServiceTokenSource`]
//!   caches them per target and [`ServiceTokenLayer`] attaches them to outbound
//!   requests.
//!
//! # Deployment caveats
//!
//! - Every service that verifies tokens needs the issuer's public key; only the
//!   issuer has the private key. In the demo each service mints its own tokens
//!   with a shared key, which is simpler but lets any service mint for any caller.
//!
//! # Known limitations
//!
//! - NOTE: keys are static RS256 PEM keys. JWKS, other algorithms,
//!   certificate-bound tokens and a cache of verified tokens are not implemented
//!   yet.

mod auth;
mod claims;
mod issuer;
mod outbound;
mod rejection;
mod verifier;

pub use auth::{JwtAuth, JwtAuthLayer};
pub use claims::{Audience, Claims, VerifiedClaims};
pub use issuer::{
    DEFAULT_SERVICE_TOKEN_LIFETIME, IssuerConfigError, MintError, ServiceDirectory, ServiceToken,
    ServiceTokenIssuer, ServiceTokenIssuerBuilder,
};
pub use outbound::{AttachServiceToken, DEFAULT_REFRESH_BEFORE, ServiceTokenLayer, ServiceTokenSource};
pub use rejection::JwtRejection;
pub use verifier::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, JwtConfigError, JwtVerifier, JwtVerifierBuilder,
    MAX_LEEWAY,
};

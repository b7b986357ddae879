//! zerotrust: tower layers that make an axum service verify every request.
//!
//! ```no_run
//! # async fn build(
//! #     verifier: zerotrust::jwt::JwtVerifier,
//! #     store: std::sync::Arc<dyn zerotrust::anomaly::CounterStore>,
//! # ) -> Result<axum::Router, Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use zerotrust::anomaly::AnomalyLayer;
//! use zerotrust::core::RequireScopeLayer;
//! use zerotrust::jwt::JwtAuthLayer;
//! use zerotrust::mtls::{CallerPolicy, RequireCallerLayer};
//!
//! let only_gateway = CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/gateway")?;
//! let app = Router::new()
//!     .route("/orders", post(|| async { "created" }))
//!     // Layers run from the last added to the first: caller, token, rate.
//!     .layer(AnomalyLayer::builder(store).service_name("orders").build()?)
//!     .layer(JwtAuthLayer::new(Arc::new(verifier)))
//!     .layer(RequireCallerLayer::new(only_gateway));
//! # Ok(app) }
//! ```
//!
//! Each capability is its own crate, re-exported here behind a feature:
//!
//! | module | feature | what it does |
//! |---|---|---|
//! | [`core`] | always | principals, peer identities, rejections, security events, `RequireScope` |
//! | `mtls` | `mtls` | rustls configs, the peer-identity acceptor, caller allow-lists |
//! | `jwt` | `jwt` | per-service audience verification, service tokens |
//! | `apikey` | `apikey` | API keys stored as SHA-256 digests, with scopes and expiry |
//! | `anomaly` | `anomaly` | per-identifier counts, alerts and blocks |
//!
//! The four features above are on by default. Off by default: `redis` (Redis
//! counter and key stores), `postgres` (the PostgreSQL key store) and `webhook`
//! (the HTTP webhook event sink).
//!
//! The order of a full stack, outermost first: TLS handshake and peer identity,
//! an optional pre-authentication anomaly layer by client address, caller
//! allow-lists, token or API-key authentication, anomaly detection by principal,
//! then route layers such as [`RequireScopeLayer`](core::RequireScopeLayer).
//!
//! NOTE: a per-service builder that assembles these layers from one policy is
//! not written yet; stack the layers by hand as above.

pub use zerotrust_core as core;

#[cfg(feature = "mtls")]
pub use zerotrust_mtls as mtls;

#[cfg(feature = "jwt")]
pub use zerotrust_jwt as jwt;

#[cfg(feature = "apikey")]
pub use zerotrust_apikey as apikey;

#[cfg(feature = "anomaly")]
pub use zerotrust_anomaly as anomaly;

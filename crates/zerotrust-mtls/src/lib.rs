//! Mutual TLS for axum services: who is on the other end of the connection.
//!
//! ```no_run
//! # async fn run(pki: zerotrust_testkit::pki::DevPki) -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//! use axum::{Router, routing::get};
//! use zerotrust_mtls::{CallerPolicy, PeerIdentityAcceptor, RequireCallerLayer, ServerTlsBuilder};
//!
//! let orders = pki.service("orders").unwrap();
//! let tls = ServerTlsBuilder::new()
//!     .trust_bundle_pem(pki.ca_cert_pem())
//!     .certificate_chain_pem(&orders.cert_pem)
//!     .private_key_pem(&orders.key_pem)
//!     .build()?;
//!
//! let only_gateway = CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/gateway")?;
//! let app = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .layer(RequireCallerLayer::new(only_gateway));
//!
//! axum_server::from_tcp(std::net::TcpListener::bind("127.0.0.1:8443")?)?
//!     .acceptor(PeerIdentityAcceptor::new(tls))
//!     .serve(app.into_make_service_with_connect_info::<SocketAddr>())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Trust model
//!
//! 1. [`ServerTlsBuilder`] makes rustls require a client certificate that chains
//!    to a trust bundle and carries the clientAuth extended key usage. A peer
//!    without one fails the handshake and never reaches a handler.
//! 2. The leaf must follow the X.509-SVID rules ([`LeafRules::Svid`]): not a CA,
//!    digitalSignature, neither keyCertSign nor cRLSign.
//! 3. With per-trust-domain bundles, a client is verified only against the
//!    bundle of the trust domain named in its own SPIFFE ID, so the CA of one
//!    domain cannot vouch for identities in another.
//! 4. With certificate revocation lists, a revoked certificate anywhere in the
//!    chain fails the handshake, and so does one whose status no list covers
//!    unless [`ServerTlsBuilder::allow_unknown_revocation_status`] is set.
//! 5. [`PeerIdentityAcceptor`] parses the verified leaf once per connection into a
//!    [`PeerIdentity`](zerotrust_core::PeerIdentity): the SPIFFE ID from the single
//!    URI SAN, the DNS SANs and the SHA-256 fingerprint. Each request on the
//!    connection carries it as `Arc<PeerIdentity>`. No header can set it, except
//!    `x-forwarded-client-cert` from a proxy that [`ForwardedClientCertLayer`]
//!    trusts.
//! 6. [`RequireCallerLayer`] decides who may call a router or route with a
//!    [`CallerPolicy`]: exact SPIFFE IDs, trust domains, path prefixes on segment
//!    boundaries or predicates, and deny entries that win. It answers 401 without
//!    a certificate and 403 for anyone not allowed.
//! 7. [`ClientTlsBuilder`] and [`ClientTlsReloader`] give outbound calls the
//!    service's own certificate; [`ServerTlsReloader`] rotates the server side.
//!
//! SPIFFE IDs are parsed strictly ([`parse_spiffe_id`]): an upper-case trust
//! domain is rejected, never lower-cased, and a certificate with more than one
//! URI SAN has no SPIFFE ID.
//!
//! # Examples
//!
//! A service that only its gateway may call:
//!
//! ```
//! use axum::{Router, routing::post};
//! use zerotrust_mtls::{CallerPolicy, RequireCallerLayer};
//!
//! let gateway = CallerPolicy::new().allow_spiffe_id("spiffe://example.org/gateway").unwrap();
//! let app: Router = Router::new()
//!     .route("/orders", post(|| async { "created" }))
//!     .layer(RequireCallerLayer::new(gateway));
//! ```
//!
//! A mixed router on one listener: public routes for clients without a
//! certificate, and routes that require a caller from the production namespace.
//! The server is built with `ClientAuth::Optional`, so a certificate that is
//! presented must still verify.
//!
//! ```
//! # let pki = zerotrust_testkit::pki::DevPki::generate("example.org", &["api"]).unwrap();
//! # let leaf = pki.service("api").unwrap();
//! use axum::{Router, routing::get};
//! use zerotrust_mtls::{CallerPolicy, ClientAuth, RequireCallerLayer, ServerTlsBuilder};
//!
//! let tls = ServerTlsBuilder::new()
//!     .trust_bundle_pem(pki.ca_cert_pem())
//!     .certificate_chain_pem(&leaf.cert_pem)
//!     .private_key_pem(&leaf.key_pem)
//!     .client_auth(ClientAuth::Optional)
//!     .build()
//!     .unwrap();
//! let production = CallerPolicy::new()
//!     .allow_path_prefix("spiffe://example.org/ns/prod")
//!     .unwrap()
//!     .deny_spiffe_id("spiffe://example.org/ns/prod/legacy")
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route(
//!         "/internal/stats",
//!         get(|| async { "{}" }).layer(RequireCallerLayer::new(production)),
//!     );
//! # let _ = tls;
//! ```
//!
//! A service behind Envoy, which terminates the client's TLS and connects with
//! its own certificate, appending `x-forwarded-client-cert`:
//!
//! ```
//! use axum::{Router, routing::get};
//! use zerotrust_mtls::{CallerPolicy, ForwardedClientCertLayer, RequireCallerLayer};
//!
//! let envoy = CallerPolicy::new().allow_spiffe_id("spiffe://example.org/envoy").unwrap();
//! let web = CallerPolicy::new().allow_spiffe_id("spiffe://example.org/web").unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(RequireCallerLayer::new(web))
//!     .layer(ForwardedClientCertLayer::new(envoy));
//! ```
//!
//! # Deployment caveats
//!
//! - The handshake proves possession of a key the CA certified. Anyone with the CA
//!   key can mint any SPIFFE ID in the trust domain: keep it offline.
//! - With [`ClientAuth::Optional`], public clients reach the router; protect mTLS
//!   routes with [`RequireCallerLayer`].
//! - Revocation lists are read when the configuration is built. Reload them with
//!   [`ServerTlsReloader`]; each reload also starts a fresh session cache, so a
//!   newly revoked certificate cannot resume an earlier session.
//! - Behind a proxy, trust only the proxy's own SPIFFE ID in
//!   [`ForwardedClientCertLayer`], and make the proxy overwrite (not append to) the
//!   header it receives from clients where it can.
//!
//! # Known limitations
//!
//! - NOTE: webpki cannot check every X.509 feature (some name constraints, for
//!   example); such chains fail the handshake with webpki's error in the debug
//!   log rather than being accepted.
//! - Without `Cert`, an identity from `x-forwarded-client-cert` has no validity
//!   window (both ends read as the Unix epoch).

mod acceptor;
mod caller_policy;
mod client_config;
mod client_reload;
mod error;
mod forwarded;
mod identity;
mod pem;
mod provider;
mod rejection;
mod reload;
mod require_caller;
mod server_config;
mod verifier;
mod xfcc;

pub use acceptor::{DEFAULT_HANDSHAKE_TIMEOUT, PeerIdentityAcceptor, PeerIdentityService};
pub use caller_policy::{CallerPolicy, CallerPolicyError};
pub use client_config::ClientTlsBuilder;
pub use client_reload::{ClientTlsFiles, ClientTlsReloader};
pub use error::TlsConfigError;
pub use forwarded::{ForwardedClientCert, ForwardedClientCertLayer, ForwardingProxy, X_FORWARDED_CLIENT_CERT};
pub use identity::{IdentityError, parse_spiffe_id, peer_identity_from_der};
pub use rejection::MtlsRejection;
pub use reload::{ReloadError, ServerTlsFiles, ServerTlsReloader};
pub use require_caller::{RequireCaller, RequireCallerLayer};
pub use server_config::{ClientAuth, ServerTlsBuilder};
pub use verifier::{LeafRules, SvidError};
pub use xfcc::{MAX_XFCC_BYTES, XfccElement, XfccError, parse_xfcc};

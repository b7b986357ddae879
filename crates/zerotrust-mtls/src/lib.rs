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
//!    to the trust bundle and carries the clientAuth extended key usage. A peer
//!    without one fails the handshake and never reaches a handler.
//! 2. [`PeerIdentityAcceptor`] parses the verified leaf once per connection into a
//!    [`PeerIdentity`](zerotrust_core::PeerIdentity): the SPIFFE ID from the single
//!    URI SAN, the DNS SANs and the SHA-256 fingerprint. Each request on the
//!    connection carries it as `Arc<PeerIdentity>`, and nothing a client sends in
//!    a header can set it.
//! 3. [`RequireCallerLayer`] decides who may call a router or route by SPIFFE ID,
//!    trust domain or predicate: 401 without a certificate, 403 for anyone not
//!    allowed.
//! 4. [`ClientTlsBuilder`] gives the service's outbound calls its own certificate.
//!
//! # Deployment caveats
//!
//! - The handshake proves possession of a key the CA certified. Anyone with the CA
//!   key can mint any SPIFFE ID in the trust domain: keep it offline.
//! - With [`ClientAuth::Optional`], public clients reach the router; protect mTLS
//!   routes with [`RequireCallerLayer`].
//!
//! # Known limitations
//!
//! - NOTE: certificate revocation lists, several trust domains with their own
//!   bundles, reloading from files and `x-forwarded-client-cert` from trusted
//!   proxies are not implemented yet. [`PeerIdentityAcceptor::rustls_config`]
//!   allows replacing the server configuration by hand.

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

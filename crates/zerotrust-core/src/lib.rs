//! Types that every zerotrust layer shares.
//!
//! ```
//! use zerotrust_core::{Principal, Scopes};
//!
//! let principal = Principal::service("gateway");
//! assert_eq!(principal.id(), "service:gateway");
//! assert!(Scopes::parse("orders:read orders:write").contains("orders:read"));
//! ```
//!
//! - [`Principal`]: who the caller is after authentication, with its scopes. It is
//!   also an axum extractor that rejects with 401 when no layer authenticated the
//!   request.
//! - [`PeerIdentity`]: the identity in the peer's TLS certificate, set once per
//!   connection by the mTLS acceptor. It lives here so that the JWT layer can bind
//!   tokens to the certificate without depending on the mTLS crate.
//! - [`Rejection`] and [`problem_response`]: each layer's typed rejection turned
//!   into an RFC 9457 `application/problem+json` response. The typed rejection is
//!   also put into the response extensions, so callers can inspect or replace it.
//! - [`SecurityEvent`] and [`EventSink`]: one event type for denials and anomalies,
//!   sent through a sink whose `send` must return without blocking the request.
//! - [`sinks`]: OCSF-shaped JSON lines, an HTTP webhook (feature `webhook`) and
//!   a per-kind, per-identifier rate limit for any sink.
//! - [`RequireScope`]: a route layer that answers 403 `insufficient_scope` when the
//!   principal lacks a scope.

mod clock;
mod credentials;
mod event;
pub mod future;
mod peer;
mod principal;
mod rejection;
mod reporter;
mod request_id;
mod require_principal;
mod require_scope;
mod scope;
mod sink;
pub mod sinks;

pub use clock::{Clock, SystemClock};
pub use credentials::{BearerError, bearer_credential, parse_bearer};
pub use event::{EventKind, SecurityEvent};
pub use peer::{CertificateFingerprint, PeerIdentity};
pub use principal::{CredentialKind, Principal, PrincipalKind, PrincipalRejection};
pub use rejection::{BearerChallenge, Rejection, problem_response};
pub use reporter::EventReporter;
pub use request_id::request_id;
pub use require_principal::{PrincipalNotAllowed, RequirePrincipal, RequirePrincipalLayer};
pub use require_scope::{RequireScope, RequireScopeLayer, ScopeRejection};
pub use scope::Scopes;
pub use sink::{EventSink, MemorySink, SharedSink, TracingSink};

/// Re-export of the `spiffe` crate's identity types, which [`PeerIdentity`] uses.
pub use spiffe::{SpiffeId, TrustDomain};

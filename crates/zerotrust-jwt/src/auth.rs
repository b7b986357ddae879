//! The inbound layer: verify the bearer token for this service's audience.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use tower::{Layer, Service};
use zerotrust_core::future::GuardFuture;
use zerotrust_core::{
    BearerError, CredentialKind, EventKind, EventReporter, PeerIdentity, Principal, PrincipalKind,
    Rejection, SharedSink, bearer_credential, problem_response,
};

use crate::claims::VerifiedClaims;
use crate::rejection::JwtRejection;
use crate::verifier::JwtVerifier;

/// Whether a token must be bound to the peer's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertificateBinding {
    /// Only a token that carries `cnf.x5t#S256` is checked against the peer.
    CheckWhenPresent,
    /// Every token must carry `cnf.x5t#S256` matching the peer.
    Require,
}

/// Whether the token subject must name the peer's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubjectBinding {
    Unchecked,
    MatchPeer,
}

/// The inbound layer: verify the bearer token for this service's audience.
///
/// ```
/// # use std::sync::Arc;
/// # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
/// use axum::{Router, routing::get};
/// use zerotrust_jwt::{JwtAuthLayer, JwtVerifier};
///
/// let verifier = JwtVerifier::builder()
///     .issuer("https://issuer.zerotrust.test")
///     .audience("api:orders")
///     .rsa_public_key_pem("k1", &key.public_key_pem)
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "[]" }))
///     .layer(JwtAuthLayer::new(Arc::new(verifier)));
/// ```
///
/// Rules:
///
/// 1. No `Authorization: Bearer` header: 401 with `WWW-Authenticate: Bearer`.
/// 2. Two `Authorization` headers or an unusable value: 400 `invalid_request`.
/// 3. A token that fails any check of [`JwtVerifier`], a wrong audience included:
///    401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 section 3.1).
///    The body is the same for every failure; the reason goes to the security event.
/// 4. A token that carries `cnf.x5t#S256` is accepted only on a connection whose
///    client certificate has that SHA-256 thumbprint (RFC 8705 section 3), read
///    from the `Arc<PeerIdentity>` that the mTLS acceptor puts into the request
///    extensions. [`JwtAuthLayer::require_certificate_binding`] also rejects
///    tokens without `cnf`, and [`JwtAuthLayer::require_subject_matches_peer`]
///    requires `sub = service:<name>` to name the peer's SPIFFE ID service. These
///    failures are 401 `invalid_token` too.
/// 5. A valid token: [`VerifiedClaims`] and a [`Principal`] go into the request
///    extensions. A `service:<name>` subject becomes a service principal.
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtAuthLayer {
    verifier: Arc<JwtVerifier>,
    events: EventReporter,
    certificate_binding: CertificateBinding,
    subject_binding: SubjectBinding,
}

impl JwtAuthLayer {
    /// Verifies every request's bearer token with `verifier`.
    pub fn new(verifier: Arc<JwtVerifier>) -> Self {
        Self {
            verifier,
            events: EventReporter::default(),
            certificate_binding: CertificateBinding::CheckWhenPresent,
            subject_binding: SubjectBinding::Unchecked,
        }
    }

    /// Requires every token to be certificate-bound (RFC 8705): `cnf.x5t#S256`
    /// must equal the thumbprint of the client certificate of the connection.
    /// A request without a peer certificate, a token without `cnf.x5t#S256`, or
    /// a different thumbprint is rejected with 401 `invalid_token`.
    ///
    /// By default only tokens that carry `cnf.x5t#S256` are checked against the
    /// peer, and unbound tokens are accepted.
    pub fn require_certificate_binding(mut self) -> Self {
        self.certificate_binding = CertificateBinding::Require;
        self
    }

    /// Requires the subject `service:<name>` to equal the last path segment of the
    /// peer certificate's SPIFFE ID, so a service can only present tokens minted
    /// for itself. Other subjects, and peers without a SPIFFE ID, are rejected.
    /// By default the subject is not compared with the peer.
    pub fn require_subject_matches_peer(mut self) -> Self {
        self.subject_binding = SubjectBinding::MatchPeer;
        self
    }

    /// Sends denial events to `sink`.
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Names the service in denial events.
    pub fn service_name(mut self, service: impl Into<Arc<str>>) -> Self {
        self.events.set_service(service);
        self
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware made by [`JwtAuthLayer`], whose docs give the rules.
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    layer: JwtAuthLayer,
}

impl<S> JwtAuth<S> {
    fn authenticate<B>(&self, request: &Request<B>) -> Result<VerifiedClaims, JwtRejection> {
        let token = match bearer_credential(request.headers()) {
            Ok(Some(token)) => token,
            Ok(None) => return Err(JwtRejection::Missing),
            Err(BearerError::Duplicate) => return Err(JwtRejection::InvalidRequest),
            Err(_) => return Err(JwtRejection::Malformed),
        };
        let claims = self.layer.verifier.verify(token)?;

        let peer = request.extensions().get::<Arc<PeerIdentity>>();
        check_certificate_binding(&claims, peer, self.layer.certificate_binding)?;
        if self.layer.subject_binding == SubjectBinding::MatchPeer {
            let peer = peer.ok_or(JwtRejection::PeerCertificateMissing)?;
            let matches = claims
                .service_name()
                .is_some_and(|service| peer.service_name() == Some(service));
            if !matches {
                return Err(JwtRejection::SubjectPeerMismatch);
            }
        }
        Ok(claims)
    }
}

/// Checks `cnf.x5t#S256` against the peer certificate (RFC 8705 section 3.1).
/// Runs on every request, cached token or not, because the same token may arrive
/// over another connection.
fn check_certificate_binding(
    claims: &VerifiedClaims,
    peer: Option<&Arc<PeerIdentity>>,
    binding: CertificateBinding,
) -> Result<(), JwtRejection> {
    let thumbprint = match (claims.claims().certificate_thumbprint(), binding) {
        (Some(thumbprint), _) => thumbprint,
        (None, CertificateBinding::CheckWhenPresent) => return Ok(()),
        (None, CertificateBinding::Require) => return Err(JwtRejection::CertificateBindingMissing),
    };
    let peer = peer.ok_or(JwtRejection::PeerCertificateMissing)?;
    // Both values are public thumbprints, so a plain comparison leaks nothing.
    if peer.fingerprint().x5t_s256() != thumbprint {
        return Err(JwtRejection::CertificateBindingMismatch);
    }
    Ok(())
}

impl<S, B> Service<Request<B>> for JwtAuth<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.authenticate(&request) {
            Ok(claims) => {
                let scopes = claims.scopes();
                let principal = match claims.service_name() {
                    Some(service) => Principal::service(service).with_scopes(scopes),
                    None => Principal::new(
                        PrincipalKind::Subject,
                        claims.subject(),
                        scopes,
                        CredentialKind::BearerToken,
                    ),
                };
                tracing::trace!(target: "zerotrust::jwt", principal = principal.id(), "token accepted");
                request.extensions_mut().insert(principal);
                request.extensions_mut().insert(claims);
                GuardFuture::allowed(self.inner.call(request))
            }
            Err(rejection) => {
                tracing::debug!(
                    target: "zerotrust::jwt",
                    reason = rejection.reason(),
                    status = rejection.status().as_u16(),
                    path = request.uri().path(),
                    "token rejected"
                );
                self.layer
                    .events
                    .denial(EventKind::AuthenticationDenied, &rejection, None, request.headers());
                GuardFuture::denied(problem_response(rejection))
            }
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

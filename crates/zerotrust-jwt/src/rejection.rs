//! The reasons the JWT layer rejects a request.

use http::StatusCode;
use zerotrust_core::{BearerChallenge, Rejection};

/// The rejection of [`JwtAuth`](crate::JwtAuth).
///
/// Every variant but [`Missing`](JwtRejection::Missing) and
/// [`InvalidRequest`](JwtRejection::InvalidRequest) produces the same response
/// body, so a client learns nothing that helps it tune a forgery. The variant
/// goes to logs, security events and the response extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtRejection {
    /// No `Authorization: Bearer` header (401 with a bare `Bearer` challenge).
    Missing,
    /// Several `Authorization` headers, or one that is not valid header text (400).
    InvalidRequest,
    /// The token is larger than the configured limit.
    TooLarge,
    /// The token is not a well-formed JWS.
    Malformed,
    /// The header names no `kid`, or one that no configured key has.
    UnknownKey,
    /// The header's `alg` is not one of the supported algorithms or differs from
    /// the algorithm bound to the selected key, or the header carries a key of its
    /// own (`jwk`, `jku`, `x5c`, `x5u`) or a `crit` member.
    DisallowedHeader,
    /// The header's `typ` is missing or differs from the type the verifier requires.
    TypeMismatch,
    /// The signature does not verify.
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `exp - iat` is longer than the verifier's maximum token lifetime.
    LifetimeTooLong,
    /// `aud` does not contain this service's audience.
    AudienceMismatch,
    /// `iss` is not the configured issuer.
    IssuerMismatch,
    /// A required claim is missing, or a claim has the wrong JSON type or an
    /// out-of-range NumericDate.
    InvalidClaims,
    /// Certificate binding is required but the request came over a connection
    /// without a verified client certificate.
    PeerCertificateMissing,
    /// Certificate binding is required but the token has no `cnf.x5t#S256`.
    CertificateBindingMissing,
    /// The token's `cnf.x5t#S256` is not the thumbprint of the peer's certificate.
    CertificateBindingMismatch,
    /// The `service:<name>` subject does not name the service in the peer's
    /// SPIFFE ID, or the peer has no SPIFFE ID.
    SubjectPeerMismatch,
}

impl Rejection for JwtRejection {
    fn status(&self) -> StatusCode {
        match self {
            JwtRejection::InvalidRequest => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn problem_type(&self) -> &'static str {
        match self {
            JwtRejection::Missing => "urn:zerotrust:problem:unauthenticated",
            JwtRejection::InvalidRequest => "urn:zerotrust:problem:invalid-request",
            _ => "urn:zerotrust:problem:invalid-token",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            JwtRejection::Missing => "authentication required",
            JwtRejection::InvalidRequest => "invalid request",
            _ => "invalid token",
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            JwtRejection::Missing => "token_missing",
            JwtRejection::InvalidRequest => "invalid_request",
            JwtRejection::TooLarge => "token_too_large",
            JwtRejection::Malformed => "token_malformed",
            JwtRejection::UnknownKey => "unknown_key",
            JwtRejection::DisallowedHeader => "disallowed_header",
            JwtRejection::InvalidSignature => "invalid_signature",
            JwtRejection::Expired => "token_expired",
            JwtRejection::NotYetValid => "token_not_yet_valid",
            JwtRejection::TypeMismatch => "token_type_mismatch",
            JwtRejection::IssuedInFuture => "token_issued_in_future",
            JwtRejection::LifetimeTooLong => "token_lifetime_too_long",
            JwtRejection::AudienceMismatch => "audience_mismatch",
            JwtRejection::IssuerMismatch => "issuer_mismatch",
            JwtRejection::InvalidClaims => "invalid_claims",
            JwtRejection::PeerCertificateMissing => "peer_certificate_missing",
            JwtRejection::CertificateBindingMissing => "certificate_binding_missing",
            JwtRejection::CertificateBindingMismatch => "certificate_binding_mismatch",
            JwtRejection::SubjectPeerMismatch => "subject_peer_mismatch",
        }
    }

    fn challenge(&self) -> Option<BearerChallenge> {
        Some(match self {
            JwtRejection::Missing => BearerChallenge::Missing,
            JwtRejection::InvalidRequest => BearerChallenge::InvalidRequest,
            _ => BearerChallenge::InvalidToken,
        })
    }
}

impl JwtRejection {
    /// Every variant, for tests that must cover each one.
    #[cfg(test)]
    pub(crate) const ALL: [JwtRejection; 19] = [
        JwtRejection::Missing,
        JwtRejection::InvalidRequest,
        JwtRejection::TooLarge,
        JwtRejection::Malformed,
        JwtRejection::UnknownKey,
        JwtRejection::DisallowedHeader,
        JwtRejection::TypeMismatch,
        JwtRejection::InvalidSignature,
        JwtRejection::Expired,
        JwtRejection::NotYetValid,
        JwtRejection::IssuedInFuture,
        JwtRejection::LifetimeTooLong,
        JwtRejection::AudienceMismatch,
        JwtRejection::IssuerMismatch,
        JwtRejection::InvalidClaims,
        JwtRejection::PeerCertificateMissing,
        JwtRejection::CertificateBindingMissing,
        JwtRejection::CertificateBindingMismatch,
        JwtRejection::SubjectPeerMismatch,
    ];
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use zerotrust_core::problem_response;

    use super::*;

    #[test]
    fn every_rejection_formats_with_distinct_reason() {
        let mut reasons = HashSet::new();

        for rejection in JwtRejection::ALL {
            let response = problem_response(rejection);
            let debug = format!("{rejection:?}");

            assert!(!debug.is_empty());
            assert!(!rejection.title().is_empty(), "{debug}");
            assert!(rejection.problem_type().starts_with("urn:zerotrust:problem:"), "{debug}");
            assert!(rejection.reason().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{debug}");
            assert!(reasons.insert(rejection.reason()), "{debug}: reason used twice");
            assert_eq!(response.status(), rejection.status(), "{debug}");
            assert!(response.headers().contains_key(http::header::WWW_AUTHENTICATE), "{debug}");
            assert_eq!(response.extensions().get::<JwtRejection>(), Some(&rejection), "{debug}");
        }
    }

    #[test]
    fn only_missing_and_invalid_request_differ_from_invalid_token() {
        for rejection in JwtRejection::ALL {
            let expected = match rejection {
                JwtRejection::Missing => (StatusCode::UNAUTHORIZED, BearerChallenge::Missing),
                JwtRejection::InvalidRequest => (StatusCode::BAD_REQUEST, BearerChallenge::InvalidRequest),
                _ => (StatusCode::UNAUTHORIZED, BearerChallenge::InvalidToken),
            };

            assert_eq!((rejection.status(), rejection.challenge().unwrap()), expected, "{rejection:?}");
        }
    }
}

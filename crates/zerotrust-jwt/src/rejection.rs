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
    /// The header's `alg` differs from the algorithm bound to the selected key, or
    /// the header carries a key of its own (`jwk`, `jku`, `x5c`, `x5u`).
    DisallowedHeader,
    /// The signature does not verify.
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `aud` is missing or does not contain this service's audience.
    AudienceMismatch,
    /// `iss` is missing or is not the configured issuer.
    IssuerMismatch,
    /// A required claim is missing or has the wrong type.
    InvalidClaims,
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
            JwtRejection::AudienceMismatch => "audience_mismatch",
            JwtRejection::IssuerMismatch => "issuer_mismatch",
            JwtRejection::InvalidClaims => "invalid_claims",
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

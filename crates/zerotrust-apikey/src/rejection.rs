//! The API key layer's reasons for rejecting a request.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use zerotrust_core::{BearerChallenge, Rejection, problem_response};

/// The rejection of [`ApiKeyService`](crate::ApiKeyService).
///
/// It is put into the response extensions, where an outer layer can read the
/// exact reason. The response body gives the client less detail: malformed,
/// unknown, expired and revoked keys all get the same `invalid API key`
/// problem, so a caller cannot probe which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiKeyRejection {
    /// The request carried no API key: 401 with a bare `Bearer` challenge.
    Missing,
    /// The request carried more than one credential: 400 `invalid_request`.
    Ambiguous,
    /// The key is not well-formed: wrong prefix, length, alphabet or checksum.
    Malformed,
    /// The key is well-formed but no store record has its digest.
    Unknown,
    /// The key's record has expired.
    Expired,
    /// The key's record has been revoked.
    Revoked,
    /// The store failed or timed out, so the key could not be checked: 503.
    StoreUnavailable,
}

impl Rejection for ApiKeyRejection {
    fn status(&self) -> StatusCode {
        match self {
            ApiKeyRejection::Missing
            | ApiKeyRejection::Malformed
            | ApiKeyRejection::Unknown
            | ApiKeyRejection::Expired
            | ApiKeyRejection::Revoked => StatusCode::UNAUTHORIZED,
            ApiKeyRejection::Ambiguous => StatusCode::BAD_REQUEST,
            ApiKeyRejection::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn problem_type(&self) -> &'static str {
        match self {
            ApiKeyRejection::Missing => "urn:zerotrust:problem:unauthenticated",
            ApiKeyRejection::Ambiguous => "urn:zerotrust:problem:ambiguous-credentials",
            ApiKeyRejection::Malformed
            | ApiKeyRejection::Unknown
            | ApiKeyRejection::Expired
            | ApiKeyRejection::Revoked => "urn:zerotrust:problem:invalid-api-key",
            ApiKeyRejection::StoreUnavailable => "urn:zerotrust:problem:authentication-unavailable",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiKeyRejection::Missing => "authentication required",
            ApiKeyRejection::Ambiguous => "more than one credential",
            ApiKeyRejection::Malformed
            | ApiKeyRejection::Unknown
            | ApiKeyRejection::Expired
            | ApiKeyRejection::Revoked => "invalid API key",
            ApiKeyRejection::StoreUnavailable => "authentication temporarily unavailable",
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiKeyRejection::Missing => "missing_api_key",
            ApiKeyRejection::Ambiguous => "ambiguous_credentials",
            ApiKeyRejection::Malformed => "malformed_api_key",
            ApiKeyRejection::Unknown => "unknown_api_key",
            ApiKeyRejection::Expired => "expired_api_key",
            ApiKeyRejection::Revoked => "revoked_api_key",
            ApiKeyRejection::StoreUnavailable => "store_unavailable",
        }
    }

    fn challenge(&self) -> Option<BearerChallenge> {
        // RFC 6750 section 3.1: no error code when credentials are missing,
        // `invalid_token` for bad ones and `invalid_request` for a malformed
        // request. A store outage is not the client's fault, so no challenge.
        match self {
            ApiKeyRejection::Missing => Some(BearerChallenge::Missing),
            ApiKeyRejection::Ambiguous => Some(BearerChallenge::InvalidRequest),
            ApiKeyRejection::Malformed
            | ApiKeyRejection::Unknown
            | ApiKeyRejection::Expired
            | ApiKeyRejection::Revoked => Some(BearerChallenge::InvalidToken),
            ApiKeyRejection::StoreUnavailable => None,
        }
    }
}

impl fmt::Display for ApiKeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl IntoResponse for ApiKeyRejection {
    fn into_response(self) -> Response {
        problem_response(self)
    }
}

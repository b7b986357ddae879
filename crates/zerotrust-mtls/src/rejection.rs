//! The reasons the mTLS layer rejects a request.

use http::StatusCode;
use zerotrust_core::Rejection;

/// The rejection of [`RequireCaller`](crate::RequireCaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MtlsRejection {
    /// The connection carried no client certificate (401).
    NoClientCertificate,
    /// The certificate has no valid SPIFFE ID, so no allow-list can match it (403).
    NoSpiffeId,
    /// The caller's SPIFFE ID is not on the allow-list (403).
    CallerNotAllowed,
    /// A trusted proxy sent a malformed `x-forwarded-client-cert` header (400).
    InvalidForwardedCertificate,
}

impl Rejection for MtlsRejection {
    fn status(&self) -> StatusCode {
        match self {
            MtlsRejection::NoClientCertificate => StatusCode::UNAUTHORIZED,
            MtlsRejection::NoSpiffeId | MtlsRejection::CallerNotAllowed => StatusCode::FORBIDDEN,
            MtlsRejection::InvalidForwardedCertificate => StatusCode::BAD_REQUEST,
        }
    }

    fn problem_type(&self) -> &'static str {
        match self {
            MtlsRejection::NoClientCertificate => "urn:zerotrust:problem:client-certificate-required",
            MtlsRejection::NoSpiffeId | MtlsRejection::CallerNotAllowed => {
                "urn:zerotrust:problem:caller-not-allowed"
            }
            MtlsRejection::InvalidForwardedCertificate => "urn:zerotrust:problem:invalid-request",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            MtlsRejection::NoClientCertificate => "client certificate required",
            MtlsRejection::NoSpiffeId | MtlsRejection::CallerNotAllowed => "caller not allowed",
            MtlsRejection::InvalidForwardedCertificate => "invalid request",
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            MtlsRejection::NoClientCertificate => "no_client_certificate",
            MtlsRejection::NoSpiffeId => "no_spiffe_id",
            MtlsRejection::CallerNotAllowed => "caller_not_allowed",
            MtlsRejection::InvalidForwardedCertificate => "invalid_forwarded_certificate",
        }
    }
}

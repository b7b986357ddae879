//! Typed rejections and their RFC 9457 problem responses.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

/// A layer's reason for rejecting a request.
///
/// Each layer has its own rejection type. [`problem_response`] turns one into a
/// response whose body contains only what a client needs to know: the problem type,
/// a title and the status. The detailed [`reason`](Rejection::reason) goes to logs
/// and security events, and the typed rejection itself is put in the response
/// extensions, where an outer layer can read it or replace the response.
pub trait Rejection: fmt::Debug + Clone + Send + Sync + 'static {
    /// Returns the HTTP status code.
    fn status(&self) -> StatusCode;

    /// Returns the problem type URI of RFC 9457 section 3.1.1.
    fn problem_type(&self) -> &'static str;

    /// Returns a short, human-readable summary that is the same for every
    /// instance of the type.
    fn title(&self) -> &'static str;

    /// Returns a stable machine-readable reason for logs and security events.
    /// [`problem_response`] never puts it in the body.
    fn reason(&self) -> &'static str;

    /// Returns the RFC 6750 challenge for bearer credentials, if any.
    fn challenge(&self) -> Option<BearerChallenge> {
        None
    }

    /// Adds headers such as `Retry-After` to the response.
    fn add_headers(&self, _headers: &mut HeaderMap) {}
}

/// An RFC 6750 section 3 `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerChallenge {
    /// The request carried no credentials: a bare `Bearer` challenge (section 3.1).
    Missing,
    /// The credential was malformed, expired, revoked or meant for someone else.
    InvalidToken,
    /// The credential is valid but lacks the named scope.
    InsufficientScope(String),
    /// The request itself was malformed, for example with two credentials.
    InvalidRequest,
}

impl BearerChallenge {
    /// Renders the header value.
    pub fn to_header_value(&self) -> HeaderValue {
        match self {
            BearerChallenge::Missing => HeaderValue::from_static("Bearer"),
            BearerChallenge::InvalidToken => {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            }
            BearerChallenge::InvalidRequest => {
                HeaderValue::from_static("Bearer error=\"invalid_request\"")
            }
            BearerChallenge::InsufficientScope(scope) => {
                // Scope tokens are printable ASCII without quotes or backslashes
                // (RFC 6749 section 3.3), so quoting them is enough. Anything else
                // is dropped rather than risk a malformed header.
                let valid = scope
                    .bytes()
                    .all(|b| b == b' ' || (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
                let value = if valid {
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")
                } else {
                    "Bearer error=\"insufficient_scope\"".to_owned()
                };
                HeaderValue::from_str(&value)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"insufficient_scope\""))
            }
        }
    }
}

/// Builds the response for a rejection.
///
/// The body is `application/problem+json` with `type`, `title` and `status`
/// (RFC 9457). Responses are marked `Cache-Control: no-store`, the rejection is
/// put into the response extensions, and a bearer challenge becomes a
/// `WWW-Authenticate` header.
pub fn problem_response<R: Rejection>(rejection: R) -> Response {
    let status = rejection.status();
    let body = serde_json::json!({
        "type": rejection.problem_type(),
        "title": rejection.title(),
        "status": status.as_u16(),
    });

    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = rejection.challenge() {
        headers.insert(WWW_AUTHENTICATE, challenge.to_header_value());
    }
    rejection.add_headers(headers);

    response.extensions_mut().insert(rejection);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[derive(Debug, Clone)]
    struct Denied;

    impl Rejection for Denied {
        fn status(&self) -> StatusCode {
            StatusCode::UNAUTHORIZED
        }
        fn problem_type(&self) -> &'static str {
            "urn:test:denied"
        }
        fn title(&self) -> &'static str {
            "denied"
        }
        fn reason(&self) -> &'static str {
            "secret_detail"
        }
        fn challenge(&self) -> Option<BearerChallenge> {
            Some(BearerChallenge::InvalidToken)
        }
    }

    #[tokio::test]
    async fn problem_response_has_body_headers_and_extension() {
        let response = problem_response(Denied);

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert!(response.extensions().get::<Denied>().is_some());

        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "urn:test:denied");
        assert_eq!(json["title"], "denied");
        assert_eq!(json["status"], 401);
        assert!(!String::from_utf8_lossy(&body).contains("secret_detail"));
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let value = BearerChallenge::InsufficientScope("orders:write".into()).to_header_value();

        assert_eq!(value, "Bearer error=\"insufficient_scope\", scope=\"orders:write\"");
    }

    #[test]
    fn insufficient_scope_drops_unquotable_scope() {
        let value = BearerChallenge::InsufficientScope("a\"b".into()).to_header_value();

        assert_eq!(value, "Bearer error=\"insufficient_scope\"");
    }
}

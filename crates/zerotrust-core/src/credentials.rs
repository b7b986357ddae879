//! Reading credentials out of request headers.

use http::{HeaderMap, HeaderValue};
use http::header::AUTHORIZATION;

/// The reason the `Authorization` header gave no bearer credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// More than one `Authorization` header.
    Duplicate,
    /// The header uses the `Bearer` scheme but its value is not a valid credential:
    /// empty, not visible ASCII, or with more than one space.
    Malformed,
}

/// Returns the credential of a single `Authorization: Bearer <credential>` header.
///
/// The scheme name is matched case-insensitively (RFC 9110 section 11.1); the
/// credential is returned as sent. Returns `Ok(None)` when there is no
/// `Authorization` header or it uses another scheme, so another layer may handle
/// it. Two headers are an error, never "the first one wins".
pub fn bearer_credential(headers: &HeaderMap) -> Result<Option<&str>, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BearerError::Duplicate);
    }

    parse_bearer(value)
}

/// Parses one `Authorization` value as `Bearer <credential>`.
///
/// Returns `Ok(None)` for another scheme, the credential for a well-formed
/// bearer value, and [`BearerError::Malformed`] for a bearer value whose
/// credential is empty or outside the RFC 6750 `b64token` grammar (a space, a
/// tab or a non-ASCII byte, for example). Layers that read the header
/// themselves call this so that every layer accepts exactly the same values.
pub fn parse_bearer(value: &HeaderValue) -> Result<Option<&str>, BearerError> {
    let bytes = value.as_bytes();
    let scheme_end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }

    // RFC 6750 section 2.1: `"Bearer" 1*SP b64token`, so several spaces are valid.
    let rest = &bytes[scheme_end..];
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let credential = &rest[start..];
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let valid = !credential.is_empty()
        && credential
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b));
    if !valid {
        return Err(BearerError::Malformed);
    }
    Ok(std::str::from_utf8(credential).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_credential(&headers(&["Bearer abc.def"])), Ok(Some("abc.def")));
        assert_eq!(bearer_credential(&headers(&["bearer abc"])), Ok(Some("abc")));
        assert_eq!(bearer_credential(&headers(&["BEARER abc"])), Ok(Some("abc")));
        assert_eq!(bearer_credential(&headers(&["Bearer   abc"])), Ok(Some("abc")));
        assert_eq!(bearer_credential(&headers(&["Bearerabc"])), Ok(None));
    }

    #[test]
    fn other_schemes_and_absence_are_none() {
        assert_eq!(bearer_credential(&headers(&[])), Ok(None));
        assert_eq!(bearer_credential(&headers(&["Basic dXNlcjpwYXNz"])), Ok(None));
        assert_eq!(bearer_credential(&headers(&["Bear"])), Ok(None));
        assert_eq!(bearer_credential(&headers(&["Bearerabc"])), Ok(None));
    }

    #[test]
    fn duplicates_and_junk_are_errors() {
        assert_eq!(
            bearer_credential(&headers(&["Bearer a", "Bearer a"])),
            Err(BearerError::Duplicate)
        );
        assert_eq!(bearer_credential(&headers(&["Bearer "])), Err(BearerError::Malformed));
        assert_eq!(bearer_credential(&headers(&["Bearer"])), Err(BearerError::Malformed));
        assert_eq!(bearer_credential(&headers(&["Bearer a b"])), Err(BearerError::Malformed));
        assert_eq!(bearer_credential(&headers(&["Bearer a "])), Err(BearerError::Malformed));
        assert_eq!(bearer_credential(&headers(&["Bearer a\t"])), Err(BearerError::Malformed));
    }
}

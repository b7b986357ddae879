//! Finding the API key in request headers.

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue};

/// The header that carries an API key on its own.
pub(crate) static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The credential a request carries, before it is parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// Neither `X-API-Key` nor `Authorization: Bearer` is present.
    Missing,
    /// Exactly one key, possibly sent in both headers with the same value.
    Present(&'a str),
    /// A header is present but its value is not a readable bearer credential.
    Unreadable,
    /// A header is repeated, or the two headers carry different values.
    Ambiguous,
}

/// Reads the credential from `X-API-Key` or `Authorization: Bearer`.
///
/// The query string is never read: URLs end up in access logs, browser history
/// and `Referer` headers. An `Authorization` header with another scheme, such
/// as `Basic`, is not an API key and is ignored.
pub(crate) fn extract_credential(headers: &HeaderMap) -> Credential<'_> {
    let Ok(api_key) = single_value(headers, &X_API_KEY) else {
        return Credential::Ambiguous;
    };
    let Ok(authorization) = single_value(headers, &AUTHORIZATION) else {
        return Credential::Ambiguous;
    };

    let from_api_key = api_key.map(|value| value.to_str().ok());
    let from_bearer = authorization.and_then(bearer_token);

    match (from_api_key, from_bearer) {
        (None, None) => Credential::Missing,
        (Some(Some(key)), None) | (None, Some(Some(key))) => Credential::Present(key),
        (Some(None), None) | (None, Some(None)) => Credential::Unreadable,
        // Two headers count as one credential only if they are byte-for-byte
        // equal. Anything else could let a proxy and the service disagree on
        // which key authenticated the request.
        (Some(Some(key)), Some(Some(token))) if key == token => Credential::Present(key),
        (Some(_), Some(_)) => Credential::Ambiguous,
    }
}

/// Returns the header's only value, `None` if absent, or `Err` if repeated.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// Parses `Bearer <token>` (RFC 6750 section 2.1), with the scheme matched
/// case-insensitively as RFC 9110 section 11.1 requires.
///
/// Returns `None` for another scheme, `Some(None)` for a bearer credential that
/// is empty or not visible ASCII, and `Some(Some(token))` otherwise. The token
/// itself is case-sensitive and returned as sent.
fn bearer_token(value: &HeaderValue) -> Option<Option<&str>> {
    let Ok(value) = value.to_str() else {
        // Not visible ASCII, so the scheme cannot be read. Treat it as a bad
        // bearer credential rather than as no credential at all.
        return Some(None);
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }

    let token = rest.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Some(None);
    }
    Some(Some(token))
}

/// Marks the credential headers sensitive, so that HTTP/2 never compresses
/// them into the HPACK dynamic table and `Debug` of the headers hides them.
///
/// Only the first value of each header is marked, which covers every request
/// the layer accepts: a repeated header is rejected as ambiguous.
pub(crate) fn mark_sensitive(headers: &mut HeaderMap) {
    if let Some(value) = headers.get_mut(&X_API_KEY) {
        value.set_sensitive(true);
    }
    if let Some(value) = headers.get_mut(AUTHORIZATION) {
        value.set_sensitive(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn extract_reads_either_header() {
        assert_eq!(
            extract_credential(&headers(&[("x-api-key", "mk_a")])),
            Credential::Present("mk_a")
        );
        assert_eq!(
            extract_credential(&headers(&[("authorization", "Bearer mk_a")])),
            Credential::Present("mk_a")
        );
    }

    #[test]
    fn extract_bearer_scheme_is_case_insensitive() {
        for value in ["bearer mk_a", "BEARER mk_a", "BeArEr mk_a", "Bearer  mk_a"] {
            let map = headers(&[("authorization", value)]);

            assert_eq!(
                extract_credential(&map),
                Credential::Present("mk_a"),
                "{value}"
            );
        }
    }

    #[test]
    fn extract_ignores_other_schemes() {
        let map = headers(&[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]);

        assert_eq!(extract_credential(&map), Credential::Missing);
    }

    #[test]
    fn extract_empty_bearer_is_unreadable() {
        for value in ["Bearer", "Bearer ", "Bearer a b"] {
            let map = headers(&[("authorization", value)]);

            assert_eq!(
                extract_credential(&map),
                Credential::Unreadable,
                "{value:?}"
            );
        }
    }

    #[test]
    fn extract_non_ascii_value_is_unreadable() {
        let mut map = HeaderMap::new();
        map.insert("x-api-key", HeaderValue::from_bytes(b"mk_\xff").unwrap());

        assert_eq!(extract_credential(&map), Credential::Unreadable);
    }

    #[test]
    fn extract_repeated_header_is_ambiguous() {
        let keys = headers(&[("x-api-key", "mk_a"), ("x-api-key", "mk_a")]);
        let bearers = headers(&[
            ("authorization", "Bearer mk_a"),
            ("authorization", "Bearer mk_b"),
        ]);

        assert_eq!(extract_credential(&keys), Credential::Ambiguous);
        assert_eq!(extract_credential(&bearers), Credential::Ambiguous);
    }

    #[test]
    fn extract_both_headers_must_agree() {
        let same = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_a")]);
        let different = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_b")]);
        let unreadable = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer")]);

        assert_eq!(extract_credential(&same), Credential::Present("mk_a"));
        assert_eq!(extract_credential(&different), Credential::Ambiguous);
        assert_eq!(extract_credential(&unreadable), Credential::Ambiguous);
    }

    #[test]
    fn mark_sensitive_marks_both_headers() {
        let mut map = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_a")]);

        mark_sensitive(&mut map);

        assert!(map["x-api-key"].is_sensitive());
        assert!(map["authorization"].is_sensitive());
    }
}

//! Finding the API key in request headers.

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue};

/// The header that carries an API key on its own.
pub(crate) static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The maximum length of a credential header value, in bytes.
///
/// A key is at most 16 + 43 + 6 characters and `Bearer ` adds 7, so 256 bytes
/// leaves room for any valid credential. Longer values are rejected before any
/// parsing, so a huge header costs one length check.
pub(crate) const MAX_CREDENTIAL_LEN: usize = 256;

/// The credential a request carries, before it is parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// Neither `X-API-Key` nor `Authorization: Bearer` is present.
    Missing,
    /// Exactly one key, possibly sent in both headers with the same value.
    Present(&'a str),
    /// A header is present but its value is not a readable bearer credential.
    Unreadable,
    /// A header value is longer than [`MAX_CREDENTIAL_LEN`].
    Oversized,
    /// A header is repeated, or the two headers carry different values.
    Ambiguous,
}

/// Reads the credential from `X-API-Key` or `Authorization: Bearer`, and from
/// the query parameter `query_parameter` if one is named.
///
/// By default the query string is not read: URLs end up in access logs,
/// browser history and `Referer` headers. An `Authorization` header with
/// another scheme, such as `Basic`, is not an API key and is ignored.
pub(crate) fn extract_credential<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    query_parameter: Option<&str>,
) -> Credential<'a> {
    let from_headers = extract_from_headers(headers);
    let Some(name) = query_parameter else {
        return from_headers;
    };
    match (from_headers, query_value(query.unwrap_or(""), name)) {
        (credential, QueryValue::Absent) => credential,
        (_, QueryValue::Repeated) => Credential::Ambiguous,
        (Credential::Missing, QueryValue::Present(value)) if value.len() > MAX_CREDENTIAL_LEN => {
            Credential::Oversized
        }
        (Credential::Missing, QueryValue::Present(value)) => Credential::Present(value),
        // A key in the query and another credential in a header: the same
        // rule as for two headers, so equal values count as one credential.
        (Credential::Present(key), QueryValue::Present(value)) if key == value => {
            Credential::Present(key)
        }
        (_, QueryValue::Present(_)) => Credential::Ambiguous,
    }
}

/// A query parameter's raw value, not percent-decoded: a well-formed key
/// contains only `A-Z`, `a-z`, `0-9` and `_`, which never need encoding.
enum QueryValue<'a> {
    Absent,
    Present(&'a str),
    Repeated,
}

fn query_value<'a>(query: &'a str, name: &str) -> QueryValue<'a> {
    let mut values = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value);
    match (values.next(), values.next()) {
        (None, _) => QueryValue::Absent,
        (Some(value), None) => QueryValue::Present(value),
        (Some(_), Some(_)) => QueryValue::Repeated,
    }
}

fn extract_from_headers(headers: &HeaderMap) -> Credential<'_> {
    let Ok(api_key) = single_value(headers, &X_API_KEY) else {
        return Credential::Ambiguous;
    };
    let Ok(authorization) = single_value(headers, &AUTHORIZATION) else {
        return Credential::Ambiguous;
    };
    let oversized =
        |value: Option<&HeaderValue>| value.is_some_and(|v| v.len() > MAX_CREDENTIAL_LEN);
    if oversized(api_key) || oversized(authorization) {
        return Credential::Oversized;
    }

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

/// Parses `Bearer <token>` with the same grammar as every other zerotrust layer
/// ([`zerotrust_core::parse_bearer`]).
///
/// Returns `None` for another scheme, `Some(None)` for a bearer credential that
/// is empty or outside the RFC 6750 `b64token` grammar (a trailing space or tab,
/// a non-ASCII byte), and `Some(Some(token))` otherwise. The token itself is
/// case-sensitive and returned as sent.
fn bearer_token(value: &HeaderValue) -> Option<Option<&str>> {
    match zerotrust_core::parse_bearer(value) {
        Ok(None) => None,
        Ok(Some(token)) => Some(Some(token)),
        Err(_) => Some(None),
    }
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
            extract_from_headers(&headers(&[("x-api-key", "mk_a")])),
            Credential::Present("mk_a")
        );
        assert_eq!(
            extract_from_headers(&headers(&[("authorization", "Bearer mk_a")])),
            Credential::Present("mk_a")
        );
    }

    #[test]
    fn extract_bearer_scheme_is_case_insensitive() {
        for value in ["bearer mk_a", "BEARER mk_a", "BeArEr mk_a", "Bearer  mk_a"] {
            let map = headers(&[("authorization", value)]);

            assert_eq!(
                extract_from_headers(&map),
                Credential::Present("mk_a"),
                "{value}"
            );
        }
    }

    #[test]
    fn extract_ignores_other_schemes() {
        let map = headers(&[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]);

        assert_eq!(extract_from_headers(&map), Credential::Missing);
    }

    #[test]
    fn extract_empty_bearer_is_unreadable() {
        for value in ["Bearer", "Bearer ", "Bearer a b"] {
            let map = headers(&[("authorization", value)]);

            assert_eq!(
                extract_from_headers(&map),
                Credential::Unreadable,
                "{value:?}"
            );
        }
    }

    #[test]
    fn extract_non_ascii_value_is_unreadable() {
        let mut map = HeaderMap::new();
        map.insert("x-api-key", HeaderValue::from_bytes(b"mk_\xff").unwrap());

        assert_eq!(extract_from_headers(&map), Credential::Unreadable);
    }

    #[test]
    fn extract_repeated_header_is_ambiguous() {
        let keys = headers(&[("x-api-key", "mk_a"), ("x-api-key", "mk_a")]);
        let bearers = headers(&[
            ("authorization", "Bearer mk_a"),
            ("authorization", "Bearer mk_b"),
        ]);

        assert_eq!(extract_from_headers(&keys), Credential::Ambiguous);
        assert_eq!(extract_from_headers(&bearers), Credential::Ambiguous);
    }

    #[test]
    fn extract_both_headers_must_agree() {
        let same = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_a")]);
        let different = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_b")]);
        let unreadable = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer")]);

        assert_eq!(extract_from_headers(&same), Credential::Present("mk_a"));
        assert_eq!(extract_from_headers(&different), Credential::Ambiguous);
        assert_eq!(extract_from_headers(&unreadable), Credential::Ambiguous);
    }

    #[test]
    fn extract_trailing_whitespace_is_rejected() {
        let bearer_space = headers(&[("authorization", "Bearer mk_a ")]);
        let bearer_tab = headers(&[("authorization", "Bearer mk_a\t")]);

        assert_eq!(extract_from_headers(&bearer_space), Credential::Unreadable);
        assert_eq!(extract_from_headers(&bearer_tab), Credential::Unreadable);
    }

    #[test]
    fn extract_oversized_header_is_rejected() {
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_LEN + 1));
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_str(&long).unwrap());
        let mut api_key = HeaderMap::new();
        api_key.insert(&X_API_KEY, HeaderValue::from_str(&long[7..]).unwrap());

        assert_eq!(extract_from_headers(&map), Credential::Oversized);
        assert_eq!(extract_from_headers(&api_key), Credential::Oversized);
    }

    #[test]
    fn extract_query_ignored_unless_named() {
        let none = HeaderMap::new();

        assert_eq!(
            extract_credential(&none, Some("api_key=mk_a"), None),
            Credential::Missing
        );
        assert_eq!(
            extract_credential(&none, Some("x=1&api_key=mk_a"), Some("api_key")),
            Credential::Present("mk_a")
        );
        assert_eq!(
            extract_credential(&none, Some("key=mk_a"), Some("api_key")),
            Credential::Missing
        );
        assert_eq!(
            extract_credential(&none, None, Some("api_key")),
            Credential::Missing
        );
    }

    #[test]
    fn extract_query_and_header_must_agree() {
        let header = headers(&[("x-api-key", "mk_a")]);
        let none = HeaderMap::new();

        assert_eq!(
            extract_credential(&header, Some("api_key=mk_a"), Some("api_key")),
            Credential::Present("mk_a")
        );
        assert_eq!(
            extract_credential(&header, Some("api_key=mk_b"), Some("api_key")),
            Credential::Ambiguous
        );
        assert_eq!(
            extract_credential(&none, Some("api_key=mk_a&api_key=mk_a"), Some("api_key")),
            Credential::Ambiguous
        );
    }

    #[test]
    fn mark_sensitive_marks_both_headers() {
        let mut map = headers(&[("x-api-key", "mk_a"), ("authorization", "Bearer mk_a")]);

        mark_sensitive(&mut map);

        assert!(map["x-api-key"].is_sensitive());
        assert!(map["authorization"].is_sensitive());
    }
}

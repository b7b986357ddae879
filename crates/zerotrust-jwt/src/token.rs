//! Strict parsing of a compact JWS before any key or claim is looked at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::json::parse_object;
use crate::rejection::JwtRejection;

/// Header members that carry or point to a key. A key chosen by the token would
/// let the sender pick the key that verifies it (RFC 8725 section 3.10), so a
/// token with any of them is rejected and nothing is fetched.
const KEY_BEARING_MEMBERS: [&str; 4] = ["jwk", "jku", "x5c", "x5u"];

/// A compact JWS split into its parts, with header and claims decoded.
#[derive(Debug)]
pub(crate) struct ParsedToken<'a> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`, the JWS signing input.
    pub(crate) signing_input: &'a str,
    /// The third segment, still base64url-encoded.
    pub(crate) signature: &'a str,
    pub(crate) header: TokenHeader,
    pub(crate) claims: Map<String, Value>,
}

/// The header members this crate reads.
#[derive(Debug)]
pub(crate) struct TokenHeader {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// Splits and decodes `token`.
///
/// Rejects, as [`JwtRejection::Malformed`]: anything but three segments, an empty
/// segment, characters outside the base64url alphabet (so padding, whitespace
/// and `+`/`/` too), non-canonical base64url, and header or claims that are not a
/// JSON object without duplicate members. Rejects as
/// [`JwtRejection::DisallowedHeader`] a header with a key of its own or a `crit`
/// member.
pub(crate) fn parse(token: &str) -> Result<ParsedToken<'_>, JwtRejection> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(JwtRejection::Malformed);
    };
    let header_bytes = decode_segment(header)?;
    let payload_bytes = decode_segment(payload)?;
    decode_segment(signature)?;

    let header_json = parse_object(&header_bytes).map_err(|_| JwtRejection::Malformed)?;
    let parsed_header = parse_header(&header_json)?;
    let claims = parse_object(&payload_bytes).map_err(|_| JwtRejection::Malformed)?;

    Ok(ParsedToken {
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature,
        header: parsed_header,
        claims,
    })
}

/// Decodes one segment. The alphabet is checked first, so padding, whitespace and
/// the `+` and `/` of standard base64 are rejected before decoding.
fn decode_segment(segment: &str) -> Result<Vec<u8>, JwtRejection> {
    let in_alphabet = segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if segment.is_empty() || !in_alphabet {
        return Err(JwtRejection::Malformed);
    }
    // The engine rejects padding and non-zero trailing bits, so every accepted
    // segment is the one canonical encoding of its bytes.
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| JwtRejection::Malformed)
}

fn parse_header(header: &Map<String, Value>) -> Result<TokenHeader, JwtRejection> {
    if KEY_BEARING_MEMBERS.iter().any(|name| header.contains_key(*name)) {
        return Err(JwtRejection::DisallowedHeader);
    }
    // This crate understands no extension, so any `crit` member names one it
    // cannot process, and RFC 7515 section 4.1.11 requires rejecting the token.
    if header.contains_key("crit") {
        return Err(JwtRejection::DisallowedHeader);
    }

    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(JwtRejection::Malformed),
    };
    let kid = optional_string(header, "kid")?;
    let typ = optional_string(header, "typ")?;
    Ok(TokenHeader { alg, kid, typ })
}

fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtRejection> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(JwtRejection::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", segment(header), segment(claims))
    }

    #[test]
    fn parse_returns_header_claims_and_signing_input() {
        let text = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"a"}"#);

        let parsed = parse(&text).unwrap();

        assert_eq!(parsed.header.alg, "RS256");
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
        assert_eq!(parsed.claims["sub"], "a");
        assert_eq!(parsed.signature, "c2ln");
        assert_eq!(format!("{}.c2ln", parsed.signing_input), text);
    }

    #[test]
    fn parse_rejects_non_canonical_segments() {
        let header = segment(r#"{"alg":"RS256","kid":"k1"}"#);
        let claims = segment(r#"{"sub":"a"}"#);
        let cases = [
            format!("{header}.{claims}"),
            format!("{header}.{claims}.c2ln.c2ln"),
            format!("{header}.{claims}."),
            format!(".{claims}.c2ln"),
            format!("{header}.{claims}.c2ln="),
            format!("{header}.{claims}.c2l+"),
            format!("{header}.{claims}.c2l/"),
            format!("{header} .{claims}.c2ln"),
            format!("{header}.{claims}.c2\nln"),
            format!("{header}.{claims}.c2ln\u{e9}"),
            // "c2lo" and "c2ln" decode to the same bytes only if trailing bits are ignored.
            format!("{header}.{claims}.c2m"),
            format!("{header}.{claims}.c"),
            "....".to_owned(),
            String::new(),
        ];

        for case in cases {
            assert_eq!(parse(&case).unwrap_err(), JwtRejection::Malformed, "{case:?}");
        }
    }

    #[test]
    fn parse_rejects_key_bearing_and_crit_headers() {
        for header in [
            r#"{"alg":"RS256","kid":"k1","jwk":{}}"#,
            r#"{"alg":"RS256","kid":"k1","jku":"https://evil.test/jwks"}"#,
            r#"{"alg":"RS256","kid":"k1","x5c":[]}"#,
            r#"{"alg":"RS256","kid":"k1","x5u":"https://evil.test/cert"}"#,
            r#"{"alg":"RS256","kid":"k1","crit":["exp"],"exp":1}"#,
            r#"{"alg":"RS256","kid":"k1","crit":[]}"#,
        ] {
            let rejection = parse(&token(header, "{}")).unwrap_err();
            assert_eq!(rejection, JwtRejection::DisallowedHeader, "{header}");
        }
    }

    #[test]
    fn parse_rejects_bad_header_and_claims_json() {
        let cases = [
            (r#"{"kid":"k1"}"#, "{}"),
            (r#"{"alg":5,"kid":"k1"}"#, "{}"),
            (r#"{"alg":"RS256","kid":7}"#, "{}"),
            (r#"{"alg":"RS256","typ":null}"#, "{}"),
            (r#"{"alg":"RS256","alg":"RS256"}"#, "{}"),
            (r#"{"alg":"RS256"}"#, r#"{"aud":"a","aud":"b"}"#),
            (r#"{"alg":"RS256"}"#, "[]"),
            (r#"{"alg":"RS256"}"#, "not json"),
        ];

        for (header, claims) in cases {
            let rejection = parse(&token(header, claims)).unwrap_err();
            assert_eq!(rejection, JwtRejection::Malformed, "{header} {claims}");
        }
    }
}

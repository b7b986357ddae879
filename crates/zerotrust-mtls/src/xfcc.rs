//! Parsing Envoy's `x-forwarded-client-cert` header.

/// The maximum length, in bytes, of a header value that is parsed.
pub const MAX_XFCC_BYTES: usize = 64 * 1024;

/// One hop of an `x-forwarded-client-cert` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct XfccElement {
    /// `By`: the proxy's own identity (URI SAN), one per occurrence.
    pub by: Vec<String>,
    /// `Hash`: hex SHA-256 of the client certificate's DER.
    pub hash: Option<String>,
    /// `Cert`: the URL-encoded PEM client certificate.
    pub cert: Option<String>,
    /// `Chain`: the URL-encoded PEM client chain.
    pub chain: Option<String>,
    /// `Subject`: the client certificate's subject.
    pub subject: Option<String>,
    /// `URI`: the client certificate's URI SANs.
    pub uri: Vec<String>,
    /// `DNS`: the client certificate's DNS SANs.
    pub dns: Vec<String>,
}

/// An error while parsing an `x-forwarded-client-cert` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XfccError {
    /// The value is longer than [`MAX_XFCC_BYTES`].
    #[error("x-forwarded-client-cert is longer than {MAX_XFCC_BYTES} bytes")]
    TooLong,
    /// The value is empty or an element is empty.
    #[error("x-forwarded-client-cert has an empty element")]
    EmptyElement,
    /// A pair has no `=`.
    #[error("x-forwarded-client-cert pair without '=' at byte {0}")]
    MissingEquals(usize),
    /// A quoted value is not closed.
    #[error("x-forwarded-client-cert has an unterminated quoted value")]
    UnterminatedQuote,
    /// Text follows a closing quote before the next separator.
    #[error("x-forwarded-client-cert has text after a closing quote at byte {0}")]
    TextAfterQuote(usize),
    /// A single-valued key appears twice in one element.
    #[error("x-forwarded-client-cert repeats the key {0} in one element")]
    DuplicateKey(&'static str),
    /// A control character appears in the value.
    #[error("x-forwarded-client-cert contains a control character")]
    ControlCharacter,
}

/// Parses a whole header value into its elements, first hop first.
///
/// ```
/// use zerotrust_mtls::parse_xfcc;
///
/// let elements = parse_xfcc(
///     r#"By=spiffe://example.org/proxy;Hash=ab12;URI=spiffe://example.org/web,By=spiffe://example.org/edge;URI="spiffe://example.org/gw""#,
/// ).unwrap();
/// assert_eq!(elements.len(), 2);
/// assert_eq!(elements[1].uri, ["spiffe://example.org/gw"]);
/// ```
///
/// The header contains one element per proxy hop, separated by commas. An element
/// is a list of `Key=Value` pairs separated by semicolons. A value may be quoted
/// with double quotes, and inside quotes a comma, semicolon or equals sign is
/// literal and `\"` is a quote. Keys are `By`, `Hash`, `Cert`, `Chain`, `Subject`,
/// `URI` and `DNS`, matched case-insensitively; other keys are ignored.
pub fn parse_xfcc(value: &str) -> Result<Vec<XfccElement>, XfccError> {
    if value.len() > MAX_XFCC_BYTES {
        return Err(XfccError::TooLong);
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(XfccError::ControlCharacter);
    }

    let mut elements = Vec::new();
    let mut element = XfccElement::default();
    let mut pairs_in_element = 0;
    let bytes = value.as_bytes();
    let mut position = 0;
    loop {
        let (key, value, end) = parse_pair(value, position)?;
        assign(&mut element, key, value)?;
        pairs_in_element += 1;

        match bytes.get(end) {
            None => break,
            Some(b';') => position = end + 1,
            Some(b',') => {
                elements.push(std::mem::take(&mut element));
                pairs_in_element = 0;
                position = end + 1;
            }
            Some(_) => return Err(XfccError::TextAfterQuote(end)),
        }
    }
    if pairs_in_element == 0 {
        return Err(XfccError::EmptyElement);
    }
    elements.push(element);
    Ok(elements)
}

/// Parses `Key=Value` starting at `start`. Returns the key, the unquoted value and
/// the index of the byte after the value (a separator or the end).
fn parse_pair(input: &str, start: usize) -> Result<(&str, String, usize), XfccError> {
    let bytes = input.as_bytes();
    let mut index = start;
    while index < bytes.len() && bytes[index] == b' ' {
        index += 1;
    }
    let key_start = index;
    while index < bytes.len() && !matches!(bytes[index], b'=' | b';' | b',') {
        index += 1;
    }
    if bytes.get(index) != Some(&b'=') {
        return Err(if index == key_start {
            XfccError::EmptyElement
        } else {
            XfccError::MissingEquals(index)
        });
    }
    let key = input[key_start..index].trim();
    if key.is_empty() {
        return Err(XfccError::EmptyElement);
    }
    index += 1;

    if bytes.get(index) == Some(&b'"') {
        index += 1;
        let mut value = String::new();
        let mut segment_start = index;
        loop {
            match bytes.get(index) {
                None => return Err(XfccError::UnterminatedQuote),
                Some(b'\\') if bytes.get(index + 1) == Some(&b'"') => {
                    value.push_str(&input[segment_start..index]);
                    value.push('"');
                    index += 2;
                    segment_start = index;
                }
                Some(b'"') => {
                    value.push_str(&input[segment_start..index]);
                    index += 1;
                    break;
                }
                Some(_) => index += 1,
            }
        }
        if index < bytes.len() && !matches!(bytes[index], b';' | b',') {
            return Err(XfccError::TextAfterQuote(index));
        }
        return Ok((key, value, index));
    }

    let value_start = index;
    while index < bytes.len() && !matches!(bytes[index], b';' | b',') {
        index += 1;
    }
    Ok((key, input[value_start..index].to_owned(), index))
}

fn assign(element: &mut XfccElement, key: &str, value: String) -> Result<(), XfccError> {
    let single = |slot: &mut Option<String>, name: &'static str| {
        if slot.is_some() {
            return Err(XfccError::DuplicateKey(name));
        }
        *slot = Some(value.clone());
        Ok(())
    };
    match key.to_ascii_lowercase().as_str() {
        "by" => element.by.push(value),
        "hash" => single(&mut element.hash, "Hash")?,
        "cert" => single(&mut element.cert, "Cert")?,
        "chain" => single(&mut element.chain, "Chain")?,
        "subject" => single(&mut element.subject, "Subject")?,
        "uri" => element.uri.push(value),
        "dns" => element.dns.push(value),
        _ => {}
    }
    Ok(())
}

/// Decodes a URL-encoded value (`%XX` escapes, `+` kept as is) as Envoy encodes
/// the `Cert` and `Chain` PEM text.
pub(crate) fn url_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_example() {
        let value = r#"By=spiffe://lyft.com/frontend;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/testclient"#;

        let elements = parse_xfcc(value).unwrap();

        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].by, ["spiffe://lyft.com/frontend"]);
        assert_eq!(elements[0].subject.as_deref(), Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client"));
        assert_eq!(elements[0].uri, ["spiffe://lyft.com/testclient"]);
        assert_eq!(elements[0].hash.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn quoted_values_keep_separators_and_escapes() {
        let elements = parse_xfcc(r#"Subject="a,b;c=d \"q\"";DNS=x.test,uri=spiffe://e.test/a;DNS=y;DNS=z"#).unwrap();

        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].subject.as_deref(), Some(r#"a,b;c=d "q""#));
        assert_eq!(elements[0].dns, ["x.test"]);
        assert_eq!(elements[1].uri, ["spiffe://e.test/a"]);
        assert_eq!(elements[1].dns, ["y", "z"]);
    }

    #[test]
    fn malformed_values_are_errors() {
        let cases = [
            ("", XfccError::EmptyElement),
            ("Hash=a,", XfccError::EmptyElement),
            ("Hash=a;;URI=b", XfccError::EmptyElement),
            ("Hash", XfccError::MissingEquals(4)),
            ("Subject=\"open", XfccError::UnterminatedQuote),
            ("Subject=\"a\"b", XfccError::TextAfterQuote(11)),
            ("Hash=a;Hash=b", XfccError::DuplicateKey("Hash")),
            ("Hash=a\nb", XfccError::ControlCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_xfcc(input), Err(expected), "{input:?}");
        }
        assert_eq!(parse_xfcc(&"a".repeat(MAX_XFCC_BYTES + 1)), Err(XfccError::TooLong));
    }

    #[test]
    fn random_input_never_panics() {
        // A small xorshift generator keeps the test deterministic and bounded.
        let alphabet = b"ab=;,\"\\ %URIByHash:/.-\t";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 40) as usize;
            for _ in 0..length {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize] as char);
            }
            let _ = parse_xfcc(&text);
        }
    }

    #[test]
    fn formatted_elements_round_trip() {
        let subjects = ["plain", "with,comma", "with;semi", "with=eq", "with \"quote\""];
        for subject in subjects {
            let escaped = subject.replace('"', "\\\"");
            let value = format!("Hash=00ff;Subject=\"{escaped}\";URI=spiffe://a.test/s");

            let elements = parse_xfcc(&value).unwrap();

            assert_eq!(elements[0].subject.as_deref(), Some(subject));
            assert_eq!(elements[0].uri, ["spiffe://a.test/s"]);
        }
    }

    #[test]
    fn url_decode_handles_pem_escapes() {
        assert_eq!(url_decode("-----BEGIN%20CERT%0A").as_deref(), Some("-----BEGIN CERT\n"));
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%4"), None);
    }
}

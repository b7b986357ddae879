//! The request id that ties a security event to a request.

use http::HeaderMap;

/// The longest `x-request-id` value that is copied into events.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Returns the `x-request-id` header if it is short, visible ASCII.
///
/// The value comes from the client, so it is only a correlation hint: anything
/// longer than 128 bytes or with other characters is ignored rather than copied
/// into logs.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-request-id")?.as_bytes();
    let valid = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.iter().all(|b| b.is_ascii_graphic());
    valid.then(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn request_id_rejects_long_and_odd_values() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers).as_deref(), Some("abc-123"));

        headers.insert("x-request-id", HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(request_id(&headers), None);

        headers.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(request_id(&headers), None);
    }
}

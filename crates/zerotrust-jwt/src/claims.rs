//! The claims a verified token carries, and their strict reading from JSON.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zerotrust_core::Scopes;

use crate::rejection::JwtRejection;

/// The largest NumericDate accepted: 9999-12-31T23:59:59Z, in seconds since the
/// Unix epoch. Larger values are treated as malformed rather than as "never
/// expires".
pub(crate) const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// The `aud` claim: one audience or several (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience string.
    One(String),
    /// An array of audience strings.
    Many(Vec<String>),
}

impl Audience {
    /// Returns `true` if `audience` is one of the token's audiences, compared exactly.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(value) => value == audience,
            Audience::Many(values) => values.iter().any(|value| value == audience),
        }
    }
}

/// The `cnf` claim (RFC 7800), with the certificate thumbprint of RFC 8705
/// section 3.1.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confirmation {
    /// `x5t#S256`: the unpadded base64url SHA-256 digest of the DER certificate
    /// the token is bound to.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// The registered and zerotrust-specific claims of a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `service:<name>` for service tokens.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch (a fractional value is truncated).
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (RFC 8693 section 4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Confirmation: the certificate the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("jti", &self.jti)
            .field("cnf", &self.cnf)
            .finish_non_exhaustive()
    }
}

impl Claims {
    /// Returns the `cnf.x5t#S256` thumbprint, if the token is certificate-bound.
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.cnf.as_ref()?.x5t_s256.as_deref()
    }
}

/// The time claims with their fractional part kept, for the validity checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeClaims {
    pub(crate) exp: f64,
    pub(crate) nbf: Option<f64>,
    pub(crate) iat: Option<f64>,
}

/// Reads the claims from a JSON object that [`crate::json`] already checked for
/// duplicate members.
///
/// `iss`, `sub`, `aud` and `exp` are required. Every claim this crate reads must
/// have its RFC 7519 type: a NumericDate is a JSON number (fractions allowed)
/// from 0 to [`MAX_NUMERIC_DATE`], and `aud` is a string or an array of
/// strings. Anything else is [`JwtRejection::InvalidClaims`].
pub(crate) fn read_claims(map: &Map<String, Value>) -> Result<(Claims, TimeClaims), JwtRejection> {
    let iss = required_string(map, "iss")?;
    let sub = required_string(map, "sub")?;
    let aud = read_audience(map.get("aud").ok_or(JwtRejection::InvalidClaims)?)?;
    let exp = numeric_date(map.get("exp").ok_or(JwtRejection::InvalidClaims)?)?;
    let nbf = map.get("nbf").map(numeric_date).transpose()?;
    let iat = map.get("iat").map(numeric_date).transpose()?;
    let jti = optional_string(map, "jti")?;
    let scope = optional_string(map, "scope")?;
    let cnf = map.get("cnf").map(read_confirmation).transpose()?;

    let claims = Claims {
        iss,
        sub,
        aud,
        // Truncation is exact for whole seconds and loses under a second otherwise.
        exp: exp as u64,
        nbf: nbf.map(|value| value as u64),
        iat: iat.map(|value| value as u64),
        jti,
        scope,
        cnf,
    };
    Ok((claims, TimeClaims { exp, nbf, iat }))
}

fn required_string(map: &Map<String, Value>, name: &str) -> Result<String, JwtRejection> {
    optional_string(map, name)?.ok_or(JwtRejection::InvalidClaims)
}

fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtRejection> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(JwtRejection::InvalidClaims),
    }
}

fn read_audience(value: &Value) -> Result<Audience, JwtRejection> {
    match value {
        Value::String(audience) => Ok(Audience::One(audience.clone())),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(JwtRejection::InvalidClaims))
            .collect::<Result<Vec<_>, _>>()
            .map(Audience::Many),
        _ => Err(JwtRejection::InvalidClaims),
    }
}

/// Reads a NumericDate (RFC 7519 section 2).
fn numeric_date(value: &Value) -> Result<f64, JwtRejection> {
    let seconds = match value {
        Value::Number(number) => number.as_f64().ok_or(JwtRejection::InvalidClaims)?,
        _ => return Err(JwtRejection::InvalidClaims),
    };
    if !(0.0..=MAX_NUMERIC_DATE).contains(&seconds) {
        return Err(JwtRejection::InvalidClaims);
    }
    Ok(seconds)
}

fn read_confirmation(value: &Value) -> Result<Confirmation, JwtRejection> {
    let Value::Object(map) = value else {
        return Err(JwtRejection::InvalidClaims);
    };
    Ok(Confirmation {
        x5t_s256: optional_string(map, "x5t#S256")?,
    })
}

/// Claims of a token that passed every check, as put into the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims(Arc<Claims>);

impl VerifiedClaims {
    pub(crate) fn new(claims: Claims) -> Self {
        Self(Arc::new(claims))
    }

    /// Returns the claims.
    pub fn claims(&self) -> &Claims {
        &self.0
    }

    /// Returns the subject.
    pub fn subject(&self) -> &str {
        &self.0.sub
    }

    /// Returns the service name of a `service:<name>` subject.
    pub fn service_name(&self) -> Option<&str> {
        self.0.sub.strip_prefix("service:").filter(|name| !name.is_empty())
    }

    /// Returns the scopes in the `scope` claim.
    pub fn scopes(&self) -> Scopes {
        self.0.scope.as_deref().map(Scopes::parse).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    fn base() -> Value {
        json!({"iss": "i", "sub": "s", "aud": "a", "exp": 2_000_000_000})
    }

    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut map = object(base());
        map.insert(name.to_owned(), value);
        map
    }

    #[test]
    fn audience_accepts_string_or_array() {
        let one: Audience = serde_json::from_str("\"api:orders\"").unwrap();
        let many: Audience = serde_json::from_str("[\"api:orders\",\"api:payments\"]").unwrap();

        assert!(one.contains("api:orders"));
        assert!(many.contains("api:payments"));
        assert!(!many.contains("api:gateway"));
        assert!(serde_json::from_str::<Audience>("42").is_err());
    }

    #[test]
    fn read_claims_accepts_fractional_dates_and_cnf() {
        let mut map = with("iat", json!(1_999_999_000.75));
        map.insert("cnf".into(), json!({"x5t#S256": "abc", "jkt": "ignored"}));

        let (claims, times) = read_claims(&map).unwrap();

        assert_eq!(claims.iat, Some(1_999_999_000));
        assert_eq!(times.iat, Some(1_999_999_000.75));
        assert_eq!(claims.certificate_thumbprint(), Some("abc"));
    }

    #[test]
    fn read_claims_rejects_wrong_types_and_ranges() {
        let cases = [
            ("exp", json!("2000000000")),
            ("exp", json!(null)),
            ("exp", json!(-1)),
            ("exp", json!(1e300)),
            ("exp", json!(253_402_300_800_u64)),
            ("exp", json!(u64::MAX)),
            ("nbf", json!(true)),
            ("iat", json!([1])),
            ("aud", json!(42)),
            ("aud", json!(["a", 1])),
            ("aud", json!({"a": 1})),
            ("aud", json!(null)),
            ("iss", json!(1)),
            ("sub", json!(null)),
            ("jti", json!(1)),
            ("scope", json!(["a"])),
            ("cnf", json!("abc")),
            ("cnf", json!({"x5t#S256": 1})),
        ];

        for (name, value) in cases {
            let map = with(name, value.clone());
            assert_eq!(read_claims(&map).unwrap_err(), JwtRejection::InvalidClaims, "{name}: {value}");
        }
    }

    #[test]
    fn read_claims_requires_registered_claims() {
        for name in ["iss", "sub", "aud", "exp"] {
            let mut map = object(base());
            map.remove(name);

            assert_eq!(read_claims(&map).unwrap_err(), JwtRejection::InvalidClaims, "{name}");
        }
    }
}

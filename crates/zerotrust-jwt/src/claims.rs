//! The claims a verified token carries.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zerotrust_core::Scopes;

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

/// The registered and zerotrust-specific claims of a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `service:<name>` for service tokens.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
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
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("jti", &self.jti)
            .finish_non_exhaustive()
    }
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

    #[test]
    fn audience_accepts_string_or_array() {
        let one: Audience = serde_json::from_str("\"api:orders\"").unwrap();
        let many: Audience = serde_json::from_str("[\"api:orders\",\"api:payments\"]").unwrap();

        assert!(one.contains("api:orders"));
        assert!(many.contains("api:payments"));
        assert!(!many.contains("api:gateway"));
        assert!(serde_json::from_str::<Audience>("42").is_err());
    }
}

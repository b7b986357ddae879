//! The authenticated caller.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::rejection::{Rejection, problem_response};
use crate::scope::Scopes;

/// The kind of caller a [`Principal`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// Another service, authenticated by its certificate and a service token.
    Service,
    /// The owner of an API key.
    ApiKey,
    /// The subject of a bearer token that is not a service token.
    Subject,
}

impl PrincipalKind {
    /// Returns a stable lower-case name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Service => "service",
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::Subject => "subject",
        }
    }
}

/// The credential that authenticated a [`Principal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A bearer token, such as a JWT.
    BearerToken,
    /// An API key.
    ApiKey,
    /// A client certificate alone.
    Certificate,
}

/// The authenticated caller and the scopes it was granted.
///
/// Authentication layers insert it into the request extensions. Handlers take it
/// as an extractor, which rejects with 401 when no layer set one:
///
/// ```
/// use zerotrust_core::Principal;
///
/// async fn handler(principal: Principal) -> String {
///     format!("hello, {}", principal.id())
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    kind: PrincipalKind,
    id: String,
    owner: Option<String>,
    scopes: Scopes,
    credential: CredentialKind,
}

impl Principal {
    /// Creates a service principal, `service:<name>`, authenticated by
    /// certificate and token.
    pub fn service(name: &str) -> Self {
        Self {
            kind: PrincipalKind::Service,
            id: format!("service:{name}"),
            owner: None,
            scopes: Scopes::default(),
            credential: CredentialKind::BearerToken,
        }
    }

    /// Creates an API-key principal. `key_id` is the key's public id, never its secret.
    pub fn api_key(key_id: impl Into<String>, owner: impl Into<String>, scopes: Scopes) -> Self {
        Self {
            kind: PrincipalKind::ApiKey,
            id: key_id.into(),
            owner: Some(owner.into()),
            scopes,
            credential: CredentialKind::ApiKey,
        }
    }

    /// Creates a principal of any kind, for authentication layers outside this workspace.
    pub fn new(
        kind: PrincipalKind,
        id: impl Into<String>,
        scopes: Scopes,
        credential: CredentialKind,
    ) -> Self {
        Self {
            kind,
            id: id.into(),
            owner: None,
            scopes,
            credential,
        }
    }

    /// Returns a copy with the given scopes.
    #[must_use]
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Returns the kind of caller.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// Returns the identifier: `service:<name>`, an API key id, or a token subject.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the owner of an API key, if this principal is one.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Returns the granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Returns the credential that authenticated the caller.
    pub fn credential(&self) -> CredentialKind {
        self.credential
    }

    /// Returns the service name for a service principal.
    pub fn service_name(&self) -> Option<&str> {
        match self.kind {
            PrincipalKind::Service => self.id.strip_prefix("service:"),
            _ => None,
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The rejection of the [`Principal`] extractor: no layer authenticated the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrincipalRejection;

impl Rejection for PrincipalRejection {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn problem_type(&self) -> &'static str {
        "urn:zerotrust:problem:unauthenticated"
    }

    fn title(&self) -> &'static str {
        "authentication required"
    }

    fn reason(&self) -> &'static str {
        "no_principal"
    }
}

impl IntoResponse for PrincipalRejection {
    fn into_response(self) -> Response {
        problem_response(self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = PrincipalRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(principal) => Ok(principal.clone()),
            None => {
                tracing::trace!(target: "zerotrust::principal", path = parts.uri.path(), "no principal on request");
                Err(PrincipalRejection)
            }
        }
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

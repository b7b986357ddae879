//! Minting short-lived service-to-service tokens.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use zerotrust_core::{CertificateFingerprint, Clock, SystemClock};

use crate::algorithm::SigningAlgorithm;
use crate::claims::{Audience, Claims, Confirmation};

/// The lifetime of a service token unless one is set: five minutes.
pub const DEFAULT_SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The audience of each service, such as `orders` → `api:orders`.
///
/// The issuer takes the audience from here, so a caller cannot mint a token for
/// an audience that no service has.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServiceDirectory {
    audiences: HashMap<String, String>,
}

impl ServiceDirectory {
    /// Starts an empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds service `name` with its `audience`.
    pub fn with_service(mut self, name: impl Into<String>, audience: impl Into<String>) -> Self {
        self.audiences.insert(name.into(), audience.into());
        self
    }

    /// Returns the audience of service `name`.
    pub fn audience_of(&self, name: &str) -> Option<&str> {
        self.audiences.get(name).map(String::as_str)
    }
}

/// A signed service token. `Debug` never prints the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceToken {
    token: String,
    audience: String,
    expires_at: SystemTime,
}

impl ServiceToken {
    /// Returns the compact JWS, for an `Authorization: Bearer` header.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Returns the audience the token was minted for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Returns the expiry.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("audience", &self.audience)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An error while minting a service token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The target service is not in the directory, so it has no audience.
    #[error("unknown target service {0:?}: add it to the service directory with its audience")]
    UnknownService(String),
    /// The calling service name is empty or contains characters outside
    /// `[A-Za-z0-9._-]`.
    #[error("invalid caller service name {0:?}")]
    InvalidCaller(String),
    /// Signing failed.
    #[error("signing the service token failed: {0}")]
    Signing(String),
}

/// An invalid [`ServiceTokenIssuer`] configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerConfigError {
    /// A required setting is missing.
    #[error("missing {0}: set it on the builder before build()")]
    Missing(&'static str),
    /// The signing key could not be parsed.
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// The lifetime is zero or longer than one hour.
    #[error("invalid token lifetime {0:?}: use between 1 second and 1 hour")]
    InvalidLifetime(Duration),
}

/// Mints service tokens: `sub = service:<caller>`, `aud` = the target's audience,
/// `iss`, `iat`, `nbf`, `exp` five minutes later, and a random `jti`.
///
/// ```
/// # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
/// use zerotrust_jwt::{ServiceDirectory, ServiceTokenIssuer};
///
/// let issuer = ServiceTokenIssuer::builder()
///     .issuer("https://issuer.zerotrust.test")
///     .rsa_private_key_pem("k1", &key.private_key_pem)
///     .directory(ServiceDirectory::new().with_service("orders", "api:orders"))
///     .build()
///     .unwrap();
///
/// let token = issuer.mint("gateway", "orders").unwrap();
/// assert_eq!(token.audience(), "api:orders");
/// assert!(issuer.mint("gateway", "unknown").is_err());
/// ```
pub struct ServiceTokenIssuer {
    key: EncodingKey,
    algorithm: SigningAlgorithm,
    kid: String,
    issuer: String,
    directory: ServiceDirectory,
    lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ServiceTokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenIssuer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenIssuer {
    /// Starts a builder.
    pub fn builder() -> ServiceTokenIssuerBuilder {
        ServiceTokenIssuerBuilder::default()
    }

    /// Returns the token lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Mints a token for calls from service `from` to service `to`.
    pub fn mint(&self, from: &str, to: &str) -> Result<ServiceToken, MintError> {
        self.mint_with_confirmation(from, to, None)
    }

    /// Mints a certificate-bound token (RFC 8705 section 3) for calls from `from`
    /// to `to`: the token carries `cnf.x5t#S256` with `certificate`, the
    /// fingerprint of the client certificate `from` presents on its mTLS
    /// connections. A receiver that checks the binding refuses the token on any
    /// other connection.
    pub fn mint_bound(
        &self,
        from: &str,
        to: &str,
        certificate: &CertificateFingerprint,
    ) -> Result<ServiceToken, MintError> {
        let confirmation = Confirmation {
            x5t_s256: Some(certificate.x5t_s256()),
        };
        self.mint_with_confirmation(from, to, Some(confirmation))
    }

    fn mint_with_confirmation(
        &self,
        from: &str,
        to: &str,
        confirmation: Option<Confirmation>,
    ) -> Result<ServiceToken, MintError> {
        let valid_caller = !from.is_empty()
            && from
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_caller {
            return Err(MintError::InvalidCaller(from.to_owned()));
        }
        let audience = self
            .directory
            .audience_of(to)
            .ok_or_else(|| MintError::UnknownService(to.to_owned()))?;

        let now = self.clock.now();
        let issued_at = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let expires_at = issued_at + self.lifetime.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: format!("service:{from}"),
            aud: Audience::One(audience.to_owned()),
            exp: expires_at,
            nbf: Some(issued_at),
            iat: Some(issued_at),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            scope: None,
            cnf: confirmation,
        };
        let mut header = Header::new(self.algorithm.to_jsonwebtoken());
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| MintError::Signing(error.to_string()))?;

        tracing::debug!(target: "zerotrust::jwt", from, to, audience, "minted service token");
        Ok(ServiceToken {
            token,
            audience: audience.to_owned(),
            expires_at: UNIX_EPOCH + Duration::from_secs(expires_at),
        })
    }
}

/// Builder for [`ServiceTokenIssuer`].
#[derive(Default)]
#[must_use]
pub struct ServiceTokenIssuerBuilder {
    issuer: Option<String>,
    key: Option<(String, SigningAlgorithm, Result<EncodingKey, String>)>,
    directory: Option<ServiceDirectory>,
    lifetime: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for ServiceTokenIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenIssuerBuilder")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenIssuerBuilder {
    /// Sets the `iss` claim.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the RS256 signing key (PEM, PKCS#8 or PKCS#1) and its key id.
    pub fn rsa_private_key_pem(self, kid: impl Into<String>, pem: &str) -> Self {
        self.private_key_pem(kid, SigningAlgorithm::Rs256, pem)
    }

    /// Sets the signing key for `algorithm` and its key id. RSA keys may be PKCS#8
    /// or PKCS#1 PEM; EC and Ed25519 keys must be PKCS#8 PEM.
    pub fn private_key_pem(mut self, kid: impl Into<String>, algorithm: SigningAlgorithm, pem: &str) -> Self {
        let key = match algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .map_err(|error| error.to_string());
        self.key = Some((kid.into(), algorithm, key));
        self
    }

    /// Sets the directory of services and their audiences.
    pub fn directory(mut self, directory: ServiceDirectory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Sets the token lifetime. By default five minutes.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Sets the clock. By default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates the configuration and builds the issuer.
    pub fn build(self) -> Result<ServiceTokenIssuer, IssuerConfigError> {
        let issuer = self
            .issuer
            .filter(|i| !i.is_empty())
            .ok_or(IssuerConfigError::Missing("issuer"))?;
        let (kid, algorithm, key) = self.key.ok_or(IssuerConfigError::Missing("signing key"))?;
        let key = key.map_err(IssuerConfigError::InvalidKey)?;
        if kid.is_empty() {
            return Err(IssuerConfigError::Missing("key id"));
        }
        let directory = self
            .directory
            .ok_or(IssuerConfigError::Missing("service directory"))?;
        let lifetime = self.lifetime.unwrap_or(DEFAULT_SERVICE_TOKEN_LIFETIME);
        if lifetime.as_secs() == 0 || lifetime > Duration::from_secs(3600) {
            return Err(IssuerConfigError::InvalidLifetime(lifetime));
        }

        Ok(ServiceTokenIssuer {
            key,
            algorithm,
            kid,
            issuer,
            directory,
            lifetime,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

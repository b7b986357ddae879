//! A rustls server configuration that verifies client certificates.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::error::TlsConfigError;
use crate::{pem, provider};

/// Whether the server requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Every client must present a certificate chained to the trust bundle.
    #[default]
    Required,
    /// Clients may connect without a certificate; their requests carry no
    /// [`PeerIdentity`](zerotrust_core::PeerIdentity), and routes that need one
    /// respond with 401. A certificate that is presented must still verify, so a bad
    /// certificate fails the handshake rather than becoming an anonymous request.
    Optional,
}

/// Builds a [`ServerConfig`] for a service's mTLS listener.
///
/// By default a client certificate is required, TLS 1.3 and 1.2 are offered, and
/// ALPN offers `h2` and `http/1.1`.
///
/// ```
/// # let pki = zerotrust_testkit::pki::DevPki::generate("zerotrust.test", &["orders"]).unwrap();
/// # let orders = pki.service("orders").unwrap();
/// use zerotrust_mtls::ServerTlsBuilder;
///
/// let config = ServerTlsBuilder::new()
///     .trust_bundle_pem(pki.ca_cert_pem())
///     .certificate_chain_pem(&orders.cert_pem)
///     .private_key_pem(&orders.key_pem)
///     .build()
///     .unwrap();
/// assert_eq!(config.alpn_protocols[0], b"h2");
/// ```
#[derive(Default)]
#[must_use]
pub struct ServerTlsBuilder {
    trust_bundle_pem: Option<String>,
    certificate_chain_pem: Option<String>,
    private_key_pem: Option<String>,
    client_auth: ClientAuth,
}

impl std::fmt::Debug for ServerTlsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsBuilder")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTlsBuilder {
    /// Starts a builder with client certificates required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the CA certificates that client certificates must chain to (PEM, one or more).
    pub fn trust_bundle_pem(mut self, pem: &str) -> Self {
        self.trust_bundle_pem = Some(pem.to_owned());
        self
    }

    /// Sets the server's own certificate chain, leaf first (PEM).
    pub fn certificate_chain_pem(mut self, pem: &str) -> Self {
        self.certificate_chain_pem = Some(pem.to_owned());
        self
    }

    /// Sets the private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn private_key_pem(mut self, pem: &str) -> Self {
        self.private_key_pem = Some(pem.to_owned());
        self
    }

    /// Sets whether a client certificate is required. By default it is.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Validates the inputs and builds the configuration.
    pub fn build(self) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let trust_bundle = self
            .trust_bundle_pem
            .ok_or(TlsConfigError::Missing("trust bundle"))?;
        let chain = self
            .certificate_chain_pem
            .ok_or(TlsConfigError::Missing("certificate chain"))?;
        let key = self
            .private_key_pem
            .ok_or(TlsConfigError::Missing("private key"))?;

        let roots = root_store(&trust_bundle)?;
        let chain = pem::certificates(&chain, "certificate chain")?;
        if chain.is_empty() {
            return Err(TlsConfigError::EmptyCertificateChain);
        }
        let key = pem::private_key(&key)?;

        let provider = provider::provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let verifier = match self.client_auth {
            ClientAuth::Required => verifier,
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        }
        .build()
        .map_err(|error| TlsConfigError::Rustls(error.to_string()))?;

        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(map_key_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        tracing::debug!(
            target: "zerotrust::mtls",
            client_auth = ?self.client_auth,
            "built server TLS configuration"
        );
        Ok(Arc::new(config))
    }
}

/// Parses a PEM trust bundle into a root store, rejecting an empty one.
pub(crate) fn root_store(pem_text: &str) -> Result<RootCertStore, TlsConfigError> {
    let certificates = pem::certificates(pem_text, "trust bundle")?;
    if certificates.is_empty() {
        return Err(TlsConfigError::EmptyTrustBundle);
    }

    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| TlsConfigError::InvalidTrustAnchor(error.to_string()))?;
    }
    Ok(roots)
}

pub(crate) fn map_key_error(error: rustls::Error) -> TlsConfigError {
    match error {
        rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch,
        other => TlsConfigError::Rustls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrust_testkit::pki::DevPki;

    fn builder(pki: &DevPki, service: &str) -> ServerTlsBuilder {
        let leaf = pki.service(service).unwrap();
        ServerTlsBuilder::new()
            .trust_bundle_pem(pki.ca_cert_pem())
            .certificate_chain_pem(&leaf.cert_pem)
            .private_key_pem(&leaf.key_pem)
    }

    #[test]
    fn build_offers_h2_and_http1() {
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();

        let config = builder(&pki, "orders").build().unwrap();

        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn empty_trust_bundle_is_rejected() {
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();

        let error = builder(&pki, "orders").trust_bundle_pem("").build().unwrap_err();

        assert!(matches!(error, TlsConfigError::EmptyTrustBundle), "{error}");
    }

    #[test]
    fn key_of_another_certificate_is_rejected() {
        let pki = DevPki::generate("zerotrust.test", &["orders", "payments"]).unwrap();
        let other_key = &pki.service("payments").unwrap().key_pem;

        let error = builder(&pki, "orders").private_key_pem(other_key).build().unwrap_err();

        assert!(matches!(error, TlsConfigError::KeyMismatch), "{error}");
    }

    #[test]
    fn unreadable_key_and_missing_inputs_are_rejected() {
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();

        let unreadable = builder(&pki, "orders").private_key_pem("not a key").build().unwrap_err();
        let missing = ServerTlsBuilder::new().build().unwrap_err();
        let no_chain = builder(&pki, "orders").certificate_chain_pem("").build().unwrap_err();

        assert!(matches!(unreadable, TlsConfigError::InvalidPem { what: "private key", .. }), "{unreadable}");
        assert!(matches!(missing, TlsConfigError::Missing("trust bundle")), "{missing}");
        assert!(matches!(no_chain, TlsConfigError::EmptyCertificateChain), "{no_chain}");
    }

    #[test]
    fn every_error_formats_without_panicking() {
        let errors = [
            TlsConfigError::Missing("trust bundle"),
            TlsConfigError::EmptyTrustBundle,
            TlsConfigError::EmptyCertificateChain,
            TlsConfigError::InvalidPem { what: "private key", message: "bad".into() },
            TlsConfigError::InvalidTrustAnchor("bad".into()),
            TlsConfigError::KeyMismatch,
            TlsConfigError::Rustls("bad".into()),
        ];

        for error in errors {
            assert!(!error.to_string().is_empty());
        }
    }
}

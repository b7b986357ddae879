//! A rustls client configuration for calls to other services.

use std::sync::Arc;

use rustls::ClientConfig;

use crate::error::TlsConfigError;
use crate::server_config::{map_key_error, root_store};
use crate::{pem, provider};

/// Builds a [`ClientConfig`] that presents the service's own certificate.
///
/// The server's certificate is verified against the trust bundle and the host
/// name in the URL, as webpki does for any TLS client. ALPN is left empty for the
/// HTTP client to set: hyper-rustls, for one, refuses a config that already has it.
///
/// ```
/// # let pki = zerotrust_testkit::pki::DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
/// # let gateway = pki.service("gateway").unwrap();
/// use zerotrust_mtls::ClientTlsBuilder;
///
/// let config = ClientTlsBuilder::new()
///     .trust_bundle_pem(pki.ca_cert_pem())
///     .client_certificate_pem(&gateway.cert_pem, &gateway.key_pem)
///     .build()
///     .unwrap();
/// assert!(config.client_auth_cert_resolver.has_certs());
/// ```
#[derive(Default)]
#[must_use]
pub struct ClientTlsBuilder {
    trust_bundle_pem: Option<String>,
    client_certificate: Option<(String, String)>,
}

impl std::fmt::Debug for ClientTlsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsBuilder")
            .field("has_client_certificate", &self.client_certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTlsBuilder {
    /// Starts a builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the CA certificates that server certificates must chain to (PEM).
    pub fn trust_bundle_pem(mut self, pem: &str) -> Self {
        self.trust_bundle_pem = Some(pem.to_owned());
        self
    }

    /// Sets the certificate chain (leaf first) and private key this client presents.
    ///
    /// Without one, the client connects anonymously, which servers that require
    /// client authentication refuse during the handshake.
    pub fn client_certificate_pem(mut self, chain_pem: &str, key_pem: &str) -> Self {
        self.client_certificate = Some((chain_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Validates the inputs and builds the configuration.
    pub fn build(self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let trust_bundle = self
            .trust_bundle_pem
            .ok_or(TlsConfigError::Missing("trust bundle"))?;
        let roots = root_store(&trust_bundle)?;

        let builder = ClientConfig::builder_with_provider(provider::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))?
            .with_root_certificates(roots);
        let config = match self.client_certificate {
            Some((chain, key)) => {
                let chain = pem::certificates(&chain, "certificate chain")?;
                if chain.is_empty() {
                    return Err(TlsConfigError::EmptyCertificateChain);
                }
                let key = pem::private_key(&key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(map_key_error)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

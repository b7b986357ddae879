//! A rustls server configuration that verifies client certificates.

use std::sync::Arc;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use spiffe::TrustDomain;

use crate::error::TlsConfigError;
use crate::verifier::{Bundles, LeafRules, SpiffeClientVerifier};
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
/// By default a client certificate is required and must follow the X.509-SVID
/// leaf rules ([`LeafRules::Svid`]), TLS 1.3 and 1.2 are offered, and ALPN offers
/// `h2` and `http/1.1`.
///
/// Trust comes either from one bundle for every client
/// ([`trust_bundle_pem`](Self::trust_bundle_pem)) or from one bundle per trust
/// domain ([`trust_domain_bundle_pem`](Self::trust_domain_bundle_pem)). In the
/// second form a client is verified only against the bundle of the trust domain
/// in its own SPIFFE ID, so a CA of trust domain A cannot vouch for an identity
/// in trust domain B.
///
/// With certificate revocation lists, every certificate of the chain except the
/// trust anchor must have a known status: a certificate whose issuer has no CRL
/// fails the handshake unless
/// [`allow_unknown_revocation_status`](Self::allow_unknown_revocation_status) is
/// called.
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
    trust_domain_bundles: Vec<(String, String)>,
    crls: Vec<CrlSource>,
    allow_unknown_revocation_status: bool,
    leaf_rules: LeafRules,
    certificate_chain_pem: Option<String>,
    private_key_pem: Option<String>,
    client_auth: ClientAuth,
}

#[derive(Clone)]
enum CrlSource {
    Pem(String),
    Der(Vec<u8>),
}

impl std::fmt::Debug for ServerTlsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsBuilder")
            .field("client_auth", &self.client_auth)
            .field(
                "trust_domains",
                &self.trust_domain_bundles.iter().map(|(td, _)| td).collect::<Vec<_>>(),
            )
            .field("crls", &self.crls.len())
            .field("leaf_rules", &self.leaf_rules)
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

    /// Adds the CA certificates (PEM) of one trust domain. Clients whose SPIFFE ID
    /// is in `trust_domain` are verified against these and nothing else.
    pub fn trust_domain_bundle_pem(mut self, trust_domain: &str, pem: &str) -> Self {
        self.trust_domain_bundles.push((trust_domain.to_owned(), pem.to_owned()));
        self
    }

    /// Adds certificate revocation lists, PEM (one or more `X509 CRL` blocks).
    pub fn crl_pem(mut self, pem: &str) -> Self {
        self.crls.push(CrlSource::Pem(pem.to_owned()));
        self
    }

    /// Adds one certificate revocation list, DER.
    pub fn crl_der(mut self, der: &[u8]) -> Self {
        self.crls.push(CrlSource::Der(der.to_vec()));
        self
    }

    /// Accepts certificates whose revocation status no configured CRL covers.
    /// By default they fail the handshake.
    pub fn allow_unknown_revocation_status(mut self) -> Self {
        self.allow_unknown_revocation_status = true;
        self
    }

    /// Sets the rules for client leaves. By default [`LeafRules::Svid`].
    pub fn leaf_rules(mut self, rules: LeafRules) -> Self {
        self.leaf_rules = rules;
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
        let verifier = self.client_verifier()?;
        let chain = self
            .certificate_chain_pem
            .ok_or(TlsConfigError::Missing("certificate chain"))?;
        let key = self
            .private_key_pem
            .ok_or(TlsConfigError::Missing("private key"))?;

        let chain = pem::certificates(&chain, "certificate chain")?;
        if chain.is_empty() {
            return Err(TlsConfigError::EmptyCertificateChain);
        }
        let key = pem::private_key(&key)?;

        let provider = provider::provider();
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

    /// Builds the client-certificate verifier from the bundles, CRLs and rules.
    fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsConfigError> {
        let crls = self.parse_crls()?;
        let bundles = match (&self.trust_bundle_pem, self.trust_domain_bundles.as_slice()) {
            (Some(_), [_, ..]) => return Err(TlsConfigError::MixedTrustBundles),
            (None, []) => return Err(TlsConfigError::Missing("trust bundle")),
            (Some(pem), []) => Bundles::Any(self.webpki_verifier(pem, &crls)?),
            (None, list) => {
                let mut delegates = Vec::with_capacity(list.len());
                for (name, pem) in list {
                    let invalid = || TlsConfigError::InvalidTrustDomain(name.clone());
                    if name.bytes().any(|b| b.is_ascii_uppercase()) {
                        return Err(invalid());
                    }
                    let domain = TrustDomain::new(name).map_err(|_| invalid())?;
                    if delegates.iter().any(|(known, _)| known == &domain) {
                        return Err(invalid());
                    }
                    delegates.push((domain, self.webpki_verifier(pem, &crls)?));
                }
                Bundles::PerTrustDomain(delegates)
            }
        };

        let mandatory = self.client_auth == ClientAuth::Required;
        Ok(Arc::new(SpiffeClientVerifier::new(bundles, self.leaf_rules, mandatory)))
    }

    fn webpki_verifier(
        &self,
        bundle_pem: &str,
        crls: &[CertificateRevocationListDer<'static>],
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsConfigError> {
        let roots = root_store(bundle_pem)?;
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider::provider())
            .with_crls(crls.iter().cloned());
        if self.allow_unknown_revocation_status {
            builder = builder.allow_unknown_revocation_status();
        }
        // Whether a missing certificate is allowed is decided by the SPIFFE
        // verifier around this one, so the delegate never enforces it.
        builder = builder.allow_unauthenticated();
        builder
            .build()
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))
    }

    fn parse_crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
        let mut crls = Vec::new();
        for source in &self.crls {
            match source {
                CrlSource::Pem(text) => crls.extend(pem::crls(text)?),
                CrlSource::Der(der) => crls.push(CertificateRevocationListDer::from(der.clone())),
            }
        }
        Ok(crls)
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
    fn trust_bundle_forms_cannot_mix() {
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();

        let mixed = builder(&pki, "orders")
            .trust_domain_bundle_pem("zerotrust.test", pki.ca_cert_pem())
            .build()
            .unwrap_err();
        let upper = ServerTlsBuilder::new()
            .trust_domain_bundle_pem("ZeroTrust.test", pki.ca_cert_pem())
            .certificate_chain_pem(&pki.service("orders").unwrap().cert_pem)
            .private_key_pem(&pki.service("orders").unwrap().key_pem)
            .build()
            .unwrap_err();
        let bad_crl = builder(&pki, "orders").crl_pem("-----BEGIN X509 CRL-----\n!!\n-----END X509 CRL-----\n").build().unwrap_err();

        assert!(matches!(mixed, TlsConfigError::MixedTrustBundles), "{mixed}");
        assert!(matches!(upper, TlsConfigError::InvalidTrustDomain(_)), "{upper}");
        assert!(matches!(bad_crl, TlsConfigError::InvalidPem { what: "certificate revocation list", .. }), "{bad_crl}");
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
            TlsConfigError::MixedTrustBundles,
            TlsConfigError::InvalidTrustDomain("A.test".into()),
            TlsConfigError::Rustls("bad".into()),
        ];

        for error in errors {
            assert!(!error.to_string().is_empty());
        }
    }
}

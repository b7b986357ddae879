//! The client-certificate verifier: webpki chain checks, then X.509-SVID rules
//! and the binding of each trust domain to its own bundle.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use spiffe::TrustDomain;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::parse_spiffe_id;

/// The reason a client leaf failed the X.509-SVID rules or named no usable trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The leaf could not be parsed.
    #[error("client certificate is not valid X.509")]
    Unparsable,
    /// The leaf is a CA certificate (basic constraints `cA` is true).
    #[error("client certificate is a CA certificate")]
    CaLeaf,
    /// The leaf lacks the digitalSignature key usage.
    #[error("client certificate lacks the digitalSignature key usage")]
    NoDigitalSignature,
    /// The leaf has the keyCertSign or cRLSign key usage.
    #[error("client certificate has the keyCertSign or cRLSign key usage")]
    SigningKeyUsage,
    /// The leaf has an extended key usage without clientAuth.
    #[error("client certificate's extended key usage lacks clientAuth")]
    NoClientAuth,
    /// The leaf does not carry exactly one valid SPIFFE ID URI SAN.
    #[error("client certificate does not carry exactly one valid SPIFFE ID")]
    NoSpiffeId,
    /// The leaf's trust domain has no configured bundle.
    #[error("no trust bundle is configured for trust domain {0}")]
    UnknownTrustDomain(String),
}

/// The rules that client leaves are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeafRules {
    /// X.509-SVID section 4.1 to 4.4: not a CA, digitalSignature, neither
    /// keyCertSign nor cRLSign, and an EKU (when present) with clientAuth.
    #[default]
    Svid,
    /// Only webpki's chain checks, for clients whose certificates are not SVIDs.
    AllowNonSvid,
}

/// The per-trust-domain delegates, or one for any trust domain.
pub(crate) enum Bundles {
    /// One bundle that verifies every client, whatever its trust domain.
    Any(Arc<dyn ClientCertVerifier>),
    /// One bundle per trust domain; a client is verified only by its own.
    PerTrustDomain(Vec<(TrustDomain, Arc<dyn ClientCertVerifier>)>),
}

/// Verifies client certificates for [`ServerTlsBuilder`](crate::ServerTlsBuilder).
pub(crate) struct SpiffeClientVerifier {
    bundles: Bundles,
    leaf_rules: LeafRules,
    mandatory: bool,
    hints: Vec<DistinguishedName>,
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domains: Vec<String> = match &self.bundles {
            Bundles::Any(_) => vec!["*".to_owned()],
            Bundles::PerTrustDomain(list) => list.iter().map(|(td, _)| td.to_string()).collect(),
        };
        f.debug_struct("SpiffeClientVerifier")
            .field("trust_domains", &domains)
            .field("leaf_rules", &self.leaf_rules)
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl SpiffeClientVerifier {
    pub(crate) fn new(bundles: Bundles, leaf_rules: LeafRules, mandatory: bool) -> Self {
        let hints = match &bundles {
            Bundles::Any(verifier) => verifier.root_hint_subjects().to_vec(),
            Bundles::PerTrustDomain(list) => list
                .iter()
                .flat_map(|(_, verifier)| verifier.root_hint_subjects().to_vec())
                .collect(),
        };
        Self {
            bundles,
            leaf_rules,
            mandatory,
            hints,
        }
    }

    fn first(&self) -> &Arc<dyn ClientCertVerifier> {
        match &self.bundles {
            Bundles::Any(verifier) => verifier,
            Bundles::PerTrustDomain(list) => &list[0].1,
        }
    }

    /// Picks the delegate for `leaf`: the only one, or the one of its trust domain.
    fn delegate_for(&self, leaf: &X509Certificate<'_>) -> Result<&Arc<dyn ClientCertVerifier>, SvidError> {
        match &self.bundles {
            Bundles::Any(verifier) => Ok(verifier),
            Bundles::PerTrustDomain(list) => {
                let id = single_spiffe_id(leaf).ok_or(SvidError::NoSpiffeId)?;
                list.iter()
                    .find(|(domain, _)| id.is_member_of(domain))
                    .map(|(_, verifier)| verifier)
                    .ok_or_else(|| SvidError::UnknownTrustDomain(id.trust_domain_name().to_owned()))
            }
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (_, leaf) = X509Certificate::from_der(end_entity).map_err(|_| reject(SvidError::Unparsable))?;
        if self.leaf_rules == LeafRules::Svid {
            check_svid_leaf(&leaf).map_err(reject)?;
        }
        // The delegate is chosen by the leaf's own trust domain, so a certificate
        // claiming trust domain B is verified only against B's bundle, even when
        // A's CA signed it.
        let delegate = self.delegate_for(&leaf).map_err(reject)?;
        delegate.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.first().supported_verify_schemes()
    }
}

fn reject(error: SvidError) -> rustls::Error {
    tracing::debug!(target: "zerotrust::mtls", %error, "client certificate rejected");
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// Returns the SPIFFE ID of a leaf with exactly one URI SAN that is a valid ID.
fn single_spiffe_id(leaf: &X509Certificate<'_>) -> Option<spiffe::SpiffeId> {
    let san = leaf.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let only = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    parse_spiffe_id(only).ok()
}

/// Applies the X.509-SVID leaf rules (SPIFFE X.509-SVID specification, section 4).
pub(crate) fn check_svid_leaf(leaf: &X509Certificate<'_>) -> Result<(), SvidError> {
    if leaf.is_ca() {
        return Err(SvidError::CaLeaf);
    }

    let key_usage = leaf.key_usage().map_err(|_| SvidError::Unparsable)?;
    match key_usage {
        Some(usage) if !usage.value.digital_signature() => return Err(SvidError::NoDigitalSignature),
        Some(usage) if usage.value.key_cert_sign() || usage.value.crl_sign() => {
            return Err(SvidError::SigningKeyUsage);
        }
        Some(_) => {}
        None => return Err(SvidError::NoDigitalSignature),
    }

    let extended = leaf.extended_key_usage().map_err(|_| SvidError::Unparsable)?;
    if let Some(extended) = extended
        && !(extended.value.client_auth || extended.value.any)
    {
        return Err(SvidError::NoClientAuth);
    }
    Ok(())
}

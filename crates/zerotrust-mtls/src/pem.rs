//! PEM parsing for certificates and keys.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::TlsConfigError;

/// Parses every certificate in a PEM string.
pub(crate) fn certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsConfigError::InvalidPem {
            what,
            message: error.to_string(),
        })
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM string.
pub(crate) fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| TlsConfigError::InvalidPem {
        what: "private key",
        message: error.to_string(),
    })
}

/// Parses every certificate revocation list in a PEM string.
pub(crate) fn crls(pem: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsConfigError::InvalidPem {
            what: "certificate revocation list",
            message: error.to_string(),
        })
}

//! Turning a verified leaf certificate into a [`PeerIdentity`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use spiffe::{SpiffeId, SpiffeIdError};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use zerotrust_core::{CertificateFingerprint, PeerIdentity};

/// An error while reading the identity out of a leaf certificate.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate is not valid DER X.509.
    #[error("the peer certificate could not be parsed: {0}")]
    Parse(String),
    /// The subject alternative name extension is malformed or duplicated.
    #[error("the peer certificate's subject alternative names are invalid: {0}")]
    SubjectAltName(String),
}

/// Parses a SPIFFE ID strictly.
///
/// On top of the `spiffe` crate's rules this rejects an upper-case trust domain
/// instead of lower-casing it. The SPIFFE ID specification (section 2.1) allows
/// only lower-case letters, and an ID that breaks a rule is never normalised into
/// a valid one.
pub fn parse_spiffe_id(value: &str) -> Result<SpiffeId, SpiffeIdError> {
    let authority = value
        .strip_prefix("spiffe://")
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    if let Some(authority) = authority
        && authority.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    SpiffeId::new(value)
}

/// Reads the identity out of a DER-encoded leaf certificate.
///
/// The `spiffe` crate's X.509-SVID parser (0.19) needs the SVID's private key,
/// which a server never has for its peers, so the leaf is read with x509-parser
/// and only the ID is validated by `spiffe::SpiffeId`.
///
/// The certificate must already be verified, because this function only
/// extracts. The SPIFFE ID is taken from the single URI SAN (X.509-SVID section
/// 2). A certificate with no URI SAN, several, or an invalid one yields an identity
/// without a SPIFFE ID.
pub fn peer_identity_from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|error| IdentityError::Parse(error.to_string()))?;

    let mut uris = Vec::new();
    let mut dns_names = Vec::new();
    let san = certificate
        .subject_alternative_name()
        .map_err(|error| IdentityError::SubjectAltName(error.to_string()))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(*uri),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                _ => {}
            }
        }
    }

    let spiffe_id = match uris.as_slice() {
        [only] => match parse_spiffe_id(only) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::debug!(target: "zerotrust::mtls", %error, "URI SAN is not a valid SPIFFE ID");
                None
            }
        },
        [] => None,
        _ => {
            tracing::debug!(target: "zerotrust::mtls", uri_sans = uris.len(), "several URI SANs, so no SPIFFE ID");
            None
        }
    };

    let fingerprint = CertificateFingerprint::from_sha256(Sha256::digest(der).into());
    let validity = certificate.validity();
    Ok(PeerIdentity::new(
        spiffe_id,
        dns_names,
        fingerprint,
        unix_seconds(validity.not_before.timestamp()),
        unix_seconds(validity.not_after.timestamp()),
    ))
}

fn unix_seconds(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrust_testkit::pki::{DevPki, LeafSpec};

    #[test]
    fn service_leaf_has_spiffe_id_dns_and_fingerprint() {
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
        let leaf = pki.service("orders").unwrap();

        let identity = peer_identity_from_der(&leaf.cert_der).unwrap();

        assert_eq!(
            identity.spiffe_id().map(ToString::to_string).as_deref(),
            Some("spiffe://zerotrust.test/orders")
        );
        assert_eq!(identity.dns_names(), ["localhost".to_owned()]);
        let expected: [u8; 32] = Sha256::digest(&leaf.cert_der).into();
        assert_eq!(identity.fingerprint().as_bytes(), &expected);
        assert!(identity.not_before() < SystemTime::now());
        assert!(identity.not_after() > SystemTime::now());
    }

    #[test]
    fn two_uri_sans_give_no_spiffe_id() {
        let pki = DevPki::generate("zerotrust.test", &[]).unwrap();
        let mut spec = LeafSpec::service("zerotrust.test", "orders");
        spec.uris.push("spiffe://zerotrust.test/payments".to_owned());
        let leaf = pki.issue(&spec).unwrap();

        let identity = peer_identity_from_der(&leaf.cert_der).unwrap();

        assert!(identity.spiffe_id().is_none());
    }

    #[test]
    fn parse_spiffe_id_rejects_rule_breakers() {
        let invalid = [
            "spiffe://Zerotrust.test/orders",
            "spiffe://zerotrust.test/orders/",
            "spiffe://zerotrust.test//orders",
            "spiffe://zerotrust.test/./orders",
            "spiffe://zerotrust.test/../orders",
            "spiffe://zerotrust.test/orders?x=1",
            "spiffe://zerotrust.test/orders#f",
            "spiffe://zerotrust.test:8443/orders",
            "spiffe://user@zerotrust.test/orders",
            "spiffe://zerotrust%2etest/orders",
            "https://zerotrust.test/orders",
            "",
        ];
        for value in invalid {
            assert!(parse_spiffe_id(value).is_err(), "{value:?} was accepted");
        }

        assert!(parse_spiffe_id("spiffe://zerotrust.test/ns/prod/orders").is_ok());
    }

    #[test]
    fn garbage_der_is_an_error() {
        let error = peer_identity_from_der(b"not a certificate").unwrap_err();

        assert!(matches!(error, IdentityError::Parse(_)));
    }
}

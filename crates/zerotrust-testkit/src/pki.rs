//! A development PKI for real TLS handshakes in tests and demos.
//!
//! ```
//! use zerotrust_testkit::pki::DevPki;
//!
//! let pki = DevPki::generate("zerotrust.test", &["gateway", "orders"]).unwrap();
//!
//! let gateway = pki.service("gateway").unwrap();
//! assert_eq!(gateway.spiffe_id, "spiffe://zerotrust.test/gateway");
//! assert!(gateway.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(pki.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! ```
//!
//! The CA signs one leaf per service. Each leaf carries the service's SPIFFE ID
//! `spiffe://<trust domain>/<service>` as its only URI SAN, `localhost` as a DNS
//! SAN and `127.0.0.1` and `::1` as IP SANs, and has both the clientAuth and the
//! serverAuth extended key usage, so one certificate serves a service's listener
//! and its outbound calls. [`DevPki::issue`] makes other leaves, including odd
//! ones that tests need.
//!
//! Keys are ECDSA P-256 and live in memory and, after [`DevPki::write_to`], in
//! plain files: never use them outside tests and demos.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// How long generated leaves are valid, by default.
const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How far back generated certificates start, so small clock skew does not matter.
const BACKDATE: Duration = Duration::from_secs(3600);

/// An error while generating or writing the PKI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen failed to build a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A service name cannot be used as a SPIFFE ID path segment.
    #[error("invalid service name {0:?}: use letters, digits, '-', '_' or '.'")]
    InvalidServiceName(String),
    /// Writing the files failed.
    #[error("writing the dev PKI failed: {0}")]
    Io(#[from] io::Error),
}

/// A leaf certificate and its private key, both PEM.
#[derive(Clone)]
pub struct LeafCert {
    /// The service name, or the common name of a custom leaf.
    pub name: String,
    /// The SPIFFE ID in the certificate, if it has exactly one.
    pub spiffe_id: String,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf certificate, DER.
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The certificate's serial number, for revocation lists.
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for LeafCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCert")
            .field("name", &self.name)
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// The contents of a leaf made by [`DevPki::issue`].
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The subject common name.
    pub common_name: String,
    /// URI SANs, in order. Zero, one or several.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Extended key usages.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Validity start, relative to now. Negative values are in the past.
    pub not_before_offset_secs: i64,
    /// Validity end, relative to now.
    pub not_after_offset_secs: i64,
    /// Whether the leaf claims to be a CA (an X.509-SVID leaf must not).
    pub is_ca: bool,
    /// Key usages. A service leaf has digitalSignature only.
    pub key_usages: Vec<KeyUsagePurpose>,
}

impl LeafSpec {
    /// Describes a normal service leaf: one SPIFFE ID, loopback names, and client
    /// and server usage.
    pub fn service(trust_domain: &str, name: &str) -> Self {
        Self {
            common_name: name.to_owned(),
            uris: vec![format!("spiffe://{trust_domain}/{name}")],
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            extended_key_usages: vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            not_before_offset_secs: -(BACKDATE.as_secs() as i64),
            not_after_offset_secs: DEFAULT_LEAF_VALIDITY.as_secs() as i64,
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
        }
    }
}

/// A certificate authority and the service certificates it signed.
pub struct DevPki {
    trust_domain: String,
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    ca_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    services: Vec<LeafCert>,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPki")
            .field("trust_domain", &self.trust_domain)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl DevPki {
    /// Generates a CA for `trust_domain` and one leaf per service name.
    pub fn generate(trust_domain: &str, services: &[&str]) -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{trust_domain} dev CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset_from_now(-(BACKDATE.as_secs() as i64));
        params.not_after = offset_from_now(365 * 24 * 3600);
        let ca_cert = params.self_signed(&ca_key)?;

        let mut pki = DevPki {
            trust_domain: trust_domain.to_owned(),
            ca_cert_pem: ca_cert.pem(),
            ca_cert_der: ca_cert.der().to_vec(),
            ca_key_pem: ca_key.serialize_pem(),
            issuer: Issuer::new(params, ca_key),
            services: Vec::new(),
        };
        for name in services {
            pki.add_service(name)?;
        }
        Ok(pki)
    }

    /// Issues a service leaf and keeps it, so [`service`](Self::service) finds it.
    pub fn add_service(&mut self, name: &str) -> Result<&LeafCert, PkiError> {
        let valid = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(PkiError::InvalidServiceName(name.to_owned()));
        }

        let mut leaf = self.issue(&LeafSpec::service(&self.trust_domain, name))?;
        leaf.name = name.to_owned();
        self.services.push(leaf);
        Ok(self.services.last().expect("a leaf was just pushed"))
    }

    /// Issues a leaf to `spec`, signed by this CA.
    pub fn issue(&self, spec: &LeafSpec) -> Result<LeafCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.clone());
        for uri in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into()?));
        }
        for dns in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in &spec.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = spec.key_usages.clone();
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.extended_key_usages = spec.extended_key_usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset_from_now(spec.not_before_offset_secs);
        params.not_after = offset_from_now(spec.not_after_offset_secs);
        let cert = params.signed_by(&key, &self.issuer)?;

        let spiffe_id = match spec.uris.as_slice() {
            [only] => only.clone(),
            _ => String::new(),
        };
        Ok(LeafCert {
            name: spec.common_name.clone(),
            spiffe_id,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }

    /// Signs a certificate revocation list that revokes `revoked`, returned as PEM.
    /// It is valid from an hour ago until a day from now.
    pub fn revocation_list(&self, revoked: &[&LeafCert]) -> Result<String, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: offset_from_now(-(BACKDATE.as_secs() as i64)),
            next_update: offset_from_now(24 * 3600),
            crl_number: SerialNumber::from_slice(&random_serial()?),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|leaf| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&leaf.serial),
                    revocation_time: offset_from_now(-60),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Returns the trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Returns the CA certificate, PEM: the trust bundle for every service.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Returns the CA certificate, DER.
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// Returns the CA private key, PEM, so other tools can issue test certificates.
    pub fn ca_key_pem(&self) -> &str {
        &self.ca_key_pem
    }

    /// Returns the leaf of service `name`.
    pub fn service(&self, name: &str) -> Option<&LeafCert> {
        self.services.iter().find(|leaf| leaf.name == name)
    }

    /// Returns every service leaf, in the order they were added.
    pub fn services(&self) -> &[LeafCert] {
        &self.services
    }

    /// Writes `ca.pem`, `ca-key.pem`, and `<service>.pem` and `<service>-key.pem`
    /// for each service into `dir`, creating it if needed.
    ///
    /// Key files are created with mode 0600 on Unix.
    pub fn write_to(&self, dir: &Path) -> Result<(), PkiError> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join("ca.pem"), &self.ca_cert_pem)?;
        write_private(&dir.join("ca-key.pem"), &self.ca_key_pem)?;
        for leaf in &self.services {
            fs::write(dir.join(format!("{}.pem", leaf.name)), &leaf.cert_pem)?;
            write_private(&dir.join(format!("{}-key.pem", leaf.name)), &leaf.key_pem)?;
        }
        Ok(())
    }
}

/// Writes a file that only its owner may read.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents.as_bytes())?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        fs::write(path, contents)?;
        Ok(())
    }
}

/// Returns 16 random bytes with the top bit clear and a non-zero first byte, so
/// the DER integer is positive and minimally encoded.
fn random_serial() -> Result<Vec<u8>, PkiError> {
    let mut serial = vec![0u8; 16];
    getrandom::fill(&mut serial).map_err(|error| PkiError::Io(io::Error::other(error.to_string())))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

fn offset_from_now(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_issues_one_leaf_per_service() {
        let pki = DevPki::generate("zerotrust.test", &["gateway", "orders"]).unwrap();

        assert_eq!(pki.services().len(), 2);
        assert_eq!(
            pki.service("orders").unwrap().spiffe_id,
            "spiffe://zerotrust.test/orders"
        );
        assert!(pki.service("payments").is_none());
    }

    #[test]
    fn add_service_rejects_path_characters() {
        let mut pki = DevPki::generate("zerotrust.test", &[]).unwrap();

        let error = pki.add_service("a/b").unwrap_err();

        assert!(matches!(error, PkiError::InvalidServiceName(_)));
        assert!(error.to_string().contains("a/b"));
    }

    #[test]
    fn write_to_creates_files() {
        let dir = std::env::temp_dir().join(format!("zt-pki-{}", std::process::id()));
        let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();

        pki.write_to(&dir).unwrap();

        for file in ["ca.pem", "ca-key.pem", "orders.pem", "orders-key.pem"] {
            assert!(dir.join(file).exists(), "{file} missing");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

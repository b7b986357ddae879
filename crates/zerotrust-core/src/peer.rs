//! The identity that a TLS peer proved with its certificate.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use spiffe::SpiffeId;

/// The SHA-256 digest of a certificate's DER encoding.
///
/// [`x5t_s256`](Self::x5t_s256) gives the RFC 8705 section 3.1 form that
/// certificate-bound tokens carry in `cnf.x5t#S256`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateFingerprint([u8; 32]);

impl CertificateFingerprint {
    /// Wraps a SHA-256 digest that the caller computed over the certificate DER.
    pub const fn from_sha256(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// Returns the raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the digest as unpadded base64url, the `x5t#S256` form of RFC 8705.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Returns the digest as lower-case hex, the form `openssl x509 -fingerprint` prints
    /// without colons.
    pub fn to_hex(&self) -> String {
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push_str(&format!("{byte:02x}"));
        }
        hex
    }
}

impl fmt::Debug for CertificateFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateFingerprint({})", self.x5t_s256())
    }
}

impl fmt::Display for CertificateFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.x5t_s256())
    }
}

/// The identity in the peer's verified leaf certificate.
///
/// The mTLS acceptor builds one per connection, after the handshake verified the
/// chain, and every request on that connection carries it as
/// `Arc<PeerIdentity>` in its extensions. A request without one came over a
/// connection without a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    spiffe_id: Option<SpiffeId>,
    dns_names: Vec<String>,
    fingerprint: CertificateFingerprint,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl PeerIdentity {
    /// Creates an identity from parts that the caller has already verified.
    pub fn new(
        spiffe_id: Option<SpiffeId>,
        dns_names: Vec<String>,
        fingerprint: CertificateFingerprint,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Self {
        Self {
            spiffe_id,
            dns_names,
            fingerprint,
            not_before,
            not_after,
        }
    }

    /// Returns the SPIFFE ID from the certificate's single URI SAN, if it has one.
    ///
    /// A certificate with no URI SAN, more than one, or one that is not a valid
    /// SPIFFE ID has none.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// Returns the certificate's DNS subject alternative names.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// Returns the SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> CertificateFingerprint {
        self.fingerprint
    }

    /// Returns the start of the certificate's validity period.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Returns the end of the certificate's validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Returns the service name: the last path segment of the SPIFFE ID.
    ///
    /// `spiffe://zerotrust.test/orders` names the service `orders`.
    pub fn service_name(&self) -> Option<&str> {
        let path = self.spiffe_id.as_ref()?.path();
        path.rsplit('/').next().filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("spiffe_id", &self.spiffe_id.as_ref().map(ToString::to_string))
            .field("dns_names", &self.dns_names)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_x5t_is_unpadded_base64url() {
        let fingerprint = CertificateFingerprint::from_sha256([0xfb; 32]);

        let x5t = fingerprint.x5t_s256();

        assert_eq!(x5t.len(), 43);
        assert!(!x5t.contains('='));
        assert!(!x5t.contains('+'));
        assert!(x5t.starts_with("-_v7"));
    }

    #[test]
    fn service_name_is_last_path_segment() {
        let id = SpiffeId::new("spiffe://zerotrust.test/ns/prod/orders").unwrap();
        let now = SystemTime::now();
        let peer = PeerIdentity::new(
            Some(id),
            vec![],
            CertificateFingerprint::from_sha256([0; 32]),
            now,
            now,
        );

        assert_eq!(peer.service_name(), Some("orders"));
    }
}

//! Token signing keys for tests and demos.
//!
//! ```
//! use zerotrust_testkit::tokens::SigningKeyPair;
//!
//! let key = SigningKeyPair::generate_rs256("demo-1").unwrap();
//! assert!(key.public_key_pem.contains("PUBLIC KEY"));
//! ```

use rcgen::{KeyPair, PKCS_RSA_SHA256, RsaKeySize};

/// An RSA key pair for RS256 JWTs, PEM-encoded.
#[derive(Clone)]
pub struct SigningKeyPair {
    /// The key id (`kid`) tokens signed with this key carry.
    pub kid: String,
    /// The PKCS#8 private key, PEM.
    pub private_key_pem: String,
    /// The SubjectPublicKeyInfo public key, PEM.
    pub public_key_pem: String,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// Generates a 2048-bit RSA key pair.
    pub fn generate_rs256(kid: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;
        Ok(Self {
            kid: kid.to_owned(),
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }
}

//! Errors from building TLS configurations.

/// An error while building a rustls server or client configuration.
///
/// The messages name the input that failed and never include key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A required input was not given to the builder.
    #[error("missing {0}: set it on the builder before build()")]
    Missing(&'static str),
    /// The trust bundle contains no certificate.
    #[error("the trust bundle contains no CA certificate: pass at least one PEM certificate")]
    EmptyTrustBundle,
    /// The certificate chain contains no certificate.
    #[error("the certificate chain contains no certificate")]
    EmptyCertificateChain,
    /// PEM input could not be parsed.
    #[error("invalid PEM in {what}: {message}")]
    InvalidPem {
        /// The input that failed: `trust bundle`, `certificate chain`, `private key`
        /// or `certificate revocation list`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A trust-bundle certificate was rejected as a trust anchor.
    #[error("invalid CA certificate in the trust bundle: {0}")]
    InvalidTrustAnchor(String),
    /// The private key does not belong to the leaf certificate.
    #[error("the private key does not match the leaf certificate's public key")]
    KeyMismatch,
    /// Both a single trust bundle and per-trust-domain bundles were set.
    #[error("set either one trust bundle or per-trust-domain bundles, not both")]
    MixedTrustBundles,
    /// A trust domain name is invalid, upper-case, or given twice.
    #[error("invalid trust domain {0:?}: use a lower-case name such as \"example.org\", once each")]
    InvalidTrustDomain(String),
    /// rustls rejected the configuration.
    #[error("rustls rejected the configuration: {0}")]
    Rustls(String),
}

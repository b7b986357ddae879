//! The crypto provider every configuration in this crate uses.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// Returns the aws-lc-rs provider.
///
/// Configurations name their provider explicitly, so they work whatever other
/// crates in the program enable and without a process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

//! An outbound client configuration that follows its files.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    Tls12ClientSessionValue, Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, SignatureScheme};
use zerotrust_core::{EventKind, EventReporter, SecurityEvent, SharedSink};

use crate::error::TlsConfigError;
use crate::reload::{ReloadError, spawn_every};
use crate::server_config::{map_key_error, root_store};
use crate::{pem, provider};

/// The files an outbound client configuration is read from.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientTlsFiles {
    trust_bundle: PathBuf,
    client_certificate: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// Names the PEM trust bundle that server certificates must chain to.
    pub fn new(trust_bundle: impl Into<PathBuf>) -> Self {
        Self {
            trust_bundle: trust_bundle.into(),
            client_certificate: None,
        }
    }

    /// Names the client's certificate chain (leaf first) and private key, both PEM.
    pub fn client_certificate(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((chain.into(), key.into()));
        self
    }
}

/// The material a handshake reads.
struct Material {
    verifier: Arc<WebPkiServerVerifier>,
    certified_key: Option<Arc<CertifiedKey>>,
}

/// Shared between the configuration's resolver and verifier and the reloader.
struct Current(RwLock<Arc<Material>>);

impl Current {
    fn get(&self) -> Arc<Material> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("has_client_certificate", &self.get().certified_key.is_some())
            .finish()
    }
}

impl ResolvesClientCert for Current {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.get().certified_key.clone()
    }

    fn has_certs(&self) -> bool {
        self.get().certified_key.is_some()
    }
}

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.get()
            .verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().verifier.supported_verify_schemes()
    }
}

/// How many sessions the client remembers for resumption.
const SESSION_CACHE_SIZE: usize = 256;

/// A session cache that a reload empties.
///
/// A resumed TLS session carries the certificates of its original handshake,
/// so without this a client would keep presenting its old certificate to a
/// server it connected to before, long after a rotation.
#[derive(Debug)]
struct ClearableSessions(RwLock<Arc<ClientSessionMemoryCache>>);

impl ClearableSessions {
    fn new() -> Self {
        Self(RwLock::new(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE))))
    }

    fn get(&self) -> Arc<ClientSessionMemoryCache> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn clear(&self) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE));
    }
}

impl ClientSessionStore for ClearableSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.get().set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.get().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.get().set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.get().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.get().remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.get().insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.get().take_tls13_ticket(server_name)
    }
}

/// Keeps an outbound client configuration in step with its files.
///
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use zerotrust_mtls::{ClientTlsFiles, ClientTlsReloader};
///
/// let files = ClientTlsFiles::new("/etc/gateway/ca.pem")
///     .client_certificate("/etc/gateway/cert.pem", "/etc/gateway/key.pem");
/// let reloader = Arc::new(ClientTlsReloader::load(files)?);
/// let config = reloader.config(); // hand this to the HTTP client once
/// # let _ = config; Ok(()) }
/// ```
///
/// The returned [`ClientConfig`] never changes; its certificate resolver and
/// server verifier read the current material, so a reload reaches every new
/// handshake without rebuilding clients. A reload also drops the sessions
/// kept for resumption, because a resumed session would present the old
/// certificate. Open connections keep what they negotiated. A failed reload keeps the previous material and sends a
/// `TLS_RELOAD_FAILED` event.
pub struct ClientTlsReloader {
    files: ClientTlsFiles,
    current: Arc<Current>,
    sessions: Arc<ClearableSessions>,
    config: Arc<ClientConfig>,
    events: EventReporter,
}

impl fmt::Debug for ClientTlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsReloader")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ClientTlsReloader {
    /// Reads the files once and builds the configuration.
    pub fn load(files: ClientTlsFiles) -> Result<Self, ReloadError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(read_material(&files)?))));
        let sessions = Arc::new(ClearableSessions::new());
        let mut config = ClientConfig::builder_with_provider(provider::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(current.clone())
            .with_client_cert_resolver(current.clone());
        config.resumption = Resumption::store(sessions.clone());
        Ok(Self {
            files,
            current,
            sessions,
            config: Arc::new(config),
            events: EventReporter::default(),
        })
    }

    /// Sends reload failures to `sink` as well as to the log.
    #[must_use]
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Returns the configuration, which follows every successful reload.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Reads the files again and uses them for new handshakes. On error the
    /// current material stays.
    pub fn reload(&self) -> Result<(), ReloadError> {
        match read_material(&self.files) {
            Ok(material) => {
                *self.current.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(material);
                self.sessions.clear();
                tracing::info!(target: "zerotrust::mtls", "client TLS material reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(target: "zerotrust::mtls", %error, "client TLS reload failed; keeping the previous material");
                self.events
                    .send(SecurityEvent::new(EventKind::TlsReloadFailed).reason("client_tls_reload_failed"));
                Err(error)
            }
        }
    }

    /// Spawns a task that calls [`reload`](Self::reload) every `interval` until
    /// the returned handle is aborted.
    pub fn spawn_periodic(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        spawn_every(interval, move || {
            // The error is already logged and reported by `reload`.
            let _ = self.reload();
        })
    }
}

fn read_material(files: &ClientTlsFiles) -> Result<Material, ReloadError> {
    let bundle = crate::reload::read_text(&files.trust_bundle)?;
    let roots = root_store(&bundle)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider::provider())
        .build()
        .map_err(|error| TlsConfigError::Rustls(error.to_string()))?;

    let certified_key = match &files.client_certificate {
        Some((chain_path, key_path)) => {
            let chain = pem::certificates(&crate::reload::read_text(chain_path)?, "certificate chain")?;
            if chain.is_empty() {
                return Err(TlsConfigError::EmptyCertificateChain.into());
            }
            let key = pem::private_key(&crate::reload::read_text(key_path)?)?;
            let certified = CertifiedKey::from_der(chain, key, &provider::provider()).map_err(map_key_error)?;
            Some(Arc::new(certified))
        }
        None => None,
    };
    Ok(Material {
        verifier,
        certified_key,
    })
}

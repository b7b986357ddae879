//! Reloading server TLS material from files without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use zerotrust_core::{EventKind, EventReporter, SecurityEvent, SharedSink};

use crate::acceptor::PeerIdentityAcceptor;
use crate::error::TlsConfigError;
use crate::identity::peer_identity_from_der;
use crate::pem;
use crate::server_config::ServerTlsBuilder;

/// The files a server's TLS configuration is read from.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerTlsFiles {
    certificate_chain: PathBuf,
    private_key: PathBuf,
    trust_bundle: Option<PathBuf>,
    trust_domain_bundles: Vec<(String, PathBuf)>,
    crls: Vec<PathBuf>,
}

impl ServerTlsFiles {
    /// Names the server's certificate chain (leaf first) and private key, both PEM.
    pub fn new(certificate_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> Self {
        Self {
            certificate_chain: certificate_chain.into(),
            private_key: private_key.into(),
            trust_bundle: None,
            trust_domain_bundles: Vec::new(),
            crls: Vec::new(),
        }
    }

    /// Names the PEM trust bundle for clients of any trust domain.
    pub fn trust_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust_bundle = Some(path.into());
        self
    }

    /// Names the PEM trust bundle of one trust domain.
    pub fn trust_domain_bundle(mut self, trust_domain: &str, path: impl Into<PathBuf>) -> Self {
        self.trust_domain_bundles.push((trust_domain.to_owned(), path.into()));
        self
    }

    /// Names a certificate revocation list file, PEM or DER.
    pub fn crl(mut self, path: impl Into<PathBuf>) -> Self {
        self.crls.push(path.into());
        self
    }
}

/// An error while reloading TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A file could not be read.
    #[error("could not read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
    /// The files were read but do not form a valid configuration.
    #[error(transparent)]
    Config(#[from] TlsConfigError),
}

type Configure = dyn Fn(ServerTlsBuilder) -> ServerTlsBuilder + Send + Sync;

/// Keeps a server's TLS configuration in step with its files.
///
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use zerotrust_mtls::{ServerTlsFiles, ServerTlsReloader};
///
/// let files = ServerTlsFiles::new("/etc/orders/cert.pem", "/etc/orders/key.pem")
///     .trust_bundle("/etc/orders/ca.pem")
///     .crl("/etc/orders/ca.crl");
/// let reloader = Arc::new(ServerTlsReloader::load(files, |builder| builder)?);
/// let _task = reloader.clone().spawn_periodic(Duration::from_secs(300));
/// let acceptor = reloader.acceptor();
/// # let _ = acceptor; Ok(()) }
/// ```
///
/// A reload reads every file again and builds a new configuration. On success
/// new handshakes use it at once; connections already open keep the
/// configuration they were accepted with, so none is dropped. On failure the
/// previous configuration stays in use, the error is logged, and a
/// `TLS_RELOAD_FAILED` security event is sent.
pub struct ServerTlsReloader {
    files: ServerTlsFiles,
    configure: Box<Configure>,
    config: RustlsConfig,
    served_validity: Mutex<(SystemTime, SystemTime)>,
    events: EventReporter,
}

impl fmt::Debug for ServerTlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsReloader")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTlsReloader {
    /// Reads the files once and builds the first configuration.
    ///
    /// `configure` sets everything that does not come from a file, such as
    /// [`client_auth`](ServerTlsBuilder::client_auth); it runs again on each reload.
    pub fn load(
        files: ServerTlsFiles,
        configure: impl Fn(ServerTlsBuilder) -> ServerTlsBuilder + Send + Sync + 'static,
    ) -> Result<Self, ReloadError> {
        let (config, validity) = build(&files, &configure)?;
        Ok(Self {
            files,
            configure: Box::new(configure),
            config: RustlsConfig::from_config(config),
            served_validity: Mutex::new(validity),
            events: EventReporter::default(),
        })
    }

    /// Sends reload failures to `sink` as well as to the log.
    #[must_use]
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Names the service in reload events.
    #[must_use]
    pub fn service_name(mut self, service: &str) -> Self {
        self.events.set_service(service);
        self
    }

    /// Returns an acceptor that always uses the latest configuration.
    pub fn acceptor(&self) -> PeerIdentityAcceptor {
        PeerIdentityAcceptor::from_rustls_config(self.config.clone())
    }

    /// Returns the validity window (not before, not after) of the served leaf
    /// certificate, so operators can watch expiry approach.
    pub fn served_certificate_validity(&self) -> (SystemTime, SystemTime) {
        *self.served_validity.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the files again and, if they form a valid configuration, uses it
    /// for new handshakes. On error the current configuration stays.
    pub fn reload(&self) -> Result<(), ReloadError> {
        match build(&self.files, &self.configure) {
            Ok((config, validity)) => {
                self.config.reload_from_config(config);
                *self.served_validity.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = validity;
                tracing::info!(target: "zerotrust::mtls", service = self.events.service(), "TLS configuration reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    target: "zerotrust::mtls",
                    service = self.events.service(),
                    %error,
                    "TLS reload failed; keeping the previous configuration"
                );
                self.events
                    .send(SecurityEvent::new(EventKind::TlsReloadFailed).reason(reload_reason(&error)));
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

/// Spawns a task that runs `reload` every `interval`, first after one interval,
/// until the returned handle is aborted.
pub(crate) fn spawn_every(
    interval: Duration,
    reload: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            reload();
        }
    })
}

fn reload_reason(error: &ReloadError) -> &'static str {
    match error {
        ReloadError::Read { .. } => "file_unreadable",
        ReloadError::Config(TlsConfigError::KeyMismatch) => "key_mismatch",
        ReloadError::Config(_) => "invalid_tls_material",
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ReloadError> {
    std::fs::read(path).map_err(|error| ReloadError::Read {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

pub(crate) fn read_text(path: &Path) -> Result<String, ReloadError> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|_| ReloadError::Read {
        path: path.to_owned(),
        message: "not UTF-8 PEM text".to_owned(),
    })
}

type Built = (Arc<rustls::ServerConfig>, (SystemTime, SystemTime));

fn build(files: &ServerTlsFiles, configure: &Configure) -> Result<Built, ReloadError> {
    let chain = read_text(&files.certificate_chain)?;
    let key = read_text(&files.private_key)?;
    let mut builder = ServerTlsBuilder::new()
        .certificate_chain_pem(&chain)
        .private_key_pem(&key);
    if let Some(path) = &files.trust_bundle {
        builder = builder.trust_bundle_pem(&read_text(path)?);
    }
    for (trust_domain, path) in &files.trust_domain_bundles {
        builder = builder.trust_domain_bundle_pem(trust_domain, &read_text(path)?);
    }
    for path in &files.crls {
        let bytes = read(path)?;
        builder = if bytes.starts_with(b"-----BEGIN") {
            builder.crl_pem(&String::from_utf8_lossy(&bytes))
        } else {
            builder.crl_der(&bytes)
        };
    }

    let config = configure(builder).build()?;
    let leaf = pem::certificates(&chain, "certificate chain")?
        .into_iter()
        .next()
        .ok_or(TlsConfigError::EmptyCertificateChain)?;
    let identity = peer_identity_from_der(&leaf)
        .map_err(|error| TlsConfigError::Rustls(format!("served certificate unreadable: {error}")))?;
    Ok((config, (identity.not_before(), identity.not_after())))
}

//! The axum-server acceptor that attaches the peer's identity to every request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::{Accept, NoDelayAcceptor};
use axum_server::tls::TlsService;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use http::Request;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower::Service;
use zerotrust_core::PeerIdentity;

use crate::identity::peer_identity_from_der;

/// The TLS handshake timeout unless one is set.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections and parses the client certificate once per connection.
///
/// After rustls verified the handshake, the leaf certificate is parsed into a
/// [`PeerIdentity`], and every request on the connection carries it as
/// `Arc<PeerIdentity>` in its extensions. A connection without a client
/// certificate (only possible with [`ClientAuth::Optional`](crate::ClientAuth))
/// carries none. Accepted sockets get `TCP_NODELAY`, and a peer that does not
/// finish the handshake within the timeout is disconnected.
///
/// ```no_run
/// # async fn run(config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
/// use std::net::SocketAddr;
/// use axum::Router;
/// use zerotrust_mtls::PeerIdentityAcceptor;
///
/// let app = Router::new();
/// let listener = std::net::TcpListener::bind("127.0.0.1:8443")?;
/// axum_server::from_tcp(listener)?
///     .acceptor(PeerIdentityAcceptor::new(config))
///     .serve(app.into_make_service_with_connect_info::<SocketAddr>())
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct PeerIdentityAcceptor {
    inner: RustlsAcceptor<NoDelayAcceptor>,
    config: RustlsConfig,
}

impl std::fmt::Debug for PeerIdentityAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerIdentityAcceptor").finish_non_exhaustive()
    }
}

impl PeerIdentityAcceptor {
    /// Creates an acceptor with a 10-second handshake timeout.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        let config = RustlsConfig::from_config(config);
        let inner = rustls_acceptor(&config, DEFAULT_HANDSHAKE_TIMEOUT);
        Self { inner, config }
    }

    /// Creates an acceptor over a live configuration handle, such as the one a
    /// [`ServerTlsReloader`](crate::ServerTlsReloader) replaces on reload.
    pub fn from_rustls_config(config: RustlsConfig) -> Self {
        let inner = rustls_acceptor(&config, DEFAULT_HANDSHAKE_TIMEOUT);
        Self { inner, config }
    }

    /// Sets how long a peer may take to finish the TLS handshake.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.inner = rustls_acceptor(&self.config, timeout);
        self
    }

    /// Returns the live configuration handle; replacing its config affects new
    /// handshakes only, so open connections are not dropped.
    pub fn rustls_config(&self) -> &RustlsConfig {
        &self.config
    }
}

fn rustls_acceptor(config: &RustlsConfig, timeout: Duration) -> RustlsAcceptor<NoDelayAcceptor> {
    RustlsAcceptor::new(config.clone())
        .handshake_timeout(timeout)
        .acceptor(NoDelayAcceptor::new())
}

impl<S> Accept<TcpStream, S> for PeerIdentityAcceptor
where
    S: Send + 'static,
{
    type Stream = TlsStream<TcpStream>;
    type Service = PeerIdentityService<TlsService<S>>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await.inspect_err(|error| {
                tracing::debug!(target: "zerotrust::mtls", %error, "TLS handshake failed");
            })?;

            let (_, connection) = stream.get_ref();
            let identity = match connection.peer_certificates().and_then(|chain| chain.first()) {
                Some(leaf) => {
                    // webpki accepted this certificate; one x509-parser cannot
                    // read is refused rather than served as anonymous.
                    let identity = peer_identity_from_der(leaf).map_err(|error| {
                        tracing::debug!(target: "zerotrust::mtls", %error, "peer certificate unreadable");
                        io::Error::new(io::ErrorKind::InvalidData, error)
                    })?;
                    tracing::debug!(
                        target: "zerotrust::mtls",
                        spiffe_id = identity.spiffe_id().map(|id| id.to_string()),
                        fingerprint = %identity.fingerprint(),
                        "client certificate verified"
                    );
                    Some(Arc::new(identity))
                }
                None => {
                    tracing::trace!(target: "zerotrust::mtls", "connection without client certificate");
                    None
                }
            };
            Ok((stream, PeerIdentityService { inner: service, identity }))
        })
    }
}

/// Per-connection service that inserts the connection's `Arc<PeerIdentity>` into
/// each request.
#[derive(Debug, Clone)]
pub struct PeerIdentityService<S> {
    inner: S,
    identity: Option<Arc<PeerIdentity>>,
}

impl<S, B> Service<Request<B>> for PeerIdentityService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // A client may not smuggle its own identity in: only the acceptor sets it.
        request.extensions_mut().remove::<Arc<PeerIdentity>>();
        if let Some(identity) = &self.identity {
            request.extensions_mut().insert(identity.clone());
        }
        self.inner.call(request)
    }
}

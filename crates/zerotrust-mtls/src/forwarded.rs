//! Honouring `x-forwarded-client-cert` from trusted proxies only.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use axum::response::Response;
use http::{HeaderName, Request};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};
use zerotrust_core::future::GuardFuture;
use zerotrust_core::{CertificateFingerprint, EventKind, EventReporter, PeerIdentity, SharedSink, problem_response};

use crate::caller_policy::CallerPolicy;
use crate::identity::{parse_spiffe_id, peer_identity_from_der};
use crate::rejection::MtlsRejection;
use crate::xfcc::{XfccElement, parse_xfcc, url_decode};

/// The header name.
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The identity of the trusted proxy that forwarded a request, when the
/// request's [`PeerIdentity`] came from `x-forwarded-client-cert`.
#[derive(Debug, Clone)]
pub struct ForwardingProxy(pub Arc<PeerIdentity>);

/// Honouring `x-forwarded-client-cert` from trusted proxies only.
///
/// ```
/// use axum::{Router, routing::get};
/// use zerotrust_mtls::{CallerPolicy, ForwardedClientCertLayer, RequireCallerLayer};
///
/// let envoy = CallerPolicy::new().allow_spiffe_id("spiffe://example.org/envoy").unwrap();
/// let only_web = CallerPolicy::new().allow_spiffe_id("spiffe://example.org/web").unwrap();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(RequireCallerLayer::new(only_web))
///     // Added last, so it runs first and RequireCaller gets the forwarded identity.
///     .layer(ForwardedClientCertLayer::new(envoy));
/// ```
///
/// Rules:
///
/// 1. When the TLS peer is not a trusted proxy, every `x-forwarded-client-cert`
///    header is removed and the peer's own identity stays.
/// 2. When it is a trusted proxy, the last element of the header (the one that
///    proxy appended) replaces the request's [`PeerIdentity`], and the proxy's
///    identity moves to [`ForwardingProxy`]. With `Cert`, the identity is read from
///    the certificate (and `Hash`, if present, must match it); without, it is built
///    from `URI`, `DNS` and `Hash`, which is then required.
/// 3. A trusted proxy that sends no header forwarded a client without a
///    certificate: the request carries no `PeerIdentity`, never the proxy's.
/// 4. A malformed header from a trusted proxy gets 400.
#[derive(Debug, Clone)]
#[must_use]
pub struct ForwardedClientCertLayer {
    trusted_proxies: Arc<CallerPolicy>,
    events: EventReporter,
}

impl ForwardedClientCertLayer {
    /// Honours the header only from peers that `trusted_proxies` allows.
    pub fn new(trusted_proxies: CallerPolicy) -> Self {
        Self {
            trusted_proxies: Arc::new(trusted_proxies),
            events: EventReporter::default(),
        }
    }

    /// Sends denial events to `sink`.
    pub fn event_sink(mut self, sink: SharedSink) -> Self {
        self.events.set_sink(sink);
        self
    }

    /// Names the service in denial events.
    pub fn service_name(mut self, service: impl Into<Arc<str>>) -> Self {
        self.events.set_service(service);
        self
    }
}

impl<S> Layer<S> for ForwardedClientCertLayer {
    type Service = ForwardedClientCert<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardedClientCert {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware made by [`ForwardedClientCertLayer`], whose docs give the rules.
#[derive(Debug, Clone)]
pub struct ForwardedClientCert<S> {
    inner: S,
    layer: ForwardedClientCertLayer,
}

impl<S, B> Service<Request<B>> for ForwardedClientCert<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Arc<PeerIdentity>>().cloned();
        let trusted = peer.as_deref().is_some_and(|p| self.layer.trusted_proxies.allows(p));
        if !trusted {
            if request.headers_mut().remove(&X_FORWARDED_CLIENT_CERT).is_some() {
                tracing::debug!(target: "zerotrust::mtls", path = request.uri().path(), "removed x-forwarded-client-cert from an untrusted peer");
                while request.headers_mut().remove(&X_FORWARDED_CLIENT_CERT).is_some() {}
            }
            return GuardFuture::allowed(self.inner.call(request));
        }
        let proxy = peer.expect("a trusted peer exists");

        let values: Vec<&str> = request
            .headers()
            .get_all(&X_FORWARDED_CLIENT_CERT)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        let forwarded = match values.as_slice() {
            [] => None,
            lines => match identity_from_header(&lines.join(",")) {
                Ok(identity) => Some(identity),
                Err(reason) => {
                    tracing::debug!(target: "zerotrust::mtls", reason, "invalid x-forwarded-client-cert from a trusted proxy");
                    let rejection = MtlsRejection::InvalidForwardedCertificate;
                    let proxy_id = proxy.spiffe_id().map(ToString::to_string);
                    self.layer.events.denial(EventKind::AuthenticationDenied, &rejection, proxy_id, request.headers());
                    return GuardFuture::denied(problem_response(rejection));
                }
            },
        };

        let extensions = request.extensions_mut();
        extensions.remove::<Arc<PeerIdentity>>();
        if let Some(identity) = forwarded {
            tracing::trace!(
                target: "zerotrust::mtls",
                client = identity.spiffe_id().map(|id| id.to_string()),
                "identity taken from x-forwarded-client-cert"
            );
            extensions.insert(Arc::new(identity));
        }
        extensions.insert(ForwardingProxy(proxy));
        GuardFuture::allowed(self.inner.call(request))
    }
}

fn identity_from_header(value: &str) -> Result<PeerIdentity, &'static str> {
    let elements = parse_xfcc(value).map_err(|_| "unparsable")?;
    let last = elements.last().ok_or("empty")?;
    identity_from_element(last)
}

fn identity_from_element(element: &XfccElement) -> Result<PeerIdentity, &'static str> {
    let hash = match &element.hash {
        Some(hex) => Some(decode_hex_sha256(hex).ok_or("invalid_hash")?),
        None => None,
    };

    if let Some(cert) = &element.cert {
        let pem_text = url_decode(cert).ok_or("invalid_cert_encoding")?;
        let der = crate::pem::certificates(&pem_text, "forwarded certificate")
            .map_err(|_| "invalid_cert")?
            .into_iter()
            .next()
            .ok_or("invalid_cert")?;
        let digest: [u8; 32] = Sha256::digest(&der).into();
        if hash.is_some_and(|hash| hash != digest) {
            return Err("hash_mismatch");
        }
        return peer_identity_from_der(&der).map_err(|_| "invalid_cert");
    }

    let digest = hash.ok_or("missing_hash")?;
    let spiffe_id = match element.uri.as_slice() {
        [only] => parse_spiffe_id(only).ok(),
        _ => None,
    };
    // NOTE: without `Cert` the validity window is unknown, so it is reported as
    // the Unix epoch for both ends.
    Ok(PeerIdentity::new(
        spiffe_id,
        element.dns.clone(),
        CertificateFingerprint::from_sha256(digest),
        UNIX_EPOCH,
        UNIX_EPOCH,
    ))
}

fn decode_hex_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

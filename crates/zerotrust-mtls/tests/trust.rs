//! Trust decisions made during real TLS handshakes: revocation lists, trust
//! domains bound to their own bundles, X.509-SVID leaf rules and the handshake
//! timeout.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/mesh/client.rs"]
mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use std::sync::atomic::{AtomicUsize, Ordering};

use client::{get_request, https_client, send};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use tokio::io::AsyncReadExt;
use zerotrust_mtls::{ClientTlsBuilder, LeafRules, PeerIdentityAcceptor, ServerTlsBuilder};
use zerotrust_testkit::pki::{DevPki, LeafCert, LeafSpec};

/// Counts handler calls, so tests can show the handler did not run.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn app(calls: Calls) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let calls = calls.clone();
            async move {
                calls.hit();
                "ok"
            }
        }),
    )
}

/// Serves `app` with an already built TLS configuration.
fn serve_with(app: Router, tls: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> (String, SocketAddr, axum_server::Handle<SocketAddr>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)
        .unwrap()
        .acceptor(PeerIdentityAcceptor::new(tls).handshake_timeout(handshake_timeout))
        .handle(handle.clone());
    tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    (format!("https://{address}"), address, handle)
}

fn server_builder(pki: &DevPki, server: &LeafCert) -> ServerTlsBuilder {
    ServerTlsBuilder::new()
        .certificate_chain_pem(&server.cert_pem)
        .private_key_pem(&server.key_pem)
        .trust_bundle_pem(pki.ca_cert_pem())
}

async fn status_with(pki_for_server_trust: &DevPki, url: &str, leaf: &LeafCert) -> Option<u16> {
    let tls = ClientTlsBuilder::new()
        .trust_bundle_pem(pki_for_server_trust.ca_cert_pem())
        .client_certificate_pem(&leaf.cert_pem, &leaf.key_pem)
        .build()
        .unwrap();
    send(&https_client(tls), get_request(url)).await.ok().map(|reply| reply.status.as_u16())
}

#[tokio::test]
async fn revoked_client_fails_handshake() {
    let pki = DevPki::generate("zerotrust.test", &["orders", "gateway", "payments"]).unwrap();
    let crl = pki.revocation_list(&[pki.service("payments").unwrap()]).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap()).crl_pem(&crl).build().unwrap();
    let calls = Calls::default();
    let (url, _, _handle) = serve_with(app(calls.clone()), tls, Duration::from_secs(5));

    let good = status_with(&pki, &url, pki.service("gateway").unwrap()).await;
    let revoked = status_with(&pki, &url, pki.service("payments").unwrap()).await;

    assert_eq!(good, Some(200));
    assert_eq!(revoked, None, "a revoked certificate completed the handshake");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn unknown_revocation_status_fails_by_default() {
    let pki = DevPki::generate("zerotrust.test", &["orders", "gateway"]).unwrap();
    let other = DevPki::generate("other.test", &[]).unwrap();
    // The only CRL is another CA's, so no list covers the gateway's certificate.
    let crl = other.revocation_list(&[]).unwrap();
    let strict = server_builder(&pki, pki.service("orders").unwrap()).crl_pem(&crl).build().unwrap();
    let lenient = server_builder(&pki, pki.service("orders").unwrap())
        .crl_pem(&crl)
        .allow_unknown_revocation_status()
        .build()
        .unwrap();
    let (strict_url, _, _h1) = serve_with(app(Calls::default()), strict, Duration::from_secs(5));
    let (lenient_url, _, _h2) = serve_with(app(Calls::default()), lenient, Duration::from_secs(5));

    let strict_status = status_with(&pki, &strict_url, pki.service("gateway").unwrap()).await;
    let lenient_status = status_with(&pki, &lenient_url, pki.service("gateway").unwrap()).await;

    assert_eq!(strict_status, None);
    assert_eq!(lenient_status, Some(200));
}

#[tokio::test]
async fn trust_domain_verified_only_by_its_bundle() {
    let a = DevPki::generate("a.test", &["orders", "gateway"]).unwrap();
    let b = DevPki::generate("b.test", &["gateway"]).unwrap();
    let server = a.service("orders").unwrap();
    let tls = ServerTlsBuilder::new()
        .certificate_chain_pem(&server.cert_pem)
        .private_key_pem(&server.key_pem)
        .trust_domain_bundle_pem("a.test", a.ca_cert_pem())
        .trust_domain_bundle_pem("b.test", b.ca_cert_pem())
        .build()
        .unwrap();
    let calls = Calls::default();
    let (url, _, _handle) = serve_with(app(calls.clone()), tls, Duration::from_secs(5));
    // A's CA signs a certificate that claims an identity in trust domain B.
    let forged = a.issue(&LeafSpec::service("b.test", "gateway")).unwrap();
    let unknown_domain = a.issue(&LeafSpec::service("c.test", "gateway")).unwrap();

    let from_a = status_with(&a, &url, a.service("gateway").unwrap()).await;
    let from_b = status_with(&a, &url, b.service("gateway").unwrap()).await;
    let forged_status = status_with(&a, &url, &forged).await;
    let unknown_status = status_with(&a, &url, &unknown_domain).await;

    assert_eq!(from_a, Some(200));
    assert_eq!(from_b, Some(200));
    assert_eq!(forged_status, None, "A's CA vouched for trust domain B");
    assert_eq!(unknown_status, None);
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn non_svid_leaves_fail_handshake() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap()).build().unwrap();
    let calls = Calls::default();
    let (url, _, _handle) = serve_with(app(calls.clone()), tls, Duration::from_secs(5));
    let base = || LeafSpec::service("zerotrust.test", "gateway");
    let mut no_signature = base();
    no_signature.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let mut cert_sign = base();
    cert_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
    let mut server_only = base();
    server_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut ca_leaf = base();
    ca_leaf.is_ca = true;
    ca_leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];

    for (name, spec) in [
        ("no digitalSignature", no_signature),
        ("keyCertSign", cert_sign),
        ("serverAuth only", server_only),
        ("CA leaf", ca_leaf),
    ] {
        let leaf = pki.issue(&spec).unwrap();

        let status = status_with(&pki, &url, &leaf).await;

        assert_eq!(status, None, "{name} completed the handshake");
    }
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn allow_non_svid_accepts_leaf_without_key_usage() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let strict = server_builder(&pki, pki.service("orders").unwrap()).build().unwrap();
    let lenient = server_builder(&pki, pki.service("orders").unwrap())
        .leaf_rules(LeafRules::AllowNonSvid)
        .build()
        .unwrap();
    let (strict_url, _, _h1) = serve_with(app(Calls::default()), strict, Duration::from_secs(5));
    let (lenient_url, _, _h2) = serve_with(app(Calls::default()), lenient, Duration::from_secs(5));
    let mut spec = LeafSpec::service("zerotrust.test", "gateway");
    spec.key_usages = vec![];
    let leaf = pki.issue(&spec).unwrap();

    assert_eq!(status_with(&pki, &strict_url, &leaf).await, None);
    assert_eq!(status_with(&pki, &lenient_url, &leaf).await, Some(200));
}

#[tokio::test]
async fn silent_peer_is_dropped_after_handshake_timeout() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap()).build().unwrap();
    let (_, address, _handle) = serve_with(app(Calls::default()), tls, Duration::from_millis(300));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let started = Instant::now();

    // Send nothing: the server must close the connection on its own.
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;

    assert!(read.is_ok(), "the server kept a silent connection open for 5 s");
    assert!(matches!(read.unwrap(), Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(250), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn anonymous_client_with_optional_auth_has_no_identity() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap())
        .client_auth(zerotrust_mtls::ClientAuth::Optional)
        .build()
        .unwrap();
    let calls = Calls::default();
    let (url, _, _handle) = serve_with(app(calls.clone()), tls, Duration::from_secs(5));

    let anonymous = ClientTlsBuilder::new().trust_bundle_pem(pki.ca_cert_pem()).build().unwrap();

    let reply = send(&https_client(anonymous), get_request(&url)).await.unwrap();

    assert_eq!(reply.status, 200);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn der_crl_revokes_too() {
    use rustls::pki_types::CertificateRevocationListDer;
    use rustls::pki_types::pem::PemObject;

    let pki = DevPki::generate("zerotrust.test", &["orders", "gateway"]).unwrap();
    let crl_pem = pki.revocation_list(&[pki.service("gateway").unwrap()]).unwrap();
    let crl_der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap()).crl_der(&crl_der).build().unwrap();
    let (url, _, _handle) = serve_with(app(Calls::default()), tls, Duration::from_secs(5));

    let status = status_with(&pki, &url, pki.service("gateway").unwrap()).await;

    assert_eq!(status, None);
}

#[tokio::test]
async fn optional_auth_still_rejects_bad_certificate() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let rogue = DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
    let tls = server_builder(&pki, pki.service("orders").unwrap())
        .client_auth(zerotrust_mtls::ClientAuth::Optional)
        .build()
        .unwrap();
    let calls = Calls::default();
    let (url, _, _handle) = serve_with(app(calls.clone()), tls, Duration::from_secs(5));

    // The certificate is presented but chains to an unknown CA: that is a failed
    // handshake, never an anonymous request.
    let status = status_with(&pki, &url, rogue.service("gateway").unwrap()).await;

    assert_eq!(status, None);
    assert_eq!(calls.count(), 0);
}

//! `x-forwarded-client-cert` over real TLS: honoured from a trusted proxy,
//! removed from everyone else.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/mesh/client.rs"]
mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use axum::{Extension, Router};
use client::{Reply, get_request, https_client, send};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use zerotrust_core::{EventKind, MemorySink, PeerIdentity};
use zerotrust_mtls::{
    CallerPolicy, ClientTlsBuilder, ForwardedClientCertLayer, ForwardingProxy, PeerIdentityAcceptor,
    RequireCallerLayer, ServerTlsBuilder,
};
use zerotrust_testkit::pki::{DevPki, LeafCert};

struct Fixture {
    pki: DevPki,
    url: String,
    calls: Arc<AtomicUsize>,
    sink: Arc<MemorySink>,
    _handle: axum_server::Handle<SocketAddr>,
}

async fn start() -> Fixture {
    let pki = DevPki::generate("zerotrust.test", &["orders", "gateway", "payments", "web"]).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let sink = Arc::new(MemorySink::default());
    let handler_calls = calls.clone();
    let handler = move |peer: Extension<Arc<PeerIdentity>>, proxy: Option<Extension<ForwardingProxy>>, headers: HeaderMap| {
        let calls = handler_calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let proxy = proxy.and_then(|Extension(p)| p.0.spiffe_id().map(|id| id.to_string())).unwrap_or_default();
            format!(
                "{} via {proxy} xfcc={}",
                peer.spiffe_id().map(|id| id.to_string()).unwrap_or_default(),
                headers.contains_key("x-forwarded-client-cert")
            )
        }
    };
    let app = Router::new()
        .route("/", get(handler))
        .layer(RequireCallerLayer::new(CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/payments").unwrap()))
        .layer(
            ForwardedClientCertLayer::new(CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/gateway").unwrap())
                .event_sink(sink.clone()),
        );
    let orders = pki.service("orders").unwrap();
    let tls = ServerTlsBuilder::new()
        .trust_bundle_pem(pki.ca_cert_pem())
        .certificate_chain_pem(&orders.cert_pem)
        .private_key_pem(&orders.key_pem)
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let handle = axum_server::Handle::new();
    tokio::spawn(
        axum_server::from_tcp(listener)
            .unwrap()
            .acceptor(PeerIdentityAcceptor::new(tls))
            .handle(handle.clone())
            .serve(app.into_make_service_with_connect_info::<SocketAddr>()),
    );
    Fixture { pki, url, calls, sink, _handle: handle }
}

async fn call_as(fixture: &Fixture, caller: &str, xfcc: Option<&str>) -> Reply {
    let leaf = fixture.pki.service(caller).unwrap();
    let tls = ClientTlsBuilder::new()
        .trust_bundle_pem(fixture.pki.ca_cert_pem())
        .client_certificate_pem(&leaf.cert_pem, &leaf.key_pem)
        .build()
        .unwrap();
    let mut request = get_request(&fixture.url);
    if let Some(value) = xfcc {
        request.headers_mut().insert("x-forwarded-client-cert", value.parse().unwrap());
    }
    send(&https_client(tls), request).await.unwrap()
}

fn hash_of(leaf: &LeafCert) -> String {
    Sha256::digest(&leaf.cert_der).iter().map(|b| format!("{b:02x}")).collect()
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn assert_problem(reply: &Reply, status: u16) {
    assert_eq!(reply.status.as_u16(), status);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(reply.json()["status"], status);
}

#[tokio::test]
async fn trusted_proxy_forwards_hash_and_uri() {
    let fixture = start().await;
    let payments = fixture.pki.service("payments").unwrap();
    let value = format!("By=spiffe://zerotrust.test/orders;Hash={};URI=spiffe://zerotrust.test/payments", hash_of(payments));

    let reply = call_as(&fixture, "gateway", Some(&value)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"spiffe://zerotrust.test/payments via spiffe://zerotrust.test/gateway xfcc=true");
}

#[tokio::test]
async fn trusted_proxy_forwards_certificate() {
    let fixture = start().await;
    let payments = fixture.pki.service("payments").unwrap();
    // An earlier hop's element comes first; only the last one counts.
    let value = format!(
        "URI=spiffe://zerotrust.test/web;Hash={},Hash={};Cert=\"{}\"",
        hash_of(fixture.pki.service("web").unwrap()),
        hash_of(payments),
        url_encode(&payments.cert_pem)
    );

    let reply = call_as(&fixture, "gateway", Some(&value)).await;

    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with(b"spiffe://zerotrust.test/payments via"));
}

#[tokio::test]
async fn trusted_proxy_with_bad_header_is_400() {
    let fixture = start().await;
    let payments = fixture.pki.service("payments").unwrap();
    let mismatched = format!("Hash={};Cert=\"{}\"", hash_of(fixture.pki.service("web").unwrap()), url_encode(&payments.cert_pem));
    let cases = [
        "Subject=\"unterminated".to_owned(),
        "URI=spiffe://zerotrust.test/payments".to_owned(),
        "Hash=xyz;URI=spiffe://zerotrust.test/payments".to_owned(),
        mismatched,
    ];

    for value in &cases {
        let reply = call_as(&fixture, "gateway", Some(value)).await;

        assert_problem(&reply, 400);
    }
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 0);
    assert_eq!(fixture.sink.count(EventKind::AuthenticationDenied), cases.len());
}

#[tokio::test]
async fn trusted_proxy_without_header_is_anonymous() {
    let fixture = start().await;

    let reply = call_as(&fixture, "gateway", None).await;

    assert_problem(&reply, 401);
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn untrusted_peer_header_is_removed() {
    let fixture = start().await;
    let claim_gateway = "Hash=00;URI=spiffe://zerotrust.test/gateway";
    let payments = fixture.pki.service("payments").unwrap();
    let claim_payments = format!("Hash={};URI=spiffe://zerotrust.test/payments", hash_of(payments));

    let allowed = call_as(&fixture, "payments", Some(claim_gateway)).await;
    let denied = call_as(&fixture, "web", Some(&claim_payments)).await;

    assert_eq!(allowed.status, 200);
    assert_eq!(&allowed.body[..], b"spiffe://zerotrust.test/payments via  xfcc=false");
    assert_problem(&denied, 403);
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 1);
}

//! mTLS over real handshakes: peer identity on requests and caller allow-lists.

mod common;

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use common::client::{get_request, send};
use common::{Calls, assert_problem, client, serve};
use zerotrust::core::{EventKind, MemorySink, PeerIdentity};
use zerotrust::mtls::{CallerPolicy, ClientAuth, RequireCallerLayer};
use zerotrust_testkit::pki::{DevPki, LeafSpec};

fn app(calls: Calls, sink: Arc<MemorySink>) -> Router {
    let policy = CallerPolicy::new()
        .allow_spiffe_id("spiffe://zerotrust.test/gateway")
        .unwrap();
    Router::new()
        .route(
            "/whoami",
            get(move |peer: Option<Extension<Arc<PeerIdentity>>>| {
                let calls = calls.clone();
                async move {
                    calls.hit();
                    peer.and_then(|Extension(p)| p.spiffe_id().map(ToString::to_string))
                        .unwrap_or_default()
                }
            }),
        )
        .layer(RequireCallerLayer::new(policy).service_name("orders").event_sink(sink))
}

#[tokio::test]
async fn allowed_caller_reaches_handler_with_identity() {
    let pki = DevPki::generate("zerotrust.test", &["gateway", "orders"]).unwrap();
    let calls = Calls::default();
    let server = serve(app(calls.clone(), Arc::default()), &pki, pki.service("orders").unwrap(), ClientAuth::Required);

    let reply = send(&client(&pki, pki.service("gateway")), get_request(&format!("{}/whoami", server.url))).await.unwrap();

    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"spiffe://zerotrust.test/gateway");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn other_service_is_403_and_handler_not_run() {
    let pki = DevPki::generate("zerotrust.test", &["gateway", "orders", "payments"]).unwrap();
    let calls = Calls::default();
    let sink = Arc::new(MemorySink::default());
    let server = serve(app(calls.clone(), sink.clone()), &pki, pki.service("orders").unwrap(), ClientAuth::Required);

    let reply = send(&client(&pki, pki.service("payments")), get_request(&format!("{}/whoami", server.url))).await.unwrap();

    assert_problem(&reply, 403);
    assert_eq!(reply.json()["type"], "urn:zerotrust:problem:caller-not-allowed");
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(calls.count(), 0);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::AuthorizationDenied);
    assert_eq!(events[0].identifier.as_deref(), Some("spiffe://zerotrust.test/payments"));
}

#[tokio::test]
async fn no_client_certificate_fails_handshake() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let calls = Calls::default();
    let server = serve(app(calls.clone(), Arc::default()), &pki, pki.service("orders").unwrap(), ClientAuth::Required);

    let result = send(&client(&pki, None), get_request(&format!("{}/whoami", server.url))).await;

    assert!(result.is_err(), "request without certificate got {:?}", result.map(|r| r.status));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn certificate_from_other_ca_fails_handshake() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let rogue = DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
    let calls = Calls::default();
    let server = serve(app(calls.clone(), Arc::default()), &pki, pki.service("orders").unwrap(), ClientAuth::Required);
    // The rogue client trusts the real CA, so only its own certificate is wrong.
    let rogue_leaf = rogue.service("gateway").unwrap();
    let tls = zerotrust::mtls::ClientTlsBuilder::new()
        .trust_bundle_pem(pki.ca_cert_pem())
        .client_certificate_pem(&rogue_leaf.cert_pem, &rogue_leaf.key_pem)
        .build()
        .unwrap();

    let result = send(&common::client::https_client(tls), get_request(&format!("{}/whoami", server.url))).await;

    assert!(result.is_err(), "rogue certificate got {:?}", result.map(|r| r.status));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn optional_auth_without_certificate_is_401() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let calls = Calls::default();
    let sink = Arc::new(MemorySink::default());
    let server = serve(app(calls.clone(), sink.clone()), &pki, pki.service("orders").unwrap(), ClientAuth::Optional);

    let reply = send(&client(&pki, None), get_request(&format!("{}/whoami", server.url))).await.unwrap();

    assert_problem(&reply, 401);
    assert_eq!(reply.json()["type"], "urn:zerotrust:problem:client-certificate-required");
    assert_eq!(calls.count(), 0);
    assert_eq!(sink.count(EventKind::AuthenticationDenied), 1);
}

#[tokio::test]
async fn certificate_without_spiffe_id_is_403() {
    let pki = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let mut spec = LeafSpec::service("zerotrust.test", "gateway");
    spec.uris.push("spiffe://zerotrust.test/payments".to_owned());
    let two_ids = pki.issue(&spec).unwrap();
    let calls = Calls::default();
    let server = serve(app(calls.clone(), Arc::default()), &pki, pki.service("orders").unwrap(), ClientAuth::Required);

    let reply = send(&client(&pki, Some(&two_ids)), get_request(&format!("{}/whoami", server.url))).await.unwrap();

    assert_problem(&reply, 403);
    assert_eq!(calls.count(), 0);
}

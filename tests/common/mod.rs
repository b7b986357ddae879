//! Helpers shared by the end-to-end tests: real listeners and real TLS clients.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use zerotrust::mtls::{ClientAuth, ClientTlsBuilder, PeerIdentityAcceptor, ServerTlsBuilder};
use zerotrust_testkit::pki::{DevPki, LeafCert};

#[path = "../../examples/mesh/client.rs"]
pub mod client;

/// A server on a loopback port, stopped when dropped.
pub struct TestServer {
    pub url: String,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Serves `app` over TLS with `leaf`'s certificate on a free loopback port.
pub fn serve(app: Router, pki: &DevPki, leaf: &LeafCert, client_auth: ClientAuth) -> TestServer {
    let tls = ServerTlsBuilder::new()
        .trust_bundle_pem(pki.ca_cert_pem())
        .certificate_chain_pem(&leaf.cert_pem)
        .private_key_pem(&leaf.key_pem)
        .client_auth(client_auth)
        .build()
        .expect("server TLS config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking listener");
    let url = format!("https://{}", listener.local_addr().expect("local address"));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)
        .expect("server from listener")
        .acceptor(PeerIdentityAcceptor::new(tls))
        .handle(handle.clone());
    tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    TestServer { url, handle }
}

/// Builds a client that presents `leaf` (no certificate for `None`) and trusts `pki`'s CA.
pub fn client(pki: &DevPki, leaf: Option<&LeafCert>) -> client::HttpsClient {
    let mut builder = ClientTlsBuilder::new().trust_bundle_pem(pki.ca_cert_pem());
    if let Some(leaf) = leaf {
        builder = builder.client_certificate_pem(&leaf.cert_pem, &leaf.key_pem);
    }
    client::https_client(builder.build().expect("client TLS config"))
}

/// Counts handler calls, so denial tests can show the handler did not run.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asserts a problem+json denial: status, content type, body fields.
pub fn assert_problem(reply: &client::Reply, status: u16) {
    assert_eq!(reply.status.as_u16(), status, "status, body: {:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let body = reply.json();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:zerotrust:problem:")));
    assert!(body["title"].is_string());
}

//! Rotating the server certificate and the CA bundle from files while a client
//! keeps a connection open.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/mesh/client.rs"]
mod client;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use client::{HttpsClient, get_request, https_client, send};
use zerotrust_core::{EventKind, MemorySink};
use zerotrust_mtls::{ClientTlsBuilder, ServerTlsFiles, ServerTlsReloader};
use zerotrust_testkit::pki::{DevPki, LeafCert, LeafSpec};

fn write_material(dir: &Path, pki: &DevPki, orders: &LeafCert) {
    std::fs::write(dir.join("cert.pem"), &orders.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &orders.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca_cert_pem()).unwrap();
}

fn client_of(pki: &DevPki) -> HttpsClient {
    let gateway = pki.service("gateway").unwrap();
    let tls = ClientTlsBuilder::new()
        .trust_bundle_pem(pki.ca_cert_pem())
        .client_certificate_pem(&gateway.cert_pem, &gateway.key_pem)
        .build()
        .unwrap();
    https_client(tls)
}

async fn status(client: &HttpsClient, url: &str) -> Option<u16> {
    send(client, get_request(url)).await.ok().map(|reply| reply.status.as_u16())
}

#[tokio::test]
async fn rotation_keeps_open_connections_and_changes_new_handshakes() {
    let dir = std::env::temp_dir().join(format!("zt-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = DevPki::generate("zerotrust.test", &["orders", "gateway"]).unwrap();
    let new = DevPki::generate("zerotrust.test", &["orders", "gateway"]).unwrap();
    write_material(&dir, &old, old.service("orders").unwrap());
    let sink = Arc::new(MemorySink::default());
    let files = ServerTlsFiles::new(dir.join("cert.pem"), dir.join("key.pem")).trust_bundle(dir.join("ca.pem"));
    let reloader = ServerTlsReloader::load(files, |builder| builder).unwrap().event_sink(sink.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let handle = axum_server::Handle::new();
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(
        axum_server::from_tcp(listener)
            .unwrap()
            .acceptor(reloader.acceptor())
            .handle(handle.clone())
            .serve(app.into_make_service_with_connect_info::<SocketAddr>()),
    );
    let kept_alive = client_of(&old);
    assert_eq!(status(&kept_alive, &url).await, Some(200));
    let (_, old_not_after) = reloader.served_certificate_validity();

    // A shorter validity tells the two served certificates apart.
    let mut spec = LeafSpec::service("zerotrust.test", "orders");
    spec.not_after_offset_secs = 7 * 24 * 3600;
    let new_orders = new.issue(&spec).unwrap();
    write_material(&dir, &new, &new_orders);
    reloader.reload().unwrap();

    // The pooled connection was accepted with the old material and still works;
    // a new handshake would fail because this client trusts only the old CA.
    assert_eq!(status(&kept_alive, &url).await, Some(200));
    assert_eq!(status(&client_of(&old), &url).await, None, "new handshake used old material");
    assert_eq!(status(&client_of(&new), &url).await, Some(200));
    let (_, new_not_after) = reloader.served_certificate_validity();
    assert_ne!(old_not_after, new_not_after);

    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let error = reloader.reload().unwrap_err();

    assert!(error.to_string().contains("private key"), "{error}");
    assert_eq!(status(&client_of(&new), &url).await, Some(200), "a failed reload replaced the config");
    assert_eq!(sink.count(EventKind::TlsReloadFailed), 1);
    assert_eq!(sink.events()[0].reason, Some("invalid_tls_material"));

    std::fs::remove_dir_all(&dir).unwrap();
    handle.shutdown();
}

#[tokio::test]
async fn missing_file_is_a_read_error() {
    let error = ServerTlsReloader::load(
        ServerTlsFiles::new("/nonexistent/zt/cert.pem", "/nonexistent/zt/key.pem"),
        |builder| builder,
    )
    .unwrap_err();

    assert!(error.to_string().contains("/nonexistent/zt/cert.pem"), "{error}");
}

#[tokio::test]
async fn client_reload_presents_new_certificate() {
    use axum::Extension;
    use zerotrust_core::PeerIdentity;
    use zerotrust_mtls::{ClientTlsFiles, ClientTlsReloader, PeerIdentityAcceptor, ServerTlsBuilder};

    let dir = std::env::temp_dir().join(format!("zt-client-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let servers = DevPki::generate("zerotrust.test", &["orders"]).unwrap();
    let old = DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
    let new = DevPki::generate("zerotrust.test", &["gateway"]).unwrap();
    let orders = servers.service("orders").unwrap();
    let both_cas = format!("{}{}", old.ca_cert_pem(), new.ca_cert_pem());
    let tls = ServerTlsBuilder::new()
        .trust_bundle_pem(&both_cas)
        .certificate_chain_pem(&orders.cert_pem)
        .private_key_pem(&orders.key_pem)
        .build()
        .unwrap();
    let app = Router::new().route(
        "/",
        get(|Extension(peer): Extension<Arc<PeerIdentity>>| async move { peer.fingerprint().to_hex() }),
    );
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
    let write_client = |pki: &DevPki| {
        let gateway = pki.service("gateway").unwrap();
        std::fs::write(dir.join("ca.pem"), servers.ca_cert_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), &gateway.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &gateway.key_pem).unwrap();
    };
    write_client(&old);
    let reloader = ClientTlsReloader::load(
        ClientTlsFiles::new(dir.join("ca.pem")).client_certificate(dir.join("cert.pem"), dir.join("key.pem")),
    )
    .unwrap();
    let fingerprint_of = |leaf: &LeafCert| -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(&leaf.cert_der).iter().map(|b| format!("{b:02x}")).collect()
    };

    let before = send(&https_client(reloader.config()), get_request(&url)).await.unwrap();
    write_client(&new);
    reloader.reload().unwrap();
    // A fresh client reuses the same configuration object but makes a new handshake.
    let after = send(&https_client(reloader.config()), get_request(&url)).await.unwrap();
    std::fs::write(dir.join("ca.pem"), "no certificates here").unwrap();
    let failed = reloader.reload();
    let still = send(&https_client(reloader.config()), get_request(&url)).await.unwrap();

    assert_eq!(String::from_utf8_lossy(&before.body), fingerprint_of(old.service("gateway").unwrap()));
    assert_eq!(String::from_utf8_lossy(&after.body), fingerprint_of(new.service("gateway").unwrap()));
    assert!(failed.is_err());
    assert_eq!(still.status, 200);

    std::fs::remove_dir_all(&dir).unwrap();
    handle.shutdown();
}

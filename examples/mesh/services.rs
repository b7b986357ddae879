//! The three demo services: gateway, orders and payments.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use zerotrust::anomaly::{AnomalyLayer, AnomalyPolicy, CounterStore, IdentifierSource};
use zerotrust::apikey::{ApiKeyLayer, KeyStore};
use zerotrust::core::{Principal, RequireScopeLayer, SharedSink};
use zerotrust::jwt::{AttachServiceToken, JwtAuthLayer, JwtVerifier, ServiceTokenLayer, ServiceTokenSource};
use zerotrust::mtls::{CallerPolicy, ClientAuth, PeerIdentityAcceptor, RequireCallerLayer, ServerTlsBuilder};

use super::client::{HttpsClient, json_request, send};
use super::setup::Mesh;

/// The price of every item, in cents.
const PRICE_CENTS: i64 = 1250;

/// A client that attaches a service token for one target to each request.
type ServiceClient = AttachServiceToken<HttpsClient>;

/// The base URL of each running service.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) gateway: String,
    pub(crate) orders: String,
    pub(crate) payments: String,
}

/// Binds three loopback listeners and returns them with their URLs.
pub(crate) fn bind_listeners() -> std::io::Result<([std::net::TcpListener; 3], Endpoints)> {
    let bind = || -> std::io::Result<(std::net::TcpListener, String)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("https://{}", listener.local_addr()?);
        Ok((listener, url))
    };
    let (gateway, gateway_url) = bind()?;
    let (orders, orders_url) = bind()?;
    let (payments, payments_url) = bind()?;
    Ok((
        [gateway, orders, payments],
        Endpoints {
            gateway: gateway_url,
            orders: orders_url,
            payments: payments_url,
        },
    ))
}

/// Serves `app` over mTLS on `listener` until `handle` shuts it down.
pub(crate) fn spawn_server(
    listener: std::net::TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    handle: axum_server::Handle<SocketAddr>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let server = match axum_server::from_tcp(listener) {
            Ok(server) => server,
            Err(error) => {
                eprintln!("could not start server: {error}");
                return;
            }
        };
        let result = server
            .acceptor(PeerIdentityAcceptor::new(tls))
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await;
        if let Err(error) = result {
            eprintln!("server stopped with an error: {error}");
        }
    })
}

/// Builds a service's TLS server configuration from the dev PKI.
pub(crate) fn server_tls(mesh: &Mesh, service: &str, client_auth: ClientAuth) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    let leaf = mesh.pki.service(service).ok_or("service missing from the PKI")?;
    Ok(ServerTlsBuilder::new()
        .trust_bundle_pem(mesh.pki.ca_cert_pem())
        .certificate_chain_pem(&leaf.cert_pem)
        .private_key_pem(&leaf.key_pem)
        .client_auth(client_auth)
        .build()?)
}

/// Verifies service tokens for `audience`: at most five minutes long, bound to
/// the caller's certificate, and naming the caller's own service.
fn service_token_auth(mesh: &Mesh, audience: &str, service: &str) -> Result<JwtAuthLayer, Box<dyn std::error::Error>> {
    let verifier = JwtVerifier::builder()
        .issuer(super::setup::TOKEN_ISSUER)
        .audience(audience)
        .rsa_public_key_pem(&mesh.signing_key.kid, &mesh.signing_key.public_key_pem)
        .max_lifetime(std::time::Duration::from_secs(300))
        .build()?;
    Ok(JwtAuthLayer::new(Arc::new(verifier))
        .require_certificate_binding()
        .require_subject_matches_peer()
        .service_name(service)
        .event_sink(mesh.sink()))
}

fn anomaly(store: Arc<dyn CounterStore>, service: &str, sink: SharedSink) -> Result<AnomalyLayer, Box<dyn std::error::Error>> {
    Ok(AnomalyLayer::builder(store)
        .service_name(service)
        .event_sink(sink)
        .build()?)
}

fn only(caller: &str, service: &str, sink: SharedSink) -> Result<RequireCallerLayer, Box<dyn std::error::Error>> {
    let policy = CallerPolicy::new().allow_spiffe_id(&format!("spiffe://{}/{caller}", super::setup::TRUST_DOMAIN))?;
    Ok(RequireCallerLayer::new(policy).service_name(service).event_sink(sink))
}

fn service_client(mesh: &Mesh, caller: &str, target: &str) -> Result<ServiceClient, Box<dyn std::error::Error>> {
    // Tokens are bound to the certificate the client presents, so a copied
    // token is useless without this service's private key.
    let leaf = mesh.pki.service(caller).ok_or("service missing from the PKI")?;
    let fingerprint = zerotrust::mtls::peer_identity_from_der(&leaf.cert_der)?.fingerprint();
    let source = Arc::new(ServiceTokenSource::new(mesh.issuer.clone(), caller).bound_to(fingerprint));
    let client = super::client::https_client(mesh.client_tls(caller)?);
    Ok(tower::Layer::layer(&ServiceTokenLayer::new(source, target), client))
}

// ---------------------------------------------------------------- payments

#[derive(Debug, Deserialize)]
struct NewPayment {
    order_id: String,
    amount_cents: i64,
}

#[derive(Clone, Default)]
struct PaymentsState {
    payments: Arc<Mutex<Vec<serde_json::Value>>>,
    next_id: Arc<AtomicU64>,
}

/// `payments`: audience `api:payments`, mTLS required, only `orders` may call.
pub(crate) fn payments_router(mesh: &Mesh, store: Arc<dyn CounterStore>) -> Result<Router, Box<dyn std::error::Error>> {
    let sink = mesh.sink();
    Ok(Router::new()
        .route("/payments", post(create_payment))
        .with_state(PaymentsState::default())
        .layer(anomaly(store, "payments", sink.clone())?)
        .layer(service_token_auth(mesh, "api:payments", "payments")?)
        .layer(only("orders", "payments", sink)?))
}

async fn create_payment(State(state): State<PaymentsState>, principal: Principal, Json(payment): Json<NewPayment>) -> Response {
    if payment.order_id.is_empty() || payment.amount_cents <= 0 {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "order_id must be set and amount_cents positive"}))).into_response();
    }
    let id = format!("pay_{}", state.next_id.fetch_add(1, Ordering::Relaxed) + 1);
    let record = json!({
        "id": id,
        "order_id": payment.order_id,
        "amount_cents": payment.amount_cents,
        "recorded_by": principal.id(),
    });
    state.payments.lock().unwrap_or_else(|p| p.into_inner()).push(record.clone());
    (StatusCode::CREATED, Json(record)).into_response()
}

// ---------------------------------------------------------------- orders

#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    quantity: i64,
}

#[derive(Clone)]
struct OrdersState {
    orders: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    next_id: Arc<AtomicU64>,
    payments: ServiceClient,
    payments_url: String,
}

/// `orders`: audience `api:orders`, mTLS required, only `gateway` may call.
pub(crate) fn orders_router(mesh: &Mesh, store: Arc<dyn CounterStore>, endpoints: &Endpoints) -> Result<Router, Box<dyn std::error::Error>> {
    let sink = mesh.sink();
    let state = OrdersState {
        orders: Arc::default(),
        next_id: Arc::default(),
        payments: service_client(mesh, "orders", "payments")?,
        payments_url: format!("{}/payments", endpoints.payments),
    };
    Ok(Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .with_state(state)
        .layer(anomaly(store, "orders", sink.clone())?)
        .layer(service_token_auth(mesh, "api:orders", "orders")?)
        .layer(only("gateway", "orders", sink)?))
}

async fn create_order(State(state): State<OrdersState>, Json(order): Json<NewOrder>) -> Response {
    if order.item.is_empty() || order.item.len() > 200 || !(1..=1000).contains(&order.quantity) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "item must be 1-200 bytes and quantity 1-1000"}))).into_response();
    }
    let id = format!("ord_{}", state.next_id.fetch_add(1, Ordering::Relaxed) + 1);

    let payment = json!({"order_id": id, "amount_cents": order.quantity * PRICE_CENTS});
    let reply = match send(&state.payments, json_request(Method::POST, &state.payments_url, &payment)).await {
        Ok(reply) if reply.status == StatusCode::CREATED => reply,
        Ok(reply) => {
            tracing::warn!(status = reply.status.as_u16(), "payments rejected the payment");
            return (StatusCode::BAD_GATEWAY, Json(json!({"error": "payment failed"}))).into_response();
        }
        Err(error) => {
            tracing::warn!(%error, "payments unreachable");
            return (StatusCode::BAD_GATEWAY, Json(json!({"error": "payment failed"}))).into_response();
        }
    };

    let record = json!({
        "id": id,
        "item": order.item,
        "quantity": order.quantity,
        "payment": reply.json(),
    });
    state.orders.lock().unwrap_or_else(|p| p.into_inner()).insert(id, record.clone());
    (StatusCode::CREATED, Json(record)).into_response()
}

async fn get_order(State(state): State<OrdersState>, Path(id): Path<String>) -> Response {
    let orders = state.orders.lock().unwrap_or_else(|p| p.into_inner());
    match orders.get(&id) {
        Some(order) => Json(order.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "order not found"}))).into_response(),
    }
}

// ---------------------------------------------------------------- gateway

#[derive(Clone)]
struct GatewayState {
    orders: ServiceClient,
    orders_url: String,
}

/// `gateway`: the public front door. mTLS optional, API keys required.
pub(crate) fn gateway_router(
    mesh: &Mesh,
    store: Arc<dyn CounterStore>,
    keys: Arc<dyn KeyStore>,
    endpoints: &Endpoints,
) -> Result<Router, Box<dyn std::error::Error>> {
    let sink = mesh.sink();
    let state = GatewayState {
        orders: service_client(mesh, "gateway", "orders")?,
        orders_url: format!("{}/orders", endpoints.orders),
    };
    let write = RequireScopeLayer::new("orders:write").service_name("gateway").event_sink(sink.clone());
    let read = RequireScopeLayer::new("orders:read").service_name("gateway").event_sink(sink.clone());
    // Outside the API-key layer, a second anomaly layer sees its 401s and counts
    // them per client address, so guessing keys gets an address blocked. It
    // counts nothing else, so one busy client address is not limited here.
    let guessing = AnomalyLayer::builder(store.clone())
        .service_name("gateway")
        .event_sink(sink.clone())
        .identify_by(IdentifierSource::function(|_, _| None))
        .count_authentication_failures(AnomalyPolicy::authentication_failure_default())
        .build()?;
    Ok(Router::new()
        .route("/orders", post(forward_create).layer(write))
        .route("/orders/{id}", get(forward_get).layer(read))
        .with_state(state)
        .layer(anomaly(store, "gateway", sink.clone())?)
        .layer(ApiKeyLayer::builder(keys).service_name("gateway").event_sink(sink).build()?)
        .layer(guessing))
}

async fn forward_create(State(state): State<GatewayState>, Json(order): Json<serde_json::Value>) -> Response {
    let request = json_request(Method::POST, &state.orders_url, &order);
    relay(send(&state.orders, request).await)
}

async fn forward_get(State(state): State<GatewayState>, Path(id): Path<String>) -> Response {
    let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "order not found"}))).into_response();
    }
    let request = super::client::get_request(&format!("{}/{id}", state.orders_url));
    relay(send(&state.orders, request).await)
}

fn relay(reply: Result<super::client::Reply, tower::BoxError>) -> Response {
    match reply {
        Ok(reply) if reply.status.is_success() || reply.status.is_client_error() && reply.status != StatusCode::UNAUTHORIZED && reply.status != StatusCode::FORBIDDEN => {
            // axum rejects a body it cannot parse with a plain-text reply, so wrap
            // anything that is not JSON to keep the replies relayed from orders JSON.
            let body = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&reply.body)}));
            (reply.status, Json(body)).into_response()
        }
        Ok(reply) => {
            tracing::warn!(status = reply.status.as_u16(), "orders rejected the gateway's call");
            (StatusCode::BAD_GATEWAY, Json(json!({"error": "upstream refused the call"}))).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "orders unreachable");
            (StatusCode::BAD_GATEWAY, Json(json!({"error": "upstream unreachable"}))).into_response()
        }
    }
}

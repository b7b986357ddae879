//! The guided tour: each step states what should happen and checks what did.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::json;
use zerotrust::apikey::{KeyManager, MemoryKeyStore, NewKey};
use zerotrust::core::{EventKind, Scopes};

use super::client::{Reply, get_request, https_client, https_client_from, json_request, send};
use super::services::Endpoints;
use super::setup::Mesh;

/// The number of requests in the burst, the block threshold included.
const BURST: u64 = 500;
const ALERT_AT: u64 = 100;
/// How many wrong keys the guessing step sends, past the block at 50 failures.
const GUESSES: usize = 55;
/// The client address of the guessing step.
const GUESSER: &str = "127.0.0.2";
/// How long a rotated key keeps working in the tour: short, so the tour can
/// show both keys working and then only the new one.
const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

struct Tour {
    passed: usize,
    failed: usize,
}

impl Tour {
    fn step(&mut self, name: &str, expected: &str, actual: &str, ok: bool) {
        let mark = if ok { "ok  " } else { "FAIL" };
        println!("[{mark}] {name}: expected {expected}, got {actual}");
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    fn status(&mut self, name: &str, expected: StatusCode, reply: &Result<Reply, tower::BoxError>) {
        let actual = describe(reply);
        let ok = matches!(reply, Ok(r) if r.status == expected);
        self.step(name, &expected.to_string(), &actual, ok);
    }
}

fn describe(reply: &Result<Reply, tower::BoxError>) -> String {
    match reply {
        Ok(reply) => {
            let mut text = reply.status.to_string();
            if let Some(challenge) = reply.headers.get("www-authenticate").and_then(|v| v.to_str().ok()) {
                text.push_str(&format!(" (WWW-Authenticate: {challenge})"));
            }
            if let Some(retry) = reply.headers.get("retry-after").and_then(|v| v.to_str().ok()) {
                text.push_str(&format!(" (Retry-After: {retry})"));
            }
            text
        }
        Err(error) => format!("error: {}", error_chain(error.as_ref())),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn with_key(mut request: http::Request<http_body_util::Full<bytes::Bytes>>, key: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    if let Ok(value) = http::HeaderValue::from_str(key) {
        request.headers_mut().insert("x-api-key", value);
    }
    request
}

fn with_bearer(mut request: http::Request<http_body_util::Full<bytes::Bytes>>, token: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
        request.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    request
}

/// Runs every step and returns `true` when all matched.
pub(crate) async fn run(mesh: &Mesh, endpoints: &Endpoints, keys: &KeyManager, demo_key: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let mut tour = Tour { passed: 0, failed: 0 };
    let public = https_client(mesh.anonymous_tls()?);
    let orders_url = format!("{}/orders", endpoints.gateway);
    let new_order = json!({"item": "book", "quantity": 2});

    println!("\n== the allowed chain: gateway -> orders -> payments");
    let created = send(&public, with_key(json_request(Method::POST, &orders_url, &new_order), demo_key)).await;
    tour.status("create an order with the demo key", StatusCode::CREATED, &created);
    let order_id = created
        .as_ref()
        .ok()
        .and_then(|r| r.json()["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "ord_missing".to_owned());
    let paid = created.as_ref().ok().map(|r| r.json()["payment"]["amount_cents"].clone());
    tour.step(
        "the order carries the payment recorded by payments",
        "amount_cents 2500",
        &format!("{paid:?}"),
        paid == Some(json!(2500)),
    );
    let read = send(&public, with_key(get_request(&format!("{orders_url}/{order_id}")), demo_key)).await;
    tour.status("read the order back", StatusCode::OK, &read);

    println!("\n== API keys at the gateway");
    let none = send(&public, json_request(Method::POST, &orders_url, &new_order)).await;
    tour.status("no API key", StatusCode::UNAUTHORIZED, &none);

    let elsewhere = KeyManager::new(Arc::new(MemoryKeyStore::new()));
    let unknown = elsewhere.create(NewKey::new("nobody").scopes(Scopes::parse("orders:write"))).await?;
    let reply = send(&public, with_key(json_request(Method::POST, &orders_url, &new_order), unknown.secret.expose())).await;
    tour.status("well-formed key the gateway never issued", StatusCode::UNAUTHORIZED, &reply);

    let mistyped = mistype(demo_key);
    let reply = send(&public, with_key(json_request(Method::POST, &orders_url, &new_order), &mistyped)).await;
    tour.status("demo key with one character mistyped", StatusCode::UNAUTHORIZED, &reply);

    let read_only = keys.create(NewKey::new("reporting").scopes(Scopes::parse("orders:read"))).await?;
    let reply = send(&public, with_key(json_request(Method::POST, &orders_url, &new_order), read_only.secret.expose())).await;
    tour.status("key without orders:write creates an order", StatusCode::FORBIDDEN, &reply);

    println!("\n== service tokens and mTLS at payments");
    let payments_url = format!("{}/payments", endpoints.payments);
    let payment = json!({"order_id": order_id, "amount_cents": 100});
    let as_orders = https_client(mesh.client_tls("orders")?);
    let orders_leaf = mesh.pki.service("orders").ok_or("orders missing from the PKI")?;
    let orders_fingerprint = zerotrust::mtls::peer_identity_from_der(&orders_leaf.cert_der)?.fingerprint();
    // Everything about this token is right for orders' connection except its
    // audience: it was minted for orders, not for payments.
    let for_orders = mesh.issuer.mint_bound("orders", "orders", &orders_fingerprint)?;
    let reply = send(&as_orders, with_bearer(json_request(Method::POST, &payments_url, &payment), for_orders.expose())).await;
    tour.status("token minted for orders replayed at payments", StatusCode::UNAUTHORIZED, &reply);

    // A token stolen from orders, replayed over a connection with another
    // certificate for the same SPIFFE ID: the certificate binding fails.
    let for_payments_bound = mesh.issuer.mint_bound("orders", "payments", &orders_fingerprint)?;
    let reply = send(&as_orders, with_bearer(json_request(Method::POST, &payments_url, &payment), for_payments_bound.expose())).await;
    tour.status("orders' bound token from orders' own certificate", StatusCode::CREATED, &reply);
    let second_orders = mesh.pki.issue(&zerotrust_testkit::pki::LeafSpec::service(super::setup::TRUST_DOMAIN, "orders"))?;
    let thief = https_client(
        zerotrust::mtls::ClientTlsBuilder::new()
            .trust_bundle_pem(mesh.pki.ca_cert_pem())
            .client_certificate_pem(&second_orders.cert_pem, &second_orders.key_pem)
            .build()?,
    );
    let reply = send(&thief, with_bearer(json_request(Method::POST, &payments_url, &payment), for_payments_bound.expose())).await;
    tour.status("the same token from another orders certificate", StatusCode::UNAUTHORIZED, &reply);

    let anonymous = send(&public, json_request(Method::POST, &payments_url, &payment)).await;
    tour.step(
        "call payments without a client certificate",
        "TLS handshake refused",
        &describe(&anonymous),
        anonymous.is_err(),
    );

    let as_gateway = https_client(mesh.client_tls("gateway")?);
    let for_payments = mesh.issuer.mint("gateway", "payments")?;
    let reply = send(&as_gateway, with_bearer(json_request(Method::POST, &payments_url, &payment), for_payments.expose())).await;
    tour.status("gateway's certificate and a payments token at payments", StatusCode::FORBIDDEN, &reply);

    println!("\n== anomaly detection: a burst of {BURST} requests from one key");
    let burst = keys.create(NewKey::new("burst-client").scopes(Scopes::parse("orders:read"))).await?;
    let burst_id = burst.record.id.clone();
    // The anomaly layer names API-key identifiers `api_key:<key id>`.
    let burst_identifier = format!("api_key:{burst_id}");
    let is_burst = |event: &zerotrust::core::SecurityEvent| event.identifier.as_deref() == Some(burst_identifier.as_str());
    let alerts = || {
        mesh.events
            .events()
            .iter()
            .filter(|e| e.kind == EventKind::RateAnomaly && is_burst(e))
            .count()
    };
    let blocks = || {
        mesh.events
            .events()
            .iter()
            .filter(|e| e.kind == EventKind::Blocked && is_burst(e))
            .count()
    };
    let read_url = format!("{orders_url}/{order_id}");
    let mut first_refusal = None;
    let mut last_reply = None;
    let mut alerts_before = 0;
    let mut alerts_at = 0;
    for n in 1..=BURST {
        let reply = send(&public, with_key(get_request(&read_url), burst.secret.expose())).await;
        if n == ALERT_AT - 1 {
            alerts_before = alerts();
        }
        if n == ALERT_AT {
            alerts_at = alerts();
        }
        let status = reply.as_ref().map(|r| r.status).ok();
        if status != Some(StatusCode::OK) && first_refusal.is_none() {
            first_refusal = Some((n, describe(&reply)));
        }
        last_reply = Some(reply);
    }
    tour.step("requests 1-99: no alert", "0 RATE_ANOMALY events", &format!("{alerts_before}"), alerts_before == 0);
    tour.step("request 100: one alert", "1 RATE_ANOMALY event", &format!("{alerts_at}"), alerts_at == 1);
    let (refused_at, refusal) = first_refusal.clone().unwrap_or((0, "no refusal".to_owned()));
    tour.step(
        "first refused request",
        "request 500 with 429 and Retry-After",
        &format!("request {refused_at}: {refusal}"),
        refused_at == BURST && refusal.starts_with("429") && refusal.contains("Retry-After"),
    );
    let after = send(&public, with_key(get_request(&read_url), burst.secret.expose())).await;
    tour.status("request 501 while blocked", StatusCode::TOO_MANY_REQUESTS, &after);
    tour.step("events for the burst", "1 RATE_ANOMALY and 1 BLOCKED", &format!("{} and {}", alerts(), blocks()), alerts() == 1 && blocks() == 1);
    drop(last_reply);

    let reply = send(&public, with_key(get_request(&read_url), demo_key)).await;
    tour.status("demo key during the block (gateway still calls orders)", StatusCode::OK, &reply);

    println!("\n== API key rotation and revocation");
    let rotating = keys.create(NewKey::new("rotating-client").scopes(Scopes::parse("orders:read"))).await?;
    let rotated = keys.rotate(&rotating.record.id, ROTATION_GRACE).await?;
    let old = send(&public, with_key(get_request(&read_url), rotating.secret.expose())).await;
    tour.status("old key during the grace period", StatusCode::OK, &old);
    let sunset = old.as_ref().ok().and_then(|r| r.headers.get("sunset").cloned());
    tour.step(
        "old key's response announces its deadline",
        "a Sunset header",
        &format!("{sunset:?}"),
        sunset.is_some(),
    );
    let new = send(&public, with_key(get_request(&read_url), rotated.secret.expose())).await;
    tour.status("new key during the grace period", StatusCode::OK, &new);
    tokio::time::sleep(ROTATION_GRACE + std::time::Duration::from_millis(100)).await;
    let old = send(&public, with_key(get_request(&read_url), rotating.secret.expose())).await;
    tour.status("old key after the grace period", StatusCode::UNAUTHORIZED, &old);
    let new = send(&public, with_key(get_request(&read_url), rotated.secret.expose())).await;
    tour.status("new key after the grace period", StatusCode::OK, &new);
    keys.revoke(&rotated.record.id).await?;
    let revoked = send(&public, with_key(get_request(&read_url), rotated.secret.expose())).await;
    tour.status("new key right after revocation", StatusCode::UNAUTHORIZED, &revoked);

    println!("\n== guessing keys from one address ({GUESSER})");
    // A second loopback address, so the block does not hit the tour's other
    // requests or the curl commands printed afterwards.
    let guesser = https_client_from(mesh.anonymous_tls()?, Some(GUESSER.parse()?));
    let mut statuses = Vec::new();
    for _ in 0..GUESSES {
        let guess = elsewhere.create(NewKey::new("guess")).await?;
        let reply = send(&guesser, with_key(get_request(&read_url), guess.secret.expose())).await;
        statuses.push(reply.map(|r| r.status.as_u16()).unwrap_or(0));
    }
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    let first_429 = statuses.iter().position(|&s| s == 429).map(|i| i + 1);
    tour.step(
        "wrong keys 1-50 get 401, then the address is blocked",
        "50 × 401, first 429 at guess 51",
        &format!("{unauthorized} × 401, first 429 at guess {first_429:?}"),
        unauthorized == 50 && first_429 == Some(51),
    );
    let reply = send(&public, with_key(get_request(&read_url), demo_key)).await;
    tour.status("demo key from the tour's own address still works", StatusCode::OK, &reply);

    println!("\n{} passed, {} failed", tour.passed, tour.failed);
    Ok(tour.failed == 0)
}

/// Changes one character in the middle of the key, keeping its length and alphabet.
fn mistype(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

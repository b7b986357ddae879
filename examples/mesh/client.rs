//! HTTPS clients for the mesh: with or without a client certificate.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use tower::BoxError;

/// A hyper client over rustls.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds an HTTP/1.1 and HTTP/2 client with the given TLS configuration.
pub(crate) fn https_client(tls: Arc<ClientConfig>) -> HttpsClient {
    https_client_from(tls, None)
}

/// Builds a client whose connections leave from `local` (for example another
/// loopback address, so that a server sees a different client address).
pub(crate) fn https_client_from(tls: Arc<ClientConfig>, local: Option<std::net::IpAddr>) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_local_address(local);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// Parses the body as JSON, or returns `Null`.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `request` through any client service and reads the whole response.
pub(crate) async fn send<S>(client: &S, request: http::Request<Full<Bytes>>) -> Result<Reply, BoxError>
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone,
    S::Error: Into<BoxError>,
{
    use tower::ServiceExt as _;

    let response = client.clone().oneshot(request).await.map_err(Into::into)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Builds a JSON request.
pub(crate) fn json_request(method: http::Method, url: &str, body: &serde_json::Value) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static request parts are valid")
}

/// Builds a GET request.
pub(crate) fn get_request(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("static request parts are valid")
}

//! An HTTP admin API that creates, lists, rotates and revokes keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use zerotrust_core::{RequireScopeLayer, Scopes};

use crate::manager::{ApiKeyError, CreatedKey, DEFAULT_ROTATION_GRACE, KeyManager, NewKey};
use crate::summary::KeySummary;

/// Returns a router with the key admin API, allowed only to callers whose
/// [`Principal`](zerotrust_core::Principal) has `scope`.
///
/// The router does not authenticate: put an authentication layer, such as an
/// [`ApiKeyLayer`](crate::ApiKeyLayer), around it. Without a principal every
/// request gets 401, and without the scope 403.
///
/// Routes, relative to where the router is nested:
///
/// - `POST /keys` with `{"owner": "acme", "scopes": "orders:read",
///   "expires_in_secs": 86400}` (scopes and lifetime optional) creates a key:
///   201 with the key's summary and its plaintext in `api_key`.
/// - `GET /keys?owner=acme` lists the owner's keys, oldest first.
/// - `GET /keys/{id}` returns one key's summary.
/// - `POST /keys/{id}/rotate` with an optional `{"grace_secs": 3600}` issues a
///   replacement: 201 with the new key's plaintext. The old key stays valid
///   for the grace period, 24 hours by default.
/// - `POST /keys/{id}/revoke` revokes a key at once.
///
/// Responses that contain a plaintext key carry `Cache-Control: no-store`.
/// Errors are JSON objects with an `error` message: 400 for invalid input, 404
/// for an unknown id, 409 for rotating a key that is no longer active, and 503
/// when the store fails.
pub fn admin_router(manager: KeyManager, scope: impl Into<Arc<str>>) -> Router {
    Router::new()
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", get(show_key))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route_layer(RequireScopeLayer::new(scope))
        .with_state(manager)
}

async fn create_key(State(manager): State<KeyManager>, Json(body): Json<Value>) -> Response {
    let Some(owner) = body.get("owner").and_then(Value::as_str) else {
        return error_response(StatusCode::BAD_REQUEST, "missing owner: expected a string");
    };
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => Scopes::default(),
        Some(Value::String(text)) => Scopes::parse(text),
        Some(Value::Array(items)) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            match names {
                Some(names) => Scopes::from_iter(names),
                None => return invalid_scopes(),
            }
        }
        Some(_) => return invalid_scopes(),
    };
    let mut new_key = NewKey::new(owner).scopes(scopes);
    match seconds_field(&body, "expires_in_secs") {
        Ok(Some(lifetime)) => new_key = new_key.expires_in(lifetime),
        Ok(None) => {}
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    }

    match manager.create(new_key).await {
        Ok(created) => created_response(&created),
        Err(error) => api_error_response(&error),
    }
}

async fn list_keys(
    State(manager): State<KeyManager>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let Some((_, owner)) = query.iter().find(|(name, _)| name == "owner") else {
        return error_response(StatusCode::BAD_REQUEST, "missing owner query parameter");
    };

    match manager.list(owner).await {
        Ok(keys) => {
            let now = SystemTime::now();
            let values: Vec<Value> = keys.iter().map(|key| key.to_json(now)).collect();
            Json(Value::Array(values)).into_response()
        }
        Err(error) => api_error_response(&error),
    }
}

async fn show_key(State(manager): State<KeyManager>, Path(id): Path<String>) -> Response {
    match manager.get(&id).await {
        Ok(key) => summary_response(&key),
        Err(error) => api_error_response(&error),
    }
}

async fn rotate_key(
    State(manager): State<KeyManager>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(body)| body).unwrap_or(Value::Null);
    let grace = match seconds_field(&body, "grace_secs") {
        Ok(grace) => grace.unwrap_or(DEFAULT_ROTATION_GRACE),
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };

    match manager.rotate(&id, grace).await {
        Ok(created) => created_response(&created),
        Err(error) => api_error_response(&error),
    }
}

async fn revoke_key(State(manager): State<KeyManager>, Path(id): Path<String>) -> Response {
    match manager.revoke(&id).await {
        Ok(record) => summary_response(&record.into()),
        Err(error) => api_error_response(&error),
    }
}

/// Reads an optional whole number of seconds from `body[name]`, or returns
/// the error message for a value of another type.
fn seconds_field(body: &Value, name: &str) -> Result<Option<Duration>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(seconds) => Ok(Some(Duration::from_secs(seconds))),
            None => Err(format!(
                "invalid {name}: expected a whole number of seconds"
            )),
        },
    }
}

fn invalid_scopes() -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid scopes: expected a space-separated string or an array of strings",
    )
}

fn summary_response(summary: &KeySummary) -> Response {
    Json(summary.to_json(SystemTime::now())).into_response()
}

fn created_response(created: &CreatedKey) -> Response {
    let mut value = KeySummary::from(created.record.clone()).to_json(SystemTime::now());
    value["api_key"] = Value::String(created.secret.expose().to_owned());

    let mut response = (StatusCode::CREATED, Json(value)).into_response();
    // The body contains the plaintext key, which no cache may keep.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn api_error_response(error: &ApiKeyError) -> Response {
    let status = match error {
        ApiKeyError::InvalidOwner { .. }
        | ApiKeyError::InvalidLifetime { .. }
        | ApiKeyError::InvalidGracePeriod { .. }
        | ApiKeyError::InvalidScope { .. }
        | ApiKeyError::TimeOverflow => StatusCode::BAD_REQUEST,
        ApiKeyError::NotFound { .. } => StatusCode::NOT_FOUND,
        ApiKeyError::NotActive { .. } | ApiKeyError::AlreadyRotated { .. } => StatusCode::CONFLICT,
        ApiKeyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(target: "zerotrust::apikey", %error, "key admin request failed");
    }
    error_response(status, &error.to_string())
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKeyLayer, MemoryKeyStore};
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Admin {
        app: Router,
        admin_key: String,
        user_key: String,
    }

    async fn admin() -> Admin {
        let store = Arc::new(MemoryKeyStore::new());
        let manager = KeyManager::new(store.clone());
        let admin_key = manager
            .create(NewKey::new("ops").scopes(Scopes::parse("keys:admin")))
            .await
            .unwrap();
        let user_key = manager
            .create(NewKey::new("acme").scopes(Scopes::parse("orders:read")))
            .await
            .unwrap();
        let layer = ApiKeyLayer::builder(store).build().unwrap();
        Admin {
            app: Router::new()
                .nest("/admin", admin_router(manager, "keys:admin"))
                .layer(layer),
            admin_key: admin_key.secret.expose().to_owned(),
            user_key: user_key.secret.expose().to_owned(),
        }
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", key);
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    #[tokio::test]
    async fn admin_creates_rotates_revokes() {
        let admin = admin().await;
        let key = admin.admin_key.as_str();

        let (status, headers, created) = send(
            &admin.app,
            "POST",
            "/admin/keys",
            key,
            Some(json!({"owner": "globex", "scopes": ["orders:read"], "expires_in_secs": 3600})),
        )
        .await;
        let id = created["key_id"].as_str().unwrap().to_owned();
        let (list_status, _, listed) =
            send(&admin.app, "GET", "/admin/keys?owner=globex", key, None).await;
        let (rotate_status, rotate_headers, rotated) = send(
            &admin.app,
            "POST",
            &format!("/admin/keys/{id}/rotate"),
            key,
            Some(json!({"grace_secs": 60})),
        )
        .await;
        let (revoke_status, _, revoked) = send(
            &admin.app,
            "POST",
            &format!("/admin/keys/{id}/revoke"),
            key,
            None,
        )
        .await;
        let (show_status, _, shown_key) =
            send(&admin.app, "GET", &format!("/admin/keys/{id}"), key, None).await;

        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(created["api_key"].as_str().unwrap().starts_with("mk_"));
        assert_eq!(created["scopes"], json!(["orders:read"]));
        assert_eq!(list_status, StatusCode::OK);
        assert_eq!(listed[0]["key_id"], id.as_str());
        assert!(listed[0].get("api_key").is_none());
        assert_eq!(rotate_status, StatusCode::CREATED);
        assert_eq!(rotate_headers[header::CACHE_CONTROL], "no-store");
        assert_ne!(rotated["api_key"], created["api_key"]);
        assert_eq!(revoke_status, StatusCode::OK);
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(show_status, StatusCode::OK);
        assert_eq!(shown_key["status"], "revoked");
        assert!(shown_key.get("api_key").is_none());
    }

    #[tokio::test]
    async fn admin_requires_scope() {
        let admin = admin().await;

        let (without_scope, _, _) = send(
            &admin.app,
            "GET",
            "/admin/keys?owner=acme",
            &admin.user_key,
            None,
        )
        .await;
        let (without_key, _, _) = send(&admin.app, "GET", "/admin/keys?owner=acme", "", None).await;

        assert_eq!(without_scope, StatusCode::FORBIDDEN);
        assert_eq!(without_key, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn admin_rejects_bad_input() {
        let admin = admin().await;
        let key = admin.admin_key.as_str();

        let cases = [
            (
                "POST",
                "/admin/keys",
                Some(json!({"scopes": "a"})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/admin/keys",
                Some(json!({"owner": ""})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/admin/keys",
                Some(json!({"owner": "a", "scopes": 5})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/admin/keys",
                Some(json!({"owner": "a", "expires_in_secs": -1})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/admin/keys",
                Some(json!({"owner": "a", "expires_in_secs": 0})),
                StatusCode::BAD_REQUEST,
            ),
            ("GET", "/admin/keys", None, StatusCode::BAD_REQUEST),
            (
                "GET",
                "/admin/keys/key_missing",
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/admin/keys/key_missing/revoke",
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/admin/keys/key_missing/rotate",
                None,
                StatusCode::NOT_FOUND,
            ),
        ];
        for (method, uri, body, expected) in cases {
            let (status, _, value) = send(&admin.app, method, uri, key, body.clone()).await;

            assert_eq!(status, expected, "{method} {uri} {body:?}");
            assert!(value["error"].is_string(), "{method} {uri}: {value}");
        }
    }
}

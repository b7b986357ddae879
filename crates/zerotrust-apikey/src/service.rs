//! The middleware that verifies the API key on each request.

use std::future::{Future, ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use tower::Service;
use zerotrust_core::{
    EventKind, Principal, Rejection, SecurityEvent, problem_response, request_id,
};

use crate::summary::KeySummary;
use crate::digest::KeyDigest;
use crate::extract::{Credential, extract_credential, mark_sensitive};
use crate::layer::{ApiKeyLayer, Config};
use crate::record::{KeyRecord, KeyStatus};
use crate::rejection::ApiKeyRejection;

/// The response future of [`ApiKeyService`].
///
/// Boxed because the store lookup is async and its future type depends on the
/// store behind `Arc<dyn KeyStore>`.
pub type ApiKeyFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send + 'static>>;

/// Middleware that authenticates each request by its API key. See the
/// [crate docs](crate).
#[derive(Debug, Clone)]
pub struct ApiKeyService<S> {
    pub(crate) inner: S,
    pub(crate) layer: ApiKeyLayer,
}

/// A rejection with the details that logs and events need.
struct Denial {
    rejection: ApiKeyRejection,
    /// A finer reason for logs only, such as which format check failed.
    detail: Option<&'static str>,
    /// The public id of the key, once a record was found.
    key_id: Option<String>,
}

impl Denial {
    fn new(rejection: ApiKeyRejection) -> Self {
        Self {
            rejection,
            detail: None,
            key_id: None,
        }
    }
}

impl<S, B> Service<Request<B>> for ApiKeyService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ApiKeyFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = self.layer.config.clone();
        mark_sensitive(request.headers_mut());
        let request_id = request_id(request.headers());

        // Everything that needs no I/O happens here, so malformed keys never
        // reach the store and the plaintext is dropped before the first await.
        let digest = match digest_of_credential(&config, request.headers(), request.uri()) {
            Ok(digest) => digest,
            Err(denial) => {
                let response = deny(&config, denial, request_id, request.uri().path());
                return Box::pin(ready(Ok(response)));
            }
        };

        // The clone may not be ready, so the future takes the instance that
        // `poll_ready` readied and leaves the clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        Box::pin(async move {
            let (record, now) = match find_active_record(&config, &digest).await {
                Ok(found) => found,
                Err(denial) => {
                    return Ok(deny(&config, denial, request_id, request.uri().path()));
                }
            };
            if let Some(usage) = &config.usage {
                usage.record(&record.id, now);
            }
            let sunset = sunset_of(&config, &record, now);

            tracing::trace!(
                target: "zerotrust::apikey",
                service = config.events.service(),
                key_id = %record.id,
                path = request.uri().path(),
                "API key accepted"
            );
            // Handlers see the key's details (never its digest) as
            // `Extension<KeySummary>`, next to the principal.
            let summary = KeySummary::from(record);
            let principal = Principal::api_key(summary.id.clone(), summary.owner.clone(), summary.scopes.clone());
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(summary);
            let mut response = inner.call(request).await?;

            if let Some(sunset) = sunset {
                response.headers_mut().insert(SUNSET.clone(), sunset);
            }
            Ok(response)
        })
    }
}

/// The `Sunset` response header of RFC 8594.
static SUNSET: HeaderName = HeaderName::from_static("sunset");

/// Returns the `Sunset` header value if `record` ends within the warning
/// period, and logs the key's id once per report interval.
///
/// The end is the earlier of the expiry and a scheduled revocation, so a key
/// in its rotation grace period announces its deadline.
fn sunset_of(config: &Config, record: &KeyRecord, now: SystemTime) -> Option<HeaderValue> {
    if config.sunset_warning.is_zero() {
        return None;
    }
    let ends_at = match record.revoked_at {
        Some(revoked_at) => revoked_at.min(record.expires_at),
        None => record.expires_at,
    };
    let remaining = ends_at.duration_since(now).ok()?;
    if remaining > config.sunset_warning {
        return None;
    }

    // Reported once per key per hour, as a log line and a security event, so
    // a busy key near its end cannot flood either.
    if !config.sunset_reported.contains_key(&record.id) {
        config.sunset_reported.insert(record.id.clone(), ());
        config.events.send(
            SecurityEvent::new(EventKind::CredentialExpiring)
                .identifier(record.id.clone())
                .reason("key_near_end"),
        );
        tracing::info!(
            target: "zerotrust::apikey",
            service = config.events.service(),
            key_id = %record.id,
            owner = %record.owner,
            remaining_secs = remaining.as_secs(),
            "API key used close to its end; rotate it"
        );
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(ends_at)).ok()
}

/// Finds the credential, parses it and returns its digest.
fn digest_of_credential(
    config: &Config,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<KeyDigest, Denial> {
    let credential = extract_credential(headers, uri.query(), config.query_parameter.as_deref());
    let key = match credential {
        Credential::Present(key) => key,
        Credential::Missing => return Err(Denial::new(ApiKeyRejection::Missing)),
        Credential::Ambiguous => return Err(Denial::new(ApiKeyRejection::Ambiguous)),
        Credential::Unreadable => {
            let mut denial = Denial::new(ApiKeyRejection::Malformed);
            denial.detail = Some("unreadable_header");
            return Err(denial);
        }
        Credential::Oversized => {
            let mut denial = Denial::new(ApiKeyRejection::Malformed);
            denial.detail = Some("oversized_credential");
            return Err(denial);
        }
    };

    match config.format.parse(key) {
        Ok(secret) => Ok(secret.digest()),
        Err(error) => {
            let mut denial = Denial::new(ApiKeyRejection::Malformed);
            denial.detail = Some(error.reason());
            Err(denial)
        }
    }
}

/// Looks the digest up and checks that the record is active at the time the
/// lookup finished, which it returns with the record.
///
/// Any store failure, a timeout included, rejects the request with 503: the
/// layer fails closed, because accepting a key it could not check would let a
/// revoked or unknown key through during an outage.
async fn find_active_record(
    config: &Config,
    digest: &KeyDigest,
) -> Result<(KeyRecord, SystemTime), Denial> {
    let lookup = config.store.find_by_digest(digest);
    let found = match tokio::time::timeout(config.lookup_timeout, lookup).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            log_store_failure(config, &error);
            return Err(Denial::new(ApiKeyRejection::StoreUnavailable));
        }
        Err(_elapsed) => {
            log_store_failure(
                config,
                &format!("lookup timed out after {:?}", config.lookup_timeout),
            );
            let mut denial = Denial::new(ApiKeyRejection::StoreUnavailable);
            denial.detail = Some("store_timeout");
            return Err(denial);
        }
    };

    let Some(record) = found else {
        return Err(Denial::new(ApiKeyRejection::Unknown));
    };
    // A store that returns a record for another digest is broken. Checking
    // here keeps such a bug from authenticating the wrong key.
    if record.digest != *digest {
        let mut denial = Denial::new(ApiKeyRejection::Unknown);
        denial.detail = Some("store_digest_mismatch");
        return Err(denial);
    }

    let now = config.clock.now();
    let rejection = match record.status_at(now) {
        KeyStatus::Active => return Ok((record, now)),
        KeyStatus::Expired => ApiKeyRejection::Expired,
        KeyStatus::Revoked => ApiKeyRejection::Revoked,
    };
    let mut denial = Denial::new(rejection);
    denial.key_id = Some(record.id);
    Err(denial)
}

/// Logs a store failure at `error!` at most once per 10 seconds, and at
/// `debug!` otherwise.
fn log_store_failure(config: &Config, error: &dyn std::fmt::Display) {
    match config.store_error_log.allow() {
        Some(suppressed) => tracing::error!(
            target: "zerotrust::apikey",
            service = config.events.service(),
            error = %error,
            suppressed,
            "API key store failed; rejecting requests with 503"
        ),
        None => tracing::debug!(
            target: "zerotrust::apikey",
            service = config.events.service(),
            error = %error,
            "API key store failed"
        ),
    }
}

/// Logs the denial, sends its security event and builds the response.
fn deny(config: &Config, denial: Denial, request_id: Option<String>, path: &str) -> Response {
    let rejection = denial.rejection;
    let status = rejection.status().as_u16();

    // Debug, not warn: a client can cause a denial per request, and a flood of
    // warnings would bury real problems. The security event is the record.
    tracing::debug!(
        target: "zerotrust::apikey",
        service = config.events.service(),
        reason = rejection.reason(),
        detail = denial.detail,
        key_id = denial.key_id.as_deref(),
        status,
        path,
        "API key rejected"
    );

    let kind = match rejection {
        ApiKeyRejection::StoreUnavailable => EventKind::StoreDegraded,
        _ => EventKind::AuthenticationDenied,
    };
    let mut event = SecurityEvent::new(kind)
        .reason(rejection.reason())
        .status(status)
        .request_id(request_id);
    event.time = config.clock.now();
    if let Some(key_id) = denial.key_id {
        event = event.identifier(key_id);
    }
    config.events.send(event);

    problem_response(rejection)
}

#[cfg(test)]
mod tests;

//! Attaching service tokens to outbound calls, reusing each until shortly before it expires.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use tower::{BoxError, Layer, Service};
use zerotrust_core::{Clock, SystemClock};

use crate::issuer::{MintError, ServiceToken, ServiceTokenIssuer};

/// How long before expiry a cached token is replaced, unless set.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(30);

/// Mints and caches the tokens one service uses to call others.
///
/// A token for a target is reused until `refresh_before` (30 seconds by default)
/// before it expires, so a five-minute token is signed about once every four and
/// a half minutes per target however many calls are made.
pub struct ServiceTokenSource {
    issuer: Arc<ServiceTokenIssuer>,
    caller: String,
    refresh_before: Duration,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<String, ServiceToken>>,
}

impl fmt::Debug for ServiceTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenSource")
            .field("caller", &self.caller)
            .field("refresh_before", &self.refresh_before)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenSource {
    /// Creates a source that mints tokens for calls made by service `caller`.
    pub fn new(issuer: Arc<ServiceTokenIssuer>, caller: impl Into<String>) -> Self {
        Self {
            issuer,
            caller: caller.into(),
            refresh_before: DEFAULT_REFRESH_BEFORE,
            clock: Arc::new(SystemClock),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how long before expiry a cached token is replaced.
    #[must_use]
    pub fn refresh_before(mut self, refresh_before: Duration) -> Self {
        self.refresh_before = refresh_before;
        self
    }

    /// Sets the clock used to decide when a token is due for renewal.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns a token for calls to service `target`, minting one if none is cached
    /// or the cached one is due for renewal.
    pub fn token_for(&self, target: &str) -> Result<ServiceToken, MintError> {
        // The lock is held while minting, so concurrent callers wait for one
        // signature instead of each signing their own.
        // NOTE: this serialises minting across targets too; signing takes about a
        // millisecond and happens once per target per token lifetime.
        let mut tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.clock.now();
        if let Some(token) = tokens.get(target)
            && is_fresh(token, now, self.refresh_before)
        {
            return Ok(token.clone());
        }

        let token = self.issuer.mint(&self.caller, target)?;
        tokens.insert(target.to_owned(), token.clone());
        Ok(token)
    }
}

fn is_fresh(token: &ServiceToken, now: SystemTime, refresh_before: Duration) -> bool {
    match token.expires_at().duration_since(now) {
        Ok(left) => left > refresh_before,
        Err(_) => false,
    }
}

/// Layer for HTTP clients that adds `Authorization: Bearer <service token>` for
/// one target service to every request.
///
/// ```
/// # use std::sync::Arc;
/// # let key = zerotrust_testkit::tokens::SigningKeyPair::generate_rs256("k1").unwrap();
/// # let issuer = zerotrust_jwt::ServiceTokenIssuer::builder()
/// #     .issuer("https://issuer.zerotrust.test")
/// #     .rsa_private_key_pem("k1", &key.private_key_pem)
/// #     .directory(zerotrust_jwt::ServiceDirectory::new().with_service("orders", "api:orders"))
/// #     .build().unwrap();
/// use zerotrust_jwt::{ServiceTokenLayer, ServiceTokenSource};
///
/// let source = Arc::new(ServiceTokenSource::new(Arc::new(issuer), "gateway"));
/// let layer = ServiceTokenLayer::new(source, "orders");
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ServiceTokenLayer {
    source: Arc<ServiceTokenSource>,
    target: Arc<str>,
}

impl ServiceTokenLayer {
    /// Attaches tokens for calls to service `target`.
    pub fn new(source: Arc<ServiceTokenSource>, target: impl Into<Arc<str>>) -> Self {
        Self {
            source,
            target: target.into(),
        }
    }
}

impl<S> Layer<S> for ServiceTokenLayer {
    type Service = AttachServiceToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachServiceToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// Client middleware made by [`ServiceTokenLayer`].
#[derive(Debug, Clone)]
pub struct AttachServiceToken<S> {
    inner: S,
    layer: ServiceTokenLayer,
}

impl<S, B> Service<Request<B>> for AttachServiceToken<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let token = match self.layer.source.token_for(&self.layer.target) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(target: "zerotrust::jwt", target_service = &*self.layer.target, %error, "could not mint service token");
                return Box::pin(std::future::ready(Err(error.into())));
            }
        };
        let value = HeaderValue::from_str(&format!("Bearer {}", token.expose()));
        let mut value = match value {
            Ok(value) => value,
            Err(error) => return Box::pin(std::future::ready(Err(error.into()))),
        };
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);

        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::ServiceDirectory;
    use std::time::UNIX_EPOCH;
    use zerotrust_testkit::tokens::SigningKeyPair;

    #[derive(Debug)]
    struct FixedClock(Mutex<SystemTime>);

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn issuer() -> Arc<ServiceTokenIssuer> {
        let key = SigningKeyPair::generate_rs256("k1").unwrap();
        Arc::new(
            ServiceTokenIssuer::builder()
                .issuer("https://issuer.zerotrust.test")
                .rsa_private_key_pem("k1", &key.private_key_pem)
                .directory(ServiceDirectory::new().with_service("orders", "api:orders"))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn token_is_reused_until_refresh_window() {
        let issuer = issuer();
        let clock = Arc::new(FixedClock(Mutex::new(SystemTime::now())));
        let source = ServiceTokenSource::new(issuer, "gateway").clock(clock.clone());

        let first = source.token_for("orders").unwrap();
        let again = source.token_for("orders").unwrap();
        *clock.0.lock().unwrap() = first.expires_at() - Duration::from_secs(31);
        let still = source.token_for("orders").unwrap();
        *clock.0.lock().unwrap() = first.expires_at() - Duration::from_secs(29);
        let renewed = source.token_for("orders").unwrap();

        assert_eq!(first.expose(), again.expose());
        assert_eq!(first.expose(), still.expose());
        assert_ne!(first.expose(), renewed.expose());
        assert!(first.expires_at() > UNIX_EPOCH);
    }

    #[test]
    fn unknown_target_is_an_error() {
        let source = ServiceTokenSource::new(issuer(), "gateway");

        let error = source.token_for("billing").unwrap_err();

        assert!(matches!(error, MintError::UnknownService(ref name) if name == "billing"), "{error}");
    }
}

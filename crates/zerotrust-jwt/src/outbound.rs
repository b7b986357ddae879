//! Attaching service tokens to outbound calls, reusing each until shortly before it expires.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use tower::{BoxError, Layer, Service};
use zerotrust_core::{CertificateFingerprint, Clock, SystemClock};

use crate::issuer::{MintError, ServiceToken, ServiceTokenIssuer};

/// How long before expiry a cached token is replaced, unless set.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(30);

/// Mints and caches the tokens one service uses to call others.
///
/// A token for a target is reused until `refresh_before` (30 seconds by default)
/// before it expires, so a five-minute token is signed about once every four and
/// a half minutes per target however many calls are made.
///
/// The source is shared by every task of the calling service. When a token is
/// due for renewal, one caller per target mints the new one. Meanwhile the other
/// callers for that target get the old token while it has not expired, and
/// otherwise wait for the mint to finish. A mint for one target does not block
/// callers for another.
///
/// NOTE: the wait blocks the calling thread for the duration of one signature
/// (about a millisecond for RS256), which happens only when no valid token exists.
pub struct ServiceTokenSource {
    issuer: Arc<ServiceTokenIssuer>,
    caller: String,
    refresh_before: Duration,
    clock: Arc<dyn Clock>,
    binding: Option<CertificateFingerprint>,
    targets: Mutex<HashMap<String, Arc<TargetTokens>>>,
}

/// The cached token of one target, and the lock its single minter holds.
#[derive(Default)]
struct TargetTokens {
    current: Mutex<Option<ServiceToken>>,
    minting: Mutex<()>,
}

impl TargetTokens {
    fn current(&self) -> Option<ServiceToken> {
        lock(&self.current).clone()
    }
}

/// Locks `mutex`, recovering from poisoning: every value guarded here is replaced
/// whole, so a panic while holding the lock cannot leave it half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for ServiceTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenSource")
            .field("caller", &self.caller)
            .field("refresh_before", &self.refresh_before)
            .field("binding", &self.binding)
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
            binding: None,
            targets: Mutex::new(HashMap::new()),
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

    /// Mints certificate-bound tokens (see [`ServiceTokenIssuer::mint_bound`]) for
    /// `certificate`, the fingerprint of the client certificate this service
    /// presents on its outbound mTLS connections. By default tokens are unbound.
    #[must_use]
    pub fn bound_to(mut self, certificate: CertificateFingerprint) -> Self {
        self.binding = Some(certificate);
        self
    }

    /// Returns a token for calls to service `target`, minting one if none is cached
    /// or the cached one is due for renewal.
    ///
    /// If minting fails while the cached token has not yet expired, the cached
    /// token is returned and the failure is logged.
    pub fn token_for(&self, target: &str) -> Result<ServiceToken, MintError> {
        let tokens = self.target(target);
        loop {
            let now = self.clock.now();
            let current = tokens.current();
            if let Some(token) = &current
                && is_fresh(token, now, self.refresh_before)
            {
                return Ok(token.clone());
            }

            let minting = match tokens.minting.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            let Some(_minting) = minting else {
                // Another caller is minting: use the old token while it is valid,
                // otherwise wait for that mint and look again.
                if let Some(token) = current
                    && is_fresh(&token, now, Duration::ZERO)
                {
                    return Ok(token);
                }
                drop(lock(&tokens.minting));
                continue;
            };

            // The previous minter may have finished between the first look and the lock.
            if let Some(token) = tokens.current()
                && is_fresh(&token, self.clock.now(), self.refresh_before)
            {
                return Ok(token);
            }
            return match self.mint(target) {
                Ok(token) => {
                    *lock(&tokens.current) = Some(token.clone());
                    Ok(token)
                }
                Err(error) => match current {
                    Some(token) if is_fresh(&token, self.clock.now(), Duration::ZERO) => {
                        tracing::warn!(target: "zerotrust::jwt", target_service = target, %error, "could not renew service token; using the current one until it expires");
                        Ok(token)
                    }
                    _ => Err(error),
                },
            };
        }
    }

    fn target(&self, target: &str) -> Arc<TargetTokens> {
        let mut targets = lock(&self.targets);
        if let Some(tokens) = targets.get(target) {
            return tokens.clone();
        }
        let tokens = Arc::new(TargetTokens::default());
        targets.insert(target.to_owned(), tokens.clone());
        tokens
    }

    fn mint(&self, target: &str) -> Result<ServiceToken, MintError> {
        match &self.binding {
            Some(certificate) => self.issuer.mint_bound(&self.caller, target, certificate),
            None => self.issuer.mint(&self.caller, target),
        }
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
    use crate::algorithm::SigningAlgorithm;
    use crate::issuer::ServiceDirectory;
    use crate::test_support::{AUDIENCE, ISSUER, TestClock, TestKey};
    use crate::verifier::JwtVerifier;
    use std::collections::HashSet;

    fn issuer_with_clock(clock: Arc<TestClock>) -> Arc<ServiceTokenIssuer> {
        let key = TestKey::shared(SigningAlgorithm::Es256);
        Arc::new(
            ServiceTokenIssuer::builder()
                .issuer(ISSUER)
                .private_key_pem(&key.kid, key.algorithm, &key.private_pem)
                .directory(
                    ServiceDirectory::new()
                        .with_service("orders", AUDIENCE)
                        .with_service("payments", "api:payments"),
                )
                .clock(clock)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn token_is_reused_until_refresh_window() {
        let clock = Arc::new(TestClock::new());
        let source = ServiceTokenSource::new(issuer_with_clock(clock.clone()), "gateway").clock(clock.clone());

        let first = source.token_for("orders").unwrap();
        let again = source.token_for("orders").unwrap();
        clock.set(first.expires_at() - Duration::from_secs(31));
        let still = source.token_for("orders").unwrap();
        clock.set(first.expires_at() - Duration::from_secs(29));
        let renewed = source.token_for("orders").unwrap();

        assert_eq!(first.expose(), again.expose());
        assert_eq!(first.expose(), still.expose());
        assert_ne!(first.expose(), renewed.expose());
    }

    #[test]
    fn unknown_target_is_an_error() {
        let source = ServiceTokenSource::new(issuer_with_clock(Arc::new(TestClock::new())), "gateway");

        let error = source.token_for("billing").unwrap_err();

        assert!(matches!(error, MintError::UnknownService(ref name) if name == "billing"), "{error}");
    }

    /// Calls `token_for(target)` from `tasks` tasks at once and returns the
    /// distinct tokens they got. Each mint has a fresh `jti`, so the count of
    /// distinct tokens is the count of mints seen.
    async fn concurrent_tokens(source: &Arc<ServiceTokenSource>, target: &'static str, tasks: usize) -> HashSet<String> {
        let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (source, barrier) = (source.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                source.token_for(target).unwrap().expose().to_owned()
            }));
        }
        let mut tokens = HashSet::new();
        for handle in handles {
            let token = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap();
            tokens.insert(token);
        }
        tokens
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_mint() {
        let clock = Arc::new(TestClock::new());
        let source = Arc::new(ServiceTokenSource::new(issuer_with_clock(clock.clone()), "gateway").clock(clock.clone()));

        let first_round = concurrent_tokens(&source, "orders", 200).await;
        let first = first_round.iter().next().unwrap().clone();
        let expires_at = source.token_for("orders").unwrap().expires_at();
        clock.set(expires_at - Duration::from_secs(10));
        let renewal_round = concurrent_tokens(&source, "orders", 200).await;
        let other_target = concurrent_tokens(&source, "payments", 50).await;

        assert_eq!(first_round.len(), 1, "200 callers with no token: exactly one mint");
        let renewed: Vec<_> = renewal_round.iter().filter(|token| **token != first).collect();
        assert_eq!(renewed.len(), 1, "200 callers in the refresh window: exactly one mint");
        assert_eq!(other_target.len(), 1);
        assert!(!other_target.contains(&first));
    }

    #[test]
    fn bound_source_mints_certificate_bound_tokens() {
        let clock = Arc::new(TestClock::new());
        let key = TestKey::shared(SigningAlgorithm::Es256);
        let fingerprint = CertificateFingerprint::from_sha256([9; 32]);
        let source = ServiceTokenSource::new(issuer_with_clock(clock), "gateway").bound_to(fingerprint);
        let verifier = JwtVerifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
            .build()
            .unwrap();

        let token = source.token_for("orders").unwrap();
        let claims = verifier.verify(token.expose()).unwrap();

        assert_eq!(claims.claims().certificate_thumbprint(), Some(fingerprint.x5t_s256().as_str()));
        assert_eq!(claims.service_name(), Some("gateway"));
    }
}

//! Anomaly detection for axum: count requests per caller, alert on bursts and
//! block callers that keep going.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use zerotrust_anomaly::{AnomalyLayer, AnomalyPolicy, IdentifierKind, MemoryCounterStore};
//!
//! # fn main() -> Result<(), zerotrust_anomaly::AnomalyConfigError> {
//! let api_keys = AnomalyPolicy::new(Duration::from_secs(60), 50, 200, Duration::from_secs(900))?;
//! let layer = AnomalyLayer::builder(Arc::new(MemoryCounterStore::new()))
//!     .service_name("orders")
//!     .policy(IdentifierKind::ApiKey, api_keys)
//!     .build()?;
//!
//! let app: Router = Router::new().route("/orders", get(|| async { "ok" })).layer(layer);
//! // Serve with ConnectInfo so that unauthenticated callers are counted by address.
//! let _service = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok(())
//! # }
//! ```
//!
//! Rules, per identifier and per [`AnomalyPolicy`] (defaults in parentheses):
//!
//! 1. The identifier comes from the layer's [`IdentifierSource`]. By default it
//!    is the [`Principal`](zerotrust_core::Principal) that an authentication
//!    layer put in the request extensions, by service name, API key id or token
//!    subject. Without one it is the client address: the IPv4 address, or the
//!    IPv6 /64 network, with IPv4-mapped IPv6 addresses counted as IPv4. Other
//!    sources pick only API key ids, token subjects, the SPIFFE ID of the client
//!    certificate, the client address, or the result of a function.
//! 2. Client addresses come from `ConnectInfo<SocketAddr>`. `Forwarded` or
//!    `X-Forwarded-For` is read only when the socket peer is in a trusted proxy
//!    network, and then the rightmost address outside those networks is the
//!    client ([`ClientAddressResolver`]).
//! 3. Requests are counted in fixed windows aligned to the Unix epoch (5 minutes).
//! 4. The request that reaches `alert_at` in a window (100) goes through and sends
//!    one `RATE_ANOMALY` event.
//! 5. The request that reaches `block_at` (500) starts a block (1 hour), sends one
//!    `BLOCKED` event, and is itself rejected: 429 with a problem+json body, a
//!    `Retry-After` header in seconds (at least 1), and an [`AnomalyRejection`] in
//!    the response extensions. The handler does not run.
//! 6. While blocked, every request gets the same 429. Blocked requests are not
//!    counted and do not extend the block. The block outlasts window ends, and
//!    counting starts from zero when it ends, so a second alert can follow in the
//!    same window if the block is shorter than the window. The layer remembers
//!    blocks it has seen, so a blocked caller costs no store call until its
//!    block ends.
//! 7. Service principals and SPIFFE IDs get [`AnomalyPolicy::service_default`]
//!    (10,000 / 50,000), so that one noisy customer behind a gateway does not
//!    get the gateway itself blocked downstream.
//! 8. With [`count_authentication_failures`](AnomalyLayerBuilder::count_authentication_failures),
//!    each response with status 401 is counted against the client address under
//!    its own policy, and a blocked address gets 429 before it reaches
//!    authentication.
//! 9. If the store fails or takes longer than the store timeout (250 ms), the
//!    layer follows its [`OnStoreError`] policy: fail open (the default) counts in
//!    a local in-memory fallback store, and fail closed answers 503 with a
//!    problem+json body. For 1 second after a failure the store is not called,
//!    then it is tried again. A `STORE_DEGRADED` event is sent at most once a
//!    minute per layer by default. The layer never returns 500 because of the
//!    store.
//! 10. In [`Enforcement::Shadow`] mode the layer counts and sends events, but
//!     lets every request through.
//!
//! Stores: [`MemoryCounterStore`] counts in one process, with a cap on tracked
//! identifiers. `RedisCounterStore` (feature `redis`) shares counts and blocks
//! between replicas, on one Redis server or a Redis Cluster, with one Lua
//! script call per request.
//!
//! # Deployment caveats
//!
//! - Place the layer after the authentication layers (`.layer()` calls wrap
//!   outward, so add it before them), or it sees no principal and counts every
//!   caller by address. A second instance before authentication, keyed by address,
//!   is a cheap flood guard.
//! - Address identifiers need axum's `ConnectInfo<SocketAddr>`: serve the router
//!   with `into_make_service_with_connect_info::<SocketAddr>()`. Behind a proxy
//!   the socket address is the proxy's, so every client shares one count unless
//!   the proxy's network is trusted with [`ClientAddressResolver::trust_proxies`]
//!   and the proxy overwrites or appends the header it is trusted for.
//! - A request for which the identifier source finds nothing (with the default
//!   source, one with neither a principal nor `ConnectInfo`) is not counted, and
//!   only a TRACE log on the `zerotrust::anomaly` target says so.
//!
//! # Metrics
//!
//! The layer records counters and a store-latency histogram through the
//! `metrics` facade; [`metrics`] lists them.
//!
//! # Known limitations
//!
//! - While the store is down, fail open counts per replica from zero, so a
//!   caller may send up to `block_at` requests to each replica, and counts made
//!   in the fallback are not carried back to the store.
//! - A store call that times out may still complete on the server, so a request
//!   that the layer counted in the fallback may also add to the shared count.
//! - A block lifted in the store by hand still holds on replicas that cached
//!   it, until the cached end.
//! - Authentication-failure blocks are checked in the local cache only, so
//!   another replica rejects the address from its next 401 there.
//! - With the memory store each replica counts on its own.
//! - Fixed windows, the default, let a caller send up to twice `alert_at`
//!   requests across a window boundary before an alert.
//!   [`WindowMode::Sliding`] closes that gap with a two-window estimate; see
//!   its docs for the difference.

mod blocked_cache;
mod client_address;
mod decision;
mod error;
mod failure;
mod health;
mod identifier;
mod layer;
mod memory;
pub mod metrics;
mod network;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod rejection;
mod service;
mod source;
mod store;

pub use blocked_cache::DEFAULT_BLOCKED_CACHE_CAPACITY;
pub use client_address::{
    ClientAddressResolver, DEFAULT_IPV6_PREFIX_LEN, MAX_FORWARDED_HOPS, ProxyHeader,
};
pub use error::{AnomalyConfigError, StoreError};
pub use failure::{Enforcement, OnStoreError, RateLimitHeaders};
pub use identifier::{Identifier, IdentifierKind, MAX_VALUE_LEN};
pub use layer::{
    AnomalyLayer, AnomalyLayerBuilder, DEFAULT_DEGRADED_EVENT_INTERVAL,
    DEFAULT_FALLBACK_MAX_IDENTIFIERS, DEFAULT_STORE_RETRY_INTERVAL, DEFAULT_STORE_TIMEOUT,
};
pub use network::IpNetwork;
pub use memory::{DEFAULT_MAX_IDENTIFIERS, MemoryCounterStore};
pub use policy::{AnomalyPolicy, MAX_DURATION, MAX_THRESHOLD, WindowMode};
#[cfg(feature = "redis")]
pub use redis::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, RedisCounterStore,
};
pub use rejection::{AnomalyRejection, StoreUnavailableRejection};
pub use service::{AnomalyService, ResponseFuture};
pub use source::{IdentifierSource, IdentifyFn};
pub use store::{BoxFuture, CounterStore, HitDecision, HitOutcome};

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
//! 1. The identifier is the [`Principal`](zerotrust_core::Principal) that an
//!    authentication layer put in the request extensions, by service name, API
//!    key id or token subject. Without one it is the client address from
//!    `ConnectInfo<SocketAddr>`: the IPv4 address, or the IPv6 /64 network, with
//!    IPv4-mapped IPv6 addresses counted as IPv4.
//! 2. Requests are counted in fixed windows aligned to the Unix epoch (5 minutes).
//! 3. The request that reaches `alert_at` in a window (100) goes through and sends
//!    one `RATE_ANOMALY` event.
//! 4. The request that reaches `block_at` (500) starts a block (1 hour), sends one
//!    `BLOCKED` event, and is itself rejected: 429 with a problem+json body, a
//!    `Retry-After` header in seconds (at least 1), and an [`AnomalyRejection`] in
//!    the response extensions. The handler does not run.
//! 5. While blocked, every request gets the same 429. Blocked requests are not
//!    counted and do not extend the block. The block outlasts window ends, and
//!    counting starts from zero when it ends, so a second alert can follow in the
//!    same window if the block is shorter than the window.
//! 6. Service principals get [`AnomalyPolicy::service_default`] (10,000 / 50,000),
//!    so that one noisy customer behind a gateway does not get the gateway itself
//!    blocked downstream.
//! 7. If the store fails or takes longer than the store timeout (250 ms), the
//!    request goes through uncounted (fail open), and a `STORE_DEGRADED` event is
//!    sent at most once a minute per layer by default. The layer never returns
//!    500 because of the store.
//!
//! Stores: [`MemoryCounterStore`] counts in one process, with a cap on tracked
//! identifiers. `RedisCounterStore` (feature `redis`) shares counts and blocks
//! between replicas, with one Lua script call per request.
//!
//! # Deployment caveats
//!
//! - Place the layer after the authentication layers (`.layer()` calls wrap
//!   outward, so add it before them), or it sees no principal and counts every
//!   caller by address. A second instance before authentication, keyed by address,
//!   is a cheap flood guard.
//! - Address identifiers need axum's `ConnectInfo<SocketAddr>`: serve the router
//!   with `into_make_service_with_connect_info::<SocketAddr>()`. Behind a proxy
//!   the socket address is the proxy's, so every client shares one count.
//! - A request with neither a principal nor `ConnectInfo` is not counted, and only
//!   a TRACE log on the `zerotrust::anomaly` target says so.
//!
//! # Known limitations
//!
//! - There is no fail-closed mode and no in-memory fallback while the store is
//!   down: during an outage nothing is counted or blocked.
//! - Client addresses are taken only from the socket. `Forwarded` and
//!   `X-Forwarded-For` are not read.
//! - A store call that times out may still complete on the server, so a request
//!   that the layer let through as uncounted may still add to the count.
//! - With the memory store each replica counts on its own.

mod error;
mod identifier;
mod layer;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod rejection;
mod service;
mod store;

pub use error::{AnomalyConfigError, StoreError};
pub use identifier::{Identifier, IdentifierKind, MAX_VALUE_LEN};
pub use layer::{
    AnomalyLayer, AnomalyLayerBuilder, DEFAULT_DEGRADED_EVENT_INTERVAL, DEFAULT_STORE_TIMEOUT,
};
pub use memory::{DEFAULT_MAX_IDENTIFIERS, MemoryCounterStore};
pub use policy::{AnomalyPolicy, MAX_DURATION, MAX_THRESHOLD};
#[cfg(feature = "redis")]
pub use redis::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, RedisCounterStore,
};
pub use rejection::AnomalyRejection;
pub use service::{AnomalyService, ResponseFuture};
pub use store::{BoxFuture, CounterStore, HitDecision, HitOutcome};

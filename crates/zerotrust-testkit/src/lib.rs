//! Fixtures for zerotrust's tests, examples and benchmarks.
//!
//! ```no_run
//! use zerotrust_testkit::pki::DevPki;
//!
//! let pki = DevPki::generate("zerotrust.test", &["gateway", "orders"]).unwrap();
//! let orders = pki.service("orders").unwrap();
//! assert_eq!(orders.spiffe_id, "spiffe://zerotrust.test/orders");
//! ```
//!
//! - [`pki`]: a development PKI made with rcgen: a CA and one certificate per
//!   service, each with a SPIFFE ID, for real TLS handshakes.
//! - [`redis`]: a Redis server for tests, started from `redis-server` on PATH or
//!   taken from `ZEROTRUST_TEST_REDIS_URL`.
//!
//! Not published: nothing here is fit for production keys.

pub mod pki;
pub mod postgres;
pub mod redis;
pub mod tokens;

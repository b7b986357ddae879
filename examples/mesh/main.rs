//! The zerotrust demo mesh: gateway, orders and payments over real mTLS.
//!
//! ```text
//! cargo run --example mesh            # tour, then serve until Ctrl-C
//! cargo run --example mesh -- --tour  # tour only; exit 0 when every step matched
//! ```
//!
//! With `REDIS_URL` set, anomaly counters live in Redis instead of memory.

mod client;
mod events;
mod services;
mod setup;
mod tour;

use std::sync::Arc;

use zerotrust::anomaly::{CounterStore, MemoryCounterStore, RedisCounterStore};
use zerotrust::apikey::{CacheConfig, CachedKeyStore, KeyManager, KeyStore, MemoryKeyStore, NewKey};
use zerotrust::core::Scopes;
use zerotrust::mtls::ClientAuth;

/// Options of one run.
pub(crate) struct Options {
    /// Run the tour and stop instead of serving until Ctrl-C.
    pub(crate) tour_only: bool,
    /// Print security events as they happen.
    pub(crate) print_events: bool,
    /// The directory for the dev PKI, `target/zerotrust-mesh` by default.
    pub(crate) dir: Option<std::path::PathBuf>,
    /// A Redis URL for the anomaly counters.
    pub(crate) redis_url: Option<String>,
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: mesh [--tour]\n  --tour  run the tour and exit: 0 when every step matched, 1 otherwise\n  REDIS_URL=redis://...  keep anomaly counters in Redis");
        return;
    }
    if let Some(unknown) = args.iter().find(|a| *a != "--tour") {
        eprintln!("unknown argument {unknown:?}; see --help");
        std::process::exit(2);
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).init();

    let options = Options {
        tour_only: args.iter().any(|a| a == "--tour"),
        print_events: true,
        dir: None,
        redis_url: std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty()),
    };
    match run(options).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("mesh failed: {error}");
            std::process::exit(1);
        }
    }
}

/// Starts the mesh, runs the tour, and serves until Ctrl-C unless `tour_only`.
/// Returns whether every tour step matched.
pub(crate) async fn run(options: Options) -> Result<bool, Box<dyn std::error::Error>> {
    let dir = options.dir.clone().unwrap_or_else(setup::default_dir);
    let mesh = setup::Mesh::generate(dir.clone(), options.print_events)?;
    println!("dev PKI written to {}", dir.display());

    let counters: Arc<dyn CounterStore> = match &options.redis_url {
        Some(url) => {
            let store = RedisCounterStore::connect(url).await?;
            println!("anomaly counters in Redis at {}", redact_url(url));
            Arc::new(store)
        }
        None => Arc::new(MemoryCounterStore::new()),
    };
    // The cache spares the store repeated lookups; revocations through this
    // KeyManager invalidate it at once.
    let key_store: Arc<dyn KeyStore> = Arc::new(CachedKeyStore::new(Arc::new(MemoryKeyStore::new()), CacheConfig::default()));
    let keys = KeyManager::new(key_store.clone());
    let demo = keys
        .create(NewKey::new("demo").scopes(Scopes::parse("orders:read orders:write")))
        .await?;
    let demo_key = demo.secret.expose().to_owned();

    let (listeners, endpoints) = services::bind_listeners()?;
    let [gateway_listener, orders_listener, payments_listener] = listeners;
    let handle = axum_server::Handle::new();
    let payments = services::payments_router(&mesh, counters.clone())?;
    let orders = services::orders_router(&mesh, counters.clone(), &endpoints)?;
    let gateway = services::gateway_router(&mesh, counters.clone(), key_store, &endpoints)?;
    let servers = [
        services::spawn_server(payments_listener, payments, services::server_tls(&mesh, "payments", ClientAuth::Required)?, handle.clone()),
        services::spawn_server(orders_listener, orders, services::server_tls(&mesh, "orders", ClientAuth::Required)?, handle.clone()),
        services::spawn_server(gateway_listener, gateway, services::server_tls(&mesh, "gateway", ClientAuth::Optional)?, handle.clone()),
    ];
    println!("gateway listening on {}", endpoints.gateway);
    println!("orders listening on {}", endpoints.orders);
    println!("payments listening on {}", endpoints.payments);
    println!("demo API key: {demo_key}");
    mesh.write_manifest(&endpoints, &demo_key)?;

    let passed = tour::run(&mesh, &endpoints, &keys, &demo_key).await?;

    if !options.tour_only {
        let ca = dir.join("ca.pem");
        println!("\nserving until Ctrl-C. Try:");
        println!(
            "  curl --cacert {} -H 'X-API-Key: {demo_key}' -H 'content-type: application/json' -d '{{\"item\":\"book\",\"quantity\":1}}' {}/orders",
            ca.display(),
            endpoints.gateway
        );
        println!("  curl --cacert {} -H 'X-API-Key: {demo_key}' {}/orders/ord_1", ca.display(), endpoints.gateway);
        println!("  curl --cacert {} {}/orders/ord_1    # no key: 401", ca.display(), endpoints.gateway);
        println!(
            "  curl --cacert {} --cert {} --key {} {}/payments    # gateway's certificate: 403",
            ca.display(),
            dir.join("gateway.pem").display(),
            dir.join("gateway-key.pem").display(),
            endpoints.payments
        );
        tokio::signal::ctrl_c().await?;
        println!("shutting down");
    }

    handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    for server in servers {
        let _ = server.await;
    }
    Ok(passed)
}

/// Drops any password from a Redis URL before it is printed.
fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_and_user, host)) => {
            let scheme = scheme_and_user.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

//! Project tasks, run as `cargo xtask <task>`.
//!
//! ```text
//! cargo xtask test          # the whole test suite, as CI runs it
//! cargo xtask certs [DIR]   # write a dev PKI (default: target/dev-pki)
//! cargo xtask demo [ARGS]   # run the demo mesh
//! cargo xtask bench [ARGS]  # run the JWT verification benchmarks
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  test          run every test, unit, integration and doc, with all features
  certs [DIR]   write a dev PKI for gateway, orders and payments (default: target/dev-pki)
  demo [ARGS]   run the demo mesh (`--tour` runs the tour and exits)
  bench [ARGS]  run the JWT verification benchmarks; ARGS go to criterion";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("certs") => certs(args.get(1).map(PathBuf::from)),
        Some("demo") => cargo(&[&["run", "--example", "mesh", "--"], &args[1..].iter().map(String::as_str).collect::<Vec<_>>()[..]].concat()),
        Some("bench") => bench(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|error| format!("could not run {cargo}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed with {status}", args.join(" ")))
    }
}

/// Runs the whole suite. Redis tests need `redis-server` on PATH or
/// `ZEROTRUST_TEST_REDIS_URL`, so their absence is reported before anything compiles.
fn test() -> Result<(), String> {
    let has_url = std::env::var_os("ZEROTRUST_TEST_REDIS_URL").is_some();
    let has_server = Command::new("redis-server").arg("--version").output().is_ok();
    if !has_url && !has_server {
        return Err("redis-server was not found on PATH: install it (Debian/Ubuntu: \
                    `apt-get install redis-server`, macOS: `brew install redis`) or set \
                    ZEROTRUST_TEST_REDIS_URL to a Redis the tests may use"
            .to_owned());
    }

    let has_database_url = std::env::var_os("ZEROTRUST_TEST_DATABASE_URL").is_some();
    let has_initdb = Command::new("initdb").arg("--version").output().is_ok()
        || std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut dir| dir.next().is_some());
    if !has_database_url && !has_initdb {
        return Err("PostgreSQL's initdb was not found: install it (Debian/Ubuntu: \
                    `apt-get install postgresql`, macOS: `brew install postgresql`) or set \
                    ZEROTRUST_TEST_DATABASE_URL to a server where the tests may create databases"
            .to_owned());
    }
    // The Redis Cluster and fault tests start servers of their own even when
    // ZEROTRUST_TEST_REDIS_URL is set, so they need both programs.
    if Command::new("redis-cli").arg("--version").output().is_err() {
        return Err("redis-cli was not found on PATH: the Redis Cluster tests need it \
                    (Debian/Ubuntu: `apt-get install redis-tools`)"
            .to_owned());
    }

    cargo(&["test", "--workspace", "--all-features", "--all-targets"])?;
    cargo(&["test", "--workspace", "--all-features", "--doc"])
}

/// Runs the criterion benchmarks of zerotrust-jwt, passing `args` to criterion
/// (for example a filter such as `cache_hit`).
fn bench(args: &[String]) -> Result<(), String> {
    let mut command = vec!["bench", "-p", "zerotrust-jwt", "--bench", "verify"];
    if !args.is_empty() {
        command.push("--");
        command.extend(args.iter().map(String::as_str));
    }
    cargo(&command)
}

fn certs(dir: Option<PathBuf>) -> Result<(), String> {
    let dir = dir.unwrap_or_else(|| workspace_root().join("target").join("dev-pki"));
    let pki = zerotrust_testkit::pki::DevPki::generate("zerotrust.test", &["gateway", "orders", "payments"])
        .map_err(|error| error.to_string())?;
    pki.write_to(&dir).map_err(|error| error.to_string())?;
    println!("dev PKI written to {}", dir.display());
    Ok(())
}

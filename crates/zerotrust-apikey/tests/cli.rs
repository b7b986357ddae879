//! The `zerotrust-keys` binary, run against a real PostgreSQL database.

#![cfg(feature = "cli")]

use std::process::{Command, Output};

use serde_json::Value;
use zerotrust_apikey::{KeyFormat, KeyStore, PostgresKeyStore};
use zerotrust_testkit::postgres::PostgresDatabase;

const BINARY: &str = env!("CARGO_BIN_EXE_zerotrust-keys");

/// Runs the binary with `arguments` against `url`.
fn run(url: &str, arguments: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("--store")
        .arg(url)
        .args(arguments)
        .env_remove("ZEROTRUST_KEYS_STORE")
        .output()
        .expect("run zerotrust-keys")
}

/// Runs the binary, expects success and returns its JSON output.
fn run_json(url: &str, arguments: &[&str]) -> Value {
    let output = run(url, arguments);
    assert!(
        output.status.success(),
        "{arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn cli_manages_key_lifecycle_in_postgres() {
    let database = PostgresDatabase::create().await.unwrap();
    let url = database.url();

    let created = run_json(
        url,
        &[
            "create",
            "--owner",
            "acme",
            "--scopes",
            "orders:read orders:write",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    let id = created["key_id"].as_str().unwrap().to_owned();
    let secret = created["api_key"].as_str().unwrap().to_owned();
    let show_output = run_json(url, &["show", &id, "--json"]);
    let listed = run_json(url, &["list", "--owner", "acme", "--json"]);
    let rotated = run_json(url, &["rotate", &id, "--grace", "1h", "--json"]);
    let revoked = run_json(url, &["revoke", &id, "--json"]);
    let after_revoke = run(url, &["list", "--owner", "acme"]);

    assert!(id.starts_with("key_"));
    assert_eq!(created["owner"], "acme");
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["scopes"],
        serde_json::json!(["orders:read", "orders:write"])
    );
    assert!(KeyFormat::default().parse(&secret).is_ok());
    let store = PostgresKeyStore::connect(url).await.unwrap();
    let digest = KeyFormat::default().parse(&secret).unwrap().digest();
    let stored = store.find_by_digest(&digest).await.unwrap().unwrap();
    assert_eq!(stored.id, id);

    assert_eq!(show_output["key_id"], id.as_str());
    assert!(
        show_output.get("api_key").is_none(),
        "show never prints the key"
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("api_key").is_none(),
        "list never prints the key"
    );

    let new_secret = rotated["api_key"].as_str().unwrap();
    assert_ne!(rotated["key_id"], id.as_str());
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["scopes"], created["scopes"]);

    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    let table = stdout(&after_revoke);
    assert!(after_revoke.status.success());
    assert!(table.contains(&id));
    assert!(table.contains("revoked"));
    assert!(
        table.contains("active"),
        "the rotated key is active: {table}"
    );
    for output in [
        &table,
        &show_output.to_string(),
        &listed.to_string(),
        &revoked.to_string(),
    ] {
        assert!(!output.contains(&secret));
        assert!(!output.contains(new_secret));
        assert!(!output.contains(&digest.to_hex()));
    }
}

#[tokio::test]
async fn cli_human_create_prints_key_once() {
    let database = PostgresDatabase::create().await.unwrap();

    let output = run(database.url(), &["create", "--owner", "acme"]);

    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(text.matches("mk_").count(), 1, "{text}");
    assert!(text.contains("api_key:"));
    assert!(text.contains("shown only once"));
}

#[tokio::test]
async fn cli_unknown_key_exits_one() {
    let database = PostgresDatabase::create().await.unwrap();

    let output = run(database.url(), &["revoke", "key_missing"]);

    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("key_missing"), "{message}");
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn cli_bad_usage_exits_two() {
    let missing_owner = run("postgres://127.0.0.1:1/none", &["create"]);
    let bad_scheme = run("mysql://h/db", &["list", "--owner", "acme"]);
    let no_store = Command::new(BINARY)
        .args(["list", "--owner", "acme"])
        .env_remove("ZEROTRUST_KEYS_STORE")
        .output()
        .unwrap();

    assert_eq!(missing_owner.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_owner.stderr).contains("usage:"));
    assert_eq!(bad_scheme.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_scheme.stderr).contains("unsupported store URL scheme"));
    assert_eq!(no_store.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_store.stderr).contains("ZEROTRUST_KEYS_STORE"));
}

#[test]
fn cli_help_lists_commands() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();

    let text = stdout(&output);
    assert!(output.status.success());
    for command in ["create", "list", "show", "rotate", "revoke", "delete"] {
        assert!(text.contains(command), "{command}");
    }
}

#[tokio::test]
async fn cli_out_of_range_values_exit_two() {
    let database = PostgresDatabase::create().await.unwrap();

    let too_long = run(database.url(), &["create", "--owner", "acme", "--expires-in", "366d"]);
    let bad_scope = run(database.url(), &["create", "--owner", "acme", "--scopes", "a\"b"]);
    let empty_owner = run(database.url(), &["create", "--owner", ""]);

    for (name, output) in [("lifetime", &too_long), ("scope", &bad_scope), ("owner", &empty_owner)] {
        assert_eq!(output.status.code(), Some(2), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(output.stdout.is_empty(), "{name} printed a key");
    }
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("invalid scope"));
}

//! `zerotrust-keys`: create, list, show, rotate, revoke and delete API keys in
//! a PostgreSQL or Redis key store.
//!
//! The plaintext of a key is printed only by `create` and `rotate`, once.
//! Every other command prints key ids and metadata, never a key or its digest.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use zerotrust_apikey::{
    ApiKeyError, CreatedKey, DEFAULT_KEY_LIFETIME, DEFAULT_ROTATION_GRACE, KeyManager, KeyStore,
    KeySummary, NewKey, PostgresKeyStore, RedisKeyStore, format_rfc3339,
};
use zerotrust_core::Scopes;

/// The environment variable read when `--store` is not given.
const STORE_ENV: &str = "ZEROTRUST_KEYS_STORE";

const USAGE: &str = "\
usage: zerotrust-keys [--store URL] [--json] COMMAND [ARGS]

Manages API keys in a PostgreSQL or Redis key store.

commands:
  create --owner OWNER [--scopes \"A B\"] [--expires-in DURATION]
                      issue a key and print its plaintext once
                      (default lifetime 90d, at most 365d)
  list --owner OWNER  list the owner's keys, oldest first
  show ID             print one key's metadata
  rotate ID [--grace DURATION]
                      issue a replacement with the same owner and scopes and
                      print its plaintext once; the old key stays valid for the
                      grace period (default 24h, at most 30d)
  revoke ID           revoke a key at once
  delete ID           delete a key's record

options:
  --store URL         postgres://user@host:port/db or redis://host:port
                      (default: the ZEROTRUST_KEYS_STORE environment variable)
  --redis-key-prefix PREFIX
                      key prefix in Redis (default: zerotrust:apikey:)
  --json              print JSON instead of text
  -h, --help          print this help

DURATION is a whole number followed by s, m, h or d, such as 90d or 36h.

exit status: 0 on success, 1 if the operation failed, 2 for invalid usage.";

/// Parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    store: Option<String>,
    redis_key_prefix: Option<String>,
    json: bool,
    command: Command,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Create {
        owner: String,
        scopes: String,
        expires_in: Duration,
    },
    List {
        owner: String,
    },
    Show {
        id: String,
    },
    Rotate {
        id: String,
        grace: Duration,
    },
    Revoke {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match parse_arguments(&arguments) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("zerotrust-keys: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if invocation.command == Command::Help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }

    match run(invocation).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("zerotrust-keys: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A failed run: the message for standard error and the exit status, 2 for
/// invalid input and 1 for an operation that failed.
struct Failure {
    message: String,
    code: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { message, code: 1 }
    }
}

async fn run(invocation: Invocation) -> Result<String, Failure> {
    let url = match invocation.store {
        Some(url) => url,
        None => std::env::var(STORE_ENV)
            .map_err(|_| format!("no store given: pass --store URL or set {STORE_ENV}"))?,
    };
    let store = connect(&url, invocation.redis_key_prefix.as_deref()).await?;
    let manager = KeyManager::new(store);
    let json = invocation.json;

    // Each status is computed after its operation, so that a key revoked just
    // now prints as revoked.
    match invocation.command {
        Command::Help => Ok(USAGE.to_owned()),
        Command::Create {
            owner,
            scopes,
            expires_in,
        } => {
            let new_key = NewKey::new(owner)
                .scopes(Scopes::parse(&scopes))
                .expires_in(expires_in);
            let created = manager.create(new_key).await.map_err(describe)?;
            Ok(format_created(&created, json, SystemTime::now()))
        }
        Command::List { owner } => {
            let keys = manager.list(&owner).await.map_err(describe)?;
            Ok(format_list(&keys, json, SystemTime::now()))
        }
        Command::Show { id } => {
            let key = manager.get(&id).await.map_err(describe)?;
            Ok(format_summary(&key, json, SystemTime::now()))
        }
        Command::Rotate { id, grace } => {
            let created = manager.rotate(&id, grace).await.map_err(describe)?;
            Ok(format_created(&created, json, SystemTime::now()))
        }
        Command::Revoke { id } => {
            let revoked = manager.revoke(&id).await.map_err(describe)?;
            Ok(format_summary(&revoked.into(), json, SystemTime::now()))
        }
        Command::Delete { id } => {
            let deleted = manager.delete(&id).await.map_err(describe)?;
            Ok(format_summary(&deleted, json, SystemTime::now()))
        }
    }
}

async fn connect(url: &str, redis_key_prefix: Option<&str>) -> Result<Arc<dyn KeyStore>, String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("postgres" | "postgresql") => {
            let store = PostgresKeyStore::connect(url)
                .await
                .map_err(|error| format!("connecting to the postgres store failed: {error}"))?;
            Ok(Arc::new(store))
        }
        Some("redis") => {
            let prefix = redis_key_prefix.unwrap_or(zerotrust_apikey::DEFAULT_REDIS_KEY_PREFIX);
            let store = RedisKeyStore::connect_with_prefix(url, prefix)
                .await
                .map_err(|error| format!("connecting to the redis store failed: {error}"))?;
            Ok(Arc::new(store))
        }
        None => Err(format!(
            "invalid store URL {:?}: expected postgres://… or redis://…",
            redact_url(url)
        )),
        Some(_) => Err(format!(
            "unsupported store URL scheme in {:?}: expected postgres:// or redis:// \
             (TLS connections are not built in)",
            redact_url(url)
        )),
    }
}

/// Removes a password from a URL before it is printed.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Without a scheme there is no user info to hide, but the text may be a
        // mistyped password, so only its length is shown.
        return format!("<{} characters>", url.chars().count());
    };
    match rest.split_once('@') {
        Some((_credentials, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

fn describe(error: ApiKeyError) -> Failure {
    let code = match error {
        ApiKeyError::InvalidOwner { .. }
        | ApiKeyError::InvalidLifetime { .. }
        | ApiKeyError::InvalidGracePeriod { .. }
        | ApiKeyError::InvalidScope { .. } => 2,
        _ => 1,
    };
    Failure {
        message: error.to_string(),
        code,
    }
}

fn parse_arguments(arguments: &[String]) -> Result<Invocation, String> {
    let mut store = None;
    let mut redis_key_prefix = None;
    let mut json = false;
    let mut owner = None;
    let mut scopes = None;
    let mut expires_in = None;
    let mut grace = None;
    let mut positional = Vec::new();

    let mut iter = arguments.iter();
    while let Some(argument) = iter.next() {
        let mut value_of = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match argument.as_str() {
            "-h" | "--help" => {
                return Ok(Invocation {
                    store,
                    redis_key_prefix,
                    json,
                    command: Command::Help,
                });
            }
            "--json" => json = true,
            "--store" => store = Some(value_of("--store")?),
            "--redis-key-prefix" => redis_key_prefix = Some(value_of("--redis-key-prefix")?),
            "--owner" => owner = Some(value_of("--owner")?),
            "--scopes" => scopes = Some(value_of("--scopes")?),
            "--expires-in" => expires_in = Some(parse_duration(&value_of("--expires-in")?)?),
            "--grace" => grace = Some(parse_duration(&value_of("--grace")?)?),
            option if option.starts_with('-') => return Err(format!("unknown option {option}")),
            _ => positional.push(argument.clone()),
        }
    }

    let mut positional = positional.into_iter();
    let Some(name) = positional.next() else {
        return Err("missing command".to_owned());
    };
    let id = positional.next();
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let require_owner =
        |owner: Option<String>| owner.ok_or_else(|| format!("{name} needs --owner OWNER"));
    let require_id = |id: Option<String>| id.ok_or_else(|| format!("{name} needs a key id"));
    let reject = |present: bool, option: &str| {
        if present {
            Err(format!("{name} does not take {option}"))
        } else {
            Ok(())
        }
    };

    let command = match name.as_str() {
        "create" => {
            reject(id.is_some(), "a key id")?;
            reject(grace.is_some(), "--grace")?;
            Command::Create {
                owner: require_owner(owner)?,
                scopes: scopes.unwrap_or_default(),
                expires_in: expires_in.unwrap_or(DEFAULT_KEY_LIFETIME),
            }
        }
        "list" => {
            reject(id.is_some(), "a key id")?;
            reject(
                scopes.is_some() || expires_in.is_some() || grace.is_some(),
                "key options",
            )?;
            Command::List {
                owner: require_owner(owner)?,
            }
        }
        "show" | "revoke" | "delete" | "rotate" => {
            reject(
                owner.is_some() || scopes.is_some() || expires_in.is_some(),
                "--owner, --scopes or --expires-in",
            )?;
            let id = require_id(id)?;
            match name.as_str() {
                "show" => {
                    reject(grace.is_some(), "--grace")?;
                    Command::Show { id }
                }
                "revoke" => {
                    reject(grace.is_some(), "--grace")?;
                    Command::Revoke { id }
                }
                "delete" => {
                    reject(grace.is_some(), "--grace")?;
                    Command::Delete { id }
                }
                _ => Command::Rotate {
                    id,
                    grace: grace.unwrap_or(DEFAULT_ROTATION_GRACE),
                },
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    };

    Ok(Invocation {
        store,
        redis_key_prefix,
        json,
        command,
    })
}

/// Parses `90d`, `36h`, `15m` or `30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!("invalid duration {text:?}: expected a whole number and s, m, h or d, such as 90d")
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    if !text.is_char_boundary(split) {
        return Err(invalid());
    }
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

fn format_created(created: &CreatedKey, json: bool, now: SystemTime) -> String {
    let summary = KeySummary::from(created.record.clone());
    if json {
        let mut value = summary.to_json(now);
        value["api_key"] = Value::String(created.secret.expose().to_owned());
        return value.to_string();
    }
    format!(
        "{}\napi_key:      {}\n\nStore this key now: it is shown only once.",
        summary_text(&summary, now),
        created.secret.expose()
    )
}

fn format_summary(summary: &KeySummary, json: bool, now: SystemTime) -> String {
    if json {
        summary.to_json(now).to_string()
    } else {
        summary_text(summary, now)
    }
}

fn format_list(keys: &[KeySummary], json: bool, now: SystemTime) -> String {
    if json {
        let values: Vec<Value> = keys.iter().map(|key| key.to_json(now)).collect();
        return Value::Array(values).to_string();
    }
    if keys.is_empty() {
        return "no keys".to_owned();
    }
    let mut lines = vec![format!(
        "{:<22} {:<8} {:<20} {:<20} {}",
        "ID", "STATUS", "ENDS", "LAST USED", "SCOPES"
    )];
    for key in keys {
        lines.push(format!(
            "{:<22} {:<8} {:<20} {:<20} {}",
            key.id,
            key.status_at(now).as_str(),
            // A rotated key ends at its grace deadline, before its expiry.
            format_rfc3339(key.revoked_at.map_or(key.expires_at, |at| at.min(key.expires_at))),
            key.last_used_at
                .map(format_rfc3339)
                .unwrap_or_else(|| "-".into()),
            key.scopes
        ));
    }
    lines.join("\n")
}

fn summary_text(summary: &KeySummary, now: SystemTime) -> String {
    let optional =
        |time: Option<SystemTime>| time.map(format_rfc3339).unwrap_or_else(|| "-".into());
    format!(
        "key_id:       {}\nowner:        {}\nstatus:       {}\nscopes:       {}\n\
         created_at:   {}\nexpires_at:   {}\nrevoked_at:   {}\nlast_used_at: {}",
        summary.id,
        summary.owner,
        summary.status_at(now).as_str(),
        summary.scopes,
        format_rfc3339(summary.created_at),
        format_rfc3339(summary.expires_at),
        optional(summary.revoked_at),
        optional(summary.last_used_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parse_create_with_defaults() {
        let invocation =
            parse_arguments(&arguments("--store redis://h create --owner acme")).unwrap();

        assert_eq!(invocation.store.as_deref(), Some("redis://h"));
        assert!(!invocation.json);
        assert_eq!(
            invocation.command,
            Command::Create {
                owner: "acme".into(),
                scopes: String::new(),
                expires_in: DEFAULT_KEY_LIFETIME,
            }
        );
    }

    #[test]
    fn parse_rotate_grace_and_json_anywhere() {
        let invocation = parse_arguments(&arguments("rotate key_a --grace 36h --json")).unwrap();

        assert!(invocation.json);
        assert_eq!(
            invocation.command,
            Command::Rotate {
                id: "key_a".into(),
                grace: Duration::from_secs(36 * 3_600),
            }
        );
    }

    #[test]
    fn parse_rejects_bad_usage() {
        for line in [
            "",
            "create",
            "list",
            "show",
            "show key_a key_b",
            "revoke key_a --grace 1h",
            "create --owner acme key_a",
            "frobnicate",
            "show key_a --bogus",
            "create --owner",
            "create --owner acme --expires-in 10",
            "create --owner acme --expires-in 10w",
            "create --owner acme --expires-in 99999999999999999999d",
        ] {
            assert!(parse_arguments(&arguments(line)).is_err(), "{line:?}");
        }
    }

    #[test]
    fn durations_parse_each_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90d"), Ok(DEFAULT_KEY_LIFETIME));
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("1é").is_err());
    }

    #[test]
    fn redact_url_hides_credentials() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://***@h/db"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("nonsense"), "<8 characters>");
    }
}

//! The key store on Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fred::clients::Client;
use fred::interfaces::{ClientLike as _, EventInterface as _, PubsubInterface as _};
use fred::types::Builder;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::scripts::Script;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use zerotrust_core::Scopes;

use crate::codec::{from_micros, to_micros};
use crate::digest::KeyDigest;
use crate::record::KeyRecord;
use crate::store::{Invalidation, KeyStore, StoreError, StoreFuture};

/// The store name in [`StoreError`]s.
const STORE: &str = "redis";

/// The key prefix that [`RedisKeyStore::connect`] uses.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "zerotrust:apikey:";

/// The command timeout that [`RedisKeyStore::connect`] sets.
pub const DEFAULT_REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The maximum length of a key prefix, in bytes.
const MAX_KEY_PREFIX_LEN: usize = 64;

/// How many invalidations a slow subscriber may fall behind.
const INVALIDATION_CAPACITY: usize = 1024;

/// Adds a record and its digest and owner index entries, unless the id or the
/// digest is taken. Returns 1 if it stored the record, 0 otherwise.
const INSERT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'owner', ARGV[2], 'scopes', ARGV[3],
  'digest', ARGV[4], 'created', ARGV[5], 'expires', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'revoked', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'last_used', ARGV[8]) end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
";

/// Returns the fields of the record whose digest index entry is KEYS[1], or an
/// empty list. ARGV[1] is the record key prefix.
const FIND_BY_DIGEST_SCRIPT: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return {} end
return redis.call('HGETALL', ARGV[1] .. id)
";

/// Returns the fields of the record KEYS[1], or an empty list.
const GET_SCRIPT: &str = r"
return redis.call('HGETALL', KEYS[1])
";

/// Returns the field lists of the owner's records, oldest first. KEYS[1] is
/// the owner index and ARGV[1] the record key prefix.
const LIST_SCRIPT: &str = r"
local records = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields > 0 then table.insert(records, fields) end
end
return records
";

/// Moves the revocation time of record KEYS[1] to ARGV[1] unless it is already
/// earlier, publishes the digest on channel ARGV[2], and returns the record's
/// fields, or an empty list for an unknown id.
const REVOKE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local current = redis.call('HGET', KEYS[1], 'revoked')
if not current or tonumber(ARGV[1]) < tonumber(current) then
  redis.call('HSET', KEYS[1], 'revoked', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], redis.call('HGET', KEYS[1], 'digest'))
return redis.call('HGETALL', KEYS[1])
";

/// Deletes record KEYS[1] with its index entries, publishes its digest on
/// channel ARGV[3], and returns its fields, or an empty list for an unknown id.
/// ARGV[1] and ARGV[2] are the digest and owner index key prefixes.
const DELETE_SCRIPT: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local id = redis.call('HGET', KEYS[1], 'id')
local digest = redis.call('HGET', KEYS[1], 'digest')
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('DEL', KEYS[1])
redis.call('DEL', ARGV[1] .. digest)
redis.call('ZREM', ARGV[2] .. owner, id)
redis.call('PUBLISH', ARGV[3], digest)
return fields
";

/// Moves `last_used` forward for each (id, microseconds) pair after ARGV[1],
/// the record key prefix, skipping unknown ids.
const TOUCH_SCRIPT: &str = r"
for i = 2, #ARGV, 2 do
  local key = ARGV[1] .. ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    local current = redis.call('HGET', key, 'last_used')
    if not current or tonumber(ARGV[i + 1]) > tonumber(current) then
      redis.call('HSET', key, 'last_used', ARGV[i + 1])
    end
  end
end
return 1
";

/// Stores key records in Redis, one hash per record plus a digest index and an
/// owner index.
///
/// Every change runs as one Lua script, so a record and its index entries are
/// updated atomically. Revocations and deletions publish the key's hex digest
/// on `<prefix>{apikeys}:invalidations`, and a subscriber connection turns
/// them into [`Invalidation`]s for caches, in this process and every other
/// one. All keys carry the `{apikeys}` hash tag, so they share one Redis
/// Cluster slot.
///
/// Keys, with `<prefix>` [`DEFAULT_REDIS_KEY_PREFIX`] by default:
///
/// - `<prefix>{apikeys}:key:<id>`: a hash with the record's fields, times in
///   microseconds since the Unix epoch and scopes as a JSON array.
/// - `<prefix>{apikeys}:digest:<hex digest>`: the id of the key with that digest.
/// - `<prefix>{apikeys}:owner:<owner>`: a sorted set of the owner's key ids,
///   scored by creation time.
///
/// Redis keeps data in memory: configure persistence (AOF) if keys must
/// survive a restart, or use the PostgreSQL store.
///
/// NOTE: the lookup and listing scripts build record key names from stored
/// ids instead of receiving them as `KEYS`. That works because every key
/// shares one hash tag, but a Redis Cluster proxy that routes by declared keys
/// may reject it.
#[derive(Debug, Clone)]
pub struct RedisKeyStore {
    client: Client,
    scripts: Arc<Scripts>,
    key_prefix: String,
    invalidations: broadcast::Sender<Invalidation>,
    _subscriber: Arc<SubscriberTask>,
}

#[derive(Debug)]
struct Scripts {
    insert: Script,
    find_by_digest: Script,
    get: Script,
    list: Script,
    revoke: Script,
    delete: Script,
    touch: Script,
}

/// Stops the subscriber when the last clone of the store is dropped.
#[derive(Debug)]
struct SubscriberTask {
    task: JoinHandle<()>,
    client: Client,
}

impl Drop for SubscriberTask {
    fn drop(&mut self) {
        self.task.abort();
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl RedisKeyStore {
    /// Connects to `url`, such as `redis://127.0.0.1:6379`, with the key
    /// prefix [`DEFAULT_REDIS_KEY_PREFIX`].
    ///
    /// The clients reconnect forever with exponential backoff from 100 ms up
    /// to 5 s and fail any command after [`DEFAULT_REDIS_COMMAND_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the URL is invalid or the first
    /// connection fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, DEFAULT_REDIS_KEY_PREFIX).await
    }

    /// Connects like [`connect`](Self::connect) and puts `key_prefix` in front
    /// of every key and of the invalidation channel.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidRecord`] for a prefix that is longer than 64 bytes
    /// or not visible ASCII without `{` and `}`, and the errors of
    /// [`connect`](Self::connect).
    pub async fn connect_with_prefix(url: &str, key_prefix: &str) -> Result<Self, StoreError> {
        validate_prefix(key_prefix)?;
        let config = Config::from_url(url).map_err(unavailable)?;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .with_performance_config(|performance| {
                performance.default_command_timeout = DEFAULT_REDIS_COMMAND_TIMEOUT;
            });
        let client = builder.build().map_err(unavailable)?;
        client.init().await.map_err(unavailable)?;
        Self::with_client(client, key_prefix).await
    }

    /// Uses `client`, which must be connected, and subscribes a second
    /// connection made with the same settings to the invalidation channel.
    ///
    /// Set a reconnect policy and a default command timeout on the client:
    /// fred 10 sets neither by default.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidRecord`] for an invalid prefix (see
    /// [`connect_with_prefix`](Self::connect_with_prefix)), and
    /// [`StoreError::Unavailable`] if the subscriber cannot connect.
    pub async fn with_client(client: Client, key_prefix: &str) -> Result<Self, StoreError> {
        validate_prefix(key_prefix)?;
        let key_prefix = format!("{key_prefix}{{apikeys}}:");
        let channel = format!("{key_prefix}invalidations");

        let subscriber = client.clone_new();
        subscriber.init().await.map_err(unavailable)?;
        let messages = subscriber.message_rx();
        let reconnects = subscriber.reconnect_rx();
        subscriber
            .subscribe(channel.as_str())
            .await
            .map_err(unavailable)?;
        let (invalidations, _) = broadcast::channel(INVALIDATION_CAPACITY);
        let task = tokio::spawn(forward_messages(
            subscriber.clone(),
            channel,
            messages,
            reconnects,
            invalidations.clone(),
        ));

        tracing::debug!(target: "zerotrust::apikey", "connected to the redis key store");
        Ok(Self {
            client,
            scripts: Arc::new(Scripts {
                insert: Script::from_lua(INSERT_SCRIPT),
                find_by_digest: Script::from_lua(FIND_BY_DIGEST_SCRIPT),
                get: Script::from_lua(GET_SCRIPT),
                list: Script::from_lua(LIST_SCRIPT),
                revoke: Script::from_lua(REVOKE_SCRIPT),
                delete: Script::from_lua(DELETE_SCRIPT),
                touch: Script::from_lua(TOUCH_SCRIPT),
            }),
            key_prefix,
            invalidations,
            _subscriber: Arc::new(SubscriberTask {
                task,
                client: subscriber,
            }),
        })
    }

    /// Returns the fred client, for health checks.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}key:{id}", self.key_prefix)
    }

    fn digest_key(&self, digest: &KeyDigest) -> String {
        format!("{}digest:{}", self.key_prefix, digest.to_hex())
    }

    fn owner_key(&self, owner: &str) -> String {
        format!("{}owner:{owner}", self.key_prefix)
    }

    fn channel(&self) -> String {
        format!("{}invalidations", self.key_prefix)
    }

    async fn insert_inner(&self, record: KeyRecord) -> Result<(), StoreError> {
        let optional = |time: Option<SystemTime>| -> Result<String, StoreError> {
            Ok(time
                .map(|time| micros_text(&record, time))
                .transpose()?
                .unwrap_or_default())
        };
        let scopes: Vec<&str> = record.scopes.iter().collect();
        let args = vec![
            record.id.clone(),
            record.owner.clone(),
            serde_json::to_string(&scopes).map_err(|error| StoreError::InvalidRecord {
                store: STORE,
                id: record.id.clone(),
                detail: error.to_string(),
            })?,
            record.digest.to_hex(),
            micros_text(&record, record.created_at)?,
            micros_text(&record, record.expires_at)?,
            optional(record.revoked_at)?,
            optional(record.last_used_at)?,
        ];
        let keys = vec![
            self.record_key(&record.id),
            self.digest_key(&record.digest),
            self.owner_key(&record.owner),
        ];

        let stored: i64 = self
            .scripts
            .insert
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(unavailable)?;
        if stored == 1 {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { id: record.id })
        }
    }

    async fn find_by_digest_inner(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let fields: Vec<String> = self
            .scripts
            .find_by_digest
            .evalsha_with_reload(
                &self.client,
                vec![self.digest_key(digest)],
                vec![self.record_key("")],
            )
            .await
            .map_err(unavailable)?;
        decode_optional(fields)
    }

    async fn get_inner(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let fields: Vec<String> = self
            .scripts
            .get
            .evalsha_with_reload(
                &self.client,
                vec![self.record_key(id)],
                Vec::<String>::new(),
            )
            .await
            .map_err(unavailable)?;
        decode_optional(fields)
    }

    async fn list_by_owner_inner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let records: Vec<Vec<String>> = self
            .scripts
            .list
            .evalsha_with_reload(
                &self.client,
                vec![self.owner_key(owner)],
                vec![self.record_key("")],
            )
            .await
            .map_err(unavailable)?;
        records.into_iter().map(decode_record).collect()
    }

    async fn revoke_inner(&self, id: &str, at: SystemTime) -> Result<KeyRecord, StoreError> {
        let at = to_micros(at).ok_or_else(|| StoreError::InvalidRecord {
            store: STORE,
            id: id.to_owned(),
            detail: "revocation time is before 1970".into(),
        })?;
        let fields: Vec<String> = self
            .scripts
            .revoke
            .evalsha_with_reload(
                &self.client,
                vec![self.record_key(id)],
                vec![at.to_string(), self.channel()],
            )
            .await
            .map_err(unavailable)?;
        decode_optional(fields)?.ok_or_else(|| StoreError::NotFound { id: id.to_owned() })
    }

    async fn delete_inner(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let fields: Vec<String> = self
            .scripts
            .delete
            .evalsha_with_reload(
                &self.client,
                vec![self.record_key(id)],
                vec![
                    format!("{}digest:", self.key_prefix),
                    self.owner_key(""),
                    self.channel(),
                ],
            )
            .await
            .map_err(unavailable)?;
        decode_optional(fields)?.ok_or_else(|| StoreError::NotFound { id: id.to_owned() })
    }

    async fn record_last_used_inner(
        &self,
        uses: &[(String, SystemTime)],
    ) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(1 + 2 * uses.len());
        args.push(self.record_key(""));
        for (id, at) in uses {
            args.push(id.clone());
            args.push(to_micros(*at).unwrap_or(0).to_string());
        }
        let _: i64 = self
            .scripts
            .touch
            .evalsha_with_reload(&self.client, Vec::<String>::new(), args)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl KeyStore for RedisKeyStore {
    fn insert(&self, record: KeyRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.insert_inner(record))
    }

    fn find_by_digest<'a>(&'a self, digest: &'a KeyDigest) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(self.find_by_digest_inner(digest))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(self.get_inner(id))
    }

    fn list_by_owner<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(self.list_by_owner_inner(owner))
    }

    fn revoke<'a>(&'a self, id: &'a str, at: SystemTime) -> StoreFuture<'a, KeyRecord> {
        Box::pin(self.revoke_inner(id, at))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyRecord> {
        Box::pin(self.delete_inner(id))
    }

    fn record_last_used<'a>(&'a self, uses: &'a [(String, SystemTime)]) -> StoreFuture<'a, ()> {
        Box::pin(self.record_last_used_inner(uses))
    }

    fn subscribe_invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        Some(self.invalidations.subscribe())
    }
}

/// Forwards published digests to `invalidations` until the store is dropped.
///
/// A subscription does not survive a reconnect, and messages published while
/// the connection was down are lost, so each reconnect subscribes again and
/// sends [`Invalidation::All`].
async fn forward_messages(
    subscriber: Client,
    channel: String,
    mut messages: broadcast::Receiver<fred::types::Message>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
    invalidations: broadcast::Sender<Invalidation>,
) {
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let digest = message
                        .value
                        .as_str()
                        .and_then(|text| KeyDigest::from_hex(text.as_ref()));
                    match digest {
                        Some(digest) => {
                            let _ = invalidations.send(Invalidation::Key(digest));
                        }
                        None => tracing::warn!(
                            target: "zerotrust::apikey",
                            channel,
                            "ignored a published message that is not a key digest"
                        ),
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let _ = invalidations.send(Invalidation::All);
                }
                Err(RecvError::Closed) => return,
            },
            reconnect = reconnects.recv() => {
                if matches!(reconnect, Err(RecvError::Closed)) {
                    return;
                }
                tracing::warn!(
                    target: "zerotrust::apikey",
                    "redis subscriber reconnected; dropping cached key records"
                );
                let _ = invalidations.send(Invalidation::All);
                if let Err(error) = subscriber.subscribe(channel.as_str()).await {
                    tracing::error!(
                        target: "zerotrust::apikey",
                        %error,
                        channel,
                        "subscribing to key invalidations failed; caches fall back to their TTL"
                    );
                }
            }
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let valid = prefix.len() <= MAX_KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidRecord {
            store: STORE,
            id: String::new(),
            detail: format!(
                "invalid key prefix {prefix:?}: expected at most 64 visible ASCII characters without braces"
            ),
        })
    }
}

fn unavailable(error: fred::error::Error) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        source: Box::new(error),
    }
}

fn micros_text(record: &KeyRecord, time: SystemTime) -> Result<String, StoreError> {
    to_micros(time)
        .map(|micros| micros.to_string())
        .ok_or_else(|| StoreError::InvalidRecord {
            store: STORE,
            id: record.id.clone(),
            detail: "a time is before 1970 or too far in the future".into(),
        })
}

fn decode_optional(fields: Vec<String>) -> Result<Option<KeyRecord>, StoreError> {
    if fields.is_empty() {
        Ok(None)
    } else {
        decode_record(fields).map(Some)
    }
}

/// Decodes the flat field/value list that `HGETALL` returns.
fn decode_record(fields: Vec<String>) -> Result<KeyRecord, StoreError> {
    let mut map: HashMap<String, String> = HashMap::with_capacity(fields.len() / 2);
    let mut pairs = fields.into_iter();
    while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
        map.insert(field, value);
    }

    let id = map.remove("id").unwrap_or_default();
    let invalid = |detail: String| StoreError::InvalidRecord {
        store: STORE,
        id: id.clone(),
        detail,
    };
    let mut required = |field: &str| {
        map.remove(field)
            .ok_or_else(|| invalid(format!("field {field} is missing")))
    };
    let owner = required("owner")?;
    let scopes = required("scopes")?;
    let digest = required("digest")?;
    let created = required("created")?;
    let expires = required("expires")?;
    let revoked = map.remove("revoked");
    let last_used = map.remove("last_used");

    let time = |field: &str, text: &str| -> Result<SystemTime, StoreError> {
        text.parse::<i64>()
            .ok()
            .and_then(from_micros)
            .ok_or_else(|| invalid(format!("field {field} is not a time in microseconds")))
    };
    let scopes: Vec<String> = serde_json::from_str(&scopes)
        .map_err(|error| invalid(format!("field scopes is not a JSON array: {error}")))?;

    Ok(KeyRecord {
        owner,
        scopes: Scopes::from_iter(scopes),
        digest: KeyDigest::from_hex(&digest)
            .ok_or_else(|| invalid("field digest is not 64 hex characters".into()))?,
        created_at: time("created", &created)?,
        expires_at: time("expires", &expires)?,
        revoked_at: revoked.map(|text| time("revoked", &text)).transpose()?,
        last_used_at: last_used.map(|text| time("last_used", &text)).transpose()?,
        id,
    })
}

//! A counter store in Redis, shared by every replica.

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike as _;
use fred::types::Builder;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::scripts::Script;

use crate::error::{AnomalyConfigError, StoreError};
use crate::identifier::Identifier;
use crate::policy::{AnomalyPolicy, WindowMode};
use crate::store::{BoxFuture, CounterStore, HitOutcome};

/// The key prefix used unless [`RedisCounterStore::with_key_prefix`] sets another.
pub const DEFAULT_KEY_PREFIX: &str = "zerotrust:anomaly:";

/// The command timeout that [`RedisCounterStore::connect`] sets.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The TCP connect timeout that [`RedisCounterStore::connect`] sets.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const MAX_KEY_PREFIX_LEN: usize = 64;

/// The whole per-request decision, run atomically on the server.
///
/// KEYS[1] is the window counter and KEYS[2] the block marker. Both share one
/// hash tag, so they live in one Redis Cluster slot. ARGV holds the window in
/// seconds, the alert and block thresholds, and the block length in seconds.
///
/// The reply is `{status, value}`: status 0 means blocked with `value`
/// milliseconds left, 1 means counted with `value` the count, and 2 means this
/// request started a block.
///
/// The window comes from the server's `TIME`, so every replica agrees on it.
/// Redis 7 replicates scripts by their effects, so calling `TIME` is allowed.
const HIT_SCRIPT: &str = r"
local window = tonumber(ARGV[1])
local block_at = tonumber(ARGV[3])
local block_for = tonumber(ARGV[4])

local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  return {0, left}
end
if left == -1 then
  -- A block marker without expiry was not written by this script: give it one,
  -- so that no key lives forever.
  redis.call('EXPIRE', KEYS[2], block_for)
  return {0, block_for * 1000}
end

local now = tonumber(redis.call('TIME')[1])
local window_end = (math.floor(now / window) + 1) * window
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIREAT', KEYS[1], window_end)

if count >= block_at then
  redis.call('SET', KEYS[2], '1', 'EX', block_for)
  redis.call('DEL', KEYS[1])
  return {2, count}
end
return {1, count}
";

/// The sliding-window script. KEYS[1] is a hash with the current window number
/// `w`, its count `c`, the previous window's count `p` and whether this window
/// has alerted `a`; KEYS[2] the block marker. It returns `{0, ms left}` when
/// blocked, `{1, count, alerted}` when counted and `{2, count, alerted}` when a
/// block starts, where `count` is the two-window estimate.
const SLIDING_SCRIPT: &str = r"
local window = tonumber(ARGV[1])
local alert_at = tonumber(ARGV[2])
local block_at = tonumber(ARGV[3])
local block_for = tonumber(ARGV[4])

local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  return {0, left}
end
if left == -1 then
  redis.call('EXPIRE', KEYS[2], block_for)
  return {0, block_for * 1000}
end

local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local current = math.floor(now / window)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p', 'a')
local w = tonumber(state[1])
local c = tonumber(state[2]) or 0
local p = tonumber(state[3]) or 0
local a = tonumber(state[4]) or 0
if w ~= current then
  if w == current - 1 then p = c else p = 0 end
  c = 0
  a = 0
end
c = c + 1

local elapsed = (now - current * window) / window
local count = math.floor(p * (1 - elapsed)) + c
local crossed = 0
if a == 0 and count >= alert_at then
  a = 1
  crossed = 1
end

if count >= block_at then
  redis.call('SET', KEYS[2], '1', 'EX', block_for)
  redis.call('DEL', KEYS[1])
  return {2, count, crossed}
end
redis.call('HSET', KEYS[1], 'w', current, 'c', c, 'p', p, 'a', a)
-- The state must outlive the next window, whose estimate still reads it.
redis.call('EXPIREAT', KEYS[1], (current + 2) * window)
return {1, count, crossed}
";

/// Counters and blocks in Redis, one script call per request.
///
/// Keys are `<prefix>{<kind>:<value>}:count` and `<prefix>{<kind>:<value>}:block`.
/// The braces are a Redis Cluster hash tag, so both keys of an identifier hash
/// to one slot. Bytes of the value outside visible ASCII, and `{`, `}` and `%`,
/// are percent-encoded, so a hostile identifier cannot end the hash tag early;
/// [`Identifier`] already replaces values over 256 bytes by their digest.
///
/// The counter expires at the end of its window and the block marker when the
/// block ends, so no key lives longer than `max(window, block_for)`. With
/// [`WindowMode::Sliding`] the state is a hash at `…:count:sliding` that lives
/// to the end of the next window, because that window's estimate reads it.
#[derive(Debug, Clone)]
pub struct RedisCounterStore {
    client: Client,
    script: Script,
    sliding_script: Script,
    key_prefix: String,
}

impl RedisCounterStore {
    /// Uses a client that the caller configured and connected.
    ///
    /// Set a reconnect policy and `PerformanceConfig::default_command_timeout` on
    /// it: fred 10 sets neither by default. The layer's own timeout still bounds
    /// each request.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            script: Script::from_lua(HIT_SCRIPT),
            sliding_script: Script::from_lua(SLIDING_SCRIPT),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// Connects to `url`, such as `redis://127.0.0.1:6379`, or
    /// to a Redis Cluster with
    /// `redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002`
    /// (fred's URL form; the nodes listed are only the first ones contacted).
    ///
    /// The client reconnects forever with exponential backoff from 100 ms up to
    /// 5 s, gives up a TCP connect after [`DEFAULT_CONNECT_TIMEOUT`], and fails
    /// any command after [`DEFAULT_COMMAND_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Connect`] if the URL is invalid or the first connection
    /// fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = Config::from_url(url).map_err(|error| StoreError::Connect(Box::new(error)))?;

        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .with_performance_config(|performance| {
                performance.default_command_timeout = DEFAULT_COMMAND_TIMEOUT;
            })
            .with_connection_config(|connection| {
                connection.connection_timeout = DEFAULT_CONNECT_TIMEOUT;
            });
        let client = builder
            .build()
            .map_err(|error| StoreError::Connect(Box::new(error)))?;
        client
            .init()
            .await
            .map_err(|error| StoreError::Connect(Box::new(error)))?;

        tracing::debug!(target: "zerotrust::anomaly", "connected to redis");
        Ok(Self::new(client))
    }

    /// Puts `prefix` in front of every key instead of [`DEFAULT_KEY_PREFIX`], so
    /// that several applications can share one Redis.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::InvalidKeyPrefix`] unless the prefix is at most 64
    /// visible ASCII characters without `{` or `}`: a brace would change the
    /// hash tag and so the cluster slot.
    pub fn with_key_prefix(
        mut self,
        prefix: impl Into<String>,
    ) -> Result<Self, AnomalyConfigError> {
        let prefix = prefix.into();
        let valid = prefix.len() <= MAX_KEY_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if !valid {
            return Err(AnomalyConfigError::InvalidKeyPrefix { prefix });
        }
        self.key_prefix = prefix;
        Ok(self)
    }

    /// Returns the fred client, for health checks.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Returns the counter and block key names of `identifier`.
    pub fn keys(&self, identifier: &Identifier) -> [String; 2] {
        let tag = format!(
            "{{{}:{}}}",
            identifier.kind().as_str(),
            encode_tag_value(identifier.value())
        );
        [
            format!("{}{tag}:count", self.key_prefix),
            format!("{}{tag}:block", self.key_prefix),
        ]
    }

    async fn hit_inner(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
    ) -> Result<HitOutcome, StoreError> {
        let mut keys = self.keys(identifier).to_vec();
        let sliding = policy.window_mode() == WindowMode::Sliding;
        if sliding {
            // A separate key, because the sliding state is a hash and a
            // policy may switch modes while old counters still live.
            keys[0].push_str(":sliding");
        }
        // Policies are validated: durations fit in a year of seconds and
        // thresholds in 2^53, so these conversions never fail.
        let args: Vec<i64> = [
            policy.window().as_secs(),
            policy.alert_at(),
            policy.block_at(),
            policy.block_for().as_secs(),
        ]
        .iter()
        .map(|&value| i64::try_from(value).unwrap_or(i64::MAX))
        .collect();

        let script = if sliding { &self.sliding_script } else { &self.script };
        let reply: Vec<i64> = script
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(|error| StoreError::Backend(Box::new(error)))?;

        match reply.as_slice() {
            [0, millis] => {
                let millis = u64::try_from(*millis).unwrap_or(0);
                Ok(HitOutcome::blocked(Duration::from_millis(millis)))
            }
            [1, count] => {
                let count = u64::try_from(*count).unwrap_or(0);
                Ok(HitOutcome::counted(count, policy))
            }
            [2, _] => Ok(HitOutcome::block_started(policy)),
            [1, count, crossed] => {
                let mut outcome = HitOutcome::counted(u64::try_from(*count).unwrap_or(0), policy);
                outcome.alert_crossed = *crossed == 1;
                Ok(outcome)
            }
            [2, _, crossed] => {
                let mut outcome = HitOutcome::block_started(policy);
                outcome.alert_crossed = *crossed == 1;
                Ok(outcome)
            }
            other => Err(StoreError::UnexpectedReply(format!("{other:?}"))),
        }
    }
}

impl CounterStore for RedisCounterStore {
    fn hit<'a>(
        &'a self,
        identifier: &'a Identifier,
        policy: &'a AnomalyPolicy,
    ) -> BoxFuture<'a, Result<HitOutcome, StoreError>> {
        Box::pin(self.hit_inner(identifier, policy))
    }
}

/// Percent-encodes `%`, `{`, `}` and every byte outside visible ASCII.
///
/// The mapping is injective, so two identifiers never share keys, and the output
/// contains no brace, so it cannot close the hash tag.
fn encode_tag_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b'{' | b'}') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push_str(&crate::identifier::hex(&[byte]));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_value_encoding_removes_braces() {
        assert_eq!(encode_tag_value("key_123"), "key_123");
        assert_eq!(encode_tag_value("a}b{c"), "a%7db%7bc");
        assert_eq!(encode_tag_value("100%"), "100%25");
        assert_eq!(encode_tag_value("a b\n"), "a%20b%0a");
        assert_eq!(encode_tag_value("é"), "%c3%a9");
    }

    #[test]
    fn tag_value_encoding_keeps_distinct_values_apart() {
        assert_ne!(encode_tag_value("%7d"), encode_tag_value("}"));
    }
}

//! The durable key store on PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zerotrust_core::Scopes;

use crate::codec::{from_micros, to_micros};
use crate::digest::KeyDigest;
use crate::record::KeyRecord;
use crate::store::{Invalidation, KeyStore, StoreError, StoreFuture};

/// The store name in [`StoreError`]s.
const STORE: &str = "postgres";

/// The `NOTIFY` channel on which revocations and deletions are announced. The
/// payload is the hex SHA-256 digest of the changed key.
pub const NOTIFY_CHANNEL: &str = "zerotrust_api_keys";

/// The table in which this store's migrations are recorded, kept apart from
/// sqlx's default `_sqlx_migrations` so that an application's own migrations
/// in the same database do not collide with these.
pub const MIGRATIONS_TABLE: &str = "zerotrust_apikey_migrations";

/// How long [`PostgresKeyStore::connect`] waits for a pooled connection before
/// an operation fails.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause after the listener fails to reconnect, before it tries again.
const LISTENER_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How many invalidations a slow subscriber may fall behind.
const INVALIDATION_CAPACITY: usize = 1024;

/// Expands to the columns of a key record, with times as microseconds since
/// the epoch. A macro rather than a constant, so that `concat!` builds each
/// query as a `&'static str`, which sqlx accepts without an audit wrapper.
///
/// `EXTRACT(EPOCH …)` returns `numeric` since PostgreSQL 14, so the conversion
/// is exact to the microsecond.
macro_rules! record_columns {
    () => {
        "id, owner, scopes, digest, \
         (EXTRACT(EPOCH FROM created_at) * 1000000)::bigint AS created_us, \
         (EXTRACT(EPOCH FROM expires_at) * 1000000)::bigint AS expires_us, \
         (EXTRACT(EPOCH FROM revoked_at) * 1000000)::bigint AS revoked_us, \
         (EXTRACT(EPOCH FROM last_used_at) * 1000000)::bigint AS last_used_us"
    };
}

/// Stores key records in the `zerotrust_api_keys` table.
///
/// [`connect`](Self::connect) applies the embedded migrations, which create the
/// table with a unique index on the digest, and starts a `LISTEN` task that
/// turns revocations from any process into [`Invalidation`]s for caches. Every
/// change runs in a transaction, and a revocation or deletion sends its
/// `NOTIFY` in the same transaction, so it is announced exactly when it
/// commits.
///
/// Requires PostgreSQL 14 or newer. Cheap to clone: clones share the pool and
/// the listener.
#[derive(Debug, Clone)]
pub struct PostgresKeyStore {
    pool: PgPool,
    invalidations: broadcast::Sender<Invalidation>,
    _listener: Arc<ListenerTask>,
}

/// Aborts the `LISTEN` task when the last clone of the store is dropped.
#[derive(Debug)]
struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresKeyStore {
    /// Connects to `url`, such as `postgres://user@127.0.0.1/app`, applies the
    /// migrations and starts listening for invalidations.
    ///
    /// The pool opens at most 10 connections and fails an operation that waits
    /// longer than [`DEFAULT_ACQUIRE_TIMEOUT`] for one. Build the pool yourself
    /// and call [`with_pool`](Self::with_pool) for other settings, or for TLS:
    /// this crate enables no sqlx TLS feature.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the URL is invalid, the database cannot be
    /// reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(unavailable)?;
        Self::with_pool(pool).await
    }

    /// Uses `pool`, applies the migrations and starts listening for
    /// invalidations. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if a migration fails or `LISTEN` fails.
    pub async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrator()
            .run(&pool)
            .await
            .map_err(|error| StoreError::Unavailable {
                store: STORE,
                source: Box::new(error),
            })?;

        let mut listener = PgListener::connect_with(&pool).await.map_err(unavailable)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(unavailable)?;
        let (invalidations, _) = broadcast::channel(INVALIDATION_CAPACITY);
        let task = tokio::spawn(forward_notifications(listener, invalidations.clone()));

        tracing::debug!(target: "zerotrust::apikey", "connected to the postgres key store");
        Ok(Self {
            pool,
            invalidations,
            _listener: Arc::new(ListenerTask(task)),
        })
    }

    /// Returns the connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn insert_inner(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let inserted = sqlx::query(
            "INSERT INTO zerotrust_api_keys \
             (id, owner, scopes, digest, created_at, expires_at, revoked_at, last_used_at) \
             VALUES ($1, $2, $3, $4, \
                 TIMESTAMPTZ 'epoch' + $5 * INTERVAL '1 microsecond', \
                 TIMESTAMPTZ 'epoch' + $6 * INTERVAL '1 microsecond', \
                 TIMESTAMPTZ 'epoch' + $7 * INTERVAL '1 microsecond', \
                 TIMESTAMPTZ 'epoch' + $8 * INTERVAL '1 microsecond') \
             ON CONFLICT DO NOTHING",
        )
        .bind(&record.id)
        .bind(&record.owner)
        .bind(record.scopes.iter().collect::<Vec<_>>())
        .bind(record.digest.as_bytes().as_slice())
        .bind(micros(&record, record.created_at)?)
        .bind(micros(&record, record.expires_at)?)
        .bind(optional_micros(&record, record.revoked_at)?)
        .bind(optional_micros(&record, record.last_used_at)?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;

        // ON CONFLICT covers both the primary key and the unique digest index.
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn find_by_digest_inner(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM zerotrust_api_keys WHERE digest = $1"
        ))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn get_inner(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM zerotrust_api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn list_by_owner_inner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM zerotrust_api_keys WHERE owner = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(decode_record).collect()
    }

    async fn revoke_inner(&self, id: &str, at: SystemTime) -> Result<KeyRecord, StoreError> {
        let at = to_micros(at).ok_or_else(|| StoreError::InvalidRecord {
            store: STORE,
            id: id.to_owned(),
            detail: "revocation time is before 1970".into(),
        })?;

        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // LEAST keeps an earlier revocation time: a revocation can be brought
        // forward but never postponed.
        let row = sqlx::query(concat!(
            "UPDATE zerotrust_api_keys \
             SET revoked_at = LEAST(revoked_at, TIMESTAMPTZ 'epoch' + $2 * INTERVAL '1 microsecond') \
             WHERE id = $1 RETURNING ",
            record_columns!()
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { id: id.to_owned() });
        };
        let record = decode_record(&row)?;

        notify(&mut tx, &record.digest).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(record)
    }

    async fn delete_inner(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(concat!(
            "DELETE FROM zerotrust_api_keys WHERE id = $1 RETURNING ",
            record_columns!()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { id: id.to_owned() });
        };
        let record = decode_record(&row)?;

        notify(&mut tx, &record.digest).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(record)
    }

    async fn record_last_used_inner(
        &self,
        uses: &[(String, SystemTime)],
    ) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        // A time before 1970 cannot come from a real clock. It is stored as
        // the epoch rather than failing the whole batch.
        let times: Vec<i64> = uses
            .iter()
            .map(|(_, at)| to_micros(*at).unwrap_or(0))
            .collect();

        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // GREATEST ignores NULL, so a first use sets the column and later
        // batches only move it forward.
        sqlx::query(
            "UPDATE zerotrust_api_keys AS k \
             SET last_used_at = GREATEST(k.last_used_at, u.used_at) \
             FROM (SELECT id, MAX(TIMESTAMPTZ 'epoch' + us * INTERVAL '1 microsecond') AS used_at \
                   FROM unnest($1::text[], $2::bigint[]) AS t(id, us) GROUP BY id) AS u \
             WHERE k.id = u.id",
        )
        .bind(ids)
        .bind(times)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }
}

impl KeyStore for PostgresKeyStore {
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

/// Returns the embedded migrations, recorded in [`MIGRATIONS_TABLE`].
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    // An older version of this crate must still start after a newer one
    // recorded more migrations in the same table.
    migrator.set_ignore_missing(true);
    migrator
}

/// Announces a change of the key with `digest` when `tx` commits.
async fn notify(tx: &mut Transaction<'_, Postgres>, digest: &KeyDigest) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(digest.to_hex())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Forwards `NOTIFY` payloads to `invalidations` until the store is dropped.
///
/// Notifications sent while the connection is down are lost, so every
/// reconnect also sends [`Invalidation::All`]. The loop runs until the task is
/// aborted, pausing [`LISTENER_RETRY_DELAY`] after each failed reconnect.
async fn forward_notifications(
    mut listener: PgListener,
    invalidations: broadcast::Sender<Invalidation>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match KeyDigest::from_hex(notification.payload()) {
                Some(digest) => {
                    let _ = invalidations.send(Invalidation::Key(digest));
                }
                None => {
                    tracing::warn!(
                        target: "zerotrust::apikey",
                        channel = NOTIFY_CHANNEL,
                        payload_len = notification.payload().len(),
                        "ignored a notification that is not a key digest"
                    );
                }
            },
            Ok(None) => {
                tracing::warn!(
                    target: "zerotrust::apikey",
                    "postgres listener lost its connection; dropping cached key records"
                );
                let _ = invalidations.send(Invalidation::All);
            }
            Err(error) => {
                tracing::warn!(
                    target: "zerotrust::apikey",
                    %error,
                    retry_in_ms = LISTENER_RETRY_DELAY.as_millis() as u64,
                    "postgres listener failed to reconnect"
                );
                let _ = invalidations.send(Invalidation::All);
                tokio::time::sleep(LISTENER_RETRY_DELAY).await;
            }
        }
    }
}

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        source: Box::new(error),
    }
}

fn micros(record: &KeyRecord, time: SystemTime) -> Result<i64, StoreError> {
    to_micros(time).ok_or_else(|| StoreError::InvalidRecord {
        store: STORE,
        id: record.id.clone(),
        detail: "a time is before 1970 or too far in the future".into(),
    })
}

fn optional_micros(
    record: &KeyRecord,
    time: Option<SystemTime>,
) -> Result<Option<i64>, StoreError> {
    time.map(|time| micros(record, time)).transpose()
}

fn decode_record(row: &PgRow) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get("id").map_err(unavailable)?;
    let invalid = |detail: &str| StoreError::InvalidRecord {
        store: STORE,
        id: id.clone(),
        detail: detail.to_owned(),
    };

    let scopes: Vec<String> = row.try_get("scopes").map_err(unavailable)?;
    let digest: Vec<u8> = row.try_get("digest").map_err(unavailable)?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| invalid("digest is not 32 bytes"))?;
    let time = |column: &str| -> Result<Option<SystemTime>, StoreError> {
        let micros: Option<i64> = row.try_get(column).map_err(unavailable)?;
        micros
            .map(|micros| from_micros(micros).ok_or_else(|| invalid("a time is before 1970")))
            .transpose()
    };
    let created_at = time("created_us")?.ok_or_else(|| invalid("created_at is null"))?;
    let expires_at = time("expires_us")?.ok_or_else(|| invalid("expires_at is null"))?;

    Ok(KeyRecord {
        owner: row.try_get("owner").map_err(unavailable)?,
        scopes: Scopes::from_iter(scopes),
        created_at,
        expires_at,
        revoked_at: time("revoked_us")?,
        last_used_at: time("last_used_us")?,
        digest: KeyDigest::from_bytes(digest),
        id,
    })
}

//! Batched `last_used_at` updates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use crate::store::KeyStore;
use crate::throttle::LogThrottle;

/// The maximum number of distinct keys held between two flushes. Uses of
/// further keys in the same interval are dropped and counted.
pub(crate) const MAX_PENDING_KEYS: usize = 10_000;

/// Collects the last use of each key in memory and writes them to the store in
/// one batch per interval.
///
/// A request only takes a short lock on a map, so a slow or stalled store never
/// delays requests. The flush runs in a background task and gives up after the
/// flush timeout, and a batch that fails is dropped: `last_used_at` is
/// informational, so losing one interval of it is preferred over retry queues
/// that grow during an outage.
#[derive(Debug)]
pub(crate) struct UsageRecorder {
    store: Arc<dyn KeyStore>,
    interval: Duration,
    flush_timeout: Duration,
    pending: Mutex<Pending>,
    flusher: OnceLock<()>,
    error_log: LogThrottle,
}

#[derive(Debug, Default)]
struct Pending {
    uses: HashMap<String, SystemTime>,
    dropped: u64,
}

impl UsageRecorder {
    pub(crate) fn new(
        store: Arc<dyn KeyStore>,
        interval: Duration,
        flush_timeout: Duration,
    ) -> Self {
        Self {
            store,
            interval,
            flush_timeout,
            pending: Mutex::new(Pending::default()),
            flusher: OnceLock::new(),
            error_log: LogThrottle::new(Duration::from_secs(60)),
        }
    }

    /// Notes that key `id` was used at `at`. Starts the flush task on the
    /// first call, which runs inside the server's Tokio runtime.
    pub(crate) fn record(self: &Arc<Self>, id: &str, at: SystemTime) {
        self.flusher.get_or_init(|| {
            tokio::spawn(flush_periodically(Arc::downgrade(self), self.interval));
        });

        let mut pending = self.lock();
        if let Some(last) = pending.uses.get_mut(id) {
            *last = (*last).max(at);
        } else if pending.uses.len() < MAX_PENDING_KEYS {
            pending.uses.insert(id.to_owned(), at);
        } else {
            pending.dropped += 1;
        }
    }

    /// Writes the pending uses to the store and returns how many keys the
    /// batch had.
    pub(crate) async fn flush(&self) -> usize {
        let (batch, dropped) = {
            let mut pending = self.lock();
            let taken = std::mem::take(&mut *pending);
            (taken.uses.into_iter().collect::<Vec<_>>(), taken.dropped)
        };
        if dropped > 0 {
            tracing::debug!(
                target: "zerotrust::apikey",
                dropped,
                max_keys = MAX_PENDING_KEYS,
                "last-use updates dropped: too many distinct keys in one interval"
            );
        }
        if batch.is_empty() {
            return 0;
        }

        let write = self.store.record_last_used(&batch);
        let error = match tokio::time::timeout(self.flush_timeout, write).await {
            Ok(Ok(())) => return batch.len(),
            Ok(Err(error)) => error.to_string(),
            Err(_elapsed) => format!("timed out after {:?}", self.flush_timeout),
        };
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(
                target: "zerotrust::apikey",
                error,
                keys = batch.len(),
                suppressed,
                "writing last-use times failed; this batch is dropped"
            );
        }
        0
    }

    // Writers keep the map consistent at every step, so a poisoned lock is
    // safe to use.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Flushes every `interval` until the recorder is dropped, with a last flush
/// then impossible: uses recorded after the final flush are lost.
async fn flush_periodically(recorder: Weak<UsageRecorder>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        recorder.flush().await;
    }
}

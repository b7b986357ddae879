//! A counter store in process memory, for one replica, tests and demos.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use zerotrust_core::{Clock, SystemClock};

use crate::error::{AnomalyConfigError, StoreError};
use crate::identifier::Identifier;
use crate::policy::{AnomalyPolicy, WindowMode};
use crate::store::{BoxFuture, CounterStore, HitOutcome};

/// The default maximum of tracked identifiers. An entry takes roughly 100 bytes
/// plus the identifier value (an estimate, not a measurement), so the default
/// bounds the store to tens of megabytes.
pub const DEFAULT_MAX_IDENTIFIERS: usize = 100_000;

/// How often a full store may scan for expired entries, so that a flood of new
/// identifiers at the cap costs one scan per second rather than one per request.
const SWEEP_INTERVAL_MS: u64 = 1_000;

/// Counters and blocks in a `HashMap` behind a mutex.
///
/// Each replica counts on its own, so with several replicas an identifier may
/// send up to `block_at` requests to each before it is blocked everywhere. Use
/// the Redis store for shared counts.
///
/// Memory is bounded by [`DEFAULT_MAX_IDENTIFIERS`] or the value given to
/// [`with_max_identifiers`](Self::with_max_identifiers). An entry is dropped once
/// both its window and its block have ended. When the store is full, it first
/// drops expired entries (at most once a second) and, if it is still full,
/// returns [`StoreError::CapacityExceeded`] for identifiers it does not track yet.
/// The layer then lets those requests through uncounted and reports a
/// `STORE_DEGRADED` event. Identifiers that are already tracked, blocked ones
/// included, are still counted and blocked: a flood of new identifiers cannot
/// evict a block.
#[derive(Debug)]
pub struct MemoryCounterStore {
    state: Mutex<State>,
    max_identifiers: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Identifier, Entry>,
    last_sweep_ms: u64,
}

#[derive(Debug)]
struct Entry {
    window_index: u64,
    count: u64,
    /// The count of the window before `window_index`, for sliding windows.
    previous: u64,
    /// Whether this window already raised its alert, for sliding windows.
    alerted: bool,
    blocked_until_ms: u64,
    /// When both the window and the block have ended and the entry can go.
    expires_at_ms: u64,
}

impl MemoryCounterStore {
    /// Creates a store that tracks up to [`DEFAULT_MAX_IDENTIFIERS`] identifiers.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_identifiers: DEFAULT_MAX_IDENTIFIERS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Creates a store that tracks up to `max_identifiers` identifiers.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::ZeroCount`] if `max_identifiers` is zero.
    pub fn with_max_identifiers(max_identifiers: usize) -> Result<Self, AnomalyConfigError> {
        if max_identifiers == 0 {
            return Err(AnomalyConfigError::ZeroCount {
                field: "max_identifiers",
            });
        }
        Ok(Self {
            max_identifiers,
            ..Self::new()
        })
    }

    /// Reads the time from `clock` instead of the system clock, so tests can
    /// move it.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the maximum of tracked identifiers.
    pub fn max_identifiers(&self) -> usize {
        self.max_identifiers
    }

    /// Returns how many identifiers are tracked now, expired ones not yet
    /// dropped included.
    pub fn tracked_identifiers(&self) -> usize {
        self.lock().entries.len()
    }

    fn now_ms(&self) -> u64 {
        let since_epoch = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the map consistent before it can panic, so a
        // poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hit_now(
        &self,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
        now_ms: u64,
    ) -> Result<HitOutcome, StoreError> {
        let window_ms = duration_ms(policy.window());
        let window_index = now_ms / window_ms;
        let window_end_ms = window_index.saturating_add(1).saturating_mul(window_ms);

        let mut state = self.lock();
        if !state.entries.contains_key(identifier) {
            self.make_room(&mut state, now_ms)?;
        }
        let entry = state.entries.entry(identifier.clone()).or_insert(Entry {
            window_index,
            count: 0,
            previous: 0,
            alerted: false,
            blocked_until_ms: 0,
            expires_at_ms: window_end_ms,
        });

        if entry.blocked_until_ms > now_ms {
            let retry_after = Duration::from_millis(entry.blocked_until_ms - now_ms);
            return Ok(HitOutcome::blocked(retry_after));
        }

        if entry.window_index != window_index {
            entry.previous = if entry.window_index.saturating_add(1) == window_index {
                entry.count
            } else {
                0
            };
            entry.window_index = window_index;
            entry.count = 0;
            entry.alerted = false;
        }
        entry.count += 1;

        let (count, alert_crossed) = match policy.window_mode() {
            WindowMode::Fixed => (entry.count, entry.count == policy.alert_at()),
            _ => {
                let elapsed_ms = now_ms - window_index * window_ms;
                let carried = entry.previous.saturating_mul(window_ms - elapsed_ms) / window_ms;
                let count = carried.saturating_add(entry.count);
                let crossed = !entry.alerted && count >= policy.alert_at();
                entry.alerted |= crossed;
                (count, crossed)
            }
        };

        if count >= policy.block_at() {
            entry.blocked_until_ms = now_ms.saturating_add(duration_ms(policy.block_for()));
            entry.count = 0;
            entry.previous = 0;
            entry.expires_at_ms = entry.blocked_until_ms.max(window_end_ms);
            let mut outcome = HitOutcome::block_started(policy);
            outcome.alert_crossed = alert_crossed;
            return Ok(outcome);
        }

        // A sliding count still needs this window's count during the next one.
        entry.expires_at_ms = match policy.window_mode() {
            WindowMode::Fixed => window_end_ms,
            _ => window_end_ms.saturating_add(window_ms),
        };
        let mut outcome = HitOutcome::counted(count, policy);
        outcome.alert_crossed = alert_crossed;
        Ok(outcome)
    }

    /// Makes room for one new identifier, or fails if the store is full.
    fn make_room(&self, state: &mut State, now_ms: u64) -> Result<(), StoreError> {
        if state.entries.len() < self.max_identifiers {
            return Ok(());
        }

        let sweep_due = now_ms >= state.last_sweep_ms.saturating_add(SWEEP_INTERVAL_MS)
            || now_ms < state.last_sweep_ms;
        if sweep_due {
            state.last_sweep_ms = now_ms;
            let before = state.entries.len();
            state
                .entries
                .retain(|_, entry| entry.expires_at_ms > now_ms);
            tracing::debug!(
                target: "zerotrust::anomaly",
                dropped = before - state.entries.len(),
                remaining = state.entries.len(),
                "dropped expired counters"
            );
        }

        if state.entries.len() < self.max_identifiers {
            Ok(())
        } else {
            Err(StoreError::CapacityExceeded {
                max_identifiers: self.max_identifiers,
            })
        }
    }
}

impl Default for MemoryCounterStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CounterStore for MemoryCounterStore {
    fn hit<'a>(
        &'a self,
        identifier: &'a Identifier,
        policy: &'a AnomalyPolicy,
    ) -> BoxFuture<'a, Result<HitOutcome, StoreError>> {
        let result = self.hit_now(identifier, policy, self.now_ms());
        Box::pin(std::future::ready(result))
    }
}

fn duration_ms(duration: Duration) -> u64 {
    // Policies hold at most a year of whole seconds, so this never saturates for
    // a valid policy, and never divides by zero because windows are positive.
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::IdentifierKind;
    use crate::store::HitDecision;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    /// A clock that tests move by hand, starting at a window boundary.
    #[derive(Debug)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(AtomicU64::new(1_700_000_400_000)))
        }

        fn advance(&self, by: Duration) {
            self.0.fetch_add(duration_ms(by), Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    fn policy() -> AnomalyPolicy {
        AnomalyPolicy::new(Duration::from_secs(60), 3, 5, Duration::from_secs(600)).unwrap()
    }

    fn key(value: &str) -> Identifier {
        Identifier::new(IdentifierKind::ApiKey, value)
    }

    async fn hits(
        store: &MemoryCounterStore,
        identifier: &Identifier,
        n: usize,
    ) -> Vec<HitOutcome> {
        let policy = policy();
        let mut outcomes = Vec::with_capacity(n);
        for _ in 0..n {
            outcomes.push(store.hit(identifier, &policy).await.unwrap());
        }
        outcomes
    }

    #[tokio::test]
    async fn hit_alerts_once_then_blocks_at_threshold() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::new().with_clock(clock.clone());

        let outcomes = hits(&store, &key("k"), 7).await;

        for (i, outcome) in outcomes.iter().take(4).enumerate() {
            assert_eq!(
                outcome.decision,
                HitDecision::Counted {
                    count: i as u64 + 1
                }
            );
            assert_eq!(outcome.alert_crossed, i == 2, "alert only on request 3");
            assert!(!outcome.block_started);
        }
        assert_eq!(outcomes[4], HitOutcome::block_started(&policy()));
        for outcome in &outcomes[5..] {
            assert_eq!(
                outcome.decision,
                HitDecision::Blocked {
                    retry_after: Duration::from_secs(600)
                }
            );
            assert!(!outcome.block_started);
            assert!(!outcome.alert_crossed);
        }
    }

    #[tokio::test]
    async fn block_outlasts_window_and_counting_restarts_after_it() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::new().with_clock(clock.clone());
        let identifier = key("k");
        hits(&store, &identifier, 5).await;

        clock.advance(Duration::from_secs(120));
        let during = hits(&store, &identifier, 1).await;
        clock.advance(Duration::from_secs(480));
        let after = hits(&store, &identifier, 1).await;

        assert_eq!(
            during[0].decision,
            HitDecision::Blocked {
                retry_after: Duration::from_secs(480)
            },
            "blocked requests do not extend the block"
        );
        assert_eq!(after[0].decision, HitDecision::Counted { count: 1 });
    }

    #[tokio::test]
    async fn new_window_starts_from_zero() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::new().with_clock(clock.clone());
        let identifier = key("k");
        hits(&store, &identifier, 4).await;

        clock.advance(Duration::from_secs(60));
        let next = hits(&store, &identifier, 1).await;

        assert_eq!(next[0].decision, HitDecision::Counted { count: 1 });
    }

    #[tokio::test]
    async fn sliding_window_carries_previous_count() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::new().with_clock(clock.clone());
        let fixed = AnomalyPolicy::new(Duration::from_secs(100), 10, 20, Duration::from_secs(600)).unwrap();
        let sliding = fixed.with_window_mode(WindowMode::Sliding);
        let (a, b) = (key("sliding"), key("fixed"));
        clock.advance(Duration::from_secs(90));
        for _ in 0..8 {
            store.hit(&a, &sliding).await.unwrap();
            store.hit(&b, &fixed).await.unwrap();
        }

        // 10 seconds into the next window, 90% of the previous 8 still count.
        clock.advance(Duration::from_secs(20));
        let mut sliding_outcomes = Vec::new();
        let mut fixed_outcomes = Vec::new();
        for _ in 0..3 {
            sliding_outcomes.push(store.hit(&a, &sliding).await.unwrap());
            fixed_outcomes.push(store.hit(&b, &fixed).await.unwrap());
        }

        assert_eq!(sliding_outcomes[2].decision, HitDecision::Counted { count: 10 });
        assert_eq!(sliding_outcomes.iter().filter(|o| o.alert_crossed).count(), 1);
        assert!(sliding_outcomes[2].alert_crossed);
        assert_eq!(fixed_outcomes[2].decision, HitDecision::Counted { count: 3 });
        assert!(fixed_outcomes.iter().all(|o| !o.alert_crossed));
    }

    #[tokio::test]
    async fn sliding_window_alerts_once_then_blocks() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::new().with_clock(clock.clone());
        let policy = AnomalyPolicy::new(Duration::from_secs(100), 3, 5, Duration::from_secs(600))
            .unwrap()
            .with_window_mode(WindowMode::Sliding);
        let identifier = key("k");

        let outcomes = hits_with(&store, &identifier, &policy, 6).await;

        assert_eq!(outcomes.iter().filter(|o| o.alert_crossed).count(), 1);
        assert!(outcomes[2].alert_crossed);
        assert!(outcomes[4].block_started);
        assert!(matches!(outcomes[5].decision, HitDecision::Blocked { .. }));
    }

    async fn hits_with(
        store: &MemoryCounterStore,
        identifier: &Identifier,
        policy: &AnomalyPolicy,
        n: usize,
    ) -> Vec<HitOutcome> {
        let mut outcomes = Vec::new();
        for _ in 0..n {
            outcomes.push(store.hit(identifier, policy).await.unwrap());
        }
        outcomes
    }

    #[tokio::test]
    async fn identifiers_are_counted_apart() {
        let store = MemoryCounterStore::new().with_clock(ManualClock::new());
        hits(&store, &key("a"), 5).await;

        let other = hits(&store, &key("b"), 1).await;

        assert_eq!(other[0].decision, HitDecision::Counted { count: 1 });
    }

    #[tokio::test]
    async fn cap_holds_under_million_identifier_spray() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::with_max_identifiers(1_000)
            .unwrap()
            .with_clock(clock.clone());
        let policy = policy();
        let blocked = key("blocked");
        hits(&store, &blocked, 5).await;

        let mut rejected = 0;
        for i in 0..1_000_000 {
            match store.hit(&key(&format!("spray-{i}")), &policy).await {
                Ok(_) => {}
                Err(StoreError::CapacityExceeded { max_identifiers }) => {
                    assert_eq!(max_identifiers, 1_000);
                    rejected += 1;
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }

        assert_eq!(store.tracked_identifiers(), 1_000);
        assert_eq!(rejected, 1_000_000 - 999);
        let still_blocked = hits(&store, &blocked, 1).await;
        assert!(matches!(
            still_blocked[0].decision,
            HitDecision::Blocked { .. }
        ));
    }

    #[tokio::test]
    async fn full_store_drops_expired_entries() {
        let clock = ManualClock::new();
        let store = MemoryCounterStore::with_max_identifiers(10)
            .unwrap()
            .with_clock(clock.clone());
        let blocked = key("blocked");
        hits(&store, &blocked, 5).await;
        for i in 0..9 {
            hits(&store, &key(&format!("old-{i}")), 1).await;
        }
        assert!(store.hit(&key("new"), &policy()).await.is_err());

        clock.advance(Duration::from_secs(61));
        let new = hits(&store, &key("new"), 1).await;

        assert_eq!(new[0].decision, HitDecision::Counted { count: 1 });
        assert_eq!(
            store.tracked_identifiers(),
            2,
            "the block and the new identifier remain"
        );
        let still_blocked = hits(&store, &blocked, 1).await;
        assert!(matches!(
            still_blocked[0].decision,
            HitDecision::Blocked { .. }
        ));
    }

    #[test]
    fn zero_max_identifiers_is_rejected() {
        let error = MemoryCounterStore::with_max_identifiers(0).unwrap_err();

        assert_eq!(
            error,
            AnomalyConfigError::ZeroCount {
                field: "max_identifiers"
            }
        );
    }
}

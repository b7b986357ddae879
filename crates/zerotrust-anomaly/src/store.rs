//! The counter store interface and its outcome type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::StoreError;
use crate::identifier::Identifier;
use crate::policy::AnomalyPolicy;

/// A boxed, sendable future, so that [`CounterStore`] stays dyn-compatible.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Counts requests per identifier and keeps blocks.
///
/// The layer makes one [`hit`](Self::hit) call per request, and an implementation
/// must do the whole decision in it, atomically per identifier:
///
/// 1. If the identifier is blocked, return [`HitDecision::Blocked`] with the time
///    left, without counting and without extending the block.
/// 2. Otherwise add one to the count of the current window. Windows are fixed,
///    `policy.window()` long and aligned to the Unix epoch, and a new window starts
///    from zero.
/// 3. If the count reached `policy.block_at()`, start a block of
///    `policy.block_for()`, reset the count, and return `Blocked` with
///    `block_started` set: the request that reaches the threshold is rejected too.
/// 4. Otherwise return [`HitDecision::Counted`].
///
/// `alert_crossed` is set on the hit whose count equals `policy.alert_at()`.
pub trait CounterStore: Send + Sync + fmt::Debug + 'static {
    /// Records one request from `identifier` and decides whether it is blocked.
    fn hit<'a>(
        &'a self,
        identifier: &'a Identifier,
        policy: &'a AnomalyPolicy,
    ) -> BoxFuture<'a, Result<HitOutcome, StoreError>>;
}

/// The result of one [`CounterStore::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitOutcome {
    /// Whether the request may go on.
    pub decision: HitDecision,
    /// `true` on the one hit per window whose count equals the alert threshold.
    pub alert_crossed: bool,
    /// `true` on the hit that reached the block threshold and started a block.
    pub block_started: bool,
}

/// Whether a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitDecision {
    /// The request was counted and may go on.
    Counted {
        /// The identifier's count in the current window, this request included.
        count: u64,
    },
    /// The identifier is blocked and the request must be rejected.
    Blocked {
        /// How long the block still lasts.
        retry_after: Duration,
    },
}

impl HitOutcome {
    /// Creates the outcome of a counted request, with `alert_crossed` set when `count` equals the policy's
    /// alert threshold.
    pub fn counted(count: u64, policy: &AnomalyPolicy) -> Self {
        Self {
            decision: HitDecision::Counted { count },
            alert_crossed: count == policy.alert_at(),
            block_started: false,
        }
    }

    /// Creates the outcome of a request from an identifier that was already blocked.
    pub fn blocked(retry_after: Duration) -> Self {
        Self {
            decision: HitDecision::Blocked { retry_after },
            alert_crossed: false,
            block_started: false,
        }
    }

    /// Creates the outcome of the request that reached the block threshold. `alert_crossed` is set
    /// when the two thresholds are equal.
    pub fn block_started(policy: &AnomalyPolicy) -> Self {
        Self {
            decision: HitDecision::Blocked {
                retry_after: policy.block_for(),
            },
            alert_crossed: policy.alert_at() == policy.block_at(),
            block_started: true,
        }
    }
}

//! A source of the current time, so tests can control expiry.

use std::fmt;
use std::time::SystemTime;

/// A source of wall-clock time.
///
/// Layers read the time through this trait so that tests can move it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

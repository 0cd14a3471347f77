//! Time, behind a trait: monotonic nanoseconds for token buckets, UTC wall time for quota periods
//! and key expiry. [`ManualClock`] makes every time-dependent decision testable without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One reading of a [`Clock`]: both time scales at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic nanoseconds since the clock's origin. Never goes backwards.
    pub mono_nanos: u64,
    /// Wall time, Unix seconds (UTC).
    pub unix_secs: i64,
}

/// A source of time for the engine.
///
/// Invariant: `mono_nanos` never decreases between two calls. Wall time may jump (NTP, tests).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Reads both time scales.
    fn now(&self) -> Now;
}

/// The real clock: [`Instant`] for buckets, [`SystemTime`] for periods.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono_nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Now { mono_nanos, unix_secs: unix_secs(SystemTime::now()) }
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Before the epoch: round towards minus infinity.
        Err(e) => {
            let d = e.duration();
            -i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
        }
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tower_usage_plans::{Clock, ManualClock};
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(86_400));
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now().mono_nanos, 1_500_000_000);
/// assert_eq!(clock.now().unix_secs, 86_401);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    mono: AtomicU64,
    /// Wall time in Unix nanoseconds.
    wall: AtomicI64,
}

impl ManualClock {
    /// A clock at monotonic 0 and wall time `start`.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        let nanos = match start.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        Self { inner: Arc::new(ManualInner { mono: AtomicU64::new(0), wall: AtomicI64::new(nanos) }) }
    }

    /// Moves both time scales forward by `d`.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.mono.fetch_add(n, Ordering::SeqCst);
        self.inner.wall.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// Sets the wall time only (as if NTP stepped the clock); monotonic time is unchanged.
    pub fn set_wall(&self, t: SystemTime) {
        let nanos = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        self.inner.wall.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        let wall = self.inner.wall.load(Ordering::SeqCst);
        Now { mono_nanos: self.inner.mono.load(Ordering::SeqCst), unix_secs: wall.div_euclid(1_000_000_000) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_secs_rounds_down_before_epoch() {
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1)), -1);
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1999)), 1);
    }

    #[test]
    fn manual_clock_wall_step_keeps_mono() {
        let c = ManualClock::new(UNIX_EPOCH);
        c.advance(Duration::from_secs(2));
        c.set_wall(UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!(c.now(), Now { mono_nanos: 2_000_000_000, unix_secs: 100 });
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b.mono_nanos >= a.mono_nanos);
        assert!(a.unix_secs > 1_700_000_000);
    }
}

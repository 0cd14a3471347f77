//! Time, behind a trait: monotonic nanoseconds for token buckets, UTC wall time for quota periods
//! and key expiry. [`ManualClock`] makes every time-dependent decision testable without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The real clock: a monotonic clock for buckets (the CPU's invariant TSC through `quanta`,
/// as governor uses; the OS monotonic clock where the TSC is not reliable); wall time derived
/// from it and re-read from [`SystemTime`] at most once a second, so a request costs one cheap
/// clock read. A step of the system clock (NTP, an operator) is seen within a second.
///
/// Every `SystemClock` of a process shares one monotonic origin (the first one's creation), so
/// readings of two of them compare: a layer's and a backend's default clocks tell one time.
#[derive(Debug)]
pub struct SystemClock {
    mono: &'static Monotonic,
    /// Unix nanoseconds minus monotonic nanoseconds, as of the last sync.
    offset: AtomicI64,
    /// Monotonic nanoseconds at which to read the wall clock again.
    next_sync: AtomicU64,
}

const SYNC_EVERY_NANOS: u64 = 1_000_000_000;

/// The process's monotonic clock and its origin, shared by every [`SystemClock`].
#[derive(Debug)]
struct Monotonic {
    clock: quanta::Clock,
    origin: u64,
}

impl Monotonic {
    fn get() -> &'static Monotonic {
        static MONOTONIC: OnceLock<Monotonic> = OnceLock::new();
        MONOTONIC.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            Monotonic { clock, origin }
        })
    }

    fn nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

impl SystemClock {
    /// A clock on the process's monotonic origin (the creation of its first `SystemClock`).
    #[must_use]
    pub fn new() -> Self {
        let mono = Monotonic::get();
        let clock = Self { mono, offset: AtomicI64::new(0), next_sync: AtomicU64::new(0) };
        clock.sync(mono.nanos());
        clock
    }

    fn sync(&self, mono: u64) {
        let wall = unix_nanos(SystemTime::now());
        self.offset.store(wall.saturating_sub(i64::try_from(mono).unwrap_or(i64::MAX)), Ordering::Relaxed);
        self.next_sync.store(mono.saturating_add(SYNC_EVERY_NANOS), Ordering::Relaxed);
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono_nanos = self.mono.nanos();
        if mono_nanos >= self.next_sync.load(Ordering::Relaxed) {
            self.sync(mono_nanos);
        }
        let wall = self.offset.load(Ordering::Relaxed).saturating_add(i64::try_from(mono_nanos).unwrap_or(i64::MAX));
        Now { mono_nanos, unix_secs: wall.div_euclid(1_000_000_000) }
    }
}

fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A duration in nanoseconds, saturating (a `Duration` can exceed `u64` nanoseconds).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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
        Self { inner: Arc::new(ManualInner { mono: AtomicU64::new(0), wall: AtomicI64::new(unix_nanos(start)) }) }
    }

    /// Moves both time scales forward by `d`.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.mono.fetch_add(n, Ordering::SeqCst);
        self.inner.wall.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// Sets the wall time only (as if NTP stepped the clock); monotonic time is unchanged.
    pub fn set_wall(&self, t: SystemTime) {
        self.inner.wall.store(unix_nanos(t), Ordering::SeqCst);
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
    fn system_clock_is_monotonic_and_tracks_wall_time() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b.mono_nanos >= a.mono_nanos);
        let wall = unix_secs(SystemTime::now());
        assert!((a.unix_secs - wall).abs() <= 1, "{} vs {wall}", a.unix_secs);
        // Past the sync interval the wall clock is read again.
        c.next_sync.store(0, Ordering::Relaxed);
        assert!((c.now().unix_secs - unix_secs(SystemTime::now())).abs() <= 1);
    }

    #[test]
    fn system_clocks_share_one_monotonic_origin() {
        let a = SystemClock::new();
        // Let a's readings pass 1 ms (without sleeping: a clock test, not a bucket).
        while a.now().mono_nanos < 1_000_000 {
            std::hint::spin_loop();
        }
        let before = a.now();
        let b = SystemClock::new();
        let later = b.now();
        assert!(later.mono_nanos >= before.mono_nanos, "{later:?} is before {before:?}");
        assert!(a.now().mono_nanos >= later.mono_nanos);
        assert!((later.unix_secs - before.unix_secs).abs() <= 1);
    }
}

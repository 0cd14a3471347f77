//! The circuit breaker: after `threshold` failed calls in a row, Redis is not called for a
//! cooldown; then one call (the probe) tries it. A probe that fails opens the breaker again for a
//! cooldown; one that succeeds closes it.
//!
//! Pure: time is passed in (the [`Now`] of the request deciding), nothing reads a clock.

use crate::engine::{nanos, Now};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Consecutive failures and when calls may be tried again.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    failures: AtomicU32,
    /// Monotonic nanoseconds until which Redis is not called (0: closed).
    open_until: AtomicU64,
    /// When the current probe started (0: none). A probe whose request was dropped before it
    /// finished is forgotten after `stale` nanoseconds, so the breaker cannot stay open for ever.
    probe_started: AtomicU64,
}

impl Breaker {
    /// Whether this request may call Redis. `now.mono_nanos` must not be 0 (0 means "none").
    pub(super) fn allow(&self, now: Now, stale: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now.mono_nanos < until {
            return false;
        }
        let started = self.probe_started.load(Ordering::Acquire);
        if started != 0 && now.mono_nanos.saturating_sub(started) < stale {
            return false;
        }
        self.probe_started.compare_exchange(started, now.mono_nanos, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// A call succeeded: closed.
    pub(super) fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probe_started.store(0, Ordering::Release);
    }

    /// A call failed (I/O error or timeout): opens after `threshold` in a row, or at once when
    /// the call was the probe.
    pub(super) fn failure(&self, now: Now, threshold: u32, cooldown: Duration) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= threshold || self.probe_started.load(Ordering::Acquire) != 0 {
            let nanos = nanos(cooldown);
            self.open_until.store(now.mono_nanos.saturating_add(nanos).max(1), Ordering::Release);
        }
        self.probe_started.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn at(secs: u64) -> Now {
        Now { mono_nanos: secs * SEC, unix_secs: 0 }
    }

    #[test]
    fn opens_after_threshold_then_lets_one_probe_through_per_cooldown() {
        let b = Breaker::default();
        let cooldown = Duration::from_secs(10);
        for _ in 0..2 {
            b.failure(at(1), 3, cooldown);
            assert!(b.allow(at(1), SEC), "closed below the threshold");
        }
        b.failure(at(1), 3, cooldown);
        assert!(!b.allow(at(1), SEC) && !b.allow(at(10), SEC), "open for the cooldown");
        assert!(b.allow(at(11), SEC), "the probe");
        assert!(!b.allow(at(11), SEC), "one probe at a time");
        // The probe fails: open again for a whole cooldown.
        b.failure(at(11), 3, cooldown);
        assert!(!b.allow(at(20), SEC));
        assert!(b.allow(at(21), SEC));
        b.success();
        assert!(b.allow(at(21), SEC) && b.allow(at(21), SEC), "closed");
    }

    #[test]
    fn a_probe_dropped_unfinished_is_forgotten_once_stale() {
        let b = Breaker::default();
        b.failure(at(1), 1, Duration::from_secs(1));
        assert!(b.allow(at(2), 2 * SEC));
        assert!(!b.allow(at(3), 2 * SEC), "probe in flight");
        assert!(b.allow(at(4), 2 * SEC), "stale: a new probe");
    }
}

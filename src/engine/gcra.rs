//! The token bucket, as GCRA (generic cell rate algorithm) on one `AtomicU64`.
//!
//! State is the *theoretical arrival time* (TAT) in monotonic nanoseconds. With emission interval
//! `T = 1/rate` and tolerance `tau = (burst - 1) * T`, a request at `now` is admitted iff
//! `max(TAT, now) - now <= tau`, and then `TAT = max(TAT, now) + T`. A state of 0 is a full bucket.
//! This is the algorithm governor uses; the pure step ([`Gcra::step`]) takes time as an argument and
//! is checked against governor in the property tests.
//!
//! Invariant: from a full bucket, at most `burst + floor((t1 - t0) / T)` requests are admitted
//! in any interval `[t0, t1]`, under any interleaving of threads (every update is one CAS).

use crate::model::Throttle;
use crate::view::BucketView;
use std::sync::atomic::{AtomicU64, Ordering};

/// A bucket's parameters, derived once from a [`Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval `T`, nanoseconds.
    t: u64,
    /// Tolerance `tau = (burst - 1) * T`, nanoseconds.
    tau: u64,
    burst: u32,
}

/// What [`Gcra::acquire`] changed, to undo it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Undo {
    before: u64,
    after: u64,
}

impl Gcra {
    pub(crate) fn new(throttle: Throttle) -> Self {
        let t = throttle.emission_interval_nanos();
        Self { t, tau: t * u64::from(throttle.burst() - 1), burst: throttle.burst() }
    }

    /// Emission interval and tolerance, nanoseconds (for backends that keep buckets elsewhere).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn params(&self) -> (u64, u64) {
        (self.t, self.tau)
    }

    /// This bucket's share on one of `replicas` processes: rate and burst divided (burst at
    /// least 1), for a local fallback while the shared store is unreachable.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn share(&self, replicas: u32) -> Self {
        let replicas = replicas.max(1);
        let burst = (self.burst / replicas).max(1);
        let t = self.t.saturating_mul(u64::from(replicas));
        Self { t, tau: t.saturating_mul(u64::from(burst - 1)), burst }
    }

    /// One decision on the state `tat` at `now`: `Ok(new_tat)` or `Err(nanos until admitted)`.
    pub(crate) fn step(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tau {
            Err(ahead - self.tau)
        } else {
            Ok(start + self.t)
        }
    }

    /// Takes one token, atomically. `Ok` carries the undo record for [`undo`](Self::undo);
    /// `Err` the nanoseconds until a token is available.
    pub(crate) fn acquire(&self, state: &AtomicU64, now: u64) -> Result<Undo, u64> {
        let mut cur = state.load(Ordering::Acquire);
        loop {
            let next = self.step(cur, now)?;
            match state.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Undo { before: cur, after: next }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back a token taken by [`acquire`](Self::acquire) for a request that a later check
    /// refused, if no other request has changed the bucket since. If one has, the token stays
    /// spent: giving back `T` after another request moved `TAT` forward from `now` could admit
    /// more than `burst` at once, and a lost token can only under-admit.
    pub(crate) fn undo(state: &AtomicU64, undo: Undo) {
        let _ = state.compare_exchange(undo.after, undo.before, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// What the bucket looks like at `now` (read only).
    pub(crate) fn view(&self, state: &AtomicU64, now: u64) -> BucketView {
        let tat = state.load(Ordering::Acquire).max(now);
        let ahead = tat - now;
        let remaining = if ahead > self.tau + self.t { 0 } else { (self.tau + self.t - ahead) / self.t };
        BucketView { burst: self.burst, remaining, full_in_nanos: ahead, window_nanos: self.tau + self.t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn gcra(rate: f64, burst: u32) -> Gcra {
        Gcra::new(Throttle::new(rate, burst).unwrap())
    }

    #[test]
    fn full_bucket_admits_exactly_burst() {
        let g = gcra(1.0, 5);
        let s = AtomicU64::new(0);
        let now = 10_000_000_000;
        let admitted = (0..20).filter(|_| g.acquire(&s, now).is_ok()).count();
        assert_eq!(admitted, 5);
        // The next token comes after exactly one interval.
        assert_eq!(g.acquire(&s, now), Err(1_000_000_000));
        assert!(g.acquire(&s, now + 1_000_000_000).is_ok());
    }

    #[test]
    fn undo_restores_the_token_only_if_nobody_moved_the_bucket() {
        let g = gcra(1.0, 2);
        let s = AtomicU64::new(0);
        let now = 5_000_000_000;
        let u = g.acquire(&s, now).unwrap();
        Gcra::undo(&s, u);
        assert_eq!(g.view(&s, now).remaining, 2);
        Gcra::undo(&s, u);
        assert_eq!(g.view(&s, now).remaining, 2, "a second undo changes nothing");
    }

    #[test]
    fn undo_after_a_later_acquire_cannot_overfill() {
        // burst 1, T = 10 ns. A takes the token at 100; B takes the next one at 115; A's undo
        // must not hand B's successor a token at 115 (two admitted at one instant with burst 1).
        let g = Gcra { t: 10, tau: 0, burst: 1 };
        let s = AtomicU64::new(50);
        let a = g.acquire(&s, 100).unwrap();
        g.acquire(&s, 115).unwrap();
        Gcra::undo(&s, a);
        assert!(g.acquire(&s, 115).is_err());
    }

    #[test]
    fn view_reports_remaining_and_reset() {
        let g = gcra(10.0, 4);
        let s = AtomicU64::new(0);
        assert_eq!(g.view(&s, 0), BucketView { burst: 4, remaining: 4, full_in_nanos: 0, window_nanos: 400_000_000 });
        g.acquire(&s, 0).unwrap();
        g.acquire(&s, 0).unwrap();
        let v = g.view(&s, 0);
        assert_eq!((v.remaining, v.full_in_nanos), (2, 200_000_000));
    }

    #[test]
    fn flood_asking_at_every_token_gets_exactly_burst_plus_rate_t() {
        for (rate, burst) in [(1.0, 1), (7.0, 3), (1000.0, 500), (0.5, 10)] {
            let g = gcra(rate, burst);
            let s = AtomicU64::new(0);
            let t0 = 3_000_000_000u64;
            let mut admitted = 0u64;
            for k in 0..2_000u64 {
                let now = t0 + k * g.t / 2;
                while g.acquire(&s, now).is_ok() {
                    admitted += 1;
                }
                assert_eq!(admitted, u64::from(burst) + (now - t0) / g.t, "rate {rate} burst {burst} k {k}");
            }
        }
    }

    proptest! {
        /// Never more than `burst + floor(rate * t)` admitted, whatever the arrival times, with
        /// `rate` the configured (real-valued) rate, not the rounded interval.
        #[test]
        fn flood_admits_burst_plus_rate_times_t(rate in 0.5f64..2000.0, burst in 1u32..200, steps in proptest::collection::vec(0u64..50_000_000, 1..300)) {
            let g = gcra(rate, burst);
            let s = AtomicU64::new(0);
            // The flood starts at t0 with a full bucket.
            let t0 = 1_000_000_000_000u64;
            let mut now = t0;
            let mut admitted = 0u64;
            for (i, step) in steps.into_iter().enumerate() {
                if i > 0 {
                    now += step;
                }
                while g.acquire(&s, now).is_ok() {
                    admitted += 1;
                }
                let exact = u64::from(burst) + (rate * (now - t0) as f64 / 1e9 + 1e-9).floor() as u64;
                prop_assert!(admitted <= exact, "{} admitted > burst + floor(rate * t) = {}", admitted, exact);
            }
        }

        /// The same answers as governor for the same arrival times.
        #[test]
        fn agrees_with_governor(per_sec in proptest::sample::select(vec![1u32, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000]), burst in 1u32..50, gaps in proptest::collection::vec(0u64..20_000_000, 1..200)) {
            use governor::clock::FakeRelativeClock;
            let clock = FakeRelativeClock::default();
            let quota = governor::Quota::per_second(NonZeroU32::new(per_sec).unwrap()).allow_burst(NonZeroU32::new(burst).unwrap());
            let gov = governor::RateLimiter::direct_with_clock(quota, clock.clone());
            let g = gcra(f64::from(per_sec), burst);
            let s = AtomicU64::new(0);
            let mut now = 0u64;
            for gap in gaps {
                clock.advance(Duration::from_nanos(gap));
                now += gap;
                prop_assert_eq!(gov.check().is_ok(), g.acquire(&s, now).is_ok());
            }
        }
    }
}

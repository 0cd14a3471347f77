//! What the backend has done so far: [`RedisStats`] and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the backend has done so far (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Requests decided.
    pub checks: u64,
    /// Round trips to Redis made for requests (scripts), successful or not.
    pub round_trips: u64,
    /// Requests answered by the local deny cache.
    pub deny_cache_hits: u64,
    /// Requests whose quota came from a local lease.
    pub lease_hits: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Requests decided by the failure policy.
    pub fallback_decisions: u64,
    /// Requests admitted while Redis was unreachable and since written to it.
    pub replayed: u64,
    /// Keys whose state this replica holds now.
    pub keys: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) checks: AtomicU64,
    pub(super) round_trips: AtomicU64,
    pub(super) deny_cache_hits: AtomicU64,
    pub(super) lease_hits: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) fallback_decisions: AtomicU64,
    pub(super) replayed: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with `keys` keys held.
    pub(super) fn snapshot(&self, keys: u64) -> RedisStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStats {
            checks: l(&self.checks),
            round_trips: l(&self.round_trips),
            deny_cache_hits: l(&self.deny_cache_hits),
            lease_hits: l(&self.lease_hits),
            errors: l(&self.errors),
            fallback_decisions: l(&self.fallback_decisions),
            replayed: l(&self.replayed),
            keys,
        }
    }
}

//! The failure policy's answer when Redis cannot be reached (a call failed or timed out, or the
//! circuit breaker is open): per limit class, refuse ([`FailurePolicy::FailClosed`]), admit
//! ([`FailurePolicy::FailOpen`]), or decide on local counters holding this replica's share
//! ([`FailurePolicy::LocalFallback`]). Quota usage admitted is recorded on the key for replay.

use super::customer::CustomerQuota;
use super::lease::{pack, unpack, RedisKey, WriteQueue};
use super::script::Spec;
use super::settings::{FailurePolicy, Settings};
use crate::engine::{Gcra, Now, PeriodInfo, QuotaRule, Undo};
use crate::engine::{Refund, Refused};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a request asks of the quotas, for the failure policy.
#[derive(Clone, Copy)]
pub(super) struct QuotaAsk<'a> {
    /// The key's quota and its current period.
    pub(super) key: Option<(&'a QuotaRule, PeriodInfo)>,
    /// The key's quota was taken from the lease already.
    pub(super) from_lease: bool,
    /// The customer's quota.
    pub(super) customer: Option<&'a CustomerQuota>,
}

/// The local buckets standing in for Redis's during outages, by bucket name (made during
/// outages only).
#[derive(Debug, Default)]
pub(super) struct Fallback {
    buckets: parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Fallback {
    /// The local bucket standing in for the Redis bucket `name`.
    fn bucket(&self, name: &str) -> Arc<AtomicU64> {
        let mut map = self.buckets.lock();
        if let Some(b) = map.get(name) {
            return Arc::clone(b);
        }
        let b = Arc::new(AtomicU64::new(0));
        map.insert(name.to_owned(), Arc::clone(&b));
        b
    }

    /// Drops the buckets that no request holds and that are full again at `mono_nanos`.
    pub(super) fn prune(&self, mono_nanos: u64) {
        self.buckets.lock().retain(|_, b| Arc::strong_count(b) > 1 || b.load(Ordering::Acquire) > mono_nanos);
    }

    /// The failure policy's answer for a request with buckets `specs` and, with a `key`, the
    /// quotas of `ask` (the key's taken from the lease already when `ask.from_lease`); a request
    /// admitted without Redis is recorded for replay (the key's on the key, the customer's in
    /// `returns`).
    pub(super) fn decide(
        &self,
        s: &Settings,
        specs: &[Spec],
        key: Option<&RedisKey>,
        ask: QuotaAsk<'_>,
        now: Now,
        returns: &WriteQueue,
    ) -> Result<Option<Refund>, Refused> {
        let mut taken: Vec<(Arc<AtomicU64>, Undo)> = Vec::new();
        let release = |taken: &[(Arc<AtomicU64>, Undo)]| {
            for (state, undo) in taken {
                Gcra::undo(state, *undo);
            }
        };
        match s.throttle_policy {
            FailurePolicy::FailClosed if !specs.is_empty() => return Err(Refused::Unavailable),
            FailurePolicy::LocalFallback => {
                for spec in specs {
                    let state = self.bucket(&spec.name);
                    match spec.gcra.share(s.replicas).acquire(&state, now.mono_nanos) {
                        Ok(undo) => taken.push((state, undo)),
                        Err(wait_nanos) => {
                            release(&taken);
                            return Err(Refused::Throttled { scope: spec.scope, wait_nanos });
                        }
                    }
                }
            }
            _ => {}
        }
        let key_quota = match (ask.key, key) {
            (Some((rule, period)), Some(key)) if !ask.from_lease => Some((rule, period, key)),
            _ => None,
        };
        if let Some((rule, period, key)) = key_quota {
            if !Self::key_admits(s, key, period) {
                release(&taken);
                return Err(match s.quota_policy {
                    FailurePolicy::FailClosed => Refused::Unavailable,
                    _ => Refused::Quota(rule.view_used(now.unix_secs, period.limit)),
                });
            }
        }
        // The customer's quota, after the key's: a refusal takes the key's count back.
        if let Some(c) = ask.customer {
            if let Err(refused) = c.fallback_take(s, now) {
                release(&taken);
                if let (Some((_, period, key)), FailurePolicy::LocalFallback) = (key_quota, s.quota_policy) {
                    let _ = key.fallback_used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        let (t, n) = unpack(v);
                        (t == period.tag && n > 0).then(|| pack(t, n - 1))
                    });
                }
                return Err(refused);
            }
            c.replay(returns);
        }
        let Some((_, period, key)) = key_quota else { return Ok(None) };
        // Recorded for replay when Redis is back.
        key.outage_end.store(period.end, Ordering::Release);
        let _ = key.outage.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (t, n) = unpack(v);
            Some(if t == period.tag { pack(t, n + 1) } else { pack(period.tag, 1) })
        });
        Ok(None)
    }

    /// Whether the key's quota policy admits one more request of `period` (counted on the key
    /// under [`FailurePolicy::LocalFallback`]).
    fn key_admits(s: &Settings, key: &RedisKey, period: PeriodInfo) -> bool {
        match s.quota_policy {
            FailurePolicy::FailClosed => false,
            FailurePolicy::FailOpen => true,
            FailurePolicy::LocalFallback => {
                // This replica's share of what was left when Redis was last seen.
                let left = period.limit.saturating_sub(key.last_used.load(Ordering::Acquire));
                let share = left / u64::from(s.replicas);
                key.fallback_used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        let (t, n) = unpack(v);
                        let n = if t == period.tag { n } else { 0 };
                        (n < share).then(|| pack(period.tag, n + 1))
                    })
                    .is_ok()
            }
        }
    }
}

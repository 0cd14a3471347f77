//! The failure policy's answer when Redis cannot be reached (a call failed or timed out, or the
//! circuit breaker is open): per limit class, refuse ([`FailurePolicy::FailClosed`]), admit
//! ([`FailurePolicy::FailOpen`]), or decide on local counters holding this replica's share
//! ([`FailurePolicy::LocalFallback`]). Quota usage admitted is recorded on the key for replay.

use super::lease::{pack, unpack, RedisKey};
use super::script::Spec;
use super::settings::{FailurePolicy, Settings};
use crate::engine::{Gcra, Now, PeriodInfo, QuotaRule, Undo};
use crate::engine::{Refund, Refused};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// `quota` (already taken from the lease when `from_lease`).
    pub(super) fn decide(
        &self,
        s: &Settings,
        specs: &[Spec],
        key: Option<&RedisKey>,
        quota: Option<(&QuotaRule, PeriodInfo)>,
        from_lease: bool,
        now: Now,
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
        let (Some((rule, period)), Some(key)) = (quota, key) else { return Ok(None) };
        if from_lease {
            return Ok(None);
        }
        let admit = match s.quota_policy {
            FailurePolicy::FailClosed => false,
            FailurePolicy::FailOpen => true,
            FailurePolicy::LocalFallback => {
                // This replica's share of what was left when Redis was last seen.
                let left = period.limit.saturating_sub(key.last_used.load(Ordering::Acquire));
                let share = left / u64::from(s.replicas);
                let mut admit = false;
                let _ = key.fallback_used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    let (t, n) = unpack(v);
                    let n = if t == period.tag { n } else { 0 };
                    admit = n < share;
                    admit.then(|| pack(period.tag, n + 1))
                });
                admit
            }
        };
        if !admit {
            release(&taken);
            return Err(match s.quota_policy {
                FailurePolicy::FailClosed => Refused::Unavailable,
                _ => Refused::Quota(rule.view_used(now.unix_secs, period.limit)),
            });
        }
        // Recorded for replay when Redis is back.
        key.outage_end.store(period.end, Ordering::Release);
        let _ = key.outage.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (t, n) = unpack(v);
            Some(if t == period.tag { pack(t, n + 1) } else { pack(period.tag, 1) })
        });
        Ok(None)
    }
}

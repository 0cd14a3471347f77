//! A customer's state on this replica ([`RedisCustomer`]: the names of its bucket and quota
//! counters, its count in Redis when last seen, its requests in flight) and the customer's part
//! of one check ([`CustomerQuota`]).
//!
//! A customer's quota is exact across replicas: a request of a key whose customer has a quota
//! is always decided by the check script, which counts the key's quota (one request, never a
//! lease) and the customer's together, all-or-nothing. Nothing of a customer's quota is leased
//! or cached: a refusal by the customer's quota or throttle is not kept in any deny cache, so the
//! key is admitted again as soon as the customer has room.

use super::lease::{pack, unpack, WriteQueue};
use super::script::{quota_key, ttl_secs, CustomerArgs, Names};
use super::settings::{FailurePolicy, Settings};
use crate::engine::Refused;
use crate::engine::{BackendCustomer, CompiledCustomer, CustomerState, Now, PeriodInfo, QuotaRule};
use std::any::Any;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// One customer's state on this replica, shared by its keys (and by the versions of the
/// customer: a new version keeps it).
#[derive(Debug)]
pub(super) struct RedisCustomer {
    pub(super) id: Arc<str>,
    /// The customer's bucket in Redis.
    pub(super) bucket: String,
    /// The stem of the customer's quota counters.
    pub(super) quota_stem: String,
    /// The customer's quota count in Redis when last seen.
    pub(super) last_used: AtomicU64,
    /// Requests of the period admitted by the local fallback since Redis last answered (tag,
    /// count): bounds the fallback to this replica's share.
    pub(super) fallback_used: AtomicU64,
    /// Requests of the customer in the inner service in this replica.
    inflight: AtomicU32,
}

impl BackendCustomer for RedisCustomer {
    fn inflight(&self) -> &AtomicU32 {
        &self.inflight
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl RedisCustomer {
    /// The state of the customer `rule` compiles: `previous` (its earlier version's) when it is
    /// this backend's, so that its requests in flight and counts carry over.
    pub(super) fn state(names: &Names, rule: &CompiledCustomer, previous: Option<&CustomerState>) -> CustomerState {
        let id = rule.customer.id_arc();
        if let Some(p) = previous.filter(|p| p.as_any().downcast_ref::<Self>().is_some_and(|c| c.id == *id)) {
            return Arc::clone(p);
        }
        Arc::new(Self {
            id: Arc::clone(id),
            bucket: names.customer(id),
            quota_stem: names.customer_quota_stem(id),
            last_used: AtomicU64::new(0),
            fallback_used: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
        })
    }

    /// The bucket name of the customer `rule` compiles, whose state is `state` (computed when
    /// the state is not this backend's).
    pub(super) fn bucket_of(rule: &CompiledCustomer, state: &CustomerState, names: &Names) -> String {
        match state.as_any().downcast_ref::<Self>() {
            Some(c) => c.bucket.clone(),
            None => names.customer(rule.customer.id()),
        }
    }
}

/// The customer's quota of one request: the customer, its current period and counter.
pub(super) struct CustomerQuota {
    rule: Arc<CompiledCustomer>,
    state: CustomerState,
    pub(super) period: PeriodInfo,
    /// The counter of the current period.
    pub(super) counter: String,
}

impl CustomerQuota {
    /// The customer quota a request of the customer `rule` compiles (its state `state`) counts
    /// in at `now`, if it has one.
    pub(super) fn of(rule: &Arc<CompiledCustomer>, state: &CustomerState, names: &Names, now: Now) -> Option<Self> {
        let period = rule.quota.as_ref()?.current(now.unix_secs);
        let counter = match state.as_any().downcast_ref::<RedisCustomer>() {
            Some(c) => quota_key(&c.quota_stem, period.tag),
            None => quota_key(&names.customer_quota_stem(rule.customer.id()), period.tag),
        };
        Some(Self { rule: Arc::clone(rule), state: Arc::clone(state), period, counter })
    }

    /// The customer's quota rule.
    pub(super) fn rule(&self) -> Option<&QuotaRule> {
        self.rule.quota.as_ref()
    }

    fn state(&self) -> Option<&RedisCustomer> {
        self.state.as_any().downcast_ref::<RedisCustomer>()
    }

    /// The script's arguments for it.
    pub(super) fn args(&self, now: Now) -> CustomerArgs {
        CustomerArgs {
            counter: self.counter.clone(),
            limit: self.period.limit,
            ttl_secs: ttl_secs(self.period.end + 86_400, now.unix_secs),
        }
    }

    /// Redis answered: the customer's quota counts `used`. What the fallback admitted in this
    /// period is not forgotten: those requests may still be queued for replay (not in `used`
    /// yet), and forgetting them would let a second outage of the period admit them again (over
    /// the limit, found by review). Counting them twice once they are written under-admits,
    /// which the backend allows; a new period starts the fallback over.
    pub(super) fn seen(&self, used: u64) {
        if let Some(c) = self.state() {
            c.last_used.store(used, Ordering::Release);
        }
    }

    /// The refusal of a customer quota that counts `used`.
    pub(super) fn refused(&self, now: Now, used: u64) -> Refused {
        match self.rule() {
            Some(rule) => Refused::Quota(rule.view_used(now.unix_secs, used)),
            None => Refused::Unavailable,
        }
    }

    /// The failure policy's answer for the customer's quota while Redis cannot be reached:
    /// refuse, admit, or admit this replica's share of what was left when Redis was last seen.
    /// Counts the request taken: called after every other limit admitted it.
    pub(super) fn fallback_take(&self, s: &Settings, now: Now) -> Result<(), Refused> {
        let admit = match s.quota_policy {
            FailurePolicy::FailClosed => return Err(Refused::Unavailable),
            FailurePolicy::FailOpen => true,
            FailurePolicy::LocalFallback => {
                let Some(c) = self.state() else { return Err(Refused::Unavailable) };
                let share =
                    self.period.limit.saturating_sub(c.last_used.load(Ordering::Acquire)) / u64::from(s.replicas);
                let tag = self.period.tag;
                c.fallback_used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        let (t, n) = unpack(v);
                        let n = if t == tag { n } else { 0 };
                        (n < share).then(|| pack(tag, n + 1))
                    })
                    .is_ok()
            }
        };
        if admit {
            Ok(())
        } else {
            Err(self.refused(now, self.period.limit))
        }
    }

    /// Queues a request admitted without Redis for replay (added to the counter when Redis is
    /// back, at least once).
    pub(super) fn replay(&self, returns: &WriteQueue) {
        returns.push(self.counter.clone(), 1, self.period.end + 86_400);
    }
}

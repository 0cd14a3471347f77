//! One key's state on this replica ([`RedisKey`]): its quota lease, its local deny cache, and
//! the usage it admitted while Redis was unreachable; and the queue of counts to write back to
//! Redis ([`WriteQueue`]).
//!
//! Counts of a quota period are kept as one word with the period's tag ([`pack`]), so a count of
//! an older period is recognised and given back, never spent in the new one. Times are monotonic
//! nanoseconds of the deciding request's [`Now`] (0: never).

use super::script::quota_key;
use crate::engine::{BackendKey, Refused};
use crate::engine::{CompiledPlan, Now};
use crate::view::QuotaView;
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Packs a period tag and a count into one word (the tag's 24 bits above a 40-bit count).
pub(super) fn pack(tag: u64, n: u64) -> u64 {
    (tag << 40) | n.min((1 << 40) - 1)
}

/// The period tag and the count of a [`pack`]ed word.
pub(super) fn unpack(v: u64) -> (u64, u64) {
    (v >> 40, v & ((1 << 40) - 1))
}

/// Counts to write back: (counter name, amount to add, unix time the counter expires); negative
/// amounts give leases back (and leave the expiry alone).
#[derive(Debug, Default)]
pub(super) struct WriteQueue(parking_lot::Mutex<Vec<(String, i64, i64)>>);

impl WriteQueue {
    pub(super) fn push(&self, counter: String, n: i64, expire_at: i64) {
        self.0.lock().push((counter, n, expire_at));
    }

    /// Everything queued, leaving the queue empty.
    pub(super) fn take(&self) -> Vec<(String, i64, i64)> {
        std::mem::take(&mut *self.0.lock())
    }

    /// Takes the queued lease returns (negative amounts) of the counters of `stem`, as amounts
    /// to subtract.
    pub(super) fn take_returns_of(&self, stem: &str) -> Vec<(String, i64)> {
        let mut queue = self.0.lock();
        let mut taken = Vec::new();
        queue.retain(|(counter, n, _)| {
            let of_stem = *n < 0 && counter.strip_prefix(stem).is_some_and(|rest| rest.starts_with(':'));
            if of_stem {
                taken.push((counter.clone(), -*n));
            }
            !of_stem
        });
        taken
    }

    /// Queues again what could not be written.
    pub(super) fn extend(&self, kept: Vec<(String, i64, i64)>) {
        self.0.lock().extend(kept);
    }
}

/// Ledger counts to write to Redis: (key id, plan id, day, requests; negative: refunds).
pub(super) type LedgerEntry = (Arc<str>, Arc<str>, i32, i64);

/// The ledger counts of closed days (and late or refunded requests) waiting for the next write.
#[derive(Debug, Default)]
pub(super) struct LedgerQueue(parking_lot::Mutex<Vec<LedgerEntry>>);

impl LedgerQueue {
    pub(super) fn push(&self, entry: LedgerEntry) {
        self.0.lock().push(entry);
    }

    pub(super) fn take(&self) -> Vec<LedgerEntry> {
        std::mem::take(&mut *self.0.lock())
    }

    pub(super) fn extend(&self, kept: Vec<LedgerEntry>) {
        self.0.lock().extend(kept);
    }
}

/// Clears a key's "refill in flight" flag however the request that set it ends (answered or
/// dropped).
pub(super) struct Refilling(pub(super) Option<Arc<RedisKey>>);

impl Drop for Refilling {
    fn drop(&mut self) {
        if let Some(k) = &self.0 {
            k.refilling.store(false, Ordering::Release);
        }
    }
}

/// One key's state under one plan, on this replica.
pub(super) struct RedisKey {
    pub(super) id: Arc<str>,
    /// The plan the state counts for (its ledger's plan).
    pub(super) plan_id: Arc<str>,
    /// Requests forwarded and not yet written to the ledger in Redis: (day + 1, count).
    pub(super) day_used: AtomicU64,
    /// The key's plan bucket in Redis.
    pub(super) key_bucket: String,
    /// The stem of the key's quota counters.
    pub(super) quota_stem: String,
    /// Requests of the current period leased from Redis and not yet used (tag, count).
    pub(super) lease: AtomicU64,
    /// The key's count in Redis when last seen (leases included).
    pub(super) last_used: AtomicU64,
    /// Monotonic nanoseconds until which the key is refused locally, and why (a throttle).
    deny_until: AtomicU64,
    deny: parking_lot::Mutex<Option<Refused>>,
    /// Monotonic nanoseconds until which the quota is known to be spent (the period's end), and
    /// the view to answer with. A lease this replica still holds is used first.
    quota_deny_until: AtomicU64,
    quota_deny: parking_lot::Mutex<Option<QuotaView>>,
    /// Used since the last idle round.
    pub(super) touched: AtomicBool,
    /// Requests admitted while Redis was unreachable and not yet written to it (tag, count).
    pub(super) outage: AtomicU64,
    /// Unix seconds at which the period of `outage` ends.
    pub(super) outage_end: AtomicI64,
    /// Requests of the period admitted by the local fallback since Redis last answered for this
    /// key (tag, count): bounds the fallback to this replica's share however long the outage.
    pub(super) fallback_used: AtomicU64,
    /// A lease refill is in flight: other requests ask for one request only, so that one replica
    /// holds at most one batch (plus one per request in flight).
    pub(super) refilling: AtomicBool,
    /// The plan version the deny cache was filled under (a new version clears it).
    plan: parking_lot::Mutex<Arc<CompiledPlan>>,
    /// Usage updates this replica took part in (see `revoke.rs`): a reply to a call sent before
    /// the last one neither caches a refusal nor keeps a lease.
    revocations: AtomicU64,
    /// The id of the last of those updates.
    last_revocation: parking_lot::Mutex<Option<Arc<str>>>,
    /// The key's requests in the inner service in this replica (concurrency caps are per replica).
    inflight: AtomicU32,
}

impl fmt::Debug for RedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl BackendKey for RedisKey {
    fn key_id(&self) -> &Arc<str> {
        &self.id
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn inflight(&self) -> Option<&AtomicU32> {
        Some(&self.inflight)
    }
}

impl RedisKey {
    /// A key holding nothing yet, under `plan`.
    pub(super) fn new(id: &Arc<str>, key_bucket: String, quota_stem: String, plan: &Arc<CompiledPlan>) -> Self {
        Self {
            id: Arc::clone(id),
            plan_id: Arc::clone(plan.plan.id_arc()),
            day_used: AtomicU64::new(0),
            key_bucket,
            quota_stem,
            lease: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            deny_until: AtomicU64::new(0),
            deny: parking_lot::Mutex::new(None),
            quota_deny_until: AtomicU64::new(0),
            quota_deny: parking_lot::Mutex::new(None),
            touched: AtomicBool::new(true),
            inflight: AtomicU32::new(0),
            outage: AtomicU64::new(0),
            outage_end: AtomicI64::new(0),
            fallback_used: AtomicU64::new(0),
            refilling: AtomicBool::new(false),
            plan: parking_lot::Mutex::new(Arc::clone(plan)),
            revocations: AtomicU64::new(0),
            last_revocation: parking_lot::Mutex::new(None),
        }
    }

    /// Records that the key is now served under `plan` (at unix time `unix`). A key with limits
    /// of its own (or a customer) gets a new compilation at every revalidation: what the deny
    /// cache and the lease depend on is compared, not the pointer. Other limits (the key's
    /// throttle, its quota's limit or period: an override, an anchor) clear the deny cache, as
    /// what was refused under the old ones may pass now; another quota, or a customer quota
    /// (counted with the key's in Redis, never from a lease), gives the lease back, so that no
    /// request is admitted from a lease over a lowered limit.
    pub(super) fn set_plan(&self, plan: &Arc<CompiledPlan>, unix: i64, returns: &WriteQueue) {
        let mut p = self.plan.lock();
        if Arc::ptr_eq(&p, plan) {
            return;
        }
        let limits = |c: &CompiledPlan| (c.throttle.map(|g| g.params()), c.quota.as_ref().map(|q| q.current(unix)));
        let (old, new) = (limits(&p), limits(plan));
        *p = Arc::clone(plan);
        drop(p);
        if old != new {
            self.deny_until.store(0, Ordering::Release);
            self.quota_deny_until.store(0, Ordering::Release);
        }
        let customer_quota = plan.customer.as_ref().is_some_and(|c| c.rule.quota.is_some());
        if old.1 != new.1 || customer_quota {
            self.give_back_lease(returns);
        }
    }

    /// Takes one request of period `tag` from the lease; a lease of an older period is given
    /// back (queued) first.
    pub(super) fn take_lease(&self, returns: &WriteQueue, tag: u64) -> bool {
        let mut cur = self.lease.load(Ordering::Acquire);
        loop {
            let (t, n) = unpack(cur);
            if t != tag {
                if n > 0 && self.lease.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    returns.push(quota_key(&self.quota_stem, t), -(n as i64), 0);
                }
                return false;
            }
            if n == 0 {
                return false;
            }
            match self.lease.compare_exchange_weak(cur, pack(t, n - 1), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `n` requests of period `tag` to the lease (dropping a lease of another period,
    /// which is given back).
    pub(super) fn add_lease(&self, returns: &WriteQueue, tag: u64, n: u64) {
        if n == 0 {
            return;
        }
        let mut cur = self.lease.load(Ordering::Acquire);
        loop {
            let (t, have) = unpack(cur);
            let next = if t == tag { pack(tag, have + n) } else { pack(tag, n) };
            match self.lease.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if t != tag && have > 0 {
                        returns.push(quota_key(&self.quota_stem, t), -(have as i64), 0);
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Counts one forwarded request of `day` for the ledger: one atomic add, unless the day
    /// changed (the closed day's count is queued) or the request is of a day already closed.
    pub(super) fn count_day(&self, day: i32, queue: &LedgerQueue) {
        let tag = u64::try_from(day).unwrap_or(0) + 1;
        let mut cur = self.day_used.load(Ordering::Acquire);
        loop {
            let (t, n) = unpack(cur);
            let next = match t.cmp(&tag) {
                std::cmp::Ordering::Equal => pack(t, n + 1),
                std::cmp::Ordering::Less => pack(tag, 1),
                std::cmp::Ordering::Greater => {
                    queue.push((Arc::clone(&self.id), Arc::clone(&self.plan_id), day, 1));
                    return;
                }
            };
            match self.day_used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if t != tag && n > 0 {
                        let closed = i32::try_from(t - 1).unwrap_or(i32::MAX);
                        queue.push((Arc::clone(&self.id), Arc::clone(&self.plan_id), closed, n as i64));
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back one request of `day` from the ledger (refund policy).
    pub(super) fn uncount_day(&self, day: i32, queue: &LedgerQueue) {
        let tag = u64::try_from(day).unwrap_or(0) + 1;
        let taken = self
            .day_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let (t, n) = unpack(cur);
                (t == tag && n > 0).then(|| pack(t, n - 1))
            })
            .is_ok();
        if !taken {
            queue.push((Arc::clone(&self.id), Arc::clone(&self.plan_id), day, -1));
        }
    }

    /// Moves the day's count not yet written into `queue` (the day stays, its count is 0).
    pub(super) fn drain_day(&self, queue: &LedgerQueue) {
        let old = self.day_used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            let (t, n) = unpack(cur);
            (n > 0).then(|| pack(t, 0))
        });
        if let Ok(cur) = old {
            let (t, n) = unpack(cur);
            let day = i32::try_from(t.saturating_sub(1)).unwrap_or(i32::MAX);
            queue.push((Arc::clone(&self.id), Arc::clone(&self.plan_id), day, n as i64));
        }
    }

    /// Records that this replica takes part in usage update `id` and takes the whole lease
    /// (returned: period tag and count): a cached quota refusal is forgotten, and what was
    /// decided before (replies to calls sent before, refunds of requests admitted before) is
    /// stale ([`RedisKey::revocations`]).
    pub(super) fn revoke(&self, id: &str) -> (u64, u64) {
        let mut last = self.last_revocation.lock();
        *last = Some(Arc::from(id));
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.quota_deny_until.store(0, Ordering::Release);
        unpack(self.lease.swap(0, Ordering::AcqRel))
    }

    /// Adds `n` requests of period `tag` to the lease, unless a usage update came since the
    /// count of updates was `seen` (then they are not this replica's to spend). Returns
    /// whether they were added.
    pub(super) fn add_lease_since(&self, seen: u64, returns: &WriteQueue, tag: u64, n: u64) -> bool {
        let _no_update_meanwhile = self.last_revocation.lock();
        if self.revocations.load(Ordering::Acquire) != seen {
            return false;
        }
        self.add_lease(returns, tag, n);
        true
    }

    /// Queues one request of period `tag` to give back to Redis (a refund without leasing),
    /// unless a usage update came since `seen` (it set the counter without that request).
    pub(super) fn give_back_one_since(&self, seen: u64, returns: &WriteQueue, tag: u64) {
        let _no_update_meanwhile = self.last_revocation.lock();
        if self.revocations.load(Ordering::Acquire) == seen {
            returns.push(quota_key(&self.quota_stem, tag), -1, 0);
        }
    }

    /// Caches a quota refusal, unless a usage update came since `seen` (its count is for the
    /// next request to see).
    pub(super) fn deny_quota_since(&self, seen: u64, until: u64, view: QuotaView) {
        let _no_update_meanwhile = self.last_revocation.lock();
        if self.revocations.load(Ordering::Acquire) == seen {
            self.deny(until, Refused::Quota(view));
        }
    }

    /// How many usage updates this replica took part in for the key (compare before and after
    /// a call).
    pub(super) fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// The id of the last usage update this replica took part in for the key.
    pub(super) fn last_revocation(&self) -> Option<Arc<str>> {
        self.last_revocation.lock().clone()
    }

    /// Queues the whole lease to go back to Redis.
    pub(super) fn give_back_lease(&self, returns: &WriteQueue) {
        let (t, n) = unpack(self.lease.swap(0, Ordering::AcqRel));
        if n > 0 {
            returns.push(quota_key(&self.quota_stem, t), -(n as i64), 0);
        }
    }

    /// The deny cache's throttle refusal, if it still holds at `now`.
    pub(super) fn denied(&self, now: Now) -> Option<Refused> {
        let until = self.deny_until.load(Ordering::Acquire);
        if until <= now.mono_nanos {
            return None;
        }
        match *self.deny.lock() {
            Some(Refused::Throttled { scope, .. }) => {
                Some(Refused::Throttled { scope, wait_nanos: until - now.mono_nanos })
            }
            _ => None,
        }
    }

    /// The deny cache's quota refusal, if it still holds at `now`.
    pub(super) fn quota_denied(&self, now: Now) -> Option<Refused> {
        let until = self.quota_deny_until.load(Ordering::Acquire);
        if until <= now.mono_nanos {
            return None;
        }
        let mut view = (*self.quota_deny.lock())?;
        view.resets_in_secs = (until - now.mono_nanos).div_ceil(1_000_000_000).max(1);
        Some(Refused::Quota(view))
    }

    /// Refuses the key locally until `until` (monotonic nanoseconds), for `why`.
    pub(super) fn deny(&self, until: u64, why: Refused) {
        match why {
            Refused::Quota(view) => {
                *self.quota_deny.lock() = Some(view);
                self.quota_deny_until.store(until, Ordering::Release);
            }
            _ => {
                *self.deny.lock() = Some(why);
                self.deny_until.store(until, Ordering::Release);
            }
        }
    }
}

//! The check itself: the backend bound to one stage ([`Bound`]) answering a request from the
//! deny cache, from a lease, through the failure policy (breaker open), or with one script call.
//!
//! Every decision is made at the request's [`Now`] (its layer's clock), so one
//! [`ManualClock`](crate::ManualClock) drives the deny cache and the circuit breaker in tests.

use super::conn::{Conn, Connection};
use super::customer::{CustomerQuota, RedisCustomer};
use super::fallback::QuotaAsk;
use super::lease::{unpack, RedisKey, Refilling};
use super::refund::{both, counted, customer_refund, refund_to};
use super::reply::{MalformedReply, Reply};
use super::script::{check_call, quota_key, ttl_secs, QuotaArgs, Spec};
use super::stats::Counters;
use crate::engine::{nanos, Clock, CompiledCustomer, CompiledPlan, CustomerState, Gcra, Now, PeriodInfo, QuotaRule};
use crate::engine::{BucketSlot, Check, CounterBackend, KeyState, Outcome, Refund, Refused, Verdict};
use crate::model::Stage;
use crate::rejection::ThrottleScope;
use crate::view::Limits;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The layer's and the backend's clocks may differ by this much before a warning.
const CLOCKS_APART_NANOS: u64 = 1_000_000_000;

pub(super) struct BoundInner {
    conn: Arc<Conn>,
    api: Box<str>,
    stage: Box<str>,
    stage_methods: Vec<String>,
    stage_default: String,
    account: String,
    /// Deny cache of the stage buckets, same order (then the stage default and the account).
    deny: Box<[AtomicU64]>,
}

/// The backend bound to one stage (one layer).
#[derive(Clone)]
pub(super) struct Bound {
    inner: Arc<BoundInner>,
}

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend").field("api", &self.inner.api).field("stage", &self.inner.stage).finish()
    }
}

impl Bound {
    /// The backend bound to `stage`, for a layer reading time from `clock`.
    pub(super) fn new(conn: &Arc<Conn>, stage: Option<&Stage>, clock: &dyn Clock) -> Self {
        // The deny cache, the breaker and the fallback buckets are shared by every layer the
        // backend serves, and its maintenance reads its own clock: all must tell one time.
        let (layer, backend) = (clock.now().mono_nanos, conn.clock.now().mono_nanos);
        if layer.abs_diff(backend) > CLOCKS_APART_NANOS {
            tracing::warn!(
                apart_ms = layer.abs_diff(backend) / 1_000_000,
                "the layer's clock and the Redis backend's disagree: give both the same clock \
                 (RedisBackendBuilder::clock)"
            );
        }
        let names = &conn.names;
        let (api, name) = stage.map_or(("", ""), |s| (s.api(), s.stage_name()));
        let methods: Vec<String> = stage
            .map(|s| s.methods().iter().map(|(k, _)| names.stage_method(api, name, &k.to_string())).collect())
            .unwrap_or_default();
        Self {
            inner: Arc::new(BoundInner {
                conn: Arc::clone(conn),
                api: api.into(),
                stage: name.into(),
                deny: (0..methods.len() + 2).map(|_| AtomicU64::new(0)).collect(),
                stage_default: names.stage(api, name),
                account: names.account(),
                stage_methods: methods,
            }),
        }
    }
}

impl BoundInner {
    fn stage_index(&self, slot: BucketSlot) -> Option<usize> {
        let n = self.stage_methods.len();
        match slot {
            BucketSlot::StageMethod(i) => Some(usize::from(i)).filter(|i| *i < n),
            BucketSlot::Stage => Some(n),
            BucketSlot::Account => Some(n + 1),
            BucketSlot::Key | BucketSlot::KeyMethod(_) | BucketSlot::Customer => None,
        }
    }

    fn spec(
        &self,
        slot: BucketSlot,
        scope: ThrottleScope,
        gcra: Gcra,
        key: Option<&RedisKey>,
        plan: Option<&CompiledPlan>,
    ) -> Option<Spec> {
        let names = &self.conn.names;
        let name = match slot {
            BucketSlot::StageMethod(i) => self.stage_methods.get(usize::from(i))?.clone(),
            BucketSlot::Stage => self.stage_default.clone(),
            BucketSlot::Account => self.account.clone(),
            BucketSlot::Key => key?.key_bucket.clone(),
            BucketSlot::Customer => {
                let c = plan?.customer.as_ref()?;
                RedisCustomer::bucket_of(&c.rule, &c.state, names)
            }
            BucketSlot::KeyMethod(i) => {
                let (key, plan) = (key?, plan?);
                let method = plan.method_keys.get(usize::from(i))?;
                names.key_method(&key.id, plan.plan.id(), &self.api, &self.stage, &method.to_string())
            }
        };
        Some(Spec { name, gcra, scope, slot })
    }

    /// A refusal the deny cache still holds for this request: the key's, or a stage bucket's.
    fn deny_cached(&self, check: &Check<'_>, key: Option<&RedisKey>, now: Now) -> Option<Refused> {
        if let Some(k) = key {
            k.touched.store(true, Ordering::Relaxed);
            if let Some(refused) = k.denied(now) {
                return Some(refused);
            }
        }
        for bucket in check.buckets.iter().flatten() {
            if let Some(i) = self.stage_index(bucket.slot) {
                let until = self.deny.get(i).map_or(0, |d| d.load(Ordering::Acquire));
                if until > now.mono_nanos {
                    return Some(Refused::Throttled { scope: bucket.scope, wait_nanos: until - now.mono_nanos });
                }
            }
        }
        None
    }

    /// The failure policy's answer (Redis unreachable or the breaker open); a request that
    /// took its quota from the lease and is refused gives it back.
    fn fall_back(
        &self,
        specs: &[Spec],
        key: Option<&RedisKey>,
        ask: QuotaAsk<'_>,
        now: Now,
        seen: u64,
    ) -> Result<Option<Refund>, Refused> {
        let conn = &self.conn;
        Counters::bump(&conn.counters.fallback_decisions);
        let result = conn.fallback.decide(&conn.settings, specs, key, ask, now, &conn.returns);
        if let (Err(_), true, Some(k), Some((_, p))) = (&result, ask.from_lease, key, ask.key) {
            k.add_lease_since(seen, &conn.returns, p.tag, 1);
        }
        result
    }
}

impl CounterBackend for Bound {
    fn customer_state(
        &self,
        rule: &Arc<CompiledCustomer>,
        previous: Option<&CustomerState>,
        _now: Now,
    ) -> CustomerState {
        RedisCustomer::state(&self.inner.conn.names, rule, previous)
    }

    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>, _previous: Option<&KeyState>, now: Now) -> KeyState {
        let conn = &self.inner.conn;
        let key = conn.key_state(id, plan);
        key.set_plan(plan, now.unix_secs, &conn.returns);
        key
    }

    /// The backend's `replicas` setting
    /// ([`RedisBackendBuilder::replicas`](super::RedisBackendBuilder::replicas)): concurrency is
    /// counted in each process, so each replica admits `ceil(N / replicas)` of a cap of `N`, and
    /// the deployment at most `replicas * ceil(N / replicas)`.
    fn concurrency_replicas(&self) -> u32 {
        self.inner.conn.settings.replicas.max(1)
    }

    /// Decides one request. With a customer quota, the request goes to the script, which counts
    /// the key's quota (one request, not from a lease) and the customer's together (exact across
    /// replicas; see `customer.rs`).
    fn check(&self, check: &Check<'_>) -> Verdict {
        let b = &self.inner;
        let conn = &b.conn;
        Counters::bump(&conn.counters.checks);
        // The request's time, from its layer's clock; at least 1, as 0 means "never" in the
        // backend's state.
        let now = Now { mono_nanos: check.now.mono_nanos.max(1), unix_secs: check.now.unix_secs };
        let key: Option<Arc<RedisKey>> =
            check.key.and_then(|k| Arc::clone(k.state).into_any().downcast::<RedisKey>().ok());
        let plan = check.key.map(|k| Arc::clone(k.plan));
        // The deny cache: refused locally, no round trip.
        if let Some(refused) = b.deny_cached(check, key.as_deref(), now) {
            Counters::bump(&conn.counters.deny_cache_hits);
            return Verdict::Ready(Outcome { result: Err(refused), limits: None });
        }
        let specs: Vec<Spec> = check
            .buckets
            .iter()
            .flatten()
            .filter_map(|bk| b.spec(bk.slot, bk.scope, *bk.gcra, key.as_deref(), plan.as_deref()))
            .collect();
        // The quota: from the lease when it has some, else leased (or counted) by the script;
        // never leased with a customer quota (counted with the key's in the script).
        let quota = check.quota.map(|rule| (rule, rule.current(now.unix_secs)));
        let customer = check.customer.filter(|_| key.is_some());
        let customer = customer.and_then(|c| CustomerQuota::of(&c.rule, &c.state, &conn.names, now));
        let leasing = conn.settings.leasing && customer.is_none();
        // Usage updates so far: what this request puts back after one came is not put back.
        let seen = key.as_ref().map_or(0, |k| k.revocations());
        let (mut from_lease, mut want) = (false, 0);
        // Set when this request refills the lease; cleared however the request ends.
        let mut refill = Refilling(None);
        if let (Some((_, period)), Some(k)) = (quota, &key) {
            if leasing && k.take_lease(&conn.returns, period.tag) {
                from_lease = true;
                Counters::bump(&conn.counters.lease_hits);
            } else if let Some(refused) = k.quota_denied(now) {
                Counters::bump(&conn.counters.deny_cache_hits);
                return Verdict::Ready(Outcome { result: Err(refused), limits: None });
            } else if leasing && conn.in_deployment.load(Ordering::Acquire) && !k.refilling.swap(true, Ordering::AcqRel)
            {
                let left = period.limit.saturating_sub(k.last_used.load(Ordering::Acquire));
                want = (left / (4 * u64::from(conn.settings.replicas))).clamp(1, conn.settings.max_lease);
                refill = Refilling(Some(Arc::clone(k)));
            } else {
                want = 1;
            }
        }
        if specs.is_empty() && want == 0 && customer.is_none() {
            let result = match (&key, quota) {
                (Some(k), Some((_, period))) => Ok(check.refund.then(|| refund_to(k, conn, period.tag, seen, true))),
                _ => Ok(None),
            };
            let result = counted(conn, key.as_ref(), now, check.refund, result);
            return Verdict::Ready(Outcome { result, limits: None });
        }
        let stale_probe = nanos(conn.settings.timeout).saturating_mul(4);
        if !conn.breaker.allow(now, stale_probe) {
            let ask = QuotaAsk { key: quota, from_lease, customer: customer.as_ref() };
            let result = b.fall_back(&specs, key.as_deref(), ask, now, seen);
            let result = counted(conn, key.as_ref(), now, check.refund, result);
            return Verdict::Ready(Outcome { result, limits: None });
        }
        // One round trip.
        let quota_args = match (quota, &key, want > 0) {
            (Some((_, period)), Some(k), true) => Some(QuotaArgs {
                counter: quota_key(&k.quota_stem, period.tag),
                hold: conn.names.quota_hold(&k.quota_stem),
                limit: period.limit,
                want,
                ttl_secs: ttl_secs(period.end + 86_400, now.unix_secs),
            }),
            _ => None,
        };
        let (names, args) = check_call(&specs, quota_args, customer.as_ref().map(|c| c.args(now)));
        let asked = Asked {
            bound: Arc::clone(&self.inner),
            manager: conn.manager.clone(),
            key,
            plan,
            specs,
            period: quota.map(|(_, p)| p),
            customer,
            from_lease,
            want,
            refund: check.refund,
            views: check.views,
            now,
            revocations: seen,
            _refill: refill,
        };
        Verdict::Pending(Box::pin(asked.call(names, args)))
    }
}

/// Why a script call gave no usable reply.
enum Failure {
    /// I/O error or timeout: an outage, counted by the breaker.
    Outage,
    /// The server answered with an error (a key of another type under the prefix, a script
    /// error, OOM): not an outage.
    Answered(redis::RedisError),
    /// The reply is not one the script gives: not an outage either.
    Malformed(MalformedReply),
}

/// A request sent to Redis: what its answer is applied to.
struct Asked {
    bound: Arc<BoundInner>,
    manager: Connection,
    key: Option<Arc<RedisKey>>,
    plan: Option<Arc<CompiledPlan>>,
    /// The buckets sent, in order.
    specs: Vec<Spec>,
    /// The quota's current period, if the request has a quota.
    period: Option<PeriodInfo>,
    /// The customer's quota, if the key's customer has one (sent with the key's).
    customer: Option<CustomerQuota>,
    /// The quota was taken from the lease already.
    from_lease: bool,
    /// Requests asked of the quota (0: none).
    want: u64,
    refund: bool,
    views: bool,
    now: Now,
    /// The key's count of usage updates when the call was sent: a reply to a call that a usage
    /// update overtook caches no refusal and keeps no lease (`revoke.rs`).
    revocations: u64,
    _refill: Refilling,
}

impl Asked {
    /// Calls the script with `names` and `args` and decides from its reply.
    async fn call(mut self, names: Vec<String>, args: Vec<i64>) -> Outcome {
        let conn = &self.bound.conn;
        Counters::bump(&conn.counters.round_trips);
        let s = &conn.settings;
        let mut invocation = conn.script.prepare_invoke();
        for name in &names {
            invocation.key(name);
        }
        for arg in &args {
            invocation.arg(*arg);
        }
        let answer = tokio::time::timeout(s.timeout, invocation.invoke_async::<redis::Value>(&mut self.manager)).await;
        let reply = match answer {
            Ok(Ok(value)) => Reply::try_from(value).map_err(Failure::Malformed),
            Ok(Err(e)) if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) => {
                Err(Failure::Answered(e))
            }
            Ok(Err(_)) | Err(_) => Err(Failure::Outage),
        };
        let rule = self.plan.as_deref().and_then(|p| p.quota.as_ref());
        let quota = rule.zip(self.period);
        let (key, now) = (self.key.as_deref(), self.now);
        let result = match reply {
            Ok(reply) => {
                conn.breaker.success();
                let mut stale = None;
                let result = self.answered(reply, quota, &mut stale);
                if let (Some((counter, n)), Some(id)) = (stale, key.and_then(RedisKey::last_revocation)) {
                    // Off the request's path: it is answered now.
                    tokio::spawn(super::revoke::give_back_stale(Arc::clone(conn), counter, n, id));
                }
                result
            }
            Err(failure) => {
                Counters::bump(&conn.counters.errors);
                match &failure {
                    Failure::Answered(e) => tracing::error!(error = %e, "redis answered with an error"),
                    Failure::Malformed(e) => tracing::error!(error = %e, "malformed reply from the check script"),
                    Failure::Outage => conn.breaker.failure(now, s.breaker_failures, s.breaker_cooldown),
                }
                let ask = QuotaAsk { key: quota, from_lease: self.from_lease, customer: self.customer.as_ref() };
                self.bound.fall_back(&self.specs, key, ask, now, self.revocations)
            }
        };
        let result = counted(conn, self.key.as_ref(), now, self.refund, result);
        let limits = match (&result, self.views, quota) {
            (Ok(_), true, Some((rule, _))) => key.map(|k| {
                Box::new(Limits {
                    quota: Some(rule.view_used(now.unix_secs, k.last_used.load(Ordering::Acquire))),
                    key: None,
                    method: None,
                })
            }),
            _ => None,
        };
        Outcome { result, limits }
    }

    /// The answer to a well-formed reply.
    /// A lease granted by a call a usage update overtook goes to `stale` (to give back), not to
    /// the key.
    fn answered(
        &self,
        reply: Reply,
        quota: Option<(&QuotaRule, PeriodInfo)>,
        stale: &mut Option<(String, u64)>,
    ) -> Result<Option<Refund>, Refused> {
        let (bound, now) = (&self.bound, self.now);
        let conn = &bound.conn;
        match reply {
            Reply::Admitted { granted, used, customer_used } => {
                let customer = self.customer.as_ref().and_then(|c| {
                    c.seen(customer_used);
                    self.refund.then(|| customer_refund(c, conn))
                });
                let (Some(k), Some((_, period))) = (&self.key, quota) else { return Ok(customer) };
                if self.want > 0 {
                    // Redis answered for this key's quota: the fallback starts over from this
                    // count (unless usage of an outage is still unwritten).
                    k.last_used.store(used, Ordering::Release);
                    if unpack(k.outage.load(Ordering::Acquire)).1 == 0 {
                        k.fallback_used.store(0, Ordering::Release);
                    }
                }
                // A usage update that overtook the call set the counter this grant came from
                // (or will): the rest of the grant is not this replica's to spend.
                if granted > 1 && !k.add_lease_since(self.revocations, &conn.returns, period.tag, granted - 1) {
                    *stale = Some((quota_key(&k.quota_stem, period.tag), granted - 1));
                }
                // Counted in the script with the customer's: given back to Redis, not to a lease
                // that no request of this key spends.
                let to_lease = conn.settings.leasing && self.customer.is_none();
                let key_refund = self.refund.then(|| refund_to(k, conn, period.tag, self.revocations, to_lease));
                Ok(both(key_refund, customer))
            }
            Reply::Throttled { bucket, wait_micros } => {
                let wait_nanos = wait_micros.saturating_mul(1000);
                if let (true, Some(k), Some((_, p))) = (self.from_lease, &self.key, quota) {
                    k.add_lease_since(self.revocations, &conn.returns, p.tag, 1);
                }
                let Some(spec) = self.specs.get(bucket) else { return Err(Refused::Unavailable) };
                let refused = Refused::Throttled { scope: spec.scope, wait_nanos };
                let until = now.mono_nanos.saturating_add(wait_nanos);
                // Cached where it holds for every request that would meet it: stage buckets for
                // this stage, the key's plan bucket for the key. A key's method bucket holds for
                // that method only: not cached.
                match (bound.stage_index(spec.slot), &self.key, spec.slot) {
                    (Some(i), _, _) => {
                        if let Some(d) = bound.deny.get(i) {
                            d.store(until, Ordering::Release);
                        }
                    }
                    (None, Some(k), BucketSlot::Key) => k.deny(until, refused),
                    _ => {}
                }
                Err(refused)
            }
            Reply::QuotaSpent { used, held } => {
                let (Some(k), Some((rule, period))) = (&self.key, quota) else { return Err(Refused::Unavailable) };
                k.last_used.store(used, Ordering::Release);
                let view = rule.view_used(now.unix_secs, used);
                // Until the period ends, but for one second at most: leases given back elsewhere
                // and an UpdateUsage made through another replica reach this one within a
                // second (one round trip a second per spent key and replica).
                let to_end = (period.end - now.unix_secs).max(1) as u64 * 1_000_000_000;
                let until = now.mono_nanos.saturating_add(to_end.min(1_000_000_000));
                // Not during a usage update, nor when one overtook the call: its new count is
                // for the next request to see.
                if !held {
                    k.deny_quota_since(self.revocations, until, view);
                }
                Err(Refused::Quota(view))
            }
            Reply::CustomerQuotaSpent { used } => {
                if let (true, Some(k), Some((_, p))) = (self.from_lease, &self.key, quota) {
                    k.add_lease_since(self.revocations, &conn.returns, p.tag, 1);
                }
                let Some(c) = &self.customer else { return Err(Refused::Unavailable) };
                c.seen(used);
                // Not cached: the customer's other keys may give counts back (refunds), and the
                // key's own limits are not what refused.
                Err(c.refused(now, used))
            }
        }
    }
}

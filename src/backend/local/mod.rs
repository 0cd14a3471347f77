//! The in-process backend: every counter is an atomic in this process. Exact under any
//! concurrency; answers at once and allocates nothing on the allowed path.

mod index;
mod key;
mod usage;

use crate::engine::ledger::{day_of, DayCounter, Ledger};
use crate::engine::{bucket_view, BucketSlot, Check, CounterBackend, KeyState, Outcome, Refund, Refused, Verdict};
use crate::engine::{CompiledCustomer, CustomerState, BUCKETS};
use crate::engine::{CompiledPlan, Gcra, Now, QuotaRule, Undo};
use crate::model::Stage;
use crate::view::{Limits, QuotaView};
use index::KeyIndex;
use key::{Extra, LocalCustomer, LocalKey};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Counters in this process. The key cache holds each key's state (so a request reaches it
/// without a second lookup); `keys` is the index that makes it one state per key and plan, shared
/// by every value of the key (rotation) and kept while the key is disabled, out of the plan or
/// not cached, so no count is ever lost or doubled. It is touched only when a key is validated.
pub(crate) struct InProcess {
    stage_methods: Box<[AtomicU64]>,
    stage_default: AtomicU64,
    account: AtomicU64,
    keys: parking_lot::Mutex<KeyIndex>,
    /// Every customer's counters, by id (customers are as many as the configuration names, and
    /// their counts must outlive any one key's entry: they are never swept).
    customers: parking_lot::Mutex<HashMap<Arc<str>, Arc<LocalCustomer>>>,
    /// Past days of every key's usage.
    ledger: Arc<Ledger>,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess").field("stage_methods", &self.stage_methods.len()).finish_non_exhaustive()
    }
}

impl InProcess {
    pub(crate) fn new(stage: &Stage, retention_days: u32) -> Self {
        Self {
            stage_methods: (0..stage.methods().len()).map(|_| AtomicU64::new(0)).collect(),
            stage_default: AtomicU64::new(0),
            account: AtomicU64::new(0),
            keys: parking_lot::Mutex::new(KeyIndex::default()),
            customers: parking_lot::Mutex::default(),
            ledger: Arc::new(Ledger::new(retention_days)),
        }
    }

    fn bucket<'a>(
        &'a self,
        local: Option<&'a LocalKey>,
        customer: Option<&'a LocalCustomer>,
        slot: BucketSlot,
    ) -> Option<&'a AtomicU64> {
        match slot {
            BucketSlot::KeyMethod(i) => local.and_then(|l| l.method(usize::from(i))),
            BucketSlot::Key => local.map(|l| &l.core().key),
            BucketSlot::Customer => customer.map(|c| &c.bucket),
            BucketSlot::StageMethod(i) => self.stage_methods.get(usize::from(i)),
            BucketSlot::Stage => Some(&self.stage_default),
            BucketSlot::Account => Some(&self.account),
        }
    }

    /// Per-key views for rate-limit headers; `None` unless asked for (boxed, so the allowed
    /// path moves a pointer, not the views, when headers are off).
    fn limits(&self, check: &Check<'_>, local: Option<&LocalKey>, quota: Option<QuotaView>) -> Option<Box<Limits>> {
        let (Some(key), Some(local)) = (check.key, local) else { return None };
        if !check.views {
            return None;
        }
        let method = check.buckets[0].and_then(|b| match b.slot {
            BucketSlot::KeyMethod(i) => local.method(usize::from(i)).map(|s| b.gcra.view(s, check.now.mono_nanos)),
            _ => None,
        });
        Some(Box::new(Limits {
            quota: quota.or_else(|| key.plan.quota.as_ref().map(|q| q.peek(&local.core().quota, check.now.unix_secs))),
            key: bucket_view(true, key.plan.throttle.as_ref(), &local.core().key, check.now),
            method,
        }))
    }

    /// The customer's counters for a check, if it has a customer.
    #[inline]
    fn customer<'a>(check: &Check<'a>) -> Option<&'a LocalCustomer> {
        check.customer.and_then(|c| c.state.as_any().downcast_ref::<LocalCustomer>())
    }

    /// Customer `id`'s quota count, if this backend has counted for it.
    pub(crate) fn customer_quota(&self, id: &str) -> Option<u64> {
        self.customers.lock().get(id).map(|c| c.quota.load(Ordering::Acquire))
    }

    fn release(taken: &[Option<(&AtomicU64, Undo)>]) {
        for (state, undo) in taken.iter().flatten() {
            Gcra::undo(state, *undo);
        }
    }
}

impl CounterBackend for InProcess {
    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>, previous: Option<&KeyState>, now: Now) -> KeyState {
        let mut keys = self.keys.lock();
        keys.sweep(now, &self.ledger);
        // The requests in flight of this key's last state (under this plan or the one it had):
        // a new state keeps counting them, so a cap holds across a plan change.
        let cached_inflight = previous
            .and_then(|p| p.as_any().downcast_ref::<LocalKey>())
            .filter(|p| p.id == *id)
            .and_then(|p| p.extra.as_ref().and_then(|e| e.inflight.clone()));
        // The index is the authority; `previous` (this value's last state) only matters for a
        // state made before the index knew the key, which cannot happen here but keeps the
        // contract of the seam.
        let previous = keys.get(id, plan.plan.id()).cloned().or_else(|| {
            previous
                .and_then(|p| Arc::clone(p).into_any().downcast::<LocalKey>().ok())
                .filter(|p| p.plan.plan.id() == plan.plan.id() && p.id == *id)
        });
        if let Some(p) = &previous {
            // A plan that gained a concurrency cap needs a state that counts requests in flight.
            let counts_inflight = plan.concurrency.is_none() || p.extra.as_ref().is_some_and(|e| e.inflight.is_some());
            if p.method_keys() == &plan.method_keys[..] && counts_inflight {
                if keys.get(id, plan.plan.id()).is_none() {
                    keys.put(p);
                }
                return Arc::clone(p) as KeyState;
            }
        }
        // A method throttle the plan already had keeps its bucket (approximately: copied, not
        // shared); a new one starts full. The plan bucket and quota stay in the first state.
        let old = previous.as_deref();
        let start = |i: usize| {
            let carried = old
                .zip(plan.method_keys.get(i))
                .and_then(|(o, k)| o.method_keys().iter().position(|ok| ok == k).and_then(|j| o.method(j)));
            AtomicU64::new(carried.map_or(0, |s| s.load(std::sync::atomic::Ordering::Acquire)))
        };
        let n = plan.method_keys.len();
        let seed = if previous.is_none() { keys.take_seed(id, plan.plan.id()).unwrap_or(0) } else { 0 };
        let origin =
            previous.as_ref().map(|p| p.extra.as_ref().and_then(|e| e.origin.clone()).unwrap_or_else(|| Arc::clone(p)));
        let inflight =
            previous.as_ref().and_then(|p| p.extra.as_ref().and_then(|e| e.inflight.clone())).or(cached_inflight);
        let state = Arc::new(LocalKey {
            key: AtomicU64::new(0),
            quota: AtomicU64::new(seed),
            day: DayCounter::default(),
            methods: [start(0)],
            extra: (origin.is_some() || n > 1 || plan.concurrency.is_some()).then(|| {
                let inflight = plan.concurrency.map(|_| inflight.unwrap_or_else(|| Arc::new(AtomicU32::new(0))));
                Box::new(Extra { origin, more_methods: (1..n).map(start).collect(), inflight })
            }),
            id: Arc::clone(id),
            plan: Arc::clone(plan),
        });
        keys.put(&state);
        state
    }

    fn customer_state(
        &self,
        rule: &Arc<CompiledCustomer>,
        _previous: Option<&CustomerState>,
        _now: Now,
    ) -> CustomerState {
        let mut customers = self.customers.lock();
        let state = customers.entry(Arc::clone(rule.customer.id_arc())).or_insert_with(LocalCustomer::new);
        Arc::clone(state) as CustomerState
    }

    fn check(&self, check: &Check<'_>) -> Verdict {
        let local = check.key.and_then(|k| k.state.as_any().downcast_ref::<LocalKey>());
        let customer = Self::customer(check);
        let mut taken: [Option<(&AtomicU64, Undo)>; BUCKETS] = [None; BUCKETS];
        for (i, bucket) in check.buckets.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            let Some(state) = self.bucket(local, customer, bucket.slot) else { continue };
            match bucket.gcra.acquire(state, check.now.mono_nanos) {
                Ok(undo) => taken[i] = Some((state, undo)),
                Err(wait_nanos) => {
                    Self::release(&taken);
                    return Verdict::Ready(Outcome {
                        result: Err(Refused::Throttled { scope: bucket.scope, wait_nanos }),
                        limits: self.limits(check, local, None),
                    });
                }
            }
        }
        let mut quota_view = None;
        let mut ticket = None;
        if let (Some(rule), Some(local)) = (check.quota, local) {
            match rule.acquire(&local.core().quota, check.now.unix_secs) {
                Ok(counted) => {
                    if check.views {
                        quota_view = Some(rule.view_of(&counted, check.now.unix_secs));
                    }
                    ticket = Some(counted.ticket);
                }
                Err(counted) => {
                    Self::release(&taken);
                    let view = rule.view_of(&counted, check.now.unix_secs);
                    return Verdict::Ready(Outcome {
                        result: Err(Refused::Quota(view)),
                        limits: self.limits(check, Some(local), Some(view)),
                    });
                }
            }
        }
        // The customer's quota, after the key's: a refusal gives the key's count back.
        let mut customer_ticket = None;
        if let (Some(rule), Some(state)) = (check.customer.and_then(|c| c.rule.quota.as_ref()), customer) {
            match rule.acquire(&state.quota, check.now.unix_secs) {
                Ok(counted) => customer_ticket = Some(counted.ticket),
                Err(counted) => {
                    Self::release(&taken);
                    if let (Some(t), Some(local)) = (ticket, local) {
                        QuotaRule::refund(&local.core().quota, t);
                    }
                    let view = rule.view_of(&counted, check.now.unix_secs);
                    return Verdict::Ready(Outcome {
                        result: Err(Refused::Quota(view)),
                        limits: self.limits(check, local, quota_view),
                    });
                }
            }
        }
        let mut refund = None;
        if let (Some(key), Some(local)) = (check.key, local) {
            let day = day_of(check.now.unix_secs);
            local.core().day.add(day, local.owner(&self.ledger));
            if check.refund {
                let (state, ledger) = (Arc::clone(key.state), Arc::clone(&self.ledger));
                let customer = customer_ticket.and(check.customer).map(|c| Arc::clone(&c.state));
                refund = Some(Box::new(move || {
                    if let Some(local) = state.as_any().downcast_ref::<LocalKey>() {
                        if let Some(ticket) = ticket {
                            QuotaRule::refund(&local.core().quota, ticket);
                        }
                        local.core().day.sub(day, local.owner(&ledger));
                    }
                    if let (Some(c), Some(t)) = (customer.as_ref(), customer_ticket) {
                        if let Some(c) = c.as_any().downcast_ref::<LocalCustomer>() {
                            QuotaRule::refund(&c.quota, t);
                        }
                    }
                }) as Refund);
            }
        }
        Verdict::Ready(Outcome { result: Ok(refund), limits: self.limits(check, local, quota_view) })
    }
}

#[cfg(test)]
mod tests {
    use super::{day_of, InProcess};
    use crate::engine::CounterBackend;
    use crate::{ApiKey, Config, InMemoryKeyStore, KeySecret, ManualClock, PlanStage, Quota, QuotaPeriod};
    use crate::{Stage, Throttle, UsagePlan, UsagePlanLayer};
    use http::{Request, Response};
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};
    use tower::{Layer, ServiceExt};

    fn value(i: usize) -> String {
        format!("key-{i:06}-0123456789abcdef")
    }

    /// The inner service: 200 at once.
    type Answer = fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>;

    /// 4,000 keys `k0..k3999` in plan "fast" and "capped-key" (value 999,999) in `capped`; a
    /// layer with a 1 s key cache over its own in-process backend, returned for inspection.
    struct Sweeping {
        store: InMemoryKeyStore,
        backend: Arc<InProcess>,
        clock: ManualClock,
        svc: crate::UsagePlanService<tower::util::ServiceFn<Answer>>,
    }

    impl Sweeping {
        fn new(capped: UsagePlan) -> Self {
            let stage = Stage::new("a", "b");
            let fast = UsagePlan::new("fast")
                .with_throttle(Throttle::new(1000.0, 10).unwrap())
                .stage(PlanStage::new("a", "b"));
            let mut keys: Vec<_> = (0..4000)
                .map(|i| (KeySecret::new(value(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("fast")))
                .collect();
            keys.push((KeySecret::new(value(999_999)).unwrap(), ApiKey::new("capped-key").plan(capped.id())));
            let store = InMemoryKeyStore::from_config(Config::new(stage.clone(), vec![fast, capped], keys).unwrap());
            let backend = Arc::new(InProcess::new(&stage, 90));
            let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_795_435_200));
            let layer = UsagePlanLayer::builder(store.clone())
                .clock(clock.clone())
                .backend(Arc::clone(&backend) as Arc<dyn CounterBackend>)
                .key_cache_ttl(Duration::from_secs(1))
                .stale_if_error(Duration::ZERO)
                .build()
                .unwrap();
            let ok: Answer = |_r| std::future::ready(Ok(Response::new(())));
            Self { store, backend, clock, svc: layer.layer(tower::service_fn(ok)) }
        }

        async fn call(&self, i: usize) -> http::StatusCode {
            let req = Request::get("/").header("x-api-key", value(i)).body(()).unwrap();
            self.svc.clone().oneshot(req).await.unwrap().status()
        }

        /// Keys 0..2000, then 10 s later keys 2000..4000: the first half's entries expire and
        /// their states are swept.
        async fn churn(&self) {
            for i in 0..2000 {
                assert_eq!(self.call(i).await, 200);
            }
            self.clock.advance(Duration::from_secs(10));
            for i in 2000..4000 {
                assert_eq!(self.call(i).await, 200);
            }
        }
    }

    #[tokio::test]
    async fn state_of_keys_gone_from_the_cache_is_dropped_when_idle_and_kept_while_it_counts() {
        let capped = UsagePlan::new("capped")
            .with_quota(Quota::new(2, QuotaPeriod::Day).unwrap())
            .stage(PlanStage::new("a", "b"));
        let t = Sweeping::new(capped);
        let backend = &t.backend;
        assert_eq!(t.call(999_999).await, 200);
        for i in 0..2000 {
            assert_eq!(t.call(i).await, 200);
        }
        assert_eq!(backend.keys.lock().iter().count(), 2001);
        // Later, other keys come: the first ones' entries have expired and their buckets refilled.
        t.clock.advance(Duration::from_secs(10));
        for i in 2000..4000 {
            assert_eq!(t.call(i).await, 200);
        }
        let kept = backend.keys.lock().iter().count();
        assert!(kept <= 2100, "{kept} states kept for 2,000 active keys");
        // The key whose quota counted a request kept its count through the sweeps.
        assert_eq!(t.call(999_999).await, 200);
        assert_eq!(t.call(999_999).await, 429);
        // The swept states' day counts went into the ledger: every key still reads 1 request
        // today (most of 0..2000 were swept).

        let today = day_of(1_795_435_200);
        for i in [0, 999, 1999, 2000, 3999] {
            let days = backend.local_days(&format!("k{i}"), "fast", today, today);
            assert_eq!(days.iter().map(|d| d.used).sum::<u64>(), 1, "k{i}");
        }
        let swept = (0..2000).filter(|i| backend.keys.lock().get(&format!("k{i}"), "fast").is_none()).count();
        assert!(swept > 1000, "the test sweeps ({swept} swept)");
    }

    /// A customer's quota count, as the usage seam reads it: its keys' requests of the period.
    #[tokio::test]
    async fn the_usage_seam_reads_a_customers_quota_count() {
        use crate::usage::UsageBackend;
        let stage = Stage::new("a", "b");
        let quota = Quota::new(5, QuotaPeriod::Day).unwrap();
        let keys = (1..3)
            .map(|i| {
                (KeySecret::new(value(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("p").with_customer_id("acme"))
            })
            .collect();
        let config = Config::new(stage.clone(), vec![UsagePlan::new("p").stage(PlanStage::new("a", "b"))], keys)
            .and_then(|c| c.with_customers(vec![crate::Customer::new("acme").with_quota(quota)]))
            .unwrap();
        let backend = Arc::new(InProcess::new(&stage, 90));
        let noon = 1_795_435_200;
        let layer = UsagePlanLayer::builder(InMemoryKeyStore::from_config(config))
            .clock(ManualClock::new(UNIX_EPOCH + Duration::from_secs(noon as u64)))
            .backend(Arc::clone(&backend) as Arc<dyn CounterBackend>)
            .build()
            .unwrap();
        let ok: Answer = |_r| std::future::ready(Ok(Response::new(())));
        let svc = layer.layer(tower::service_fn(ok));
        for i in [1, 2, 1] {
            let req = Request::get("/").header("x-api-key", value(i)).body(()).unwrap();
            assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
        }
        let rule = crate::engine::QuotaRule::new(quota, None, None);
        assert_eq!(backend.customer_used("acme", &rule, noon).await.unwrap(), 3, "both keys' requests");
        assert_eq!(backend.customer_used("acme", &rule, noon + 86_400).await.unwrap(), 0, "the next day");
        assert_eq!(backend.customer_used("other", &rule, noon).await.unwrap(), 0, "a customer never counted");
    }

    /// A plan that gains a quota keeps its keys' states (same method list), made for the plan
    /// without quota: the sweep must still see their counts (found by review).
    #[tokio::test]
    async fn a_quota_count_survives_the_sweep_after_the_plan_gained_its_quota() {
        let capped =
            UsagePlan::new("capped").with_throttle(Throttle::new(1000.0, 10).unwrap()).stage(PlanStage::new("a", "b"));
        let t = Sweeping::new(capped.clone());
        assert_eq!(t.call(999_999).await, 200);
        t.store.put_plan(capped.with_quota(Quota::new(2, QuotaPeriod::Day).unwrap())).unwrap();
        t.clock.advance(Duration::from_secs(2));
        assert_eq!([t.call(999_999).await, t.call(999_999).await, t.call(999_999).await], [200, 200, 429]);
        t.churn().await;
        assert!(t.backend.keys.lock().get("k0", "fast").is_none(), "the churn sweeps");
        assert_eq!(t.call(999_999).await, 429, "the quota count survived the sweep");
    }
}

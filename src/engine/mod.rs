//! The decision: pure, synchronous, time passed in.
//!
//! Order of checks for a keyed request: key grant → expiry → per-key method throttle → per-key
//! plan throttle → stage method throttle → stage default throttle → account throttle → quota.
//! Throttles are all-or-nothing: a request refused by a later bucket (or by the quota) gives back
//! the tokens it took from earlier ones, so only forwarded requests consume anything.

mod clock;
mod gcra;
pub(crate) mod ledger;
mod quota;
mod routes;
mod state;

pub(crate) use clock::unix_secs;
pub use clock::{Clock, ManualClock, Now, SystemClock};
pub(crate) use gcra::{BucketView, Gcra, Undo};
#[cfg(feature = "redis")]
pub(crate) use quota::PeriodInfo;
pub(crate) use quota::{
    decode as decode_quota, encode as encode_quota, merge_quota, quota_holds_count, QuotaRule, QuotaView,
};
pub(crate) use routes::check_routes;
pub(crate) use state::{CompiledPlan, Limits};

use crate::backend::{BucketRef, BucketSlot, Check, CounterBackend, KeyCheck, Outcome, Refund, Refused, Verdict};
use crate::error::ConfigError;
use crate::model::{Stage, UsagePlan};
use crate::rejection::{Rejection, RejectionKind, ThrottleScope};
use crate::store::{Invalidation, KeyRecord};
use http::Method;
pub(crate) use routes::Slots;
use routes::{RouteTable, RouteTableBuilder, NONE};
use state::{Grant, KeyBytes, KeyEntry, NO_STALE};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type Map<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// A concurrent map tuned for read-mostly use: inserts happen only when a key is (re)validated,
/// so resizes block the inserting thread instead of leaving a half-moved table that every
/// lookup must search twice (papaya's incremental default).
pub(crate) fn read_mostly_map<K: std::hash::Hash + Eq, V>() -> Map<K, V> {
    papaya::HashMap::builder()
        .hasher(foldhash::fast::RandomState::default())
        .resize_mode(papaya::ResizeMode::Blocking)
        .build()
}

/// How long answers from the key store are trusted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) ttl: Duration,
    pub(crate) stale_if_error: Duration,
}

/// What the caller wants back besides the decision.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Want {
    /// Per-key limit views, for rate-limit headers.
    pub(crate) views: bool,
    /// A handle to give the quota count back (refund policy).
    pub(crate) refund: bool,
}

/// An admitted request.
pub(crate) struct Admitted {
    pub(crate) limits: Option<Box<Limits>>,
    /// Gives the quota count back (only when the refund policy is on).
    pub(crate) refund: Option<Refund>,
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted").field("limits", &self.limits).field("refund", &self.refund.is_some()).finish()
    }
}

/// A decision, now or (with a distributed backend) later.
pub(crate) enum Decision {
    Ready(Result<Admitted, Rejection>),
    Pending(Pin<Box<dyn Future<Output = Result<Admitted, Rejection>> + Send>>),
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Decision::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Turns a backend's outcome into the request's answer.
fn conclude(outcome: Outcome, key: Option<&Arc<str>>) -> Result<Admitted, Rejection> {
    let Outcome { result, limits } = outcome;
    let rejection = match result {
        Ok(refund) => return Ok(Admitted { limits, refund }),
        Err(Refused::Throttled { scope, wait_nanos }) => Rejection::throttled(scope, wait_nanos),
        Err(Refused::Quota(view)) => Rejection::quota(view.resets_in_secs),
        Err(Refused::Unavailable) => Rejection::new(RejectionKind::StoreUnavailable),
    };
    Err(match key {
        Some(id) => rejection.with_key(id).with_limits(limits),
        None => rejection,
    })
}

fn decision(verdict: Verdict, key: Option<&Arc<str>>) -> Decision {
    match verdict {
        Verdict::Ready(outcome) => Decision::Ready(conclude(outcome, key)),
        Verdict::Pending(fut) => {
            let key = key.cloned();
            Decision::Pending(Box::pin(async move { conclude(fut.await, key.as_ref()) }))
        }
    }
}

/// The request as the engine needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
}

/// The answer for a key from the cache.
#[derive(Debug)]
pub(crate) enum Cached {
    /// Decided from a fresh cache entry.
    Decided(Decision),
    /// Not cached, or cached but due for revalidation.
    Miss,
}

/// One layer's decision maker: stage routing and limits, the key cache, compiled plans, and the
/// counter backend that holds the buckets and quotas.
pub(crate) struct Engine {
    stage: Option<Stage>,
    stage_routes: RouteTable,
    stage_methods: Box<[Gcra]>,
    stage_default: Option<Gcra>,
    account: Option<Gcra>,
    entries: Map<KeyBytes, KeyEntry>,
    plans: parking_lot::Mutex<HashMap<Arc<str>, Arc<CompiledPlan>>>,
    cache: CacheSettings,
    backend: Arc<dyn CounterBackend>,
    /// The store's invalidation handle: entries cached at an older generation are revalidated.
    invalidation: Option<Invalidation>,
    /// The cache's length after its last sweep (see [`Engine::sweep`]).
    swept_at: std::sync::atomic::AtomicUsize,
}

/// Sweeps of the key cache start from this many entries.
const SWEEP_FROM: usize = 1024;

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("stage", &self.stage).field("keys", &self.entries.len()).finish_non_exhaustive()
    }
}

/// A duration in nanoseconds, saturating (a `Duration` can exceed `u64` nanoseconds).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Engine {
    /// Where the counters live.
    pub(crate) fn backend(&self) -> &dyn CounterBackend {
        &*self.backend
    }

    /// An engine for `stage`; `backend` defaults to counters in this process.
    pub(crate) fn new(
        stage: Option<Stage>,
        cache: CacheSettings,
        backend: Option<Arc<dyn CounterBackend>>,
        invalidation: Option<Invalidation>,
        retention_days: u32,
    ) -> Self {
        let backend =
            backend.unwrap_or_else(|| Arc::new(crate::backend::InProcess::new(stage.as_ref(), retention_days)));
        let mut routes = RouteTableBuilder::default();
        let (mut stage_methods, mut stage_default, mut account) = (Vec::new(), None, None);
        if let Some(s) = &stage {
            for (i, (key, t)) in s.methods().iter().enumerate() {
                routes.add(key, |slots| slots.stage = i as u16);
                stage_methods.push(Gcra::new(*t));
            }
            for key in s.public_methods() {
                routes.add(key, |slots| slots.public = true);
            }
            stage_default = s.default_throttle().map(Gcra::new);
            account = s.account().map(Gcra::new);
        }
        let stage_routes = routes.build().unwrap_or_else(|e| {
            // A `Stage` checks its routes as it is built, so this is unreachable in practice.
            tracing::error!(error = %e, "stage method routes conflict; stage method throttles are off");
            RouteTable::default()
        });
        Self {
            stage_routes,
            stage,
            stage_methods: stage_methods.into(),
            stage_default,
            account,
            entries: read_mostly_map(),
            plans: parking_lot::Mutex::new(HashMap::new()),
            cache,
            backend,
            invalidation,
            swept_at: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Drops cache entries that can no longer be used, even stale (asked about longer ago than
    /// TTL + stale-if-error): their key's next request asks the store anyway, and the counts live
    /// on in the backend. Runs when the cache has doubled since the last sweep, so idle keys do
    /// not hold memory for ever at O(1) cost per insertion.
    fn sweep(&self, now: Now) {
        use std::sync::atomic::Ordering;
        let len = self.entries.len();
        if len < SWEEP_FROM.max(2 * self.swept_at.load(Ordering::Relaxed)) {
            return;
        }
        let horizon = nanos(self.cache.stale_if_error);
        self.entries.pin().retain(|_, e| e.fresh_until().saturating_add(horizon) > now.mono_nanos);
        self.swept_at.store(self.entries.len(), Ordering::Relaxed);
    }

    /// The store's current invalidation generation (0 for a store without a handle). Read it
    /// before asking the store, and pass it to [`decide_record`](Self::decide_record).
    pub(crate) fn generation(&self) -> u32 {
        // Compared for equality only: the low 32 bits suffice.
        self.invalidation.as_ref().map_or(0, |i| i.generation() as u32)
    }

    /// Stage routing for a request (which stage method, public or not).
    pub(crate) fn route(&self, req: Req<'_>) -> Slots {
        if self.stage_routes.is_empty() {
            Slots::default()
        } else {
            self.stage_routes.lookup(req.method, req.path)
        }
    }

    /// Decides a request to a public method (no key, no quota): stage and account throttles only.
    pub(crate) fn decide_public(&self, slots: Slots, now: Now) -> Decision {
        let check =
            Check { key: None, buckets: self.buckets(None, slots), quota: None, now, views: false, refund: false };
        decision(self.backend.check(&check), None)
    }

    /// Decides a keyed request from the cache, if the key's entry is fresh.
    pub(crate) fn decide_cached(&self, value: &[u8], req: Req<'_>, slots: Slots, now: Now, want: Want) -> Cached {
        let guard = self.entries.pin();
        match guard.get(value) {
            Some(entry) if entry.fresh_until() > now.mono_nanos && entry.generation == self.generation() => {
                Cached::Decided(self.decide(entry, req, slots, now, want))
            }
            _ => Cached::Miss,
        }
    }

    /// Decides with a cached entry that is past its TTL but within the stale-if-error window.
    pub(crate) fn decide_stale(
        &self,
        value: &[u8],
        req: Req<'_>,
        slots: Slots,
        now: Now,
        want: Want,
    ) -> Option<Decision> {
        let guard = self.entries.pin();
        // An invalidated entry is not served stale: it may be a key that was just disabled.
        let entry = guard.get(value).filter(|e| e.generation == self.generation() && e.may_serve_stale())?;
        let stale_until = entry.fresh_until().saturating_add(nanos(self.cache.stale_if_error));
        (stale_until > now.mono_nanos).then(|| self.decide(entry, req, slots, now, want))
    }

    /// Records the store's answer for `value` (asked at invalidation `generation`) and decides
    /// the request with it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide_record(
        &self,
        value: &[u8],
        record: Option<KeyRecord>,
        generation: u32,
        req: Req<'_>,
        slots: Slots,
        now: Now,
        want: Want,
    ) -> Decision {
        let Some(record) = record else {
            self.entries.pin().remove(value);
            return Decision::Ready(Err(Rejection::new(RejectionKind::UnknownKey)));
        };
        self.sweep(now);
        let guard = self.entries.pin();
        let previous = guard.get(value);
        let entry = match self.entry_for(record, previous, generation, now) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "usage plan cannot be applied to this stage");
                return Decision::Ready(Err(Rejection::new(RejectionKind::StoreUnavailable)));
            }
        };
        // Insert unless a racing lookup of the same value has just put a fresh entry there: then
        // decide with that one, so that racing first requests of a key share one set of counters.
        let result = guard.compute(KeyBytes::new(value), |existing| match existing {
            Some((_, e))
                if e.fresh_until() > now.mono_nanos
                    // As new as ours or newer (generations wrap: compare by difference).
                    && e.generation.wrapping_sub(generation) < u32::MAX / 2
                    && previous.is_none_or(|p| !std::ptr::eq(p, e)) =>
            {
                papaya::Operation::Abort(())
            }
            _ => papaya::Operation::Insert(entry.clone()),
        });
        match result {
            papaya::Compute::Inserted(_, e) | papaya::Compute::Updated { new: (_, e), .. } => {
                self.decide(e, req, slots, now, want)
            }
            papaya::Compute::Aborted(()) => match guard.get(value) {
                Some(e) => self.decide(e, req, slots, now, want),
                None => self.decide(&entry, req, slots, now, want),
            },
            papaya::Compute::Removed(..) => self.decide(&entry, req, slots, now, want),
        }
    }

    /// The cache entry for the store's answer. The counter state of the previous entry for the
    /// same value is handed to the backend, which keeps it when the key and plan are unchanged,
    /// so revalidation loses no count.
    fn entry_for(
        &self,
        record: KeyRecord,
        previous: Option<&KeyEntry>,
        generation: u32,
        now: Now,
    ) -> Result<KeyEntry, ConfigError> {
        let max_age = record.max_age_hint();
        let key = record.key();
        let plan = match &self.stage {
            Some(s) => record.plans().iter().find(|p| p.stage_binding(s.api(), s.stage_name()).is_some()),
            None => record.plans().first(),
        };
        let grant = match plan {
            _ if !key.is_enabled() => Grant::refused(key.id_arc(), RejectionKind::DisabledKey),
            None => Grant::refused(key.id_arc(), RejectionKind::WrongStage),
            Some(plan) => {
                let compiled = self.compile(plan, now)?;
                let previous = previous.and_then(|p| match &p.grant {
                    Grant::Plan(_, state) if **state.key_id() == *key.id() => Some(state),
                    _ => None,
                });
                let state = self.backend.key_state(key.id_arc(), &compiled, previous, now);
                Grant::Plan(compiled, state)
            }
        };
        Ok(KeyEntry {
            grant,
            expires: key.expires_at().map_or(u32::MAX, |t| u32::try_from(unix_secs(t).max(0)).unwrap_or(u32::MAX)),
            fresh: match max_age {
                None => now.mono_nanos.saturating_add(nanos(self.cache.ttl)).min(!NO_STALE),
                Some(age) => now.mono_nanos.saturating_add(nanos(self.cache.ttl.min(age))).min(!NO_STALE) | NO_STALE,
            },
            generation,
        })
    }

    /// The plan as this stage applies it. A plan without a `created` time counts as created when
    /// this layer first used it (so a quota `offset` applies to that period), and keeps that
    /// time when the plan changes.
    pub(crate) fn compile(&self, plan: &Arc<UsagePlan>, now: Now) -> Result<Arc<CompiledPlan>, ConfigError> {
        let mut cache = self.plans.lock();
        let mut created = plan.created_at().map(unix_secs).unwrap_or(now.unix_secs);
        if let Some(c) = cache.get(plan.id()) {
            if Arc::ptr_eq(&c.plan, plan) || *c.plan == **plan {
                return Ok(Arc::clone(c));
            }
            if plan.created_at().is_none() {
                created = c.created;
            }
        }
        let binding = match &self.stage {
            Some(s) => plan.stage_binding(s.api(), s.stage_name()),
            None => plan.stages().first(),
        };
        let methods = binding.map(|b| b.methods()).unwrap_or_default();
        let routes = if methods.is_empty() {
            None
        } else {
            let mut b = RouteTableBuilder::default();
            if let Some(s) = &self.stage {
                for (i, (key, _)) in s.methods().iter().enumerate() {
                    b.add(key, |slots| slots.stage = i as u16);
                }
                for key in s.public_methods() {
                    b.add(key, |slots| slots.public = true);
                }
            }
            for (i, (key, _)) in methods.iter().enumerate() {
                b.add(key, |slots| slots.plan = i as u16);
            }
            Some(b.build().map_err(|e| e.under(&format!("plan {:?}", plan.id())))?)
        };
        let compiled = Arc::new(CompiledPlan {
            plan: Arc::clone(plan),
            routes,
            throttle: plan.throttle_limit().map(Gcra::new),
            methods: methods.iter().map(|(_, t)| Gcra::new(*t)).collect(),
            method_keys: methods.iter().map(|(k, _)| k.clone()).collect(),
            quota: plan.quota_limit().map(|q| QuotaRule::new(q, Some(created))),
            created,
        });
        cache.insert(Arc::clone(plan.id_arc()), Arc::clone(&compiled));
        Ok(compiled)
    }

    fn decide(&self, entry: &KeyEntry, req: Req<'_>, slots: Slots, now: Now, want: Want) -> Decision {
        let (plan, state) = match &entry.grant {
            Grant::Plan(p, s) => (p, s),
            Grant::Refused(r) => return Decision::Ready(Err(Rejection::new(r.kind).with_key(&r.id))),
        };
        if now.unix_secs >= i64::from(entry.expires) {
            return Decision::Ready(Err(Rejection::new(RejectionKind::ExpiredKey).with_key(entry.id())));
        }
        let slots = match &plan.routes {
            Some(routes) => routes.lookup(req.method, req.path),
            None => slots,
        };
        let check = Check {
            key: Some(KeyCheck { id: entry.id(), plan, state }),
            buckets: self.buckets(Some(plan), slots),
            quota: plan.quota.as_ref(),
            now,
            views: want.views,
            refund: want.refund,
        };
        decision(self.backend.check(&check), Some(entry.id()))
    }

    /// The buckets a request must pass, most specific first: per-key method, per-key plan,
    /// stage method, stage default, account.
    fn buckets<'a>(&'a self, plan: Option<&'a CompiledPlan>, slots: Slots) -> [Option<BucketRef<'a>>; 5] {
        let bucket = |slot, scope, gcra| Some(BucketRef { slot, scope, gcra });
        let mut out = [None; 5];
        if let Some(plan) = plan {
            if slots.plan != NONE {
                out[0] = plan
                    .methods
                    .get(usize::from(slots.plan))
                    .and_then(|g| bucket(BucketSlot::KeyMethod(slots.plan), ThrottleScope::KeyMethod, g));
            }
            out[1] = plan.throttle.as_ref().and_then(|g| bucket(BucketSlot::Key, ThrottleScope::Key, g));
        }
        if slots.stage != NONE {
            out[2] = self
                .stage_methods
                .get(usize::from(slots.stage))
                .and_then(|g| bucket(BucketSlot::StageMethod(slots.stage), ThrottleScope::StageMethod, g));
        }
        out[3] = self.stage_default.as_ref().and_then(|g| bucket(BucketSlot::Stage, ThrottleScope::Stage, g));
        out[4] = self.account.as_ref().and_then(|g| bucket(BucketSlot::Account, ThrottleScope::Account, g));
        out
    }
}

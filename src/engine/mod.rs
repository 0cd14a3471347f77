//! The decision: pure, synchronous, time passed in.
//!
//! Order of checks for a keyed request: key grant → expiry → per-key method throttle → per-key
//! plan throttle → stage method throttle → stage default throttle → account throttle → quota.
//! Throttles are all-or-nothing: a request refused by a later bucket (or by the quota) gives back
//! the tokens it took from earlier ones, so only forwarded requests consume anything.

mod clock;
mod gcra;
mod quota;
mod routes;
mod state;

pub(crate) use clock::unix_secs;
pub use clock::{Clock, ManualClock, Now, SystemClock};
pub(crate) use gcra::BucketView;
pub(crate) use state::Limits;

use crate::error::ConfigError;
use crate::model::{Stage, UsagePlan};
use crate::rejection::{Rejection, RejectionKind, ThrottleScope};
use crate::store::KeyRecord;
use gcra::Gcra;
use http::Method;
use quota::QuotaRule;
pub(crate) use routes::check_routes;
use routes::{RouteTable, RouteTableBuilder, Slots, NONE};
use state::{Bucket, CompiledPlan, Counters, Grant, KeyEntry};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

type Map<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

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
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) limits: Limits,
    pub(crate) refund: Option<QuotaRefund>,
}

/// Gives one counted request back to the key's quota, if its period is still current.
#[derive(Debug)]
pub(crate) struct QuotaRefund {
    counters: Arc<Counters>,
    ticket: quota::Ticket,
}

impl QuotaRefund {
    pub(crate) fn apply(&self) {
        QuotaRule::refund(&self.counters.quota, self.ticket);
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
    Decided(Result<Admitted, Rejection>),
    /// Not cached, or cached but due for revalidation.
    Miss,
}

/// All state of one layer: stage buckets, per-key entries and counters, compiled plans.
pub(crate) struct Engine {
    stage: Option<Stage>,
    stage_routes: RouteTable,
    stage_methods: Box<[Bucket]>,
    stage_default: Option<Bucket>,
    account: Option<Bucket>,
    entries: Map<Box<[u8]>, Arc<KeyEntry>>,
    counters: Map<Arc<str>, Arc<Counters>>,
    plans: parking_lot::Mutex<HashMap<Arc<str>, Arc<CompiledPlan>>>,
    cache: CacheSettings,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("stage", &self.stage).field("keys", &self.entries.len()).finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Engine {
    pub(crate) fn new(stage: Option<Stage>, cache: CacheSettings) -> Self {
        let mut routes = RouteTableBuilder::default();
        let (mut stage_methods, mut stage_default, mut account) = (Vec::new(), None, None);
        if let Some(s) = &stage {
            for (i, (key, t)) in s.methods().iter().enumerate() {
                routes.add(key, |slots| slots.stage = i as u16);
                stage_methods.push(Bucket::new(Gcra::new(*t)));
            }
            for key in s.public_methods() {
                routes.add(key, |slots| slots.public = true);
            }
            stage_default = s.default_throttle().map(|t| Bucket::new(Gcra::new(t)));
            account = s.account().map(|t| Bucket::new(Gcra::new(t)));
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
            entries: Map::with_hasher(foldhash::fast::RandomState::default()),
            counters: Map::with_hasher(foldhash::fast::RandomState::default()),
            plans: parking_lot::Mutex::new(HashMap::new()),
            cache,
        }
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
    pub(crate) fn decide_public(&self, slots: Slots, now: Now) -> Result<(), Rejection> {
        self.acquire_throttles(None, slots, now).map(|_| ())
    }

    /// Decides a keyed request from the cache, if the key's entry is fresh.
    pub(crate) fn decide_cached(&self, value: &[u8], req: Req<'_>, slots: Slots, now: Now, want: Want) -> Cached {
        let guard = self.entries.pin();
        match guard.get(value) {
            Some(entry) if entry.fresh_until > now.mono_nanos => {
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
    ) -> Option<Result<Admitted, Rejection>> {
        let guard = self.entries.pin();
        let entry = guard.get(value)?;
        (entry.stale_until > now.mono_nanos).then(|| self.decide(entry, req, slots, now, want))
    }

    /// Records the store's answer for `value` and decides the request with it.
    pub(crate) fn decide_record(
        &self,
        value: &[u8],
        record: Option<KeyRecord>,
        req: Req<'_>,
        slots: Slots,
        now: Now,
        want: Want,
    ) -> Result<Admitted, Rejection> {
        let Some(record) = record else {
            self.entries.pin().remove(value);
            return Err(Rejection::new(RejectionKind::UnknownKey));
        };
        let entry = match self.entry_for(record, now) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "usage plan cannot be applied to this stage");
                return Err(Rejection::new(RejectionKind::StoreUnavailable));
            }
        };
        let result = self.decide(&entry, req, slots, now, want);
        self.entries.pin().insert(value.into(), entry);
        result
    }

    fn entry_for(&self, record: KeyRecord, now: Now) -> Result<Arc<KeyEntry>, ConfigError> {
        let key = record.key();
        let plan = match &self.stage {
            Some(s) => record.plans().iter().find(|p| p.stage_binding(s.api(), s.stage_name()).is_some()),
            None => record.plans().first(),
        };
        let grant = match plan {
            _ if !key.is_enabled() => Grant::Disabled,
            None => Grant::WrongStage,
            Some(plan) => {
                let compiled = self.compile(plan, now)?;
                let counters = self.counters_for(key.id_arc(), compiled.methods.len());
                Grant::Plan(compiled, counters)
            }
        };
        let fresh_until = now.mono_nanos.saturating_add(nanos(self.cache.ttl));
        Ok(Arc::new(KeyEntry {
            id: Arc::clone(key.id_arc()),
            grant,
            expires: key.expires_at().map(unix_secs),
            fresh_until,
            stale_until: fresh_until.saturating_add(nanos(self.cache.stale_if_error)),
        }))
    }

    /// The key's counters; kept across revalidations and plan changes. Two first lookups of one
    /// key racing each other get the same counters. When a plan change alters the number of
    /// method throttles, the method buckets start full again and the key bucket and quota count
    /// are carried over.
    fn counters_for(&self, id: &Arc<str>, methods: usize) -> Arc<Counters> {
        let map = self.counters.pin();
        let current = map.get_or_insert_with(Arc::clone(id), || Arc::new(Counters::new(methods)));
        if current.methods.len() == methods {
            return Arc::clone(current);
        }
        use std::sync::atomic::Ordering::{Acquire, Release};
        let fresh = Counters::new(methods);
        fresh.key.store(current.key.load(Acquire), Release);
        fresh.quota.store(current.quota.load(Acquire), Release);
        let fresh = Arc::new(fresh);
        map.insert(Arc::clone(id), Arc::clone(&fresh));
        fresh
    }

    /// The plan as this stage applies it. A plan without a `created` time counts as created when
    /// this layer first used it (so a quota `offset` applies to that period), and keeps that
    /// time when the plan changes.
    fn compile(&self, plan: &Arc<UsagePlan>, now: Now) -> Result<Arc<CompiledPlan>, ConfigError> {
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
            quota: plan.quota_limit().map(|q| QuotaRule::new(q, Some(created))),
            created,
        });
        cache.insert(Arc::clone(plan.id_arc()), Arc::clone(&compiled));
        Ok(compiled)
    }

    fn decide(
        &self,
        entry: &KeyEntry,
        req: Req<'_>,
        slots: Slots,
        now: Now,
        want: Want,
    ) -> Result<Admitted, Rejection> {
        let (plan, counters) = match &entry.grant {
            Grant::Plan(p, c) => (p, c),
            Grant::Disabled => return Err(Rejection::new(RejectionKind::DisabledKey).with_key(&entry.id)),
            Grant::WrongStage => return Err(Rejection::new(RejectionKind::WrongStage).with_key(&entry.id)),
        };
        if entry.expires.is_some_and(|at| now.unix_secs >= at) {
            return Err(Rejection::new(RejectionKind::ExpiredKey).with_key(&entry.id));
        }
        let slots = match &plan.routes {
            Some(routes) => routes.lookup(req.method, req.path),
            None => slots,
        };
        let limits = |quota| Limits {
            quota,
            key: if want.views { plan.throttle.map(|g| g.view(&counters.key, now.mono_nanos)) } else { None },
            method: if want.views && slots.plan != NONE {
                Some(plan.methods[slots.plan as usize].view(&counters.methods[slots.plan as usize], now.mono_nanos))
            } else {
                None
            },
        };
        let taken = self.acquire_throttles(Some((plan, counters)), slots, now).map_err(|r| {
            r.with_key(&entry.id)
                .with_limits(limits(plan.quota.as_ref().map(|q| q.peek(&counters.quota, now.unix_secs))))
        })?;
        let (quota, refund) = match &plan.quota {
            None => (None, None),
            Some(rule) => match rule.acquire(&counters.quota, now.unix_secs) {
                Ok(counted) => (
                    want.views.then(|| rule.view_of(&counted, now.unix_secs)),
                    want.refund.then(|| QuotaRefund { counters: Arc::clone(counters), ticket: counted.ticket }),
                ),
                Err(counted) => {
                    self.release(&taken);
                    let view = rule.view_of(&counted, now.unix_secs);
                    return Err(Rejection::quota(view.resets_in_secs)
                        .with_key(&entry.id)
                        .with_limits(limits(Some(view))));
                }
            },
        };
        Ok(Admitted { limits: limits(quota), refund })
    }

    /// Takes a token from every bucket that applies, most specific first, or none at all.
    fn acquire_throttles<'a>(
        &'a self,
        key: Option<(&'a CompiledPlan, &'a Counters)>,
        slots: Slots,
        now: Now,
    ) -> Result<Taken<'a>, Rejection> {
        let mut buckets: [Option<(&Gcra, &AtomicU64, ThrottleScope)>; 5] = [None; 5];
        if let Some((plan, counters)) = key {
            if slots.plan != NONE {
                let i = slots.plan as usize;
                buckets[0] = Some((&plan.methods[i], &counters.methods[i], ThrottleScope::KeyMethod));
            }
            buckets[1] = plan.throttle.as_ref().map(|g| (g, &counters.key, ThrottleScope::Key));
        }
        if slots.stage != NONE {
            let b = &self.stage_methods[slots.stage as usize];
            buckets[2] = Some((&b.gcra, &b.state, ThrottleScope::StageMethod));
        }
        buckets[3] = self.stage_default.as_ref().map(|b| (&b.gcra, &b.state, ThrottleScope::Stage));
        buckets[4] = self.account.as_ref().map(|b| (&b.gcra, &b.state, ThrottleScope::Account));
        let mut taken = Taken([None; 5]);
        for (i, bucket) in buckets.iter().enumerate() {
            if let Some((gcra, state, scope)) = bucket {
                match gcra.acquire(state, now.mono_nanos) {
                    Ok(undo) => taken.0[i] = Some((*state, undo)),
                    Err(wait) => {
                        self.release(&taken);
                        return Err(Rejection::throttled(*scope, wait));
                    }
                }
            }
        }
        Ok(taken)
    }

    fn release(&self, taken: &Taken<'_>) {
        for (state, undo) in taken.0.iter().flatten() {
            Gcra::undo(state, *undo);
        }
    }
}

/// Buckets a request took a token from, with what to undo.
#[derive(Debug)]
pub(crate) struct Taken<'a>([Option<(&'a AtomicU64, gcra::Undo)>; 5]);

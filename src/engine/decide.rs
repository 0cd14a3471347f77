//! The decision for one request: which buckets it must pass, most specific first, and the
//! backend's answer turned into the request's.

use super::counter::BUCKETS;
use super::counter::{BucketRef, BucketSlot, Check, CounterBackend, KeyCheck, KeyState, Outcome, Refused, Verdict};
use super::customers::Customers;
use super::gcra::Gcra;
use super::grant::Grant;
use super::inflight::{self, InFlight};
use super::plan::{add_stage_routes, CompiledPlan, Plans};
use super::routes::{RouteTable, RouteTableBuilder, Slots, NONE};
use super::{clock::Now, counter::Refund};
use crate::caller::CallerProfile;
use crate::error::ConfigError;
use crate::model::{Customer, Overrides, Stage, UsagePlan};
use crate::rejection::{Rejection, RejectionKind, ThrottleScope};
use crate::view::Limits;
use http::Method;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The request as the engine needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
}

/// What the caller wants back besides the decision.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Want {
    /// Per-key limit views, for rate-limit headers.
    pub(crate) views: bool,
    /// A handle to give the quota count back (refund policy).
    pub(crate) refund: bool,
}

/// Everything a decision is made from besides the key: the request, its stage route, the time
/// and what the caller wants back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) req: Req<'a>,
    pub(crate) slots: Slots,
    pub(crate) now: Now,
    pub(crate) want: Want,
}

impl Input<'_> {
    /// The same input at a later reading of the clock.
    #[inline]
    pub(crate) fn at(self, now: Now) -> Self {
        Self { now, ..self }
    }
}

/// An admitted request.
pub(crate) struct Admitted {
    /// Per-key limits after the decision (when views were wanted and the request had a key).
    pub(crate) limits: Option<Box<Limits>>,
    /// Gives the quota count back (only when the refund policy is on).
    pub(crate) refund: Option<Refund>,
    /// The key's part of who is calling, for the request extensions (keyed requests, when the
    /// layer puts it there); the live part comes from `limits`. A pointer, so that an admission
    /// stays small to move.
    pub(crate) caller: Option<Arc<CallerProfile>>,
    /// The concurrency slots the request holds until its response is over.
    pub(crate) inflight: Option<InFlight>,
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("limits", &self.limits)
            .field("refund", &self.refund.is_some())
            .field("caller", &self.caller)
            .field("inflight", &self.inflight)
            .finish()
    }
}

/// What a keyed decision adds to the backend's outcome: the caller and the slots held.
#[derive(Default)]
struct Extras {
    caller: Option<Arc<CallerProfile>>,
    inflight: Option<InFlight>,
}

/// The one answer the engine gives the adapter: now, or (with a distributed backend) later.
pub(crate) enum Decision {
    Ready(Result<Admitted, Rejection>),
    Pending(Pin<Box<dyn Future<Output = Result<Admitted, Rejection>> + Send>>),
}

impl Decision {
    /// A refusal decided without asking any counter.
    #[inline]
    pub(crate) fn reject(rejection: Rejection) -> Self {
        Decision::Ready(Err(rejection))
    }

    /// The answer, awaited if it is not there yet.
    pub(crate) async fn settle(self) -> Result<Admitted, Rejection> {
        match self {
            Decision::Ready(d) => d,
            Decision::Pending(fut) => fut.await,
        }
    }
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
#[inline]
fn conclude(outcome: Outcome, key: Option<&Arc<str>>, extras: Extras) -> Result<Admitted, Rejection> {
    let Outcome { result, limits } = outcome;
    let rejection = match result {
        Ok(refund) => return Ok(Admitted { limits, refund, caller: extras.caller, inflight: extras.inflight }),
        Err(Refused::Throttled { scope, wait_nanos }) => Rejection::throttled(scope, wait_nanos),
        Err(Refused::Quota(view)) => Rejection::quota(view.resets_in_secs),
        Err(Refused::Unavailable) => Rejection::new(RejectionKind::StoreUnavailable),
    };
    Err(match key {
        Some(id) => rejection.with_key(id).with_limits(limits),
        None => rejection,
    })
}

#[inline]
fn decision(verdict: Verdict, key: Option<&Arc<str>>, extras: Extras) -> Decision {
    match verdict {
        Verdict::Ready(outcome) => Decision::Ready(conclude(outcome, key, extras)),
        Verdict::Pending(fut) => {
            let key = key.cloned();
            Decision::Pending(Box::pin(async move { conclude(fut.await, key.as_ref(), extras) }))
        }
    }
}

/// Takes the concurrency slots a keyed request needs (the key's, then its customer's), or says
/// which cap refused.
#[inline]
fn take_slots(plan: &CompiledPlan, state: &KeyState, replicas: u32) -> Result<Option<InFlight>, ThrottleScope> {
    let key = match (plan.concurrency, state.inflight()) {
        (Some(cap), Some(count)) => {
            if !inflight::take(count, inflight::share(cap, replicas)) {
                return Err(ThrottleScope::KeyConcurrency);
            }
            Some(Arc::clone(state))
        }
        _ => None,
    };
    let customer = match plan.customer.as_ref().and_then(|c| c.rule.concurrency.map(|cap| (c, cap))) {
        Some((c, cap)) => {
            if !inflight::take(c.state.inflight(), inflight::share(cap, replicas)) {
                // Gives the key's slot back.
                drop(InFlight::new(key, None));
                return Err(ThrottleScope::CustomerConcurrency);
            }
            Some(Arc::clone(&c.state))
        }
        None => None,
    };
    Ok(InFlight::new(key, customer))
}

/// What a client is told to wait after a concurrency cap refused: a second.
const CONCURRENCY_WAIT_NANOS: u64 = 1_000_000_000;

/// One stage's decision maker: its routes and limits, its compiled plans, and the counter
/// backend that holds the buckets and quotas. Pure: time comes in with the [`Input`].
pub(crate) struct Engine {
    stage: Stage,
    stage_routes: RouteTable,
    stage_methods: Box<[Gcra]>,
    stage_default: Option<Gcra>,
    account: Option<Gcra>,
    plans: Plans,
    customers: Customers,
    backend: Arc<dyn CounterBackend>,
    /// The stage, shared with every caller profile.
    shared_stage: Arc<Stage>,
    /// Processes sharing each concurrency cap ([`CounterBackend::concurrency_replicas`]).
    replicas: u32,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("stage", &self.stage).field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for `stage` whose counters live in `backend`.
    pub(crate) fn new(stage: Stage, backend: Arc<dyn CounterBackend>) -> Self {
        let mut routes = RouteTableBuilder::default();
        add_stage_routes(&mut routes, &stage);
        let stage_routes = routes.build().unwrap_or_else(|e| {
            // A `Stage` checks its routes as it is built, so this is unreachable in practice.
            tracing::error!(error = %e, "stage method routes conflict; stage method throttles are off");
            RouteTable::default()
        });
        Self {
            stage_routes,
            stage_methods: stage.methods().iter().map(|(_, t)| Gcra::new(*t)).collect(),
            stage_default: stage.throttle().map(Gcra::new),
            account: stage.account().map(Gcra::new),
            shared_stage: Arc::new(stage.clone()),
            stage,
            plans: Plans::default(),
            customers: Customers::default(),
            replicas: backend.concurrency_replicas().max(1),
            backend,
        }
    }

    /// The stage this engine guards.
    pub(crate) fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Where the counters live.
    pub(crate) fn backend(&self) -> &dyn CounterBackend {
        &*self.backend
    }

    /// The stage, shared.
    pub(crate) fn shared_stage(&self) -> &Arc<Stage> {
        &self.shared_stage
    }

    /// `plan` as this stage applies it to a key with its own limits (`overrides`) and/or a
    /// customer; the shared compilation when it has neither.
    pub(crate) fn compile_for(
        &self,
        plan: &Arc<UsagePlan>,
        overrides: Option<&Overrides>,
        customer: Option<&Arc<Customer>>,
        now: Now,
    ) -> Result<Arc<CompiledPlan>, ConfigError> {
        let customer = customer.and_then(|c| self.customers.bind(c, &*self.backend, now));
        self.plans.compile_for(&self.stage, plan, overrides, customer, now)
    }

    /// Stage routing for a request (which stage method, public or not).
    #[inline]
    pub(crate) fn route(&self, req: Req<'_>) -> Slots {
        if self.stage_routes.is_empty() {
            Slots::default()
        } else {
            self.stage_routes.lookup(req.method, req.path)
        }
    }

    /// Decides a request to a public method (no key, no quota): stage and account throttles only.
    #[inline]
    pub(crate) fn decide_public(&self, input: &Input<'_>) -> Decision {
        let check = Check {
            key: None,
            buckets: self.buckets(None, input.slots),
            quota: None,
            customer: None,
            now: input.now,
            views: false,
            refund: false,
        };
        decision(self.backend.check(&check), None, Extras::default())
    }

    /// Decides a keyed request with the key's grant; `expires` is the Unix second from which the
    /// key is expired; `caller` is the key's part of the [`Caller`] (when the layer hands one to
    /// the inner service).
    #[inline]
    pub(crate) fn decide(
        &self,
        grant: &Grant,
        expires: u32,
        caller: Option<&Arc<CallerProfile>>,
        input: &Input<'_>,
    ) -> Decision {
        let (plan, state) = match grant {
            Grant::Plan(p, s) => (p, s),
            Grant::Refused(r) => return Decision::reject(Rejection::new(r.kind).with_key(&r.id)),
        };
        if input.now.unix_secs >= i64::from(expires) {
            return Decision::reject(Rejection::new(RejectionKind::ExpiredKey).with_key(grant.id()));
        }
        let slots = match &plan.routes {
            Some(routes) => routes.lookup(input.req.method, input.req.path),
            None => input.slots,
        };
        let inflight = if plan.concurrency.is_some() || plan.customer.is_some() {
            match take_slots(plan, state, self.replicas) {
                Ok(slots) => slots,
                Err(scope) => {
                    let r = Rejection::throttled(scope, CONCURRENCY_WAIT_NANOS).with_key(grant.id());
                    return Decision::reject(r);
                }
            }
        } else {
            None
        };
        let check = Check {
            key: Some(KeyCheck { id: grant.id(), plan, state }),
            buckets: self.buckets(Some(plan), slots),
            quota: plan.quota.as_ref(),
            customer: plan.customer.as_ref(),
            now: input.now,
            views: input.want.views,
            refund: input.want.refund,
        };
        let extras = Extras { caller: caller.cloned(), inflight };
        decision(self.backend.check(&check), Some(grant.id()), extras)
    }

    /// The buckets a request must pass, most specific first: per-key method, per-key plan,
    /// customer, stage method, stage default, account.
    #[inline]
    fn buckets<'a>(&'a self, plan: Option<&'a CompiledPlan>, slots: Slots) -> [Option<BucketRef<'a>>; BUCKETS] {
        let bucket = |slot, scope, gcra| Some(BucketRef { slot, scope, gcra });
        let mut out = [None; BUCKETS];
        if let Some(plan) = plan {
            if slots.plan != NONE {
                out[0] = plan
                    .methods
                    .get(usize::from(slots.plan))
                    .and_then(|g| bucket(BucketSlot::KeyMethod(slots.plan), ThrottleScope::KeyMethod, g));
            }
            out[1] = plan.throttle.as_ref().and_then(|g| bucket(BucketSlot::Key, ThrottleScope::Key, g));
            if let Some(c) = &plan.customer {
                out[2] =
                    c.rule.throttle.as_ref().and_then(|g| bucket(BucketSlot::Customer, ThrottleScope::Customer, g));
            }
        }
        if slots.stage != NONE {
            out[3] = self
                .stage_methods
                .get(usize::from(slots.stage))
                .and_then(|g| bucket(BucketSlot::StageMethod(slots.stage), ThrottleScope::StageMethod, g));
        }
        out[4] = self.stage_default.as_ref().and_then(|g| bucket(BucketSlot::Stage, ThrottleScope::Stage, g));
        out[5] = self.account.as_ref().and_then(|g| bucket(BucketSlot::Account, ThrottleScope::Account, g));
        out
    }
}

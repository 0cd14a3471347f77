//! The decision for one request: which buckets it must pass, most specific first, and the
//! backend's answer turned into the request's.

use super::counter::{BucketRef, BucketSlot, Check, CounterBackend, KeyCheck, Outcome, Refused, Verdict};
use super::gcra::Gcra;
use super::grant::Grant;
use super::plan::{add_stage_routes, CompiledPlan, Plans};
use super::routes::{RouteTable, RouteTableBuilder, Slots, NONE};
use super::{clock::Now, counter::Refund};
use crate::error::ConfigError;
use crate::model::{Stage, UsagePlan};
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
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted").field("limits", &self.limits).field("refund", &self.refund.is_some()).finish()
    }
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

#[inline]
fn decision(verdict: Verdict, key: Option<&Arc<str>>) -> Decision {
    match verdict {
        Verdict::Ready(outcome) => Decision::Ready(conclude(outcome, key)),
        Verdict::Pending(fut) => {
            let key = key.cloned();
            Decision::Pending(Box::pin(async move { conclude(fut.await, key.as_ref()) }))
        }
    }
}

/// One stage's decision maker: its routes and limits, its compiled plans, and the counter
/// backend that holds the buckets and quotas. Pure: time comes in with the [`Input`].
pub(crate) struct Engine {
    stage: Stage,
    stage_routes: RouteTable,
    stage_methods: Box<[Gcra]>,
    stage_default: Option<Gcra>,
    account: Option<Gcra>,
    plans: Plans,
    backend: Arc<dyn CounterBackend>,
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
            stage,
            plans: Plans::default(),
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

    /// `plan` as this stage applies it.
    pub(crate) fn compile(&self, plan: &Arc<UsagePlan>, now: Now) -> Result<Arc<CompiledPlan>, ConfigError> {
        self.plans.compile(&self.stage, plan, now)
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
            now: input.now,
            views: false,
            refund: false,
        };
        decision(self.backend.check(&check), None)
    }

    /// Decides a keyed request with the key's grant; `expires` is the Unix second from which the
    /// key is expired.
    #[inline]
    pub(crate) fn decide(&self, grant: &Grant, expires: u32, input: &Input<'_>) -> Decision {
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
        let check = Check {
            key: Some(KeyCheck { id: grant.id(), plan, state }),
            buckets: self.buckets(Some(plan), slots),
            quota: plan.quota.as_ref(),
            now: input.now,
            views: input.want.views,
            refund: input.want.refund,
        };
        decision(self.backend.check(&check), Some(grant.id()))
    }

    /// The buckets a request must pass, most specific first: per-key method, per-key plan,
    /// stage method, stage default, account.
    #[inline]
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

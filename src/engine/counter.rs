//! The counter seam: what the engine asks of the place where counters live, and what it gets
//! back. The engine decides *what* to check (which buckets, in which order, which quota); a
//! [`CounterBackend`] holds the state and answers. The in-process backend answers at once,
//! without allocating; a distributed backend (Redis, behind a feature) may answer later with
//! [`Verdict::Pending`], and the layer awaits it without changing anything else. The layer's
//! builder picks the backend; the engine never makes one.
//!
//! # Invariant
//!
//! [`CounterBackend::check`] tries the buckets in the order given and is all-or-nothing: either
//! every bucket and the quota admitted the request, or none of them keeps anything of it. A
//! backend may under-admit when it cannot give a token back exactly, never over-admit. A state
//! made by [`CounterBackend::key_state`] for a key and plan carries the counts of the `previous`
//! state of the same key and plan over, so revalidating a key loses no count.

use super::clock::Now;
use super::customer::{CompiledCustomer, CustomerBinding, CustomerState};
use super::gcra::Gcra;
use super::plan::CompiledPlan;
use super::quota::QuotaRule;
use crate::rejection::ThrottleScope;
use crate::view::{BucketView, Limits, QuotaView};
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// Which bucket a check names; the backend maps it to its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BucketSlot {
    /// The key's bucket for the plan's method throttle number `n`.
    KeyMethod(u16),
    /// The key's plan bucket.
    Key,
    /// The bucket of the key's customer, shared by its keys.
    Customer,
    /// The stage's bucket for its method throttle number `n`.
    StageMethod(u16),
    /// The stage default bucket.
    Stage,
    /// The account bucket.
    Account,
}

/// One bucket to take a token from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketRef<'a> {
    pub(crate) slot: BucketSlot,
    pub(crate) scope: ThrottleScope,
    pub(crate) gcra: &'a Gcra,
}

/// A backend's state for one key under one plan, made by [`CounterBackend::key_state`] and kept
/// in the key cache, so a request finds it without another lookup.
pub(crate) type KeyState = Arc<dyn BackendKey>;

/// What every backend's per-key state offers the engine: the key id (kept once, here, not in
/// the cache entry as well) and a way back to the backend's own type.
pub(crate) trait BackendKey: Any + Send + Sync + fmt::Debug {
    /// The key id (never the secret value).
    fn key_id(&self) -> &Arc<str>;
    /// For the backend's downcasts.
    fn as_any(&self) -> &dyn Any;
    /// For the backend's downcasts of the shared pointer.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The key's requests in the inner service now, when its plan caps them (`None` otherwise).
    /// Counted in this process, whatever the backend: concurrency caps are per replica.
    fn inflight(&self) -> Option<&AtomicU32>;
}

/// The key side of a check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyCheck<'a> {
    /// The key id (never the secret value); a distributed backend names its counters with it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) id: &'a Arc<str>,
    pub(crate) plan: &'a Arc<CompiledPlan>,
    pub(crate) state: &'a KeyState,
}

/// How many buckets a check may name: key method, key, customer, stage method, stage, account.
pub(crate) const BUCKETS: usize = 6;

/// Everything one request must pass, most specific bucket first.
#[derive(Debug)]
pub(crate) struct Check<'a> {
    pub(crate) key: Option<KeyCheck<'a>>,
    pub(crate) buckets: [Option<BucketRef<'a>>; BUCKETS],
    pub(crate) quota: Option<&'a QuotaRule>,
    /// The key's customer: its bucket is among `buckets` (slot [`BucketSlot::Customer`]); its
    /// quota, if any, is counted after the key's, and a refusal gives the key's count back.
    pub(crate) customer: Option<&'a CustomerBinding>,
    pub(crate) now: Now,
    /// Fill in per-key views (for rate-limit headers).
    pub(crate) views: bool,
    /// Return a way to give the quota count back (refund policy).
    pub(crate) refund: bool,
}

/// Why a backend refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Throttled {
        scope: ThrottleScope,
        wait_nanos: u64,
    },
    Quota(QuotaView),
    /// The counters could not be reached and the failure policy is to fail closed (503).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
}

/// Gives one counted request back to its quota.
pub(crate) type Refund = Box<dyn FnOnce() + Send + Sync>;

/// A backend's answer.
pub(crate) struct Outcome {
    pub(crate) result: Result<Option<Refund>, Refused>,
    pub(crate) limits: Option<Box<Limits>>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = self.result.as_ref().map(|r| r.is_some());
        f.debug_struct("Outcome").field("result (refund?)", &result).field("limits", &self.limits).finish()
    }
}

/// A backend's answer, now or later.
pub(crate) enum Verdict {
    Ready(Outcome),
    /// The answer needs I/O (a distributed backend); the service awaits it.
    #[cfg_attr(not(test), allow(dead_code))]
    Pending(Pin<Box<dyn Future<Output = Outcome> + Send>>),
}

/// Holds bucket and quota state and decides checks against it.
pub(crate) trait CounterBackend: Send + Sync + fmt::Debug + 'static {
    /// The state of key `id` under `plan`, called when a key is (re)validated. `previous` is the
    /// state the cache held for this key until now, if any: a backend keeping counters in it
    /// must carry them over when it is for the same plan, so revalidation loses nothing.
    /// `now` lets a backend drop idle state of keys it no longer serves.
    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>, previous: Option<&KeyState>, now: Now) -> KeyState;

    /// The state of a customer (shared by its keys), called when the customer is first seen or
    /// has changed; `previous` is the state of its earlier version, whose counts a backend
    /// carries over (it may also keep them by customer id).
    fn customer_state(&self, rule: &Arc<CompiledCustomer>, previous: Option<&CustomerState>, now: Now)
        -> CustomerState;

    /// Decides one request.
    fn check(&self, check: &Check<'_>) -> Verdict;

    /// How many processes share each concurrency cap: a replica admits `ceil(N / replicas)` of a
    /// cap of `N` (concurrency is counted in each process). 1 in process.
    fn concurrency_replicas(&self) -> u32 {
        1
    }
}

/// A bucket's view for [`Limits`], when views were asked for.
pub(crate) fn bucket_view(
    views: bool,
    gcra: Option<&Gcra>,
    state: &std::sync::atomic::AtomicU64,
    now: Now,
) -> Option<BucketView> {
    if views {
        gcra.map(|g| g.view(state, now.mono_nanos))
    } else {
        None
    }
}

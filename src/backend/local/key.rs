//! One key's counters in this process.

use crate::engine::ledger::{DayCounter, Ledger, Owner};
use crate::engine::{BackendCustomer, BackendKey, CompiledPlan, Now};
use crate::model::MethodKey;
use std::any::Any;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// One key's state under one version of a plan: its plan bucket and quota count inline (one
/// cache line to touch), and one bucket per method throttle.
#[derive(Debug)]
pub(super) struct LocalKey {
    pub(super) key: AtomicU64,
    pub(super) quota: AtomicU64,
    /// Today's count of forwarded requests (the usage ledger's hot part).
    pub(super) day: DayCounter,
    /// The bucket of the plan's first method throttle (most plans have at most one); no separate
    /// allocation to reach.
    pub(super) methods: [AtomicU64; 1],
    /// What few keys need, out of line to keep every key's state small.
    pub(super) extra: Option<Box<Extra>>,
    /// The key id (shared with the store's record, not a copy).
    pub(super) id: Arc<str>,
    /// The plan version this state was made for (its method keys carry buckets over changes).
    pub(super) plan: Arc<CompiledPlan>,
}

#[derive(Debug)]
pub(super) struct Extra {
    /// When a plan change replaced the method list, the first state of this key and plan: its
    /// `key` and `quota` are the ones that count, so a plan change never loses a count.
    pub(super) origin: Option<Arc<LocalKey>>,
    /// The buckets of method throttles after the first.
    pub(super) more_methods: Box<[AtomicU64]>,
    /// Requests in the inner service now, when the plan caps them; shared with the key's earlier
    /// state when a plan change replaced it (its requests still in flight count).
    pub(super) inflight: Option<Arc<AtomicU32>>,
}

impl BackendKey for LocalKey {
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
        self.extra.as_ref().and_then(|e| e.inflight.as_deref())
    }
}

/// One customer's counters in this process: its bucket and quota count, shared by its keys.
#[derive(Debug)]
pub(super) struct LocalCustomer {
    pub(super) bucket: AtomicU64,
    pub(super) quota: AtomicU64,
    pub(super) inflight: AtomicU32,
}

impl LocalCustomer {
    /// A customer nothing was counted for yet.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self { bucket: AtomicU64::new(0), quota: AtomicU64::new(0), inflight: AtomicU32::new(0) })
    }
}

impl BackendCustomer for LocalCustomer {
    fn inflight(&self) -> &AtomicU32 {
        &self.inflight
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LocalKey {
    /// The state holding the plan bucket and the quota count.
    pub(super) fn core(&self) -> &LocalKey {
        self.extra.as_ref().and_then(|e| e.origin.as_deref()).unwrap_or(self)
    }

    pub(super) fn method(&self, i: usize) -> Option<&AtomicU64> {
        if i >= self.plan.method_keys.len() {
            None
        } else if i < self.methods.len() {
            self.methods.get(i)
        } else {
            self.extra.as_ref().and_then(|e| e.more_methods.get(i - self.methods.len()))
        }
    }

    /// Whether this state holds nothing a new one would not: buckets full, no count in the
    /// current quota period. The count is judged by its own period tag, not by `self.plan`: a
    /// state outlives plan versions (a plan that gains or changes its quota keeps its keys'
    /// states), so the plan it was made for may have had no quota or another period.
    pub(super) fn is_idle(&self, now: Now) -> bool {
        let full = |b: &AtomicU64| b.load(std::sync::atomic::Ordering::Acquire) <= now.mono_nanos;
        let core = self.core();
        full(&core.key)
            && self.methods.iter().all(full)
            && self.extra.as_ref().is_none_or(|e| e.more_methods.iter().all(full))
            && !crate::engine::quota_holds_count(core.quota.load(std::sync::atomic::Ordering::Acquire), now.unix_secs)
    }

    /// Where this state's closed days go.
    pub(super) fn owner<'a>(&'a self, ledger: &'a Ledger) -> Owner<'a> {
        Owner { ledger, key: &self.id, plan: self.plan.plan.id_arc() }
    }

    pub(super) fn method_keys(&self) -> &[MethodKey] {
        &self.plan.method_keys
    }
}

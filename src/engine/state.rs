//! Per-key state and compiled plans.
//!
//! A presented key value maps to one [`KeyEntry`]: the store's answer (cached until
//! `fresh_until`) and, for a key allowed on this stage, its counters. Counters belong to the key
//! id, not to the entry, so revalidating a key or changing its plan never loses a count.

use super::gcra::{BucketView, Gcra};
use super::quota::{QuotaRule, QuotaView};
use super::routes::RouteTable;
use crate::model::UsagePlan;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A shared bucket (stage, stage method or account).
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) gcra: Gcra,
    pub(crate) state: AtomicU64,
}

impl Bucket {
    pub(crate) fn new(gcra: Gcra) -> Self {
        Self { gcra, state: AtomicU64::new(0) }
    }
}

/// A plan as this stage applies it.
#[derive(Debug)]
pub(crate) struct CompiledPlan {
    pub(crate) plan: Arc<UsagePlan>,
    /// Stage routes plus this plan's method routes; `None` when the plan adds no routes and the
    /// stage's table can be used as it is.
    pub(crate) routes: Option<RouteTable>,
    pub(crate) throttle: Option<Gcra>,
    pub(crate) methods: Box<[Gcra]>,
    pub(crate) quota: Option<QuotaRule>,
    /// Unix seconds the plan counts as created at (for the quota offset).
    pub(crate) created: i64,
}

/// Token bucket and quota state of one key.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) key: AtomicU64,
    pub(crate) quota: AtomicU64,
    pub(crate) methods: Box<[AtomicU64]>,
}

impl Counters {
    pub(crate) fn new(methods: usize) -> Self {
        Self {
            key: AtomicU64::new(0),
            quota: AtomicU64::new(0),
            methods: (0..methods).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What the store said about a key, as this stage sees it.
#[derive(Debug)]
pub(crate) enum Grant {
    Plan(Arc<CompiledPlan>, Arc<Counters>),
    Disabled,
    WrongStage,
}

/// One cached key.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) id: Arc<str>,
    pub(crate) grant: Grant,
    /// Unix seconds from which the key is expired.
    pub(crate) expires: Option<i64>,
    /// Monotonic nanoseconds until which the store's answer is used without asking again.
    pub(crate) fresh_until: u64,
    /// Monotonic nanoseconds until which the answer may still be used if the store fails.
    pub(crate) stale_until: u64,
}

/// Per-key limits as seen right after a decision, for rate-limit headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) quota: Option<QuotaView>,
    pub(crate) key: Option<BucketView>,
    pub(crate) method: Option<BucketView>,
}

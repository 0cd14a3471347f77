//! The usage seam: what the [`Usage`](super::Usage) handle asks of the backend that counts
//! (the usage ledger and the quota counts), beside the code that calls it.
//!
//! # Invariant
//!
//! A day's `used` only grows, except through `set_quota_used` (UpdateUsage); `pending` minus
//! what was `acknowledge`d is never lost by eviction or revalidation.

use crate::engine::ledger::Row;
use crate::engine::QuotaRule;
use std::sync::Arc;

/// One key's usage under one plan on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayTotal {
    pub(crate) day: i32,
    /// Forwarded requests.
    pub(crate) used: u64,
    /// Quota count change made that day by `UpdateUsage`.
    pub(crate) adjust: i64,
}

/// Usage not yet acknowledged by a sink: the count of (key, plan, day) is now `total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) key: Arc<str>,
    pub(crate) plan: Arc<str>,
    pub(crate) day: i32,
    pub(crate) total: u64,
    pub(crate) reported: u64,
}

/// Everything a restart must not lose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Raw quota counts (period tag and count) by key and plan.
    pub(crate) quotas: Vec<(Arc<str>, Arc<str>, u64)>,
    /// Day rows by key and plan: (day, used, adjust, reported).
    pub(crate) days: Vec<(Arc<str>, Arc<str>, i32, Row)>,
}

/// What the public usage handle asks of a backend.
pub(crate) trait UsageBackend: Send + Sync {
    /// Usage of `key` under `plan` on the days `from..=to` that have any.
    fn days(&self, key: &str, plan: &str, from: i32, to: i32) -> Vec<DayTotal>;
    /// The keys with counts or rows under `plan`.
    fn keys_of_plan(&self, plan: &str) -> Vec<Arc<str>>;
    /// Requests counted against the quota in the period containing `unix` (below 0 after an
    /// UpdateUsage granted more than the limit).
    fn quota_used(&self, key: &str, plan: &str, rule: &QuotaRule, unix: i64) -> i64;
    /// Sets that count to `used`, records the change in the ledger, and returns the old count.
    fn set_quota_used(&self, key: &Arc<str>, plan: &Arc<str>, rule: &QuotaRule, unix: i64, used: i64) -> i64;
    /// Every count, for a snapshot.
    fn counts(&self) -> Counts;
    /// Adds counts from a snapshot.
    fn restore(&self, counts: Counts);
    /// Usage a sink has not acknowledged yet.
    fn pending(&self) -> Vec<Pending>;
    /// Records that a sink acknowledged `batch`.
    fn acknowledge(&self, batch: &[Pending]);
}

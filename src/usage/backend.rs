//! The usage seam: what the [`Usage`](super::Usage) handle asks of the backend that counts
//! (the usage ledger and the quota counts), beside the code that calls it.
//!
//! # Invariant
//!
//! A day's `used` only grows, except through `set_quota_used` (UpdateUsage); `pending` minus
//! what was `acknowledge`d is never lost by eviction or revalidation.

use super::error::UsageError;
use crate::engine::ledger::Row;
use crate::engine::QuotaRule;
use std::future::Future;
use std::pin::Pin;
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
    /// Raw quota counts of customers, by customer id (in process; in Redis mode they stay in
    /// Redis, like the keys' between restarts of a replica).
    pub(crate) customers: Vec<(Arc<str>, u64)>,
}

/// An answer of a backend that may have to ask elsewhere (Redis): a boxed future, so that the
/// trait stays object-safe. The in-process backend answers at once (`Box::pin(ready(..))`).
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, UsageError>> + Send + 'a>>;

/// An answer that is ready now.
pub(crate) fn ready<'a, T: Send + 'a>(value: T) -> Answer<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

/// What the public usage handle asks of a backend. A backend that cannot answer (Redis
/// unreachable) answers a [`UsageError`], never a silent zero.
pub(crate) trait UsageBackend: Send + Sync {
    /// Usage of `key` under `plan` on the days `from..=to` that have any.
    fn days<'a>(&'a self, key: &'a str, plan: &'a str, from: i32, to: i32) -> Answer<'a, Vec<DayTotal>>;
    /// The keys with counts or rows under `plan`.
    fn keys_of_plan<'a>(&'a self, plan: &'a str) -> Answer<'a, Vec<Arc<str>>>;
    /// Requests counted against the quota in the period containing `unix` (below 0 after an
    /// UpdateUsage granted more than the limit).
    fn quota_used<'a>(&'a self, key: &'a str, plan: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64>;
    /// Requests counted against customer `customer`'s quota (its `rule`) in the period
    /// containing `unix`, by all its keys (0 when nothing was counted in that period).
    fn customer_used<'a>(&'a self, customer: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64>;
    /// Sets that count to `used`, records the change in the ledger, and returns the old count.
    fn set_quota_used<'a>(
        &'a self,
        key: &'a Arc<str>,
        plan: &'a Arc<str>,
        rule: &'a QuotaRule,
        unix: i64,
        used: i64,
    ) -> Answer<'a, i64>;
    /// Every count, for a snapshot: the quota counts and the ledger days within the retention
    /// (with Redis: the deployment's, quota counts of periods not over only).
    fn counts(&self) -> Answer<'_, Counts>;
    /// Adds counts from a snapshot (counts of the same quota period and day add up).
    fn restore(&self, counts: Counts) -> Answer<'_, ()>;
    /// Usage a sink has not acknowledged yet.
    fn pending(&self) -> Answer<'_, Vec<Pending>>;
    /// Records that a sink acknowledged `batch`.
    fn acknowledge<'a>(&'a self, batch: &'a [Pending]) -> Answer<'a, ()>;
}

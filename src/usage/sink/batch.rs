//! Usage batches, records and the sink trait, and the handle's pending and acknowledge.

use crate::usage::backend::Pending;
use crate::usage::error::UsageError;
use crate::usage::handle::Usage;
use crate::usage::report::date_of_day;
use std::fmt;
use std::future::Future;
use time::Date;

/// A change of one key's count under one plan on one day since the sink last acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRecord {
    /// The key id (never its value).
    pub key_id: String,
    /// The plan.
    pub plan_id: String,
    /// The UTC day the requests were forwarded on.
    pub date: Date,
    /// Requests forwarded since the last acknowledged count (negative only when refunds took
    /// back requests already reported).
    pub requests: i64,
    /// The day's count now (what an idempotent sink stores).
    pub total: u64,
}

/// Usage not acknowledged yet, from [`Usage::pending`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct UsageBatch {
    records: Vec<UsageRecord>,
    pending: Vec<Pending>,
}

impl UsageBatch {
    /// The records, oldest day first.
    pub fn records(&self) -> &[UsageRecord] {
        &self.records
    }

    /// Whether there is nothing to deliver.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Splits into batches of at most `n` records (each acknowledged on its own).
    pub fn chunks(self, n: usize) -> Vec<UsageBatch> {
        let n = n.max(1);
        let mut out = Vec::new();
        let (mut records, mut pending) = (self.records.into_iter(), self.pending.into_iter());
        loop {
            let r: Vec<_> = records.by_ref().take(n).collect();
            if r.is_empty() {
                return out;
            }
            let p = pending.by_ref().take(r.len()).collect();
            out.push(UsageBatch { records: r, pending: p });
        }
    }
}

/// Where usage increments go: a billing system, a database, a queue.
///
/// The ledger remembers, per key, plan and day, how much of the count a sink has acknowledged.
/// [`Usage::pending`] gives what is not acknowledged yet; [`Usage::acknowledge`] records a batch
/// as delivered; [`UsageReporter`](crate::usage::UsageReporter) runs that loop. `deliver`
/// returns `Ok` once the batch is stored; after an `Err`, or a crash between delivery and
/// acknowledgement, the same increments are offered again, merged with newer counts: delivery is
/// at least once. Every record carries the day's `total` as well as the increment, so a sink
/// that stores totals (an upsert on key, plan and day) is exact even when a batch arrives twice.
pub trait UsageSink: Send + Sync + 'static {
    /// Why a delivery failed (logged, and returned by
    /// [`UsageReporter::flush`](crate::usage::UsageReporter::flush)).
    type Error: fmt::Display + Send + 'static;

    /// Stores one batch.
    fn deliver(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<S: UsageSink> UsageSink for std::sync::Arc<S> {
    type Error = S::Error;

    fn deliver(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).deliver(batch)
    }
}

impl Usage {
    /// Usage not acknowledged by a sink yet (see [`UsageSink`]).
    pub async fn pending(&self) -> Result<UsageBatch, UsageError> {
        let pending = self.backend()?.pending().await?;
        let records = pending
            .iter()
            .map(|p| UsageRecord {
                key_id: p.key.to_string(),
                plan_id: p.plan.to_string(),
                date: date_of_day(p.day),
                requests: i64::try_from(p.total).unwrap_or(i64::MAX) - i64::try_from(p.reported).unwrap_or(i64::MAX),
                total: p.total,
            })
            .collect();
        Ok(UsageBatch { records, pending })
    }

    /// Records that `batch` was delivered: its counts are not offered again.
    pub async fn acknowledge(&self, batch: &UsageBatch) -> Result<(), UsageError> {
        self.backend()?.acknowledge(&batch.pending).await
    }
}

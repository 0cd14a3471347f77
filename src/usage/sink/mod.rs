//! Usage increments for billing: [`UsageSink`], delivered at least once.
//!
//! The ledger remembers, per key, plan and day, how much of the count a sink has acknowledged.
//! [`Usage::pending`] gives what is not acknowledged yet; [`Usage::acknowledge`] records a batch
//! as delivered. A batch that failed, or whose acknowledgement was lost (a crash between the two),
//! is offered again, merged with newer counts: delivery is at least once. Every record carries
//! the day's `total` as well as the increment, so a sink that stores totals (an upsert on key,
//! plan and day) is exact even when a batch arrives twice.

mod batch;
#[cfg(feature = "tokio")]
mod reporter;

pub use batch::{UsageBatch, UsageRecord, UsageSink};
#[cfg(feature = "tokio")]
pub use reporter::{ReportError, ReportErrorKind, UsageReporter, UsageReporterBuilder};

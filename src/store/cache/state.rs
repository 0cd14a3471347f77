//! The guard's state: the values it knows, the values it knows are unknown, the lookup budget,
//! its counters and the errors it gives.

use crate::engine::{Clock, Gcra};
use crate::keycache::Flights;
use crate::store::Invalidation;
use moka::future::Cache;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Counters of what the guard did, for metrics and tests. Cumulative since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered without asking the store: an unknown value within its negative TTL, or
    /// a concurrent lookup of the same value that waited for another one's store call.
    pub hits: u64,
    /// Calls made to the wrapped store.
    pub store_lookups: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Lookups refused because the lookup budget was spent.
    pub budget_refused: u64,
    /// Known values remembered (exempt from the budget; approximate until pending maintenance
    /// has run).
    pub known_entries: u64,
    /// Unknown values remembered (approximate until pending maintenance has run).
    pub unknown_entries: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) store_lookups: AtomicU64,
    pub(super) store_errors: AtomicU64,
    pub(super) budget_refused: AtomicU64,
}

/// The lookup budget was spent: the store is not asked about unknown values faster than
/// [`CachedKeyStoreBuilder::lookup_budget`](super::CachedKeyStoreBuilder::lookup_budget) allows
/// (a flood of random keys).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("key store lookup budget exhausted; retry in {retry_after:?}")]
pub struct LookupBudgetExhausted {
    /// When the budget admits the next lookup.
    pub retry_after: Duration,
}

/// How long a value the store answered as a known key stays exempt from the lookup budget.
pub(super) const KNOWN_FOR: Duration = Duration::from_secs(15 * 60);

pub(super) struct Inner<S> {
    pub(super) store: S,
    /// Values the store answered as known keys (exempt from the budget).
    pub(super) known: Cache<Box<str>, (), foldhash::fast::RandomState>,
    /// Values the store answered as unknown, with when (monotonic nanoseconds of `clock`) and
    /// at which generation of `invalidation`: an answer from before an invalidation is not used.
    pub(super) unknown: Cache<Box<str>, (u64, u64), foldhash::fast::RandomState>,
    pub(super) negative_ttl: u64,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) budget: Option<(Gcra, AtomicU64)>,
    /// The handle layers follow: the wrapped store's own if it has one, else this guard's.
    pub(super) invalidation: Invalidation,
    /// One store call per value at a time (the key cache's single flight).
    pub(super) flights: Flights,
    #[cfg(feature = "tokio")]
    pub(super) timeout: Option<Duration>,
    pub(super) counters: Counters,
}

/// A concurrent caller's store call failed; this caller waited for it instead of calling again.
#[derive(Debug, thiserror::Error)]
#[error("the key store failed for a concurrent lookup of the same key")]
pub(super) struct ConcurrentFailure;

/// The store did not answer within the lookup timeout.
#[cfg(feature = "tokio")]
#[derive(Debug, thiserror::Error)]
#[error("the key store did not answer within {0:?}")]
pub(super) struct TimedOut(pub(super) Duration);

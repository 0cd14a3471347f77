//! The cache's state: answers, counters and the errors it gives.

use crate::engine::{Clock, Gcra};
use crate::store::{Invalidation, KeyRecord};
use moka::future::Cache;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// A store's answer and when it was given (monotonic nanoseconds of the cache's clock).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) record: Option<KeyRecord>,
    pub(super) at: u64,
}

/// Counters of what the cache did, for metrics and tests. Cumulative since the cache was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache (known or unknown key) without asking the store.
    pub hits: u64,
    /// Calls made to the wrapped store.
    pub store_lookups: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Lookups answered with a known key's expired answer because the store failed or the
    /// lookup budget was spent (stale-if-error).
    pub stale_served: u64,
    /// Lookups refused because the lookup budget was spent and no stale answer could be used.
    pub budget_refused: u64,
    /// Known keys in the cache (approximate until pending maintenance has run).
    pub known_entries: u64,
    /// Unknown keys in the cache (approximate until pending maintenance has run).
    pub unknown_entries: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) store_lookups: AtomicU64,
    pub(super) store_errors: AtomicU64,
    pub(super) stale_served: AtomicU64,
    pub(super) budget_refused: AtomicU64,
}

/// The lookup budget was spent: the store is not asked about uncached keys faster than
/// [`CachedKeyStoreBuilder::lookup_budget`] allows (a flood of random keys).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("key store lookup budget exhausted; retry in {retry_after:?}")]
pub struct LookupBudgetExhausted {
    /// When the budget admits the next lookup.
    pub retry_after: Duration,
}

pub(super) struct Inner<S> {
    pub(super) store: S,
    pub(super) known: Cache<Box<str>, Arc<Answer>, foldhash::fast::RandomState>,
    pub(super) unknown: Cache<Box<str>, Arc<Answer>, foldhash::fast::RandomState>,
    pub(super) ttl: u64,
    pub(super) negative_ttl: u64,
    pub(super) stale_if_error: u64,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) budget: Option<(Gcra, AtomicU64)>,
    pub(super) invalidation: Invalidation,
    /// The wrapped store's own invalidation handle and the generation last seen of it.
    pub(super) inner_invalidation: Option<(Invalidation, AtomicU64)>,
    /// Store calls completed so far, and per value the number and kind of the last one that
    /// did not leave a usable answer in `known`/`unknown` (a failure, or an unknown key with
    /// negative caching off): callers that waited for that call take its outcome instead of
    /// calling again, so concurrent lookups make one store call whatever the answer.
    pub(super) completed: AtomicU64,
    pub(super) recent: Cache<Box<str>, (u64, Recent), foldhash::fast::RandomState>,
    #[cfg(feature = "tokio")]
    pub(super) timeout: Option<Duration>,
    pub(super) counters: Counters,
}

/// What a recent store call for a value ended with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Recent {
    Failed,
    Unknown,
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


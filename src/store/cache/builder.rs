//! [`CachedKeyStoreBuilder`]: the cache's settings.

use super::state::{Counters, Inner};
use super::wrapper::CachedKeyStore;
use crate::engine::{nanos, Clock, Gcra, SystemClock};
use crate::model::Throttle;
use crate::store::{Invalidation, KeyStore};
use moka::future::Cache;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`CachedKeyStore`].
#[must_use]
pub struct CachedKeyStoreBuilder<S> {
    store: S,
    ttl: Duration,
    negative_ttl: Duration,
    stale_if_error: Duration,
    max_known: u64,
    max_unknown: u64,
    budget: Option<Throttle>,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "tokio")]
    timeout: Option<Duration>,
}

impl<S: fmt::Debug> fmt::Debug for CachedKeyStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStoreBuilder")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_if_error", &self.stale_if_error)
            .field("max_known", &self.max_known)
            .field("max_unknown", &self.max_unknown)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> CachedKeyStore<S> {
    /// `store` behind a cache with default settings.
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// A builder to change the defaults.
    pub fn builder(store: S) -> CachedKeyStoreBuilder<S> {
        CachedKeyStoreBuilder {
            store,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(300),
            max_known: 1_000_000,
            max_unknown: 10_000,
            // Checked constants: rate > 0, burst >= 1.
            budget: Throttle::new(1000.0, 2000).ok(),
            clock: Arc::new(SystemClock::new()),
            #[cfg(feature = "tokio")]
            timeout: None,
        }
    }
}

impl<S: KeyStore> CachedKeyStoreBuilder<S> {
    /// How long a known key's answer is used (60 s by default).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown key's answer is used (5 s by default). Zero turns negative caching off.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How long past its TTL a known key keeps its last answer while the store fails (5 min by
    /// default). Zero turns stale-if-error off.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// Most known keys kept (1,000,000 by default); beyond it the least useful are evicted
    /// (moka's TinyLFU), which only costs them a store lookup.
    pub fn max_known_keys(mut self, n: u64) -> Self {
        self.max_known = n;
        self
    }

    /// Most unknown keys remembered (10,000 by default): the memory bound under a flood of
    /// random values.
    pub fn max_unknown_keys(mut self, n: u64) -> Self {
        self.max_unknown = n;
        self
    }

    /// How fast the store may be asked about values that are not cached (`Some(1000/s, burst
    /// 2000)` by default); `None` removes the bound.
    pub fn lookup_budget(mut self, budget: Option<Throttle>) -> Self {
        self.budget = budget;
        self
    }

    /// How long a store call may take before it counts as failed (stale-if-error or 503). Off
    /// by default: give it a deadline here, or give your store its own (e.g. sqlx's
    /// `acquire_timeout` and a statement timeout). Needs the `tokio` feature (enabled by `sqlx`)
    /// and a tokio runtime with its timer; called outside a tokio runtime, the lookup waits
    /// without the deadline and a warning is logged, rather than panicking.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn lookup_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock for TTLs and the budget ([`SystemClock`] by default; a
    /// [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The cache.
    pub fn build(self) -> CachedKeyStore<S> {
        // moka drops entries on its own (real-time) clock once they cannot be used any more;
        // whether an entry is fresh is decided on this store's clock.
        let floor = Duration::from_secs(1);
        // Known keys stay known (exempt from the budget) for a while past their stale window, so
        // a key used at least that often never waits for a flood to pass.
        let known = Cache::builder()
            .max_capacity(self.max_known)
            .time_to_live(self.ttl.saturating_add(self.stale_if_error).saturating_mul(2).max(Duration::from_secs(60)))
            .build_with_hasher(foldhash::fast::RandomState::default());
        let unknown = Cache::builder()
            .max_capacity(if self.negative_ttl.is_zero() { 0 } else { self.max_unknown })
            .time_to_live(self.negative_ttl.max(floor))
            .build_with_hasher(foldhash::fast::RandomState::default());
        let inner_invalidation = self.store.invalidation().map(|h| {
            let seen = AtomicU64::new(h.generation());
            (h, seen)
        });
        CachedKeyStore {
            inner: Arc::new(Inner {
                inner_invalidation,
                completed: AtomicU64::new(0),
                recent: Cache::builder()
                    .max_capacity(self.max_unknown.max(1))
                    .time_to_live(Duration::from_secs(10))
                    .build_with_hasher(foldhash::fast::RandomState::default()),
                #[cfg(feature = "tokio")]
                timeout: self.timeout,
                store: self.store,
                known,
                unknown,
                ttl: nanos(self.ttl),
                negative_ttl: nanos(self.negative_ttl),
                stale_if_error: nanos(self.stale_if_error),
                clock: self.clock,
                budget: self.budget.map(|t| (Gcra::new(t), AtomicU64::new(0))),
                invalidation: Invalidation::new(),
                counters: Counters::default(),
            }),
        }
    }
}


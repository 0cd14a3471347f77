//! [`CachedKeyStoreBuilder`]: the guard's settings.

use super::state::{Counters, Inner, KNOWN_FOR};
use super::wrapper::CachedKeyStore;
use crate::engine::{nanos, Clock, Gcra, SystemClock};
use crate::model::Throttle;
use crate::store::KeyStore;
use moka::future::Cache;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`CachedKeyStore`].
#[must_use]
pub struct CachedKeyStoreBuilder<S> {
    store: S,
    negative_ttl: Duration,
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
            .field("negative_ttl", &self.negative_ttl)
            .field("max_known", &self.max_known)
            .field("max_unknown", &self.max_unknown)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> CachedKeyStore<S> {
    /// `store` behind the guard with default settings.
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// A builder to change the defaults.
    pub fn builder(store: S) -> CachedKeyStoreBuilder<S> {
        CachedKeyStoreBuilder {
            store,
            negative_ttl: Duration::from_secs(5),
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
    /// How long an unknown value's answer is used (5 s by default). Zero turns negative caching
    /// off.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most known values remembered as exempt from the lookup budget (1,000,000 by default);
    /// beyond it the least useful are forgotten (moka's TinyLFU), which only puts them under the
    /// budget again.
    pub fn max_known_keys(mut self, n: u64) -> Self {
        self.max_known = n;
        self
    }

    /// Most unknown values remembered (10,000 by default): the memory bound under a flood of
    /// random values.
    pub fn max_unknown_keys(mut self, n: u64) -> Self {
        self.max_unknown = n;
        self
    }

    /// How fast the store may be asked about values it has not answered as known keys
    /// (`Some(1000/s, burst 2000)` by default); `None` removes the bound.
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

    /// The clock for the negative TTL and the budget ([`SystemClock`] by default; a
    /// [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The guard.
    pub fn build(self) -> CachedKeyStore<S> {
        // moka drops entries on its own (real-time) clock once they cannot be used any more;
        // whether an unknown value's answer is fresh is decided on this store's clock.
        let known = Cache::builder()
            .max_capacity(self.max_known)
            .time_to_live(KNOWN_FOR)
            .build_with_hasher(foldhash::fast::RandomState::default());
        let unknown = Cache::builder()
            .max_capacity(if self.negative_ttl.is_zero() { 0 } else { self.max_unknown })
            .time_to_live(self.negative_ttl.max(Duration::from_secs(1)))
            .build_with_hasher(foldhash::fast::RandomState::default());
        let invalidation = self.store.invalidation().unwrap_or_default();
        CachedKeyStore {
            inner: Arc::new(Inner {
                invalidation,
                #[cfg(feature = "tokio")]
                timeout: self.timeout,
                store: self.store,
                known,
                unknown,
                negative_ttl: nanos(self.negative_ttl),
                clock: self.clock,
                budget: self.budget.map(|t| (Gcra::new(t), AtomicU64::new(0))),
                flights: Default::default(),
                counters: Counters::default(),
            }),
        }
    }
}

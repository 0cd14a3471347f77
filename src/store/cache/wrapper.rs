//! [`CachedKeyStore`]: the guard, its invalidation and its answers.

#[cfg(feature = "tokio")]
use super::state::TimedOut;
use super::state::{CacheStats, ConcurrentFailure, Inner, LookupBudgetExhausted};
use crate::keycache::{Failure, Role};
use crate::model::Stage;
use crate::store::{Invalidation, KeyRecord, KeyStore, StoreError};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A guard in front of any [`KeyStore`] that queries a database: what the layer's own key cache
/// does not do.
///
/// The layer already caches every answer about a known key (its
/// [`key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)), makes one store call per
/// value at a time, and keeps a validated key working while the store fails
/// ([`stale_if_error`](crate::UsagePlanLayerBuilder::stale_if_error)). This guard adds:
///
/// - **A negative cache**: unknown values are remembered for a short TTL (5 s by default) in a
///   bounded cache (10,000 by default), so repeated unknown values do not reach the store and a
///   flood of random values cannot grow memory beyond that bound.
/// - **A lookup budget**: the store is asked about values it has not answered as known keys at
///   most at a set rate (1,000 per second with bursts of 2,000 by default). Beyond it a lookup
///   fails with [`LookupBudgetExhausted`] (the layer answers 503, and never fails open on it),
///   so a flood of random values costs the database a bounded number of queries however large
///   it is. Values answered as known keys in the last 15 minutes are exempt.
/// - **A timeout** (opt-in, feature `tokio`): a store call taking longer counts as failed.
/// - **Invalidation by key**: [`invalidate_key_id`](Self::invalidate_key_id),
///   [`invalidate`](Self::invalidate) and [`invalidate_all`](Self::invalidate_all) tell every
///   layer built on this store (through [`KeyStore::invalidation`]): a key you disable is
///   refused on its next request, and the other keys stay cached.
///
/// Concurrent lookups of one value through the guard make one store call (the key cache's
/// single flight), also when it is used without a layer. Clones share the guard: keep one to
/// invalidate, give another to the layer.
///
/// ```
/// use std::time::Duration;
/// use tower_usage_plans::{CachedKeyStore, InMemoryKeyStore, UsagePlanLayer};
///
/// # let my_database_store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"").unwrap();
/// let store = CachedKeyStore::builder(my_database_store)
///     .negative_ttl(Duration::from_secs(2))
///     .build();
/// let layer = UsagePlanLayer::builder(store.clone()).key_cache_ttl(Duration::from_secs(30)).build().unwrap();
/// // later, after disabling a key in the database:
/// # async {
/// store.invalidate_key_id("k1").await;
/// # };
/// ```
///
/// Without explicit invalidation (and without a store that invalidates on its own, as
/// [`SqlKeyStore`](crate::SqlKeyStore) does for changes made through it), a change made directly
/// in the database reaches requests within the layer's
/// [`key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl).
pub struct CachedKeyStore<S> {
    pub(super) inner: Arc<Inner<S>>,
}

impl<S> Clone for CachedKeyStore<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedKeyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CachedKeyStore")
            .field("store", &i.store)
            .field("negative_ttl", &Duration::from_nanos(i.negative_ttl))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> CachedKeyStore<S> {
    /// Takes one lookup from the budget, or says how long until one is available.
    fn spend_budget(&self, now: u64) -> Result<(), LookupBudgetExhausted> {
        match &self.inner.budget {
            None => Ok(()),
            Some((gcra, state)) => gcra
                .acquire(state, now)
                .map(|_| ())
                .map_err(|wait| LookupBudgetExhausted { retry_after: Duration::from_nanos(wait) }),
        }
    }

    /// The wrapped store's answer, within the lookup timeout.
    async fn ask_store(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        // Opt-in, and only inside a tokio runtime: outside one the lookup is awaited without a
        // deadline (and a warning) rather than panicking.
        #[cfg(feature = "tokio")]
        if let Some(limit) = self.inner.timeout {
            if tokio::runtime::Handle::try_current().is_err() {
                tracing::warn!("lookup_timeout needs a tokio runtime: waiting for the key store without one");
                return self.inner.store.lookup(presented).await;
            }
            return match tokio::time::timeout(limit, self.inner.store.lookup(presented)).await {
                Ok(answer) => answer,
                Err(_) => Err(StoreError::new(TimedOut(limit))),
            };
        }
        self.inner.store.lookup(presented).await
    }

    /// The store's answer for `presented`, asked by this caller (within the budget) or by a
    /// concurrent one whose call it waited for.
    async fn ask(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let i = &*self.inner;
        loop {
            let generation = i.invalidation.generation();
            match i.flights.join(presented, generation as u32) {
                Role::Follower(wait) => match wait.await {
                    Some((answer, _)) => {
                        i.counters.hits.fetch_add(1, Ordering::Relaxed);
                        return answer.map_err(|failure| match failure {
                            Failure::Failed => StoreError::new(ConcurrentFailure),
                            Failure::Overloaded => StoreError::overloaded(ConcurrentFailure),
                        });
                    }
                    // The caller asking the store was dropped: ask again.
                    None => continue,
                },
                Role::Leader(leader) => {
                    let now = i.clock.now().mono_nanos;
                    // The budget bounds lookups of values the store has not answered as known
                    // keys; known keys revalidate whatever a flood of random values has spent.
                    let answer = if i.known.contains_key(presented) {
                        self.call(presented, generation, now).await
                    } else {
                        match self.spend_budget(now) {
                            Ok(()) => self.call(presented, generation, now).await,
                            Err(exhausted) => {
                                i.counters.budget_refused.fetch_add(1, Ordering::Relaxed);
                                Err(StoreError::overloaded(exhausted))
                            }
                        }
                    };
                    leader.answer(&answer);
                    return answer;
                }
            }
        }
    }

    /// One call to the wrapped store, its answer remembered.
    async fn call(&self, presented: &str, generation: u64, now: u64) -> Result<Option<KeyRecord>, StoreError> {
        let i = &*self.inner;
        i.counters.store_lookups.fetch_add(1, Ordering::Relaxed);
        let answer = self.ask_store(presented).await;
        match &answer {
            Ok(Some(_)) => i.known.insert(presented.into(), ()).await,
            // Tagged with the generation the store was asked at: after any invalidation since
            // (one while the store answered included), the answer is not used.
            Ok(None) if i.negative_ttl > 0 => {
                i.unknown.insert(presented.into(), (now, generation)).await;
            }
            Ok(None) => {}
            Err(_) => {
                i.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        answer
    }
}

impl<S> CachedKeyStore<S> {
    /// The wrapped store.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner.store
    }

    /// Drops what is remembered of one presented value and tells layers built on this store
    /// that every cached answer is out of date (the value may be moving to another key, or be
    /// looked up right now). After a change to one key, prefer
    /// [`invalidate_key_id`](Self::invalidate_key_id), which leaves the other keys cached.
    pub async fn invalidate(&self, presented: &str) {
        let i = &self.inner;
        i.unknown.invalidate(presented).await;
        i.invalidation.invalidate();
    }

    /// Tells layers built on this store that the answers for key `key_id` (every value of it,
    /// while it is rotated) are out of date; the other keys stay cached. Use it after changing
    /// a key in the database: the layer refuses a disabled key on its next request.
    pub async fn invalidate_key_id(&self, key_id: &str) {
        self.inner.invalidation.invalidate_key(key_id);
    }

    /// Drops every remembered answer and tells layers built on this store (after a bulk change,
    /// e.g. a plan's limits).
    pub fn invalidate_all(&self) {
        let i = &self.inner;
        i.unknown.invalidate_all();
        i.invalidation.invalidate();
    }

    /// What the guard has done so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        let c = &i.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            store_lookups: c.store_lookups.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            budget_refused: c.budget_refused.load(Ordering::Relaxed),
            known_entries: i.known.entry_count(),
            unknown_entries: i.unknown.entry_count(),
        }
    }

    /// Runs the caches' pending maintenance (evictions, expirations) now, so that
    /// [`stats`](Self::stats) counts entries exactly. It also runs on its own as they are used.
    pub async fn run_pending_tasks(&self) {
        self.inner.known.run_pending_tasks().await;
        self.inner.unknown.run_pending_tasks().await;
    }
}

impl<S: KeyStore> KeyStore for CachedKeyStore<S> {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let i = &*self.inner;
        if let Some((at, generation)) = i.unknown.get(presented).await {
            // Not after an invalidation: a key created meanwhile must not stay unknown.
            let current = generation == i.invalidation.generation();
            if current && i.clock.now().mono_nanos < at.saturating_add(i.negative_ttl) {
                i.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
        }
        self.ask(presented).await
    }

    fn stage(&self) -> Option<Stage> {
        self.inner.store.stage()
    }

    fn invalidation(&self) -> Option<Invalidation> {
        // Layers follow the wrapped store's own handle when it has one, so its changes and this
        // guard's invalidations reach them the same way.
        Some(self.inner.invalidation.clone())
    }
}

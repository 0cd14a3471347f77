//! [`CachedKeyStore`]: the cache, its invalidation and its answers.

#[cfg(feature = "tokio")]
use super::state::TimedOut;
use super::state::{Answer, CacheStats, ConcurrentFailure, Inner, LookupBudgetExhausted, Recent};
use crate::model::Stage;
use crate::store::{Invalidation, KeyRecord, KeyStore, StoreError};
use moka::ops::compute::Op;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A cache in front of any [`KeyStore`]: what a store that queries a database needs.
///
/// - **Known keys** are answered from memory for a TTL (60 s by default), up to a bounded number
///   of keys.
/// - **Unknown keys** are remembered for a shorter TTL (5 s by default) in a separate, smaller
///   cache (10,000 by default), so repeated unknown values do not reach the store and a flood of
///   random values cannot grow memory beyond that bound.
/// - **Lookup budget**: the store is asked about values that are not cached at most at a set rate
///   (1,000 per second with bursts of 2,000 by default). Beyond it a lookup fails with
///   [`LookupBudgetExhausted`] (the layer answers 503), so a flood of random values costs the
///   database a bounded number of queries however large it is. Keys already cached are not
///   affected.
/// - **Coalescing**: concurrent lookups of one value make one store call; the others wait for
///   its answer.
/// - **Stale-if-error**: when the store fails (or the budget is spent), a known key whose answer
///   expired less than `stale_if_error` ago (5 minutes by default) keeps its last answer; an
///   unknown or never-seen value gets the error (the layer answers 503).
/// - **Invalidation**: [`invalidate`](Self::invalidate), [`invalidate_key_id`](Self::invalidate_key_id)
///   and [`invalidate_all`](Self::invalidate_all) drop answers at once and tell every layer
///   built on this store (through [`KeyStore::invalidation`]), so a key you disable is refused
///   on its next request.
///
/// Clones share the cache: keep one to invalidate, give another to the layer.
///
/// ```
/// use std::time::Duration;
/// use tower_usage_plans::{CachedKeyStore, InMemoryKeyStore, UsagePlanLayer};
///
/// # let my_database_store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"").unwrap();
/// let store = CachedKeyStore::builder(my_database_store)
///     .ttl(Duration::from_secs(30))
///     .negative_ttl(Duration::from_secs(2))
///     .build();
/// let layer = UsagePlanLayer::new(store.clone()).unwrap();
/// // later, after disabling a key in the database:
/// # async {
/// store.invalidate_key_id("k1").await;
/// # };
/// ```
///
/// Without explicit invalidation, a change made directly in the database reaches requests within
/// this cache's TTL plus the layer's
/// ([`key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)).
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
            .field("ttl", &Duration::from_nanos(i.ttl))
            .field("negative_ttl", &Duration::from_nanos(i.negative_ttl))
            .field("stale_if_error", &Duration::from_nanos(i.stale_if_error))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a refresh concluded, carried out of moka's compute closure.
enum Outcome {
    Answer(Option<KeyRecord>),
    Failed(StoreError),
}

impl<S: KeyStore> CachedKeyStore<S> {
    fn hit(&self, record: Option<KeyRecord>) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
        Ok(record)
    }

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

    /// Asks the store (one caller per value at a time; callers that waited for a call take its
    /// outcome) and caches its answer.
    async fn refresh(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let i = &*self.inner;
        let arrived = i.completed.load(Ordering::Acquire);
        let generation = i.invalidation.generation();
        let mut outcome = Outcome::Answer(None);
        let slot = &mut outcome;
        i.known
            .entry(Box::from(presented))
            .and_compute_with(|entry| async move {
                let now = i.clock.now().mono_nanos;
                let cached = entry.map(|e| e.into_value());
                // A caller that waited for another one's store call finds its answer here.
                if let Some(a) = cached.as_ref().filter(|a| now < a.at.saturating_add(i.ttl)) {
                    i.counters.hits.fetch_add(1, Ordering::Relaxed);
                    *slot = Outcome::Answer(a.record.clone());
                    return Op::Nop;
                }
                if let Some(a) = i.unknown.get(presented).await {
                    if now < a.at.saturating_add(i.negative_ttl) {
                        i.counters.hits.fetch_add(1, Ordering::Relaxed);
                        return Op::Nop;
                    }
                }
                let known = cached.is_some();
                let stale = cached.filter(|a| now < a.at.saturating_add(i.ttl).saturating_add(i.stale_if_error));
                let serve_stale = |slot: &mut Outcome, stale: Arc<Answer>| {
                    i.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    // Used by the layer only until this cache's stale window ends.
                    let left = stale.at.saturating_add(i.ttl).saturating_add(i.stale_if_error).saturating_sub(now);
                    *slot = Outcome::Answer(stale.record.clone().map(|r| r.max_age(Duration::from_nanos(left))));
                    Op::Nop
                };
                if let Some((n, recent)) = i.recent.get(presented).await {
                    if n > arrived {
                        i.counters.hits.fetch_add(1, Ordering::Relaxed);
                        match (recent, stale) {
                            (Recent::Failed, Some(stale)) => return serve_stale(slot, stale),
                            (Recent::Failed, None) => *slot = Outcome::Failed(StoreError::new(ConcurrentFailure)),
                            (Recent::Unknown, _) => *slot = Outcome::Answer(None),
                        }
                        return Op::Nop;
                    }
                }
                // The budget bounds lookups of values this cache does not know; known keys
                // revalidate whatever a flood of random values has spent.
                if !known {
                    if let Err(exhausted) = self.spend_budget(now) {
                        i.counters.budget_refused.fetch_add(1, Ordering::Relaxed);
                        *slot = Outcome::Failed(StoreError::overloaded(exhausted));
                        return Op::Nop;
                    }
                }
                i.counters.store_lookups.fetch_add(1, Ordering::Relaxed);
                let result = self.ask_store(presented).await;
                let n = i.completed.fetch_add(1, Ordering::AcqRel) + 1;
                // An invalidation while the store answered: use the answer, do not keep it.
                let keep = i.invalidation.generation() == generation;
                match result {
                    Ok(Some(record)) => {
                        *slot = Outcome::Answer(Some(record.clone()));
                        if keep {
                            Op::Put(Arc::new(Answer { record: Some(record), at: now }))
                        } else {
                            Op::Remove
                        }
                    }
                    Ok(None) => {
                        if keep && i.negative_ttl > 0 {
                            i.unknown.insert(presented.into(), Arc::new(Answer { record: None, at: now })).await;
                        } else {
                            i.recent.insert(presented.into(), (n, Recent::Unknown)).await;
                        }
                        *slot = Outcome::Answer(None);
                        Op::Remove
                    }
                    Err(error) => {
                        i.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        i.recent.insert(presented.into(), (n, Recent::Failed)).await;
                        match stale {
                            Some(stale) => {
                                tracing::warn!(%error, "key store failed: using a recently validated answer");
                                serve_stale(slot, stale)
                            }
                            None => {
                                *slot = Outcome::Failed(error);
                                Op::Nop
                            }
                        }
                    }
                }
            })
            .await;
        // An invalidation may have come between the check above and moka storing the answer.
        if i.invalidation.generation() != generation {
            i.known.invalidate(presented).await;
            i.unknown.invalidate(presented).await;
        }
        match outcome {
            Outcome::Answer(record) => Ok(record),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// Drops everything when the wrapped store's own handle says its answers are out of date.
    fn follow_inner_invalidation(&self) {
        if let Some((handle, seen)) = &self.inner.inner_invalidation {
            let now = handle.generation();
            if seen.swap(now, Ordering::AcqRel) != now {
                self.invalidate_all();
            }
        }
    }
}

impl<S> CachedKeyStore<S> {
    /// The wrapped store.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner.store
    }

    /// Drops the cached answer for one presented value and tells layers built on this store.
    pub async fn invalidate(&self, presented: &str) {
        let i = &self.inner;
        // Bumped before (a lookup in progress does not keep what it read) and after (a layer
        // that revalidated in between does not keep it either).
        i.invalidation.invalidate();
        // Waits for a store call in progress for this value, then removes its answer.
        i.known.entry(Box::from(presented)).and_compute_with(|_| async { Op::Remove }).await;
        i.unknown.invalidate(presented).await;
        i.recent.invalidate(presented).await;
        i.invalidation.invalidate();
    }

    /// Drops the cached answers for every value of the key `key_id` (a key may have several
    /// values while it is rotated) and tells layers built on this store. Use it after changing
    /// a key in the database: the layer refuses a disabled key on its next request.
    pub async fn invalidate_key_id(&self, key_id: &str) {
        let i = &self.inner;
        // Bump first: a lookup racing with this call does not cache what it read.
        i.invalidation.invalidate();
        let values: Vec<Arc<Box<str>>> = i
            .known
            .iter()
            .filter(|(_, a)| a.record.as_ref().is_some_and(|r| r.key().id() == key_id))
            .map(|(k, _)| k)
            .collect();
        for value in values {
            i.known.invalidate(&**value).await;
        }
        i.invalidation.invalidate();
    }

    /// Drops every cached answer and tells layers built on this store (after a bulk change,
    /// e.g. a plan's limits).
    pub fn invalidate_all(&self) {
        let i = &self.inner;
        i.invalidation.invalidate();
        i.known.invalidate_all();
        i.unknown.invalidate_all();
        i.recent.invalidate_all();
        i.invalidation.invalidate();
    }

    /// What the cache has done so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        let c = &i.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            store_lookups: c.store_lookups.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            budget_refused: c.budget_refused.load(Ordering::Relaxed),
            known_entries: i.known.entry_count(),
            unknown_entries: i.unknown.entry_count(),
        }
    }

    /// Runs the cache's pending maintenance (evictions, expirations) now, so that
    /// [`stats`](Self::stats) counts entries exactly. It also runs on its own as the cache is used.
    pub async fn run_pending_tasks(&self) {
        self.inner.known.run_pending_tasks().await;
        self.inner.unknown.run_pending_tasks().await;
    }
}

impl<S: KeyStore> KeyStore for CachedKeyStore<S> {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.follow_inner_invalidation();
        let i = &*self.inner;
        let now = i.clock.now().mono_nanos;
        if let Some(a) = i.known.get(presented).await {
            if now < a.at.saturating_add(i.ttl) {
                return self.hit(a.record.clone());
            }
        } else if let Some(a) = i.unknown.get(presented).await {
            if now < a.at.saturating_add(i.negative_ttl) {
                return self.hit(None);
            }
        }
        self.refresh(presented).await
    }

    fn stage(&self) -> Option<Stage> {
        self.inner.store.stage()
    }

    fn invalidation(&self) -> Option<Invalidation> {
        // Layers follow this cache's invalidations and the wrapped store's.
        Some(match &self.inner.inner_invalidation {
            Some((inner, _)) => self.inner.invalidation.following(inner),
            None => self.inner.invalidation.clone(),
        })
    }
}


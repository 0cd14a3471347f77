//! [`CachedKeyStore`]: a cache in front of any [`KeyStore`] that talks to a database.

use super::{Invalidation, KeyRecord, KeyStore, StoreError};
use crate::engine::{nanos, Clock, Gcra, SystemClock};
use crate::model::{Stage, Throttle};
use moka::future::Cache;
use moka::ops::compute::Op;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A store's answer and when it was given (monotonic nanoseconds of the cache's clock).
#[derive(Debug)]
struct Answer {
    record: Option<KeyRecord>,
    at: u64,
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
struct Counters {
    hits: AtomicU64,
    store_lookups: AtomicU64,
    store_errors: AtomicU64,
    stale_served: AtomicU64,
    budget_refused: AtomicU64,
}

/// The lookup budget was spent: the store is not asked about uncached keys faster than
/// [`CachedKeyStoreBuilder::lookup_budget`] allows (a flood of random keys).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("key store lookup budget exhausted; retry in {retry_after:?}")]
pub struct LookupBudgetExhausted {
    /// When the budget admits the next lookup.
    pub retry_after: Duration,
}

struct Inner<S> {
    store: S,
    known: Cache<Box<str>, Arc<Answer>, foldhash::fast::RandomState>,
    unknown: Cache<Box<str>, Arc<Answer>, foldhash::fast::RandomState>,
    ttl: u64,
    negative_ttl: u64,
    stale_if_error: u64,
    clock: Arc<dyn Clock>,
    budget: Option<(Gcra, AtomicU64)>,
    invalidation: Invalidation,
    /// The wrapped store's own invalidation handle and the generation last seen of it.
    inner_invalidation: Option<(Invalidation, AtomicU64)>,
    /// Store calls completed so far, and per value the number and kind of the last one that
    /// did not leave a usable answer in `known`/`unknown` (a failure, or an unknown key with
    /// negative caching off): callers that waited for that call take its outcome instead of
    /// calling again, so concurrent lookups make one store call whatever the answer.
    completed: AtomicU64,
    recent: Cache<Box<str>, (u64, Recent), foldhash::fast::RandomState>,
    #[cfg(feature = "tokio")]
    timeout: Option<Duration>,
    counters: Counters,
}

/// What a recent store call for a value ended with.
#[derive(Debug, Clone, Copy)]
enum Recent {
    Failed,
    Unknown,
}

/// A concurrent caller's store call failed; this caller waited for it instead of calling again.
#[derive(Debug, thiserror::Error)]
#[error("the key store failed for a concurrent lookup of the same key")]
struct ConcurrentFailure;

/// The store did not answer within the lookup timeout.
#[cfg(feature = "tokio")]
#[derive(Debug, thiserror::Error)]
#[error("the key store did not answer within {0:?}")]
struct TimedOut(Duration);

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
    inner: Arc<Inner<S>>,
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
            timeout: Some(Duration::from_secs(2)),
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

    /// How long a store call may take before it counts as failed (stale-if-error or 503): 2 s
    /// by default, `None` to wait for ever. Needs the `tokio` feature (enabled by `sqlx`) and a
    /// tokio runtime with its timer; without the feature, give your store its own timeout.
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
        #[cfg(feature = "tokio")]
        if let Some(limit) = self.inner.timeout {
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

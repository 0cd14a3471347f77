//! Where keys come from: the [`KeyStore`] trait, the in-memory store and (feature `sqlx`) the
//! SQL store.
//!
//! A store answers one question, asynchronously: *which key record and plans belong to this
//! presented value?* The layer caches answers (see
//! [`UsagePlanLayerBuilder::key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)),
//! so a store is asked about a key at most once per TTL, not on every request.

mod cache;
mod memory;
#[cfg(feature = "sqlx")]
mod sql;

pub use cache::{CacheStats, CachedKeyStore, CachedKeyStoreBuilder, LookupBudgetExhausted};
pub use memory::InMemoryKeyStore;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sql::{SqlKeyStore, SqlStoreError, SqlStoreErrorKind};

use crate::model::{ApiKey, Stage, UsagePlan};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A key's record and the plans it belongs to, as a store returns them.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct KeyRecord {
    key: ApiKey,
    plans: Vec<Arc<UsagePlan>>,
    max_age: Option<Duration>,
}

impl KeyRecord {
    /// A key with the plans it belongs to.
    pub fn new(key: ApiKey, plans: Vec<Arc<UsagePlan>>) -> Self {
        Self { key, plans, max_age: None }
    }

    /// Tells the layer to use this answer for at most `age` (less than its
    /// [`key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl) if shorter) and not to
    /// serve it past that when the store fails. [`CachedKeyStore`] sets it on the stale answers
    /// it gives while the store is down, so that stale windows do not add up.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The [`max_age`](Self::max_age), if any.
    #[must_use]
    pub fn max_age_hint(&self) -> Option<Duration> {
        self.max_age
    }

    /// The key's record.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The plans the key belongs to.
    #[must_use]
    pub fn plans(&self) -> &[Arc<UsagePlan>] {
        &self.plans
    }
}

/// A store could not answer (database down, timeout, ...). The request gets 503 unless the key
/// was validated recently (stale-if-error) or the layer is configured to fail open.
#[derive(Debug, thiserror::Error)]
#[error("key store unavailable: {source}")]
pub struct StoreError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
    overloaded: bool,
}

impl StoreError {
    /// Wraps the underlying error. Do not put key values in it: it may be logged.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: source.into(), overloaded: false }
    }

    /// The store refused to be asked (a lookup budget was spent, e.g. under a flood of random
    /// keys), rather than failed. The layer answers 503 and never fails open on it: failing open
    /// would let a flood of random keys through.
    pub fn overloaded(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: source.into(), overloaded: true }
    }

    /// Whether this is an [`overloaded`](Self::overloaded) refusal.
    #[must_use]
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }
}

/// Looks up presented API keys. Implement it against your own database.
///
/// ```
/// use std::sync::Arc;
/// use tower_usage_plans::{ApiKey, KeyRecord, KeyStore, StoreError, UsagePlan, Throttle, PlanStage};
///
/// #[derive(Debug)]
/// struct OneKey;
///
/// impl KeyStore for OneKey {
///     async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
///         // A real store would query its database, e.g. by a SHA-256 of `presented`.
///         Ok((presented == "demo-0123456789abcdefghij").then(|| {
///             let plan = UsagePlan::new("basic").throttle(Throttle::new(10.0, 20).unwrap())
///                 .stage(PlanStage::new("petstore", "prod"));
///             KeyRecord::new(ApiKey::new("k1").plan("basic"), vec![Arc::new(plan)])
///         }))
///     }
/// }
/// ```
pub trait KeyStore: Send + Sync + 'static {
    /// The record for the presented key value, `Ok(None)` if there is no such key.
    ///
    /// Disabled and expired keys should be returned as they are (the layer refuses them with 403
    /// and caches that answer), not as `None`.
    fn lookup(&self, presented: &str) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// The stage (with its stage and account throttles) this store was configured for, if it
    /// carries one. [`UsagePlanLayer::new`](crate::UsagePlanLayer::new) uses it.
    fn stage(&self) -> Option<Stage> {
        None
    }

    /// A handle through which the store tells layers that answers they cached are out of date
    /// (a key was disabled, deleted, rotated, moved to another plan). A layer built on the store
    /// revalidates every cached key on its next request after [`Invalidation::invalidate`], so a
    /// disabled key is refused on its very next request instead of after the cache TTL.
    ///
    /// `None` by default: the layer then relies on its TTL
    /// ([`UsagePlanLayerBuilder::key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)).
    /// [`CachedKeyStore`] returns its handle.
    fn invalidation(&self) -> Option<Invalidation> {
        None
    }
}

/// Tells layers that cached key answers are out of date: a shared generation number, bumped by
/// [`invalidate`](Self::invalidate). Clones share it.
///
/// Checking it costs a layer one atomic load per request; invalidating makes every cached key
/// revalidate once (through the store, or through [`CachedKeyStore`]'s cache, which drops only
/// the keys that changed), so it is meant for changes, not for every request.
///
/// ```
/// use tower_usage_plans::Invalidation;
/// let handle = Invalidation::new();
/// let generation = handle.generation();
/// handle.clone().invalidate();
/// assert_eq!(handle.generation(), generation + 1);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Invalidation {
    own: Arc<AtomicU64>,
    /// Another handle this one follows (see [`following`](Self::following)).
    also: Option<Box<Invalidation>>,
}

impl Invalidation {
    /// A new handle at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks every answer cached so far as out of date.
    pub fn invalidate(&self) {
        self.own.fetch_add(1, Ordering::AcqRel);
    }

    /// The current generation: answers cached at an earlier one are out of date.
    #[must_use]
    pub fn generation(&self) -> u64 {
        let own = self.own.load(Ordering::Acquire);
        match &self.also {
            Some(other) => own.wrapping_add(other.generation()),
            None => own,
        }
    }

    /// A handle that changes when this one or `other` does ([`invalidate`](Self::invalidate) on
    /// it bumps this one). A store wrapping another gives this to layers, so that they follow
    /// the wrapped store's invalidations too.
    ///
    /// ```
    /// use tower_usage_plans::Invalidation;
    /// let (mine, inner) = (Invalidation::new(), Invalidation::new());
    /// let both = mine.following(&inner);
    /// let before = both.generation();
    /// inner.invalidate();
    /// assert_ne!(both.generation(), before);
    /// ```
    pub fn following(&self, other: &Invalidation) -> Invalidation {
        Invalidation { own: Arc::clone(&self.own), also: Some(Box::new(other.clone())) }
    }
}

impl<T: KeyStore> KeyStore for Arc<T> {
    fn lookup(&self, presented: &str) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        (**self).lookup(presented)
    }

    fn stage(&self) -> Option<Stage> {
        (**self).stage()
    }

    fn invalidation(&self) -> Option<Invalidation> {
        (**self).invalidation()
    }
}

pub(crate) type LookupFuture = Pin<Box<dyn Future<Output = Result<Option<KeyRecord>, StoreError>> + Send>>;

/// Object-safe form of [`KeyStore`], so the layer's type does not name the store.
pub(crate) trait DynKeyStore: Send + Sync + 'static {
    fn lookup_owned(self: Arc<Self>, presented: Box<str>) -> LookupFuture;
}

impl<T: KeyStore> DynKeyStore for T {
    fn lookup_owned(self: Arc<Self>, presented: Box<str>) -> LookupFuture {
        Box::pin(async move { self.lookup(&presented).await })
    }
}

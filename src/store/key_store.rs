//! The [`KeyStore`] trait and the [`KeyRecord`] a store answers with.

use super::error::StoreError;
use super::invalidation::Invalidation;
use crate::model::{ApiKey, Customer, Stage, UsagePlan};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A key's record and the plans it belongs to, as a store returns them.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct KeyRecord {
    key: ApiKey,
    plans: Vec<Arc<UsagePlan>>,
    customer: Option<Arc<Customer>>,
}

impl KeyRecord {
    /// A key with the plans it belongs to.
    pub fn new(key: ApiKey, plans: Vec<Arc<UsagePlan>>) -> Self {
        Self { key, plans, customer: None }
    }

    /// The record with the customer its key's `customer_id` names (`None`: no shared limits).
    /// A store that knows customers sets it; the layer checks the customer's limits for every
    /// key that carries it.
    pub fn with_customer(mut self, customer: Option<Arc<Customer>>) -> Self {
        self.customer = customer;
        self
    }

    /// The key's customer, if the store gave one.
    #[must_use]
    pub fn customer(&self) -> Option<&Arc<Customer>> {
        self.customer.as_ref()
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
///             let plan = UsagePlan::new("basic").with_throttle(Throttle::new(10.0, 20).unwrap())
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
    /// [`CachedKeyStore`](crate::CachedKeyStore) returns its handle.
    fn invalidation(&self) -> Option<Invalidation> {
        None
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

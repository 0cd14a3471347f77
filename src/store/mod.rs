//! Where keys come from: the [`KeyStore`] trait, the in-memory store and (feature `sqlx`) the
//! SQL store.
//!
//! A store answers one question, asynchronously: *which key record and plans belong to this
//! presented value?* The layer caches answers (see
//! [`UsagePlanLayerBuilder::key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)),
//! so a store is asked about a key at most once per TTL, not on every request.

mod cache;
mod error;
mod invalidation;
mod key_store;
mod manage;
mod memory;
#[cfg(feature = "sqlx")]
mod sql;

pub use cache::{CacheStats, CachedKeyStore, CachedKeyStoreBuilder, LookupBudgetExhausted};
pub use error::{StoreError, StoreErrorKind};
pub use invalidation::Invalidation;
pub(crate) use key_store::DynKeyStore;
pub use key_store::{KeyRecord, KeyStore};
// Used by the admin router once it takes any `ManagedKeyStore` (in progress).
#[allow(unused_imports)]
pub(crate) use manage::DynManagedKeyStore;
pub use manage::{
    CustomerQuery, KeyChange, KeyQuery, Listing, ManageError, ManageErrorKind, ManagedKeyStore, PlanChange, PlanQuery,
    StoredKey,
};
pub use memory::InMemoryKeyStore;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sql::{SqlKeyStore, SqlStoreError, SqlStoreErrorKind};

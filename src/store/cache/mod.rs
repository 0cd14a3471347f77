//! [`CachedKeyStore`]: a cache in front of any [`KeyStore`] that talks to a database.

mod builder;
mod state;
mod wrapper;

pub use builder::CachedKeyStoreBuilder;
pub use state::{CacheStats, LookupBudgetExhausted};
pub use wrapper::CachedKeyStore;

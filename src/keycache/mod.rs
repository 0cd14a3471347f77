//! The key cache: what the store said about each presented value, as a grant on this stage.
//!
//! One room for everything between "a value was presented" and "the engine decides": cache
//! entries ([`entry`]), the single flight that makes one store call per value at a time
//! ([`flight`]), generations and invalidation, the sweep of idle entries, turning a store's
//! [`KeyRecord`](crate::KeyRecord) into a grant ([`cache`]), and the store call with its
//! stale-if-error and fail-open answers ([`lookup`]). The layer's TTL, coalescing and
//! stale-if-error have this one owner.

mod cache;
mod entry;
mod flight;
mod lookup;

pub use cache::KeyCacheStats;
pub(crate) use cache::{CacheSettings, KeyCache};
pub(crate) use flight::{Failure, Flights, Role};

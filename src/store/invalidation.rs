//! [`Invalidation`]: how a store tells layers that answers they cached are out of date.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

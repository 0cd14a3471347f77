//! [`Invalidation`]: how a store tells layers that answers they cached are out of date.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many recent invalidations a handle remembers by key id; an answer cached before the
/// oldest of them is revalidated whatever its key.
const LOG_LEN: usize = 1024;

/// Tells layers that cached key answers are out of date: a shared generation number, bumped by
/// every invalidation, and a short log of what each one was about. Clones share it.
///
/// Checking it costs a layer one atomic load per request. [`invalidate`](Self::invalidate) makes
/// every cached key revalidate once; [`invalidate_key`](Self::invalidate_key) only the answers
/// for that key id (every value of it, while it is rotated), so it can follow every change.
///
/// ```
/// use tower_usage_plans::Invalidation;
/// let handle = Invalidation::new();
/// let generation = handle.generation();
/// handle.clone().invalidate();
/// assert_eq!(handle.generation(), generation + 1);
/// handle.invalidate_key("k1");
/// assert!(handle.outdates(generation + 1, "k1"));
/// assert!(!handle.outdates(generation + 1, "k2"), "only k1 changed since");
/// assert!(handle.outdates(generation, "k2"), "everything changed since");
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Invalidation {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: AtomicU64,
    /// The most recent invalidations, oldest first: the generation each one made, and the key
    /// id it was about (`None`: every key).
    log: Mutex<VecDeque<(u64, Option<Arc<str>>)>>,
}

impl fmt::Debug for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidation").field("generation", &self.generation()).finish()
    }
}

impl Invalidation {
    /// A new handle at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, key: Option<Arc<str>>) {
        // Under the log's lock, so that the log is in generation order.
        let mut log = self.inner.log.lock();
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if log.len() == LOG_LEN {
            log.pop_front();
        }
        log.push_back((generation, key));
    }

    /// Marks every answer cached so far as out of date.
    pub fn invalidate(&self) {
        self.record(None);
    }

    /// Marks the answers cached so far for key `key_id` (any of its values) as out of date; the
    /// answers for other keys stay valid.
    pub fn invalidate_key(&self, key_id: &str) {
        self.record(Some(Arc::from(key_id)));
    }

    /// The current generation: answers cached at an earlier one may be out of date (see
    /// [`outdates`](Self::outdates)).
    #[must_use]
    #[inline]
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether an answer about key `key_id` cached at `generation` is out of date: an
    /// invalidation since then was about every key or about this one, or is too old to know.
    #[must_use]
    pub fn outdates(&self, generation: u64, key_id: &str) -> bool {
        if generation >= self.generation() {
            return false;
        }
        let log = self.inner.log.lock();
        // Forgotten invalidations may have been about this key.
        if log.front().is_none_or(|(g, _)| *g > generation + 1) {
            return true;
        }
        log.iter().rev().take_while(|(g, _)| *g > generation).any(|(_, k)| k.as_deref().is_none_or(|k| k == key_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_outdated_by_an_invalidation_of_its_key_or_of_all_and_when_the_log_forgot() {
        let h = Invalidation::new();
        h.invalidate_key("a");
        h.invalidate_key("b");
        assert!(h.outdates(0, "a") && h.outdates(0, "b") && !h.outdates(0, "c"));
        assert!(!h.outdates(1, "a"), "a was invalidated at 1, before this answer");
        assert!(!h.outdates(2, "b"), "nothing since 2");
        h.invalidate();
        assert!(h.outdates(2, "c"), "an invalidation of every key");
        // More targeted invalidations than the log keeps: an answer from before them is
        // outdated whatever its key, a recent one only by its own.
        let before = h.generation();
        for i in 0..LOG_LEN + 1 {
            h.invalidate_key(&format!("k{i}"));
        }
        assert!(h.outdates(before, "never-invalidated"));
        assert!(!h.outdates(h.generation() - 10, "never-invalidated"));
        assert!(h.outdates(h.generation() - 1, &format!("k{LOG_LEN}")));
    }
}

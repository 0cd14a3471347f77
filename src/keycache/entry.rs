//! One cached key: the store's answer for a presented value, as a grant on this stage, with
//! how long it is fresh and the invalidation generation it was asked at.

use crate::caller::CallerProfile;
use crate::engine::Grant;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One cached key.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) grant: Grant,
    /// The key's part of the [`Caller`](crate::Caller) handed to the inner service (when the layer
    /// hands one over and the key is granted).
    pub(crate) caller: Option<Arc<CallerProfile>>,
    /// Unix seconds from which the key is expired (`u32::MAX`: never; an expiry after 2106 counts
    /// as never, so that this and `generation` fit in one word).
    pub(crate) expires: u32,
    /// Monotonic nanoseconds until which the store's answer is used without asking again; it
    /// may still be used for the stale-if-error window after that if the store fails.
    pub(crate) fresh_until: u64,
    /// The store's invalidation generation the answer is known good at (low 32 bits). Moved
    /// forward when an invalidation turns out to be about other keys, so the next request of
    /// this key need not look at it again.
    pub(crate) generation: AtomicU32,
}

impl Clone for KeyEntry {
    fn clone(&self) -> Self {
        Self {
            grant: self.grant.clone(),
            caller: self.caller.clone(),
            expires: self.expires,
            fresh_until: self.fresh_until,
            generation: AtomicU32::new(self.generation()),
        }
    }
}

impl KeyEntry {
    /// The generation the answer is known good at (low 32 bits).
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Longest key value stored inline in the cache (API Gateway's generated keys have 40).
const INLINE_KEY: usize = 46;

/// A presented key value as a map key: stored inline up to 46 bytes (no separate allocation,
/// so a lookup touches one cache line less), on the heap beyond. Hashes and compares as `[u8]`.
#[derive(Clone)]
pub(crate) enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    pub(crate) fn new(value: &[u8]) -> Self {
        if value.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..value.len()].copy_from_slice(value);
            KeyBytes::Inline { len: value.len() as u8, bytes }
        } else {
            KeyBytes::Heap(value.into())
        }
    }
}

impl std::borrow::Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBytes::Heap(b) => b,
        }
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        std::borrow::Borrow::<[u8]>::borrow(self) == std::borrow::Borrow::<[u8]>::borrow(other)
    }
}

impl Eq for KeyBytes {}

impl std::hash::Hash for KeyBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::borrow::Borrow::<[u8]>::borrow(self).hash(state);
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

// A cache entry is per key value at 1M keys: its size is part of the memory goal.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<KeyEntry>() == 48 && std::mem::size_of::<Grant>() == 24);

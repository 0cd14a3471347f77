//! One cached key: the store's answer for a presented value, as a grant on this stage, with
//! how long it is fresh and the invalidation generation it was asked at.

use crate::engine::Grant;
use std::fmt;

/// One cached key.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub(crate) grant: Grant,
    /// Unix seconds from which the key is expired (`u32::MAX`: never; an expiry after 2106 counts
    /// as never, so that this and `generation` fit in one word).
    pub(crate) expires: u32,
    /// Monotonic nanoseconds until which the store's answer is used without asking again; it
    /// may still be used for the engine's stale-if-error window after that if the store fails.
    /// (Bit 63 set: the answer must not be served past that, see [`KeyEntry::may_serve_stale`].)
    pub(crate) fresh: u64,
    /// The store's invalidation generation the answer was asked at (low 32 bits: compared for
    /// equality only, so it wraps harmlessly).
    pub(crate) generation: u32,
}

/// In [`KeyEntry::fresh`]: the store said how long its answer may be used (a stale answer
/// from a cache), so the layer does not extend it with its own stale-if-error window.
pub(crate) const NO_STALE: u64 = 1 << 63;

impl KeyEntry {
    /// Monotonic nanoseconds until which the answer is used without asking the store again.
    pub(crate) fn fresh_until(&self) -> u64 {
        self.fresh & !NO_STALE
    }

    /// Whether the answer may be used past `fresh_until` while the store fails.
    pub(crate) fn may_serve_stale(&self) -> bool {
        self.fresh & NO_STALE == 0
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
const _: () = assert!(std::mem::size_of::<KeyEntry>() == 40 && std::mem::size_of::<Grant>() == 24);

//! Concurrency caps: a slot taken for an admitted request and given back when the request is
//! over (its response body ended or was dropped, the request cancelled, or the inner service
//! panicked: whatever drops the guard).

use super::counter::KeyState;
use super::customer::CustomerState;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

/// Takes one slot of `count` if fewer than `cap` are taken.
#[inline]
pub(crate) fn take(count: &AtomicU32, cap: NonZeroU32) -> bool {
    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap.get()).then_some(n + 1)).is_ok()
}

/// This process's share of a cap of `cap` shared by `replicas` processes: `ceil(cap / replicas)`,
/// so that together they admit at most `replicas * ceil(cap / replicas)`, below `cap + replicas`.
#[inline]
pub(crate) fn share(cap: NonZeroU32, replicas: u32) -> NonZeroU32 {
    if replicas <= 1 {
        cap
    } else {
        NonZeroU32::new(cap.get().div_ceil(replicas)).unwrap_or(NonZeroU32::MIN)
    }
}

/// The slots one request holds; dropping it gives them back.
pub(crate) struct InFlight {
    key: Option<KeyState>,
    customer: Option<CustomerState>,
}

impl InFlight {
    /// Holds a slot taken on `key`'s count and/or `customer`'s.
    pub(crate) fn new(key: Option<KeyState>, customer: Option<CustomerState>) -> Option<Self> {
        (key.is_some() || customer.is_some()).then_some(Self { key, customer })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = self.key.as_ref().and_then(|k| k.inflight()) {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(c) = &self.customer {
            c.inflight().fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("key", &self.key.is_some())
            .field("customer", &self.customer.is_some())
            .finish()
    }
}

//! What a client may be told about its limits right after a decision: the views behind the
//! rate-limit headers and a rejection's details. Plain data, a leaf: the engine and the counter
//! backends fill these in, `rejection` and `http` read them.

/// The bucket as a client sees it right after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BucketView {
    pub(crate) burst: u32,
    /// Requests that would be admitted right now.
    pub(crate) remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub(crate) full_in_nanos: u64,
    /// Nanoseconds to refill from empty (`burst * T`).
    pub(crate) window_nanos: u64,
}

/// The quota as a client sees it right after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QuotaView {
    /// The limit of the current period (after `offset` in the initial period).
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Seconds until the period ends.
    pub(crate) resets_in_secs: u64,
    /// Length of the current period, seconds.
    pub(crate) window_secs: u64,
}

/// Per-key limits as seen right after a decision, for rate-limit headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) quota: Option<QuotaView>,
    pub(crate) key: Option<BucketView>,
    pub(crate) method: Option<BucketView>,
}

//! What a [`RedisBackendBuilder`](crate::RedisBackendBuilder) collects, besides the addresses and
//! the clock: timeouts, lease sizes, the circuit breaker and the [`FailurePolicy`] of each limit
//! class. Plain data, read by every other file of the backend.

use std::time::Duration;

/// What to do with a limit class when Redis cannot be reached (timeout, connection refused,
/// circuit breaker open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse with 503.
    FailClosed,
    /// Admit without checking this class (quota usage is still recorded and replayed).
    FailOpen,
    /// Check in-process counters, each replica holding its share (`1 / replicas`) of every
    /// throttle's rate and burst, and of each key's quota remaining when Redis was last seen.
    LocalFallback,
}

/// The backend's settings (the builder's defaults are in [`Settings::default`]).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// The hash tag every key carries.
    pub(super) prefix: String,
    /// Longest wait for one call.
    pub(super) timeout: Duration,
    pub(super) throttle_policy: FailurePolicy,
    pub(super) quota_policy: FailurePolicy,
    /// Quota leases on.
    pub(super) leasing: bool,
    /// Largest batch of a quota leased at a time.
    pub(super) max_lease: u64,
    /// How many replicas share the limits.
    pub(super) replicas: u32,
    /// Failed calls in a row that open the circuit breaker.
    pub(super) breaker_failures: u32,
    /// How long the open breaker keeps calls away from Redis.
    pub(super) breaker_cooldown: Duration,
    /// A lease unused for this long goes back to Redis.
    pub(super) idle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prefix: "tup".into(),
            timeout: Duration::from_millis(50),
            throttle_policy: FailurePolicy::LocalFallback,
            quota_policy: FailurePolicy::LocalFallback,
            leasing: true,
            max_lease: 100,
            replicas: 1,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(1),
            idle: Duration::from_secs(30),
        }
    }
}

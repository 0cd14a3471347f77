//! [`RedisBackendBuilder`]: the settings, the clock, and opening the connection.

use super::conn::{Conn, Connection};
use super::error::RedisBackendError;
use super::revoke;
use super::settings::{FailurePolicy, Settings};
use crate::engine::{Clock, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`RedisBackend`](crate::RedisBackend). `Debug` leaves out the URLs (they may hold a
/// password).
#[derive(Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    /// Seed nodes of a Redis Cluster (`cluster` mode), empty for one server.
    cluster: Vec<String>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("RedisBackendBuilder")
            .field("cluster_nodes", &self.cluster.len())
            .field("prefix", &s.prefix)
            .field("timeout", &s.timeout)
            .field("throttle_policy", &s.throttle_policy)
            .field("quota_policy", &s.quota_policy)
            .field("leasing", &s.leasing)
            .field("max_lease", &s.max_lease)
            .field("replicas", &s.replicas)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// A builder for the server at `url`, with the defaults.
    pub(super) fn new(url: String) -> Self {
        Self { url, cluster: Vec::new(), clock: Arc::new(SystemClock::new()), settings: Settings::default() }
    }

    /// A builder for a Redis Cluster reached through any of `nodes`.
    pub(super) fn cluster(nodes: Vec<String>) -> Self {
        let mut builder = Self::new(nodes.first().cloned().unwrap_or_default());
        builder.cluster = nodes;
        builder
    }

    /// The hash tag every key carries (`{tup}` by default); apps sharing one Redis keep apart by
    /// prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Longest wait for one call (50 ms by default); then the failure policy decides.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Failure policy for throttles ([`FailurePolicy::LocalFallback`] by default).
    pub fn throttle_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.throttle_policy = policy;
        self
    }

    /// Failure policy for quotas ([`FailurePolicy::LocalFallback`] by default, with replay).
    pub fn quota_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.quota_policy = policy;
        self
    }

    /// Quota leases (on by default). Off: every request counts in Redis (one script per
    /// request), exact to the request even in the usage Redis reports.
    pub fn leasing(mut self, on: bool) -> Self {
        self.settings.leasing = on;
        self
    }

    /// Largest batch of a quota one replica leases at a time (100 by default).
    pub fn max_lease(mut self, n: u64) -> Self {
        self.settings.max_lease = n.max(1);
        self
    }

    /// How many replicas share the limits (1 by default): sizes leases and the local fallback's
    /// share of each limit, and shares concurrency caps (counted in each process): each replica
    /// admits `ceil(N / replicas)` of a cap of `N`, so the deployment admits at most
    /// `replicas * ceil(N / replicas)` at once (below `N + replicas`).
    pub fn replicas(mut self, n: u32) -> Self {
        self.settings.replicas = n.max(1);
        self
    }

    /// The circuit breaker: after `failures` failed calls in a row, Redis is not called for
    /// `cooldown` (5 and 1 s by default); then one call probes it.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.settings.breaker_failures = failures.max(1);
        self.settings.breaker_cooldown = cooldown;
        self
    }

    /// A lease unused for this long goes back to Redis (30 s by default).
    pub fn idle_lease_return(mut self, idle: Duration) -> Self {
        self.settings.idle = idle;
        self
    }

    /// The clock of the backend's maintenance ([`SystemClock`] by default): when a lease has been
    /// idle long enough to go back, and when an outage's fallback buckets may be dropped.
    /// Requests are decided at the time their layer's clock gives (the deny cache, the circuit
    /// breaker's cooldown, the fallback buckets), so give the backend the clock you give the
    /// layers it serves, e.g. one [`ManualClock`](crate::ManualClock) in tests. Every
    /// [`SystemClock`] of a process shares one monotonic origin, so the defaults agree.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tower_usage_plans::{InMemoryKeyStore, ManualClock, RedisBackend, UsagePlanLayer};
    /// // 2027-01-01T00:00:00Z; monotonic time moves only with `clock.advance(..)`.
    /// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_798_761_600));
    /// let redis = RedisBackend::builder("redis://127.0.0.1:6379").clock(clock.clone()).connect().await?;
    /// let store = InMemoryKeyStore::from_path("plans.toml")?;
    /// let layer = UsagePlanLayer::builder(store).clock(clock.clone()).redis(redis).build();
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens the connection (lazily for one server: the first call connects), writes this
    /// replica's first heartbeat (bounded by the call timeout), and starts the maintenance task
    /// and the usage update feed.
    pub(super) async fn open(self) -> Result<Arc<Conn>, RedisBackendError> {
        let urls: Vec<String> = std::iter::once(self.url.clone()).chain(self.cluster.iter().cloned()).collect();
        let error = |e: redis::RedisError| RedisBackendError::new(e, &urls);
        let timeout = self.settings.timeout;
        // Two connections: the requests', and the usage-update feed's (a blocking read of its
        // own, with room for the block in its response timeout).
        let (manager, feed) = if self.cluster.is_empty() {
            let client = redis::Client::open(self.url.as_str()).map_err(error)?;
            // Fail fast: one connect attempt per call, bounded by the timeout; the manager
            // reconnects by itself when the server is back.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(0);
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(error)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
                .set_response_timeout(Some(Duration::from_secs(3)))
                .set_number_of_retries(0);
            let feed = ConnectionManager::new_lazy_with_config(client, config).map_err(error)?;
            (Connection::Single(manager), Connection::Single(feed))
        } else {
            // Every key of a deployment is in one hash slot; the cluster client follows MOVED
            // and ASK redirections when that slot moves.
            let client = redis::cluster::ClusterClientBuilder::new(self.cluster.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(error)?;
            let feed = redis::cluster::ClusterClientBuilder::new(self.cluster.clone())
                .connection_timeout(timeout.max(Duration::from_secs(1)))
                .response_timeout(Duration::from_secs(3))
                .retries(1)
                .build()
                .map_err(error)?;
            let manager = client.get_async_connection().await.map_err(error)?;
            let feed = feed.get_async_connection().await.map_err(error)?;
            (Connection::Cluster(manager), Connection::Cluster(feed))
        };
        let conn = Arc::new(Conn::new(manager, self.settings, self.clock, revoke::instance_name()));
        Conn::start_maintenance(&conn);
        revoke::start(&conn, feed).await;
        Ok(conn)
    }
}

//! Counters in Redis (feature `redis`): limits shared by every replica of an app.
//!
//! - **Throttles**: one Lua script per request checks every bucket (per-key method, per-key plan,
//!   customer, stage method, stage default, account) all-or-nothing on the server's clock. Exact
//!   across replicas.
//! - **Quotas**: leases. A replica reserves a batch of a key's remaining quota in the same script
//!   (`INCRBY` on the period's counter, never past the limit) and spends it locally; the batch
//!   shrinks as the quota nears its end. Unused leases go back on idle, at period rollover and at
//!   [`RedisBackend::shutdown`]. A request of a plan without throttles that finds a lease makes no
//!   round trip at all.
//! - **Customers**: a customer's quota is counted in the same script call as the key's (one
//!   request of each, no lease), so it is exact across replicas; a request of a key whose
//!   customer has a quota always makes one round trip. Customer refusals are not cached.
//! - **Concurrency caps** are counted in each process: each of the `replicas`
//!   ([`RedisBackendBuilder::replicas`]) admits `ceil(N / replicas)` of a cap of `N`.
//! - **Deny cache**: a refused key (or stage bucket) stays refused locally until its retry time.
//! - **Failures**: a timeout per call, a circuit breaker, and a [`FailurePolicy`] per limit class;
//!   usage admitted while Redis was unreachable is replayed to it when it is back.
//! - **Usage ledger**: forwarded requests per key, plan and UTC day, counted locally and added
//!   to Redis every second, at [`RedisBackend::flush`], [`RedisBackend::shutdown`] and before each
//!   usage query, so [`Usage`](crate::usage::Usage) answers for the whole deployment.
//! - **Time**: requests are decided at their layer's clock reading; maintenance (idle lease
//!   returns, pruning) reads the backend's clock ([`RedisBackendBuilder::clock`]).
//!
//! Files (no import cycle between them, see `tests/structure.rs`):
//!
//! | file | holds |
//! |---|---|
//! | `builder.rs` | [`RedisBackendBuilder`], opening the connection |
//! | `check.rs` | the check of one request (`impl CounterBackend`), the script's answer applied |
//! | `conn.rs` | the shared state, the connection, maintenance (write-back, idle returns) |
//! | `fallback.rs` | the [`FailurePolicy`]'s answer, local fallback buckets |
//! | `lease.rs` | a key's state: quota lease, deny cache, outage usage; the write-back queue |
//! | `customer.rs` | a customer's state, and its quota's part of a check (never leased nor cached) |
//! | `refund.rs` | refunds (the key's and the customer's quota counts), the ledger count of a request |
//! | `breaker.rs` | the circuit breaker |
//! | `reply.rs` | the script's reply, decoded |
//! | `revoke.rs` | UpdateUsage across replicas: leases given back, heartbeats, the update feed |
//! | `script.rs` | the Lua scripts, their arguments, the names of the Redis keys |
//! | `settings.rs` | the builder's settings, [`FailurePolicy`] |
//! | `usage.rs` | the usage ledger in Redis (GetUsage, UpdateUsage, sinks) |
//! | `snapshot.rs` | snapshots of the deployment's ledger and quota counts |
//! | `error.rs`, `stats.rs` | [`RedisBackendError`], [`RedisStats`] |

mod breaker;
mod builder;
mod check;
mod conn;
mod customer;
mod error;
mod fallback;
mod lease;
mod refund;
mod reply;
mod revoke;
mod script;
mod settings;
mod snapshot;
mod stats;
#[cfg(test)]
mod tests;
mod usage;

pub use builder::RedisBackendBuilder;
pub use error::{RedisBackendError, RedisBackendErrorKind};
pub use settings::FailurePolicy;
pub use stats::RedisStats;

use crate::engine::Clock;
use crate::engine::CounterBackend;
use crate::model::Stage;
use check::Bound;
use conn::Conn;
use std::fmt;
use std::sync::Arc;

/// Counters in Redis, shared by every replica; give it to
/// [`UsagePlanLayerBuilder::redis`](crate::UsagePlanLayerBuilder::redis). Clones share one
/// connection; one backend can serve several layers (stages).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_usage_plans::{InMemoryKeyStore, RedisBackend, UsagePlanLayer};
/// let redis = RedisBackend::builder("redis://127.0.0.1:6379").replicas(3).connect().await?;
/// let store = InMemoryKeyStore::from_path("plans.toml")?;
/// let layer = UsagePlanLayer::builder(store).redis(redis.clone()).build();
/// // ... serve; then, on shutdown:
/// let unwritten = redis.shutdown().await;
/// assert_eq!(unwritten, 0, "Redis was unreachable: usage lost");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conn: Arc<Conn>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.conn.settings;
        f.debug_struct("RedisBackend")
            .field("prefix", &s.prefix)
            .field("timeout", &s.timeout)
            .field("leasing", &s.leasing)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// Connects. Needs a tokio runtime (the backend keeps a task that returns idle leases and
    /// replays usage admitted during outages).
    pub async fn connect(self) -> Result<RedisBackend, RedisBackendError> {
        Ok(RedisBackend { conn: self.open().await? })
    }
}

impl RedisBackend {
    /// A builder for a Redis Cluster reached through any of `nodes` (`redis://host:port` each);
    /// connecting needs one of them to answer. All of a deployment's keys live in one hash slot
    /// (one shard), so one script can check them all.
    pub fn cluster_builder(nodes: impl IntoIterator<Item = impl Into<String>>) -> RedisBackendBuilder {
        RedisBackendBuilder::cluster(nodes.into_iter().map(Into::into).collect())
    }

    /// A builder for the server at `url` (`redis://host:port/db`, `rediss://` needs a TLS feature
    /// of the `redis` crate).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(url.into())
    }

    /// What the backend has done so far.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        self.conn.counters.snapshot(self.conn.key_count() as u64)
    }

    /// Gives every unused lease back, writes usage admitted during an outage and this replica's
    /// usage ledger counts, so a graceful shutdown loses no count. Call it after the server
    /// stopped taking requests.
    ///
    /// Returns how many writes could not be made (Redis unreachable): 0 means nothing is lost.
    /// It tries for up to 20 timeouts before giving up.
    #[must_use = "a non-zero count is usage that was not written"]
    pub async fn shutdown(&self) -> usize {
        self.conn.return_all_leases();
        let mut left = self.conn.maintain(false).await;
        for _ in 0..20 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(self.conn.settings.timeout).await;
            left = self.conn.maintain(false).await;
        }
        if left > 0 {
            tracing::error!(pending = left, "redis unreachable at shutdown: usage not written");
        }
        revoke::leave(&self.conn).await;
        left
    }

    /// Writes pending usage (replays and ledger counts) and returns queued leases now (the
    /// backend also does it every second); returns how many writes are still pending.
    #[must_use = "a non-zero count is usage not written yet"]
    pub async fn flush(&self) -> usize {
        self.conn.maintain(false).await
    }

    /// The backend bound to `stage`, for a layer whose clock is `clock` (its requests are
    /// decided at that clock's readings; a warning is logged when it disagrees with the
    /// backend's own clock).
    pub(crate) fn bind(&self, stage: Option<&Stage>, clock: Arc<dyn Clock>) -> Arc<dyn CounterBackend> {
        Arc::new(Bound::new(&self.conn, stage, clock.as_ref()))
    }

    /// The usage ledger in Redis, for a layer keeping `retention_days` days (the largest of the
    /// layers it serves is kept).
    pub(crate) fn usage(&self, retention_days: u32) -> Arc<dyn crate::usage::UsageBackend> {
        self.conn.retention_days.fetch_max(retention_days.max(1), std::sync::atomic::Ordering::AcqRel);
        Arc::new(usage::RedisUsage { conn: Arc::clone(&self.conn) })
    }
}

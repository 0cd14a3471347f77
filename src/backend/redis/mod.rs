//! Counters in Redis (feature `redis`): limits shared by every replica of an app.
//!
//! - **Throttles**: one Lua script per request checks every bucket (per-key method, per-key plan,
//!   stage method, stage default, account) all-or-nothing on the server's clock. Exact across
//!   replicas.
//! - **Quotas**: leases. A replica reserves a batch of a key's remaining quota in the same script
//!   (`INCRBY` on the period's counter, never past the limit) and spends it locally; the batch
//!   shrinks as the quota nears its end. Unused leases go back on idle, at period rollover and at
//!   [`RedisBackend::shutdown`]. A request of a plan without throttles that finds a lease makes no
//!   round trip at all.
//! - **Deny cache**: a refused key (or stage bucket) stays refused locally until its retry time.
//! - **Failures**: a timeout per call, a circuit breaker, and a [`FailurePolicy`] per limit class;
//!   usage admitted while Redis was unreachable is replayed to it when it is back.

mod script;

use crate::engine::{nanos, CompiledPlan, Gcra, Now, PeriodInfo, QuotaRule};
use crate::engine::{BackendKey, BucketSlot, Check, CounterBackend, KeyState, Outcome, Refund, Refused, Verdict};
use crate::model::Stage;
use crate::rejection::ThrottleScope;
use crate::view::{Limits, QuotaView};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use script::{quota_key, Names};
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
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

/// What the backend has done so far (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Requests decided.
    pub checks: u64,
    /// Round trips to Redis made for requests (scripts), successful or not.
    pub round_trips: u64,
    /// Requests answered by the local deny cache.
    pub deny_cache_hits: u64,
    /// Requests whose quota came from a local lease.
    pub lease_hits: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Requests decided by the failure policy.
    pub fallback_decisions: u64,
    /// Requests admitted while Redis was unreachable and since written to it.
    pub replayed: u64,
    /// Keys whose state this replica holds now.
    pub keys: u64,
}

#[derive(Debug, Default)]
struct Counters {
    checks: AtomicU64,
    round_trips: AtomicU64,
    deny_cache_hits: AtomicU64,
    lease_hits: AtomicU64,
    errors: AtomicU64,
    fallback_decisions: AtomicU64,
    replayed: AtomicU64,
}

/// An error connecting to Redis.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisBackendError(#[from] redis::RedisError);

/// One server, or a Redis Cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Builds a [`RedisBackend`]. `Debug` leaves out the URLs (they may hold a password).
#[derive(Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    /// Seed nodes of a Redis Cluster (`cluster` mode), empty for one server.
    cluster: Vec<String>,
    prefix: String,
    timeout: Duration,
    throttle_policy: FailurePolicy,
    quota_policy: FailurePolicy,
    leasing: bool,
    max_lease: u64,
    replicas: u32,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    idle: Duration,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("cluster_nodes", &self.cluster.len())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("throttle_policy", &self.throttle_policy)
            .field("quota_policy", &self.quota_policy)
            .field("leasing", &self.leasing)
            .field("max_lease", &self.max_lease)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// The hash tag every key carries (`{tup}` by default); apps sharing one Redis keep apart by
    /// prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Longest wait for one call (50 ms by default); then the failure policy decides.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Failure policy for throttles ([`FailurePolicy::LocalFallback`] by default).
    pub fn throttle_policy(mut self, policy: FailurePolicy) -> Self {
        self.throttle_policy = policy;
        self
    }

    /// Failure policy for quotas ([`FailurePolicy::LocalFallback`] by default, with replay).
    pub fn quota_policy(mut self, policy: FailurePolicy) -> Self {
        self.quota_policy = policy;
        self
    }

    /// Quota leases (on by default). Off: every request counts in Redis (one script per
    /// request), exact to the request even in the usage Redis reports.
    pub fn leasing(mut self, on: bool) -> Self {
        self.leasing = on;
        self
    }

    /// Largest batch of a quota one replica leases at a time (100 by default).
    pub fn max_lease(mut self, n: u64) -> Self {
        self.max_lease = n.max(1);
        self
    }

    /// How many replicas share the limits (1 by default): sizes leases and the local fallback's
    /// share of each limit.
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// The circuit breaker: after `failures` failed calls in a row, Redis is not called for
    /// `cooldown` (5 and 1 s by default); then one call probes it.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cooldown = cooldown;
        self
    }

    /// A lease unused for this long goes back to Redis (30 s by default).
    pub fn idle_lease_return(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Connects. Needs a tokio runtime (the backend keeps a task that returns idle leases and
    /// replays usage admitted during outages).
    pub async fn connect(self) -> Result<RedisBackend, RedisBackendError> {
        let manager = if self.cluster.is_empty() {
            let client = redis::Client::open(self.url.as_str())?;
            // Fail fast: one connect attempt per call, bounded by the timeout; the manager
            // reconnects by itself when the server is back.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(0);
            Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?)
        } else {
            // Every key of a deployment is in one hash slot; the cluster client follows MOVED
            // and ASK redirections when that slot moves.
            let client = redis::cluster::ClusterClientBuilder::new(self.cluster.clone())
                .connection_timeout(self.timeout)
                .response_timeout(self.timeout)
                .retries(1)
                .build()?;
            Connection::Cluster(client.get_async_connection().await?)
        };
        let conn = Arc::new(Conn {
            origin: std::time::Instant::now(),
            manager,
            script: redis::Script::new(script::CHECK),
            names: Names::new(&self.prefix),
            settings: self,
            breaker: Breaker::default(),
            keys: parking_lot::Mutex::new(HashMap::new()),
            returns: parking_lot::Mutex::new(Vec::new()),
            fallback: parking_lot::Mutex::new(HashMap::new()),
            maintaining: tokio::sync::Mutex::new(()),
            write_back: redis::Script::new(script::WRITE_BACK),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&conn);
        let period = conn.settings.idle.min(Duration::from_secs(1)).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut since_idle = Duration::ZERO;
            loop {
                tick.tick().await;
                let Some(conn) = weak.upgrade() else { return };
                since_idle += period;
                let idle = since_idle >= conn.settings.idle;
                if idle {
                    since_idle = Duration::ZERO;
                }
                conn.maintain(idle).await;
            }
        });
        Ok(RedisBackend { conn })
    }
}

/// Counters in Redis, shared by every replica; give it to
/// [`UsagePlanLayerBuilder::redis`](crate::UsagePlanLayerBuilder::redis). Clones share one
/// connection; one backend can serve several layers (stages).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_usage_plans::{InMemoryKeyStore, RedisBackend, UsagePlanLayer};
/// let redis = RedisBackend::builder("redis://127.0.0.1:6379").replicas(3).connect().await?;
/// let store = InMemoryKeyStore::from_path("plans.toml")?;
/// let layer = UsagePlanLayer::builder(store).redis(redis.clone()).build().unwrap();
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

impl RedisBackend {
    /// A builder for a Redis Cluster reached through any of `nodes` (`redis://host:port` each);
    /// connecting needs one of them to answer. All of a deployment's keys live in one hash slot
    /// (one shard), so one script can check them all.
    pub fn cluster_builder(nodes: impl IntoIterator<Item = impl Into<String>>) -> RedisBackendBuilder {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut builder = Self::builder(nodes.first().cloned().unwrap_or_default());
        builder.cluster = nodes;
        builder
    }

    /// A builder for the server at `url` (`redis://host:port/db`, `rediss://` needs a TLS feature
    /// of the `redis` crate).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            cluster: Vec::new(),
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

    /// What the backend has done so far.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        let c = &self.conn.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStats {
            checks: l(&c.checks),
            round_trips: l(&c.round_trips),
            deny_cache_hits: l(&c.deny_cache_hits),
            lease_hits: l(&c.lease_hits),
            errors: l(&c.errors),
            fallback_decisions: l(&c.fallback_decisions),
            replayed: l(&c.replayed),
            keys: self.conn.keys.lock().len() as u64,
        }
    }

    /// Gives every unused lease back and writes usage admitted during an outage, so a graceful
    /// shutdown loses no count. Call it after the server stopped taking requests.
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
        left
    }

    /// Writes pending usage and returns queued leases now (the backend also does it every
    /// second); returns how many writes are still pending.
    #[must_use = "a non-zero count is usage not written yet"]
    pub async fn flush(&self) -> usize {
        self.conn.maintain(false).await
    }

    pub(crate) fn bind(&self, stage: Option<&Stage>) -> Arc<dyn CounterBackend> {
        let names = &self.conn.names;
        let (api, name) = stage.map_or(("", ""), |s| (s.api(), s.stage_name()));
        let methods: Vec<String> = stage
            .map(|s| s.methods().iter().map(|(k, _)| names.stage_method(api, name, &k.to_string())).collect())
            .unwrap_or_default();
        Arc::new(Bound {
            inner: Arc::new(BoundInner {
                conn: Arc::clone(&self.conn),
                api: api.into(),
                stage: name.into(),
                deny: (0..methods.len() + 2).map(|_| AtomicU64::new(0)).collect(),
                stage_default: names.stage(api, name),
                account: names.account(),
                stage_methods: methods,
            }),
        })
    }
}

/// A key id and a plan id.
type KeyAndPlan = (Arc<str>, Arc<str>);

struct Conn {
    /// Origin of the backend's monotonic clock.
    origin: std::time::Instant,
    manager: Connection,
    script: redis::Script,
    names: Names,
    settings: RedisBackendBuilder,
    breaker: Breaker,
    /// Every key's state by (key id, plan id), shared by the stages this backend serves.
    keys: parking_lot::Mutex<HashMap<KeyAndPlan, Arc<RedisKey>>>,
    /// Counts to write back: (counter name, amount to add, unix time the counter expires);
    /// negative amounts give leases back.
    returns: parking_lot::Mutex<Vec<(String, i64, i64)>>,
    /// Local fallback buckets by bucket name (made during outages only).
    fallback: parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// One maintenance round at a time.
    maintaining: tokio::sync::Mutex<()>,
    /// Writes a count back: replays add and set the expiry; lease returns subtract, never below
    /// 0 and never on a counter that no longer exists.
    write_back: redis::Script,
    counters: Counters,
}

impl Conn {
    /// Nanoseconds since the backend was made (at least 1, so that 0 can mean "never").
    fn mono(&self) -> u64 {
        nanos(self.origin.elapsed()).max(1)
    }

    /// Returns idle leases (when `idle`), replays usage admitted during outages, and writes
    /// queued lease returns; returns how many writes are still pending. A replay that failed
    /// stays queued (it may have been applied after all when the call timed out: at least once).
    /// A lease return whose outcome is unknown is dropped (a double return would admit too
    /// much; a lost one only under-admits); one refused outright stays queued.
    async fn maintain(&self, idle: bool) -> usize {
        let _one_at_a_time = self.maintaining.lock().await;
        if idle {
            self.prune();
        }
        let keys: Vec<Arc<RedisKey>> = self.keys.lock().values().cloned().collect();
        for k in &keys {
            if idle && !k.touched.swap(false, Ordering::AcqRel) {
                k.give_back_lease(self);
            }
            let (tag, n) = unpack(k.outage.swap(0, Ordering::AcqRel));
            if n > 0 {
                let expire = k.outage_end.load(Ordering::Acquire) + 86_400;
                self.returns.lock().push((quota_key(&k.quota_stem, tag), n as i64, expire));
            }
        }
        let pending = std::mem::take(&mut *self.returns.lock());
        let mut merged: HashMap<String, (i64, i64)> = HashMap::new();
        for (name, n, expire) in pending {
            let e = merged.entry(name).or_insert((0, 0));
            e.0 += n;
            e.1 = e.1.max(expire);
        }
        let mut manager = self.manager.clone();
        let mut kept = Vec::new();
        for (name, (n, expire)) in merged {
            if n == 0 {
                continue;
            }
            let mut call = self.write_back.key(&name);
            call.arg(n).arg(expire);
            match tokio::time::timeout(self.settings.timeout, call.invoke_async::<i64>(&mut manager)).await {
                Ok(Ok(_)) if n > 0 => {
                    self.counters.replayed.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is_connection_refusal() => kept.push((name, n, expire)),
                _ if n > 0 => kept.push((name, n, expire)),
                _ => {}
            }
        }
        let left = kept.len();
        self.returns.lock().extend(kept);
        left
    }

    /// Forgets the state of keys no layer holds any more (no cache entry, no request in
    /// progress) that hold nothing either: no lease, no usage to replay, no fallback count. Their
    /// counts live in Redis; a key that comes back starts from there.
    fn prune(&self) {
        self.keys.lock().retain(|_, k| {
            Arc::strong_count(k) > 1
                || unpack(k.lease.load(Ordering::Acquire)).1 > 0
                || unpack(k.outage.load(Ordering::Acquire)).1 > 0
                || unpack(k.fallback_used.load(Ordering::Acquire)).1 > 0
        });
        // Fallback buckets are made during outages only; drop them once full again.
        let now = self.mono();
        self.fallback.lock().retain(|_, b| Arc::strong_count(b) > 1 || b.load(Ordering::Acquire) > now);
    }

    /// The local fallback bucket standing in for the Redis bucket `name`.
    fn fallback_bucket(&self, name: &str) -> Arc<AtomicU64> {
        let mut map = self.fallback.lock();
        if let Some(b) = map.get(name) {
            return Arc::clone(b);
        }
        let b = Arc::new(AtomicU64::new(0));
        map.insert(name.to_owned(), Arc::clone(&b));
        b
    }

    fn return_all_leases(&self) {
        let keys: Vec<Arc<RedisKey>> = self.keys.lock().values().cloned().collect();
        for k in keys {
            k.give_back_lease(self);
        }
    }

    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>) -> Arc<RedisKey> {
        let mut keys = self.keys.lock();
        let slot = (Arc::clone(id), Arc::clone(plan.plan.id_arc()));
        Arc::clone(keys.entry(slot).or_insert_with(|| {
            Arc::new(RedisKey {
                id: Arc::clone(id),
                key_bucket: self.names.key(id, plan.plan.id()),
                quota_stem: self.names.quota_stem(id, plan.plan.id()),
                lease: AtomicU64::new(0),
                last_used: AtomicU64::new(0),
                deny_until: AtomicU64::new(0),
                deny: parking_lot::Mutex::new(None),
                quota_deny_until: AtomicU64::new(0),
                quota_deny: parking_lot::Mutex::new(None),
                touched: AtomicBool::new(true),
                outage: AtomicU64::new(0),
                outage_end: std::sync::atomic::AtomicI64::new(0),
                fallback_used: AtomicU64::new(0),
                refilling: AtomicBool::new(false),
                plan: parking_lot::Mutex::new(Arc::clone(plan)),
            })
        }))
    }
}

/// Packs a period tag and a count into one word (the tag's 24 bits above a 40-bit count).
fn pack(tag: u64, n: u64) -> u64 {
    (tag << 40) | n.min((1 << 40) - 1)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 40, v & ((1 << 40) - 1))
}

/// One key's state under one plan, on this replica.
struct RedisKey {
    id: Arc<str>,
    key_bucket: String,
    quota_stem: String,
    /// Requests of the current period leased from Redis and not yet used (tag, count).
    lease: AtomicU64,
    /// The key's count in Redis when last seen (leases included).
    last_used: AtomicU64,
    /// Monotonic nanoseconds until which the key is refused locally, and why (a throttle).
    deny_until: AtomicU64,
    deny: parking_lot::Mutex<Option<Refused>>,
    /// Monotonic nanoseconds until which the quota is known to be spent (the period's end), and
    /// the view to answer with. A lease this replica still holds is used first.
    quota_deny_until: AtomicU64,
    quota_deny: parking_lot::Mutex<Option<QuotaView>>,
    /// Used since the last idle round.
    touched: AtomicBool,
    /// Requests admitted while Redis was unreachable and not yet written to it (tag, count).
    outage: AtomicU64,
    /// Unix seconds at which the period of `outage` ends.
    outage_end: std::sync::atomic::AtomicI64,
    /// Requests of the period admitted by the local fallback since Redis last answered for this
    /// key (tag, count): bounds the fallback to this replica's share however long the outage.
    fallback_used: AtomicU64,
    /// A lease refill is in flight: other requests ask for one request only, so that one replica
    /// holds at most one batch (plus one per request in flight).
    refilling: AtomicBool,
    /// The plan version the deny cache was filled under (a new version clears it).
    plan: parking_lot::Mutex<Arc<CompiledPlan>>,
}

impl fmt::Debug for RedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl BackendKey for RedisKey {
    fn key_id(&self) -> &Arc<str> {
        &self.id
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl RedisKey {
    /// Takes one request of period `tag` from the lease; a lease of an older period is given
    /// back (queued) first.
    fn take_lease(&self, conn: &Conn, tag: u64) -> bool {
        let mut cur = self.lease.load(Ordering::Acquire);
        loop {
            let (t, n) = unpack(cur);
            if t != tag {
                if n > 0 && self.lease.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    conn.returns.lock().push((quota_key(&self.quota_stem, t), -(n as i64), 0));
                }
                return false;
            }
            if n == 0 {
                return false;
            }
            match self.lease.compare_exchange_weak(cur, pack(t, n - 1), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `n` requests of period `tag` to the lease (dropping a lease of another period,
    /// which is given back).
    fn add_lease(&self, conn: &Conn, tag: u64, n: u64) {
        if n == 0 {
            return;
        }
        let mut cur = self.lease.load(Ordering::Acquire);
        loop {
            let (t, have) = unpack(cur);
            let next = if t == tag { pack(tag, have + n) } else { pack(tag, n) };
            match self.lease.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if t != tag && have > 0 {
                        conn.returns.lock().push((quota_key(&self.quota_stem, t), -(have as i64), 0));
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn give_back_lease(&self, conn: &Conn) {
        let (t, n) = unpack(self.lease.swap(0, Ordering::AcqRel));
        if n > 0 {
            conn.returns.lock().push((quota_key(&self.quota_stem, t), -(n as i64), 0));
        }
    }

    fn denied(&self, now: Now) -> Option<Refused> {
        let until = self.deny_until.load(Ordering::Acquire);
        if until <= now.mono_nanos {
            return None;
        }
        match *self.deny.lock() {
            Some(Refused::Throttled { scope, .. }) => {
                Some(Refused::Throttled { scope, wait_nanos: until - now.mono_nanos })
            }
            _ => None,
        }
    }

    fn quota_denied(&self, now: Now) -> Option<Refused> {
        let until = self.quota_deny_until.load(Ordering::Acquire);
        if until <= now.mono_nanos {
            return None;
        }
        let mut view = (*self.quota_deny.lock())?;
        view.resets_in_secs = (until - now.mono_nanos).div_ceil(1_000_000_000).max(1);
        Some(Refused::Quota(view))
    }

    fn deny(&self, until: u64, why: Refused) {
        match why {
            Refused::Quota(view) => {
                *self.quota_deny.lock() = Some(view);
                self.quota_deny_until.store(until, Ordering::Release);
            }
            _ => {
                *self.deny.lock() = Some(why);
                self.deny_until.store(until, Ordering::Release);
            }
        }
    }
}

/// A bucket of one request, as the script needs it.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    gcra: Gcra,
    scope: ThrottleScope,
    slot: BucketSlot,
}

struct BoundInner {
    conn: Arc<Conn>,
    api: Box<str>,
    stage: Box<str>,
    stage_methods: Vec<String>,
    stage_default: String,
    account: String,
    /// Deny cache of the stage buckets, same order.
    deny: Box<[AtomicU64]>,
}

/// The backend bound to one stage (one layer).
#[derive(Clone)]
struct Bound {
    inner: Arc<BoundInner>,
}

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend").field("api", &self.inner.api).field("stage", &self.inner.stage).finish()
    }
}

impl BoundInner {
    fn stage_index(&self, slot: BucketSlot) -> Option<usize> {
        let n = self.stage_methods.len();
        match slot {
            BucketSlot::StageMethod(i) => Some(usize::from(i)).filter(|i| *i < n),
            BucketSlot::Stage => Some(n),
            BucketSlot::Account => Some(n + 1),
            BucketSlot::Key | BucketSlot::KeyMethod(_) => None,
        }
    }

    fn spec(
        &self,
        slot: BucketSlot,
        scope: ThrottleScope,
        gcra: Gcra,
        key: Option<&RedisKey>,
        plan: Option<&CompiledPlan>,
    ) -> Option<Spec> {
        let names = &self.conn.names;
        let name = match slot {
            BucketSlot::StageMethod(i) => self.stage_methods.get(usize::from(i))?.clone(),
            BucketSlot::Stage => self.stage_default.clone(),
            BucketSlot::Account => self.account.clone(),
            BucketSlot::Key => key?.key_bucket.clone(),
            BucketSlot::KeyMethod(i) => {
                let (key, plan) = (key?, plan?);
                let method = plan.method_keys.get(usize::from(i))?;
                names.key_method(&key.id, plan.plan.id(), &self.api, &self.stage, &method.to_string())
            }
        };
        Some(Spec { name, gcra, scope, slot })
    }

    /// The failure policy's answer (Redis unreachable or the breaker open).
    fn fallback(
        &self,
        specs: &[Spec],
        key: Option<&RedisKey>,
        quota: Option<(&QuotaRule, PeriodInfo)>,
        from_lease: bool,
        now: Now,
    ) -> Result<Option<Refund>, Refused> {
        let s = &self.conn.settings;
        self.conn.counters.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        let mut taken: Vec<(Arc<AtomicU64>, crate::engine::Undo)> = Vec::new();
        let release = |taken: &[(Arc<AtomicU64>, crate::engine::Undo)]| {
            for (state, undo) in taken {
                Gcra::undo(state, *undo);
            }
        };
        match s.throttle_policy {
            FailurePolicy::FailClosed if !specs.is_empty() => return Err(Refused::Unavailable),
            FailurePolicy::LocalFallback => {
                for spec in specs {
                    let state = self.conn.fallback_bucket(&spec.name);
                    match spec.gcra.share(s.replicas).acquire(&state, now.mono_nanos) {
                        Ok(undo) => taken.push((state, undo)),
                        Err(wait_nanos) => {
                            release(&taken);
                            return Err(Refused::Throttled { scope: spec.scope, wait_nanos });
                        }
                    }
                }
            }
            _ => {}
        }
        let (Some((rule, period)), Some(key)) = (quota, key) else { return Ok(None) };
        if from_lease {
            return Ok(None);
        }
        let admit = match s.quota_policy {
            FailurePolicy::FailClosed => false,
            FailurePolicy::FailOpen => true,
            FailurePolicy::LocalFallback => {
                // This replica's share of what was left when Redis was last seen.
                let left = period.limit.saturating_sub(key.last_used.load(Ordering::Acquire));
                let share = left / u64::from(s.replicas);
                let mut admit = false;
                let _ = key.fallback_used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    let (t, n) = unpack(v);
                    let n = if t == period.tag { n } else { 0 };
                    admit = n < share;
                    admit.then(|| pack(period.tag, n + 1))
                });
                admit
            }
        };
        if !admit {
            release(&taken);
            return Err(match s.quota_policy {
                FailurePolicy::FailClosed => Refused::Unavailable,
                _ => Refused::Quota(rule.view_used(now.unix_secs, period.limit)),
            });
        }
        // Recorded for replay when Redis is back.
        key.outage_end.store(period.end, Ordering::Release);
        let _ = key.outage.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (t, n) = unpack(v);
            Some(if t == period.tag { pack(t, n + 1) } else { pack(period.tag, 1) })
        });
        Ok(None)
    }
}

/// Consecutive failures and when calls may be tried again.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    /// Monotonic nanoseconds until which Redis is not called.
    open_until: AtomicU64,
    /// When the current probe started (0: none). A probe whose request was dropped before it
    /// finished is forgotten after `stale` nanoseconds, so the breaker cannot stay open for ever.
    probe_started: AtomicU64,
}

impl Breaker {
    /// Whether this request may call Redis.
    fn allow(&self, now: Now, stale: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now.mono_nanos < until {
            return false;
        }
        let started = self.probe_started.load(Ordering::Acquire);
        if started != 0 && now.mono_nanos.saturating_sub(started) < stale {
            return false;
        }
        self.probe_started.compare_exchange(started, now.mono_nanos, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probe_started.store(0, Ordering::Release);
    }

    fn failure(&self, now: Now, threshold: u32, cooldown: Duration) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= threshold || self.probe_started.load(Ordering::Acquire) != 0 {
            let nanos = nanos(cooldown);
            self.open_until.store(now.mono_nanos.saturating_add(nanos).max(1), Ordering::Release);
        }
        self.probe_started.store(0, Ordering::Release);
    }
}

/// Clears a key's "refill in flight" flag however the request ends (answered or dropped).
struct Refilling(Option<Arc<RedisKey>>);

impl Drop for Refilling {
    fn drop(&mut self) {
        if let Some(k) = &self.0 {
            k.refilling.store(false, Ordering::Release);
        }
    }
}

/// Gives one counted request back: to the lease when leasing (it is counted in Redis already),
/// to Redis itself otherwise.
fn refund_to(k: &Arc<RedisKey>, conn: &Arc<Conn>, tag: u64) -> Refund {
    let (k, conn) = (Arc::clone(k), Arc::clone(conn));
    Box::new(move || {
        if conn.settings.leasing {
            k.add_lease(&conn, tag, 1);
        } else {
            conn.returns.lock().push((quota_key(&k.quota_stem, tag), -1, 0));
        }
    })
}

fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1000).max(1)
}

impl CounterBackend for Bound {
    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>, _previous: Option<&KeyState>, _now: Now) -> KeyState {
        let key = self.inner.conn.key_state(id, plan);
        {
            let mut p = key.plan.lock();
            if !Arc::ptr_eq(&p, plan) {
                // New limits: what was refused under the old ones may pass now.
                *p = Arc::clone(plan);
                key.deny_until.store(0, Ordering::Release);
                key.quota_deny_until.store(0, Ordering::Release);
            }
        }
        key
    }

    fn check(&self, check: &Check<'_>) -> Verdict {
        let b = &self.inner;
        let conn = &b.conn;
        conn.counters.checks.fetch_add(1, Ordering::Relaxed);
        // The backend's own monotonic clock: its state (deny cache, breaker, fallback buckets) is
        // shared by every layer it serves, each with a clock of its own origin.
        let now = Now { mono_nanos: conn.mono(), unix_secs: check.now.unix_secs };
        let key: Option<Arc<RedisKey>> =
            check.key.and_then(|k| Arc::clone(k.state).into_any().downcast::<RedisKey>().ok());
        let plan = check.key.map(|k| Arc::clone(k.plan));
        // The deny cache: refused locally, no round trip.
        if let Some(k) = &key {
            k.touched.store(true, Ordering::Relaxed);
            if let Some(refused) = k.denied(now) {
                conn.counters.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Verdict::Ready(Outcome { result: Err(refused), limits: None });
            }
        }
        for bucket in check.buckets.iter().flatten() {
            if let Some(i) = b.stage_index(bucket.slot) {
                let until = b.deny.get(i).map_or(0, |d| d.load(Ordering::Acquire));
                if until > now.mono_nanos {
                    conn.counters.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
                    let refused = Refused::Throttled { scope: bucket.scope, wait_nanos: until - now.mono_nanos };
                    return Verdict::Ready(Outcome { result: Err(refused), limits: None });
                }
            }
        }
        let specs: Vec<Spec> = check
            .buckets
            .iter()
            .flatten()
            .filter_map(|bk| b.spec(bk.slot, bk.scope, *bk.gcra, key.as_deref(), plan.as_deref()))
            .collect();
        // The quota: from the lease when it has some, else leased (or counted) by the script.
        let quota = check.quota.map(|rule| (rule, rule.current(now.unix_secs)));
        let (mut from_lease, mut want) = (false, 0);
        // Set when this request refills the lease; cleared however the request ends.
        let mut refill = Refilling(None);
        if let (Some((_, period)), Some(k)) = (quota, &key) {
            if conn.settings.leasing && k.take_lease(conn, period.tag) {
                from_lease = true;
                conn.counters.lease_hits.fetch_add(1, Ordering::Relaxed);
            } else if let Some(refused) = k.quota_denied(now) {
                conn.counters.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Verdict::Ready(Outcome { result: Err(refused), limits: None });
            } else if conn.settings.leasing && !k.refilling.swap(true, Ordering::AcqRel) {
                let left = period.limit.saturating_sub(k.last_used.load(Ordering::Acquire));
                want = (left / (4 * u64::from(conn.settings.replicas))).clamp(1, conn.settings.max_lease);
                refill = Refilling(Some(Arc::clone(k)));
            } else {
                want = 1;
            }
        }
        let refund = |k: &Arc<RedisKey>, tag: u64| -> Option<Refund> {
            if !check.refund {
                return None;
            }
            Some(refund_to(k, conn, tag))
        };
        if specs.is_empty() && want == 0 {
            let result = match (&key, quota) {
                (Some(k), Some((_, period))) => Ok(refund(k, period.tag)),
                _ => Ok(None),
            };
            return Verdict::Ready(Outcome { result, limits: None });
        }
        let stale_probe = nanos(conn.settings.timeout).saturating_mul(4);
        if !conn.breaker.allow(now, stale_probe) {
            let result = b.fallback(&specs, key.as_deref(), quota, from_lease, now);
            if let (Err(_), true, Some(k), Some((_, p))) = (&result, from_lease, &key, quota) {
                k.add_lease(conn, p.tag, 1);
            }
            return Verdict::Ready(Outcome { result, limits: None });
        }
        // One round trip.
        let mut names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let mut args: Vec<i64> = Vec::with_capacity(2 * specs.len() + 4);
        args.push(specs.len() as i64);
        for spec in &specs {
            // Whole microseconds, the interval rounded up and the tolerance kept at (burst - 1)
            // intervals: never earlier and never more at once than the bucket allows.
            let (t, tau) = spec.gcra.params();
            let t_us = micros_up(t);
            args.push(t_us as i64);
            args.push(((tau / t.max(1)).saturating_mul(t_us)) as i64);
        }
        if let (Some((_, period)), Some(k), true) = (quota, &key, want > 0) {
            names.push(quota_key(&k.quota_stem, period.tag));
            args.extend([period.limit as i64, want as i64, period.end + 86_400]);
        }
        let bound = Arc::clone(&self.inner);
        let mut manager = conn.manager.clone();
        let views = check.views;
        let quota_owned = quota.map(|(_, p)| p);
        let refund_wanted = check.refund;
        Verdict::Pending(Box::pin(async move {
            let _refill = refill;
            let conn = &bound.conn;
            conn.counters.round_trips.fetch_add(1, Ordering::Relaxed);
            let s = &conn.settings;
            let mut invocation = conn.script.prepare_invoke();
            for name in &names {
                invocation.key(name);
            }
            for arg in &args {
                invocation.arg(*arg);
            }
            let answer = tokio::time::timeout(s.timeout, invocation.invoke_async::<Vec<i64>>(&mut manager)).await;
            let plan = plan.as_deref();
            let rule = plan.and_then(|p| p.quota.as_ref());
            let quota = rule.zip(quota_owned);
            let result = match answer {
                Ok(Ok(reply)) if reply.len() == 3 => {
                    conn.breaker.success();
                    match reply[0] {
                        1 => {
                            if let (Some(k), Some((_, period))) = (&key, quota) {
                                let (granted, used) = (reply[1].max(0) as u64, reply[2].max(0) as u64);
                                if want > 0 {
                                    // Redis answered for this key's quota: the fallback starts over
                                    // from this count (unless usage of an outage is still unwritten).
                                    k.last_used.store(used, Ordering::Release);
                                    if unpack(k.outage.load(Ordering::Acquire)).1 == 0 {
                                        k.fallback_used.store(0, Ordering::Release);
                                    }
                                }
                                if granted > 1 {
                                    k.add_lease(conn, period.tag, granted - 1);
                                }
                                if refund_wanted {
                                    Ok(Some(refund_to(k, conn, period.tag)))
                                } else {
                                    Ok(None)
                                }
                            } else {
                                Ok(None)
                            }
                        }
                        0 => {
                            let spec = reply[1]
                                .checked_sub(1)
                                .and_then(|i| usize::try_from(i).ok())
                                .and_then(|i| specs.get(i));
                            let wait_nanos = (reply[2].max(1) as u64).saturating_mul(1000);
                            if let (true, Some(k), Some((_, p))) = (from_lease, &key, quota) {
                                k.add_lease(conn, p.tag, 1);
                            }
                            match spec {
                                Some(spec) => {
                                    let refused = Refused::Throttled { scope: spec.scope, wait_nanos };
                                    let until = now.mono_nanos.saturating_add(wait_nanos);
                                    // Cached where it holds for every request that would meet it:
                                    // stage buckets for this stage, the key's plan bucket for the
                                    // key. A key's method bucket holds for that method only: not
                                    // cached.
                                    match (bound.stage_index(spec.slot), &key, spec.slot) {
                                        (Some(i), _, _) => {
                                            if let Some(d) = bound.deny.get(i) {
                                                d.store(until, Ordering::Release);
                                            }
                                        }
                                        (None, Some(k), BucketSlot::Key) => k.deny(until, refused),
                                        _ => {}
                                    }
                                    Err(refused)
                                }
                                None => Err(Refused::Unavailable),
                            }
                        }
                        _ => {
                            let used = reply[1].max(0) as u64;
                            match (&key, quota) {
                                (Some(k), Some((rule, period))) => {
                                    k.last_used.store(used, Ordering::Release);
                                    let view = rule.view_used(now.unix_secs, used);
                                    // Until the period ends, but no longer than leases held elsewhere take
                                    // to come back when idle.
                                    let to_end = (period.end - now.unix_secs).max(1) as u64 * 1_000_000_000;
                                    let idle = nanos(s.idle);
                                    let until = now.mono_nanos.saturating_add(to_end.min(idle.max(1_000_000_000)));
                                    k.deny(until, Refused::Quota(view));
                                    Err(Refused::Quota(view))
                                }
                                _ => Err(Refused::Unavailable),
                            }
                        }
                    }
                }
                failed => {
                    conn.counters.errors.fetch_add(1, Ordering::Relaxed);
                    match &failed {
                        // The server answered with an error (a key of another type under the
                        // prefix, a script error, OOM): not an outage, so the breaker stays
                        // closed; the failure policy decides this request.
                        Ok(Err(e)) if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) => {
                            tracing::error!(error = %e, "redis answered with an error");
                        }
                        _ => conn.breaker.failure(now, s.breaker_failures, s.breaker_cooldown),
                    }
                    let result = bound.fallback(&specs, key.as_deref(), quota, from_lease, now);
                    if let (Err(_), true, Some(k), Some((_, p))) = (&result, from_lease, &key, quota) {
                        k.add_lease(conn, p.tag, 1);
                    }
                    result
                }
            };
            let limits = match (&result, views, quota) {
                (Ok(_), true, Some((rule, _))) => key.as_ref().map(|k| {
                    Box::new(Limits {
                        quota: Some(rule.view_used(now.unix_secs, k.last_used.load(Ordering::Acquire))),
                        key: None,
                        method: None,
                    })
                }),
                _ => None,
            };
            Outcome { result, limits }
        }))
    }
}

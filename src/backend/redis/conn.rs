//! The backend's shared state ([`Conn`]): the connection, every key's state, the circuit breaker,
//! the fallback buckets, the queue of counts to write back, and the maintenance that writes them
//! (idle lease returns, replays of usage admitted during outages, pruning).
//!
//! Maintenance runs on the backend's own [`Clock`]: a task ticks every second (at most every
//! 100 ms with a short idle time) and, whenever that clock has moved on by the idle time, makes
//! an idle round.

use super::breaker::Breaker;
use super::fallback::Fallback;
use super::lease::{unpack, LedgerQueue, RedisKey, WriteQueue};
use super::script::{self, quota_key, Names};
use super::settings::Settings;
use super::stats::Counters;
use crate::engine::{nanos, Clock, CompiledPlan};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One server, or a Redis Cluster.
#[derive(Clone)]
pub(super) enum Connection {
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

/// A key id and a plan id.
type KeyAndPlan = (Arc<str>, Arc<str>);

/// Everything the stages a backend serves share.
pub(super) struct Conn {
    /// For maintenance (idle rounds, pruning); requests are decided at their own `Now`.
    pub(super) clock: Arc<dyn Clock>,
    pub(super) manager: Connection,
    pub(super) script: redis::Script,
    pub(super) names: Names,
    pub(super) settings: Settings,
    pub(super) breaker: Breaker,
    /// Every key's state by (key id, plan id), shared by the stages this backend serves.
    keys: parking_lot::Mutex<HashMap<KeyAndPlan, Arc<RedisKey>>>,
    /// Counts to write back to Redis.
    pub(super) returns: WriteQueue,
    /// Ledger counts to write to Redis.
    pub(super) ledger: LedgerQueue,
    /// Days of the ledger kept before today (the layers' `usage_retention_days`, the largest).
    pub(super) retention_days: std::sync::atomic::AtomicU32,
    /// Writes ledger counts.
    pub(super) usage_add: redis::Script,
    /// Local buckets standing in for Redis's during outages.
    pub(super) fallback: Fallback,
    /// One maintenance round at a time.
    maintaining: tokio::sync::Mutex<()>,
    /// Writes a count back: replays add and set the time to live; lease returns subtract, never
    /// below 0 and never on a counter that no longer exists.
    write_back: redis::Script,
    pub(super) counters: Counters,
    /// This replica's name among the deployment's (heartbeats, usage updates).
    pub(super) instance: String,
    /// This replica is known to the deployment (its first heartbeat written) and reads the
    /// usage update feed: until then it takes no lease, so that no update can miss one.
    pub(super) in_deployment: std::sync::atomic::AtomicBool,
}

impl Conn {
    /// The shared state over `manager` for the replica named `instance`, holding nothing yet.
    pub(super) fn new(manager: Connection, settings: Settings, clock: Arc<dyn Clock>, instance: String) -> Self {
        Self {
            clock,
            manager,
            script: redis::Script::new(script::CHECK),
            names: Names::new(&settings.prefix),
            settings,
            breaker: Breaker::default(),
            keys: parking_lot::Mutex::new(HashMap::new()),
            returns: WriteQueue::default(),
            ledger: LedgerQueue::default(),
            retention_days: std::sync::atomic::AtomicU32::new(0),
            usage_add: redis::Script::new(script::USAGE_ADD),
            fallback: Fallback::default(),
            maintaining: tokio::sync::Mutex::new(()),
            write_back: redis::Script::new(script::WRITE_BACK),
            counters: Counters::default(),
            instance,
            in_deployment: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Spawns the task that maintains `conn` until the last backend handle is dropped. Needs a
    /// tokio runtime.
    pub(super) fn start_maintenance(conn: &Arc<Conn>) {
        let weak = Arc::downgrade(conn);
        let idle = conn.settings.idle;
        let period = idle.min(Duration::from_secs(1)).max(Duration::from_millis(100));
        let (idle, tick_nanos) = (nanos(idle), nanos(period));
        // The first idle round comes `idle` after the first tick (which is at once).
        let mut idle_since = conn.clock.now().mono_nanos;
        let mut credit = tick_nanos;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(conn) = weak.upgrade() else { return };
                let now = conn.clock.now().mono_nanos;
                let is_idle = now.saturating_sub(idle_since).saturating_add(credit) >= idle;
                if is_idle {
                    (idle_since, credit) = (now, 0);
                }
                conn.maintain(is_idle).await;
            }
        });
    }

    /// Keys whose state this replica holds.
    pub(super) fn key_count(&self) -> usize {
        self.keys.lock().len()
    }

    /// Returns idle leases (when `idle`), replays usage admitted during outages, and writes
    /// queued lease returns; returns how many writes are still pending. A replay that failed
    /// stays queued (it may have been applied after all when the call timed out: at least once).
    /// A lease return whose outcome is unknown is dropped (a double return would admit too
    /// much; a lost one only under-admits); one refused outright stays queued.
    pub(super) async fn maintain(&self, idle: bool) -> usize {
        let _one_at_a_time = self.maintaining.lock().await;
        self.maintain_locked(idle).await
    }

    /// [`Conn::maintain`] under its lock, held by the caller until `then` is done: a usage
    /// query sees this replica's counts written and none written twice meanwhile.
    pub(super) async fn maintained<T, F: std::future::Future<Output = T>>(&self, then: impl FnOnce() -> F) -> T {
        let _one_at_a_time = self.maintaining.lock().await;
        self.maintain_locked(false).await;
        then().await
    }

    /// Runs `then` between two maintenance rounds (none runs meanwhile), without one of its
    /// own: what a round had taken to write is written before `then` starts.
    pub(super) async fn between_rounds<T, F: std::future::Future<Output = T>>(&self, then: impl FnOnce() -> F) -> T {
        let _one_at_a_time = self.maintaining.lock().await;
        then().await
    }

    async fn maintain_locked(&self, idle: bool) -> usize {
        if idle {
            self.prune();
        }
        let keys: Vec<Arc<RedisKey>> = self.keys.lock().values().cloned().collect();
        for k in &keys {
            k.drain_day(&self.ledger);
            if idle && !k.touched.swap(false, Ordering::AcqRel) {
                k.give_back_lease(&self.returns);
            }
            let (tag, n) = unpack(k.outage.swap(0, Ordering::AcqRel));
            if n > 0 {
                let expire = k.outage_end.load(Ordering::Acquire) + 86_400;
                self.returns.push(quota_key(&k.quota_stem, tag), n as i64, expire);
            }
        }
        let mut merged: HashMap<String, (i64, i64)> = HashMap::new();
        for (name, n, expire) in self.returns.take() {
            let e = merged.entry(name).or_insert((0, 0));
            e.0 += n;
            e.1 = e.1.max(expire);
        }
        let mut manager = self.manager.clone();
        let mut kept = Vec::new();
        let now = self.clock.now().unix_secs;
        for (name, (n, expire)) in merged {
            if n == 0 {
                continue;
            }
            let mut call = self.write_back.key(&name);
            call.arg(n).arg(script::ttl_secs(expire, now));
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
        self.returns.extend(kept);
        left + self.write_ledger().await
    }

    /// The unix time a ledger day expires: the end of the day plus the retention.
    fn ledger_expiry(&self, day: i32) -> i64 {
        let kept = match self.retention_days.load(Ordering::Acquire) {
            0 => crate::engine::ledger::DEFAULT_RETENTION_DAYS,
            n => n,
        };
        (i64::from(day) + 1 + i64::from(kept)) * 86_400
    }

    /// The seconds a ledger day has left to live when the backend's clock reads `now_unix`
    /// ([`Conn::ledger_expiry`] made relative, at least 1).
    pub(super) fn ledger_ttl(&self, day: i32, now_unix: i64) -> i64 {
        script::ttl_secs(self.ledger_expiry(day), now_unix)
    }

    /// Writes the queued ledger counts (chunks of 100 entries, one script each); a chunk that
    /// failed stays queued, so a chunk whose reply was lost (a timeout after Redis applied it) is
    /// written twice: the one case of double counting. Returns the entries still queued.
    async fn write_ledger(&self) -> usize {
        let mut merged: HashMap<(Arc<str>, Arc<str>, i32), i64> = HashMap::new();
        for (key, plan, day, n) in self.ledger.take() {
            *merged.entry((key, plan, day)).or_insert(0) += n;
        }
        let entries: Vec<_> = merged.into_iter().filter(|(_, n)| *n != 0).collect();
        let mut manager = self.manager.clone();
        let mut kept = Vec::new();
        let now = self.clock.now().unix_secs;
        for chunk in entries.chunks(100) {
            let mut call = self.usage_add.prepare_invoke();
            call.key(self.names.usage_index());
            for ((key, plan, day), n) in chunk {
                call.key(self.names.usage_day("usage", plan, *day)).key(self.names.usage_keys(plan));
                call.arg(&**key).arg(*n).arg(self.ledger_ttl(*day, now)).arg(script::usage_member(plan, *day));
            }
            let wait = self.settings.timeout.max(Duration::from_millis(500));
            match tokio::time::timeout(wait, call.invoke_async::<i64>(&mut manager)).await {
                Ok(Ok(_)) => {}
                failed => {
                    if let Ok(Err(e)) = failed {
                        tracing::warn!(error = %e, entries = chunk.len(), "usage ledger not written yet");
                    }
                    kept.extend(chunk.iter().map(|((k, p, d), n)| (Arc::clone(k), Arc::clone(p), *d, *n)));
                }
            }
        }
        let left = kept.len();
        self.ledger.extend(kept);
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
                || unpack(k.day_used.load(Ordering::Acquire)).1 > 0
        });
        // Fallback buckets are made during outages only; drop them once full again.
        self.fallback.prune(self.clock.now().mono_nanos.max(1));
    }

    /// The state of key `id` under `plan` if this replica holds one.
    pub(super) fn key_if_held(&self, id: &str, plan: &str) -> Option<Arc<RedisKey>> {
        self.keys.lock().get(&(Arc::from(id), Arc::from(plan))).cloned()
    }

    /// Queues every lease to go back to Redis.
    pub(super) fn return_all_leases(&self) {
        let keys: Vec<Arc<RedisKey>> = self.keys.lock().values().cloned().collect();
        for k in keys {
            k.give_back_lease(&self.returns);
        }
    }

    /// The state of key `id` under `plan`, made on first use.
    pub(super) fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>) -> Arc<RedisKey> {
        let mut keys = self.keys.lock();
        let slot = (Arc::clone(id), Arc::clone(plan.plan.id_arc()));
        Arc::clone(keys.entry(slot).or_insert_with(|| {
            let (bucket, stem) = (self.names.key(id, plan.plan.id()), self.names.quota_stem(id, plan.plan.id()));
            Arc::new(RedisKey::new(id, bucket, stem, plan))
        }))
    }
}

//! The usage ledger in Redis ([`RedisUsage`], the usage seam for the Redis backend): GetUsage,
//! UpdateUsage, the keys of a plan and the sink's bookkeeping, for the whole deployment.
//!
//! Layout (every key under the deployment's `{prefix}` hash tag, so Redis Cluster keeps them in
//! the one slot of the deployment):
//!
//! | key | holds |
//! |---|---|
//! | `{tup}:usage:<plan>:<day>` | hash: key id → requests forwarded that UTC day |
//! | `{tup}:usage-adjust:<plan>:<day>` | hash: key id → UpdateUsage change made that day |
//! | `{tup}:usage-reported:<plan>:<day>` | hash: key id → the day's count a sink acknowledged |
//! | `{tup}:usage-keys:<plan>` | set of key ids with ledger days under the plan |
//! | `{tup}:usage-index` | set of `<day>:<plan>` with ledger days |
//!
//! Each expires at the end of its (latest) day plus the retention, reckoned on the backend's clock
//! and given to Redis as a time to live (so Redis's own time does not matter). Every replica counts
//! forwarded requests locally (one atomic per key state) and adds them with `HINCRBY` at each
//! maintenance round (every second), at `flush` and `shutdown`, and before each query it answers,
//! so a query sees its own replica's counts at once and other replicas' within about a second.
//!
//! The quota figures (`used`, `remaining`) are read from the ledger: requests forwarded in the
//! period plus UpdateUsage changes, never leases held and not yet spent. Snapshots of all this
//! are in `snapshot.rs`.

use super::conn::Conn;
use super::revoke;
use super::script::{self, quota_key};
use crate::engine::ledger::day_of;
use crate::engine::QuotaRule;
use crate::usage::{Answer, Counts, DayTotal, Pending, UsageBackend, UsageError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The usage seam over the ledger in Redis.
pub(super) struct RedisUsage {
    pub(super) conn: Arc<Conn>,
}

fn failed(what: &'static str) -> impl Fn(redis::RedisError) -> UsageError {
    move |e| UsageError::unavailable(what, e)
}

impl RedisUsage {
    pub(super) fn wait(&self) -> Duration {
        (self.conn.settings.timeout * 10).max(Duration::from_secs(1))
    }

    /// Runs `pipe`, bounded by the query timeout; a failure is a typed [`UsageError`].
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        what: &'static str,
    ) -> Result<T, UsageError> {
        let mut manager = self.conn.manager.clone();
        match tokio::time::timeout(self.wait(), pipe.query_async::<T>(&mut manager)).await {
            Ok(result) => result.map_err(failed(what)),
            Err(_) => Err(UsageError::unavailable(what, "redis did not answer in time")),
        }
    }

    async fn read_days(&self, key: &str, plan: &str, from: i32, to: i32) -> Result<Vec<DayTotal>, UsageError> {
        let names = &self.conn.names;
        let mut pipe = redis::pipe();
        for day in from..=to {
            pipe.hget(names.usage_day("usage", plan, day), key);
            pipe.hget(names.usage_day("usage-adjust", plan, day), key);
        }
        if from > to {
            return Ok(Vec::new());
        }
        let values: Vec<Option<i64>> = self.query(&pipe, "reading usage").await?;
        Ok((from..=to)
            .zip(values.chunks(2))
            .filter_map(|(day, v)| {
                let (used, adjust) = (v.first().copied().flatten(), v.get(1).copied().flatten());
                (used.is_some() || adjust.is_some()).then(|| DayTotal {
                    day,
                    used: u64::try_from(used.unwrap_or(0)).unwrap_or(0),
                    adjust: adjust.unwrap_or(0),
                })
            })
            .collect())
    }

    /// Used in the period containing `unix`: forwarded plus UpdateUsage changes, from the ledger.
    async fn period_used(&self, key: &str, plan: &str, rule: &QuotaRule, unix: i64) -> Result<i64, UsageError> {
        let (start, end) = rule.days_of_period(day_of(unix));
        let days = self.read_days(key, plan, start, end - 1).await?;
        Ok(days.iter().map(|d| i64::try_from(d.used).unwrap_or(i64::MAX).saturating_add(d.adjust)).sum())
    }

    /// UpdateUsage: the counter of the period set to `used` once no replica holds a lease of
    /// it (`revoke.rs`), the change booked today. Returns the count replaced. Runs outside the
    /// maintenance lock but for its first steps, so that this replica answers other updates
    /// meanwhile.
    async fn set_used(
        &self,
        key: &Arc<str>,
        plan: &Arc<str>,
        rule: &QuotaRule,
        unix: i64,
        used: i64,
    ) -> Result<i64, UsageError> {
        let conn = &self.conn;
        let period = rule.current(unix);
        let held = conn.key_if_held(key, plan);
        let unavailable = |e: String| UsageError::unavailable("updating usage", e);
        // This replica's ledger written, and its lease given back, between maintenance rounds.
        let (ledger, announced) = conn
            .maintained(|| async {
                // The ledger's count, for a counter Redis no longer has.
                let ledger = self.period_used(key, plan, rule, unix).await?;
                let announced = revoke::announce(conn, key, plan).await.map_err(unavailable)?;
                revoke::give_back(conn, key, plan, held.as_ref(), &announced.id, None).await.map_err(unavailable)?;
                Ok::<_, UsageError>((ledger, announced))
            })
            .await?;
        let answered = revoke::acknowledged(conn, &announced.id, announced.others).await;
        if answered < announced.others {
            tracing::warn!(
                key_id = %key,
                replicas = announced.others,
                answered,
                "usage update: not every replica gave its lease back within a second; the \
                 deployment may admit up to those leases more"
            );
        }
        let today = day_of(unix);
        let (names, stem) = (&conn.names, conn.names.quota_stem(key, plan));
        let finish = redis::Script::new(revoke::FINISH);
        let mut call = finish.prepare_invoke();
        call.key(quota_key(&stem, period.tag))
            .key(names.usage_day("usage-adjust", plan, today))
            .key(names.usage_keys(plan))
            .key(names.usage_index())
            .key(names.quota_hold(&stem))
            .key(names.revocation_done(&announced.id));
        call.arg(used)
            .arg(script::ttl_secs(period.end + 86_400, unix))
            .arg(&**key)
            .arg(ledger)
            .arg(conn.ledger_ttl(today, unix))
            .arg(script::usage_member(plan, today))
            .arg(60);
        let mut manager = conn.manager.clone();
        let old = match tokio::time::timeout(self.wait(), call.invoke_async::<i64>(&mut manager)).await {
            Ok(Ok(old)) => old,
            Ok(Err(e)) => return Err(UsageError::unavailable("updating usage", e)),
            Err(_) => {
                return Err(UsageError::unavailable(
                    "updating usage",
                    "redis did not answer in time (the update may have been applied)",
                ))
            }
        };
        if let Some(k) = held {
            k.last_used.store(u64::try_from(used).unwrap_or(0), std::sync::atomic::Ordering::Release);
        }
        Ok(old)
    }

    async fn keys(&self, plan: &str) -> Result<Vec<Arc<str>>, UsageError> {
        let mut pipe = redis::pipe();
        pipe.smembers(self.conn.names.usage_keys(plan));
        let (ids,): (Vec<String>,) = self.query(&pipe, "reading the keys of a plan").await?;
        Ok(ids.into_iter().map(Arc::from).collect())
    }

    /// The (day, plan) pairs of the ledger's index within the retention, in order.
    pub(super) async fn indexed_days(&self) -> Result<Vec<(i32, Arc<str>)>, UsageError> {
        let conn = &self.conn;
        let first = day_of(conn.clock.now().unix_secs).saturating_sub(retention(conn));
        let mut pipe = redis::pipe();
        pipe.smembers(conn.names.usage_index());
        let (members,): (Vec<String>,) = self.query(&pipe, "reading the usage index").await?;
        let mut days: Vec<(i32, Arc<str>)> = members
            .iter()
            .filter_map(|m| {
                let (day, plan) = m.split_once(':')?;
                Some((day.parse::<i32>().ok()?, Arc::from(plan)))
            })
            .filter(|(day, _)| *day >= first)
            .collect();
        days.sort();
        Ok(days)
    }

    async fn read_pending(&self) -> Result<Vec<Pending>, UsageError> {
        let conn = &self.conn;
        let days = self.indexed_days().await?;
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (day, plan) in &days {
            pipe.hgetall(conn.names.usage_day("usage", plan, *day));
            pipe.hgetall(conn.names.usage_day("usage-reported", plan, *day));
        }
        let maps: Vec<HashMap<String, i64>> = self.query(&pipe, "reading pending usage").await?;
        let mut out = Vec::new();
        for ((day, plan), pair) in days.iter().zip(maps.chunks(2)) {
            let (used, reported) = (&pair[0], &pair[1]);
            for (key, n) in used {
                let total = u64::try_from(*n).unwrap_or(0);
                let was = reported.get(key).map_or(0, |r| u64::try_from(*r).unwrap_or(0));
                if total != was {
                    out.push(Pending {
                        key: Arc::from(key.as_str()),
                        plan: Arc::clone(plan),
                        day: *day,
                        total,
                        reported: was,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.day, &a.key, &a.plan).cmp(&(b.day, &b.key, &b.plan)));
        Ok(out)
    }

    async fn write_acknowledged(&self, batch: &[Pending]) -> Result<(), UsageError> {
        let conn = &self.conn;
        let now = conn.clock.now().unix_secs;
        let first = day_of(now).saturating_sub(retention(conn));
        let mut pipe = redis::pipe();
        let live: Vec<&Pending> = batch.iter().filter(|p| p.day >= first).collect();
        if live.is_empty() {
            // Only days past the retention (or nothing): nothing to book, and Redis refuses an
            // empty pipeline.
            return Ok(());
        }
        for p in live {
            let name = conn.names.usage_day("usage-reported", &p.plan, p.day);
            pipe.hset(&name, &*p.key, p.total).ignore();
            pipe.expire(&name, conn.ledger_ttl(p.day, now)).ignore();
        }
        self.query::<()>(&pipe, "acknowledging usage").await
    }
}

pub(super) fn retention(conn: &Conn) -> i32 {
    match conn.retention_days.load(std::sync::atomic::Ordering::Acquire) {
        0 => i32::try_from(crate::engine::ledger::DEFAULT_RETENTION_DAYS).unwrap_or(90),
        n => i32::try_from(n).unwrap_or(i32::MAX),
    }
}

impl UsageBackend for RedisUsage {
    fn days<'a>(&'a self, key: &'a str, plan: &'a str, from: i32, to: i32) -> Answer<'a, Vec<DayTotal>> {
        Box::pin(self.conn.maintained(move || self.read_days(key, plan, from, to)))
    }

    fn keys_of_plan<'a>(&'a self, plan: &'a str) -> Answer<'a, Vec<Arc<str>>> {
        Box::pin(self.conn.maintained(move || self.keys(plan)))
    }

    fn quota_used<'a>(&'a self, key: &'a str, plan: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64> {
        Box::pin(self.conn.maintained(move || self.period_used(key, plan, rule, unix)))
    }

    /// The customer's counter of the period, read after this replica's queued refunds and
    /// replays are written (it counts exactly: no lease is ever taken from it).
    fn customer_used<'a>(&'a self, customer: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64> {
        let counter = quota_key(&self.conn.names.customer_quota_stem(customer), rule.current(unix).tag);
        Box::pin(self.conn.maintained(move || async move {
            let mut pipe = redis::pipe();
            pipe.get(&counter);
            let (used,): (Option<i64>,) = self.query(&pipe, "reading a customer's quota").await?;
            Ok(used.unwrap_or(0))
        }))
    }

    fn set_quota_used<'a>(
        &'a self,
        key: &'a Arc<str>,
        plan: &'a Arc<str>,
        rule: &'a QuotaRule,
        unix: i64,
        used: i64,
    ) -> Answer<'a, i64> {
        Box::pin(self.set_used(key, plan, rule, unix, used))
    }

    fn counts(&self) -> Answer<'_, Counts> {
        // This replica's leases are given back first (written by the maintenance below), so that
        // the counters hold what it forwarded, not what it reserved.
        self.conn.return_all_leases();
        Box::pin(self.conn.maintained(move || self.read_counts()))
    }

    fn restore(&self, counts: Counts) -> Answer<'_, ()> {
        Box::pin(self.conn.maintained(move || self.write_counts(counts)))
    }

    fn pending(&self) -> Answer<'_, Vec<Pending>> {
        Box::pin(self.conn.maintained(move || self.read_pending()))
    }

    fn acknowledge<'a>(&'a self, batch: &'a [Pending]) -> Answer<'a, ()> {
        Box::pin(self.write_acknowledged(batch))
    }
}

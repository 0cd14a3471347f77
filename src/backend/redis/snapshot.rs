//! Snapshots of the deployment's counts in Redis: what [`Usage::snapshot`] reads and
//! [`Usage::restore`] adds, for the whole deployment.
//!
//! - **Ledger days**: the days the index (`{tup}:usage-index`) names within the retention, each
//!   read from its three hashes (forwarded, UpdateUsage changes, acknowledged).
//! - **Quota counts**: every counter `{tup}:quota:<key>:<plan>:<period tag>` found by `SCAN MATCH`
//!   (names are length-prefixed, so they parse back to key, plan and period), of a period not
//!   over by the backend's clock. A counter holds what was forwarded plus the quota leases
//!   replicas hold and have not spent: this replica gives its leases back first, other
//!   replicas' count as used.
//!
//! A restore adds the counts (`HINCRBY`, `INCRBY`; `reported` keeps the larger) with times to live
//! reckoned on the backend's clock, as every write of the backend does. On Redis Cluster every key
//! of the deployment is in the slot of `{prefix}`, so the scan runs on the node owning that slot.
//!
//! [`Usage::snapshot`]: crate::usage::Usage::snapshot
//! [`Usage::restore`]: crate::usage::Usage::restore

use super::conn::Connection;
use super::script::{self, quota_key, ttl_secs};
use super::usage::{retention, RedisUsage};
use crate::engine::ledger::{day_of, Row};
use crate::engine::{decode_quota, encode_quota_tagged, quota_holds_count, quota_tag_of};
use crate::usage::{Counts, UsageError};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Entries per script call or pipeline when restoring.
const CHUNK: usize = 100;

impl RedisUsage {
    /// Every count of the deployment ([`Counts`]), read after this replica's counts are written.
    pub(super) async fn read_counts(&self) -> Result<Counts, UsageError> {
        let conn = &self.conn;
        let now = conn.clock.now().unix_secs;
        let days = self.indexed_days().await?;
        let mut counts = Counts::default();
        if !days.is_empty() {
            let mut pipe = redis::pipe();
            for (day, plan) in &days {
                for what in ["usage", "usage-adjust", "usage-reported"] {
                    pipe.hgetall(conn.names.usage_day(what, plan, *day));
                }
            }
            let maps: Vec<HashMap<String, i64>> = self.query(&pipe, "reading the usage ledger").await?;
            for ((day, plan), hashes) in days.iter().zip(maps.chunks(3)) {
                let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
                for (i, hash) in hashes.iter().enumerate() {
                    for (key, n) in hash {
                        let row = rows.entry(key.as_str()).or_default();
                        match i {
                            0 => row.used = u64::try_from(*n).unwrap_or(0),
                            1 => row.adjust = *n,
                            _ => row.reported = u64::try_from(*n).unwrap_or(0),
                        }
                    }
                }
                let rows = rows.into_iter().filter(|(_, r)| *r != Row::default());
                counts.days.extend(rows.map(|(key, r)| (Arc::from(key), Arc::clone(plan), *day, r)));
            }
        }
        let names = self.scan_quota_names().await?;
        if names.is_empty() {
            return Ok(counts);
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.get(name);
        }
        let values: Vec<Option<i64>> = self.query(&pipe, "reading the quota counters").await?;
        for (name, value) in names.iter().zip(values) {
            let (Some((key, plan, tag)), Some(used)) = (conn.names.parse_quota(name), value) else { continue };
            let raw = encode_quota_tagged(tag, used);
            if quota_tag_of(raw) == tag && quota_holds_count(raw, now) {
                counts.quotas.push((Arc::from(key), Arc::from(plan), raw));
            }
        }
        counts.quotas.sort();
        Ok(counts)
    }

    /// The names of every quota counter of the deployment, by `SCAN MATCH` on the node that holds
    /// the deployment's slot.
    async fn scan_quota_names(&self) -> Result<Vec<String>, UsageError> {
        let conn = &self.conn;
        let pattern = conn.names.quota_pattern();
        let mut manager = conn.manager.clone();
        let (mut cursor, mut out) = (0u64, Vec::new());
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, names): (u64, Vec<String>) = match &mut manager {
                Connection::Single(c) => self.bounded(cmd.query_async(c)).await?,
                Connection::Cluster(c) => {
                    let route = Route::with_key(conn.names.usage_index(), SlotAddr::Master);
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let value = self.bounded(c.route_command(cmd, routing)).await?;
                    redis::from_redis_value(value)
                        .map_err(|e| UsageError::unavailable("scanning the quota counters", e))?
                }
            };
            out.extend(names);
            if next == 0 {
                out.sort();
                out.dedup();
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// `call` bounded by the query timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, UsageError> {
        const WHAT: &str = "scanning the quota counters";
        match tokio::time::timeout(self.wait(), call).await {
            Ok(result) => result.map_err(|e| UsageError::unavailable(WHAT, e)),
            Err(_) => Err(UsageError::unavailable(WHAT, "redis did not answer in time")),
        }
    }

    /// Adds a snapshot's counts to the deployment's. Days past the retention and quota counts of
    /// periods over (by the backend's clock) are left out, as a snapshot would not hold them.
    pub(super) async fn write_counts(&self, counts: Counts) -> Result<(), UsageError> {
        let conn = &self.conn;
        let now = conn.clock.now().unix_secs;
        let first = day_of(now).saturating_sub(retention(conn));
        let days: Vec<_> =
            counts.days.into_iter().filter(|(_, _, day, r)| *day >= first && *r != Row::default()).collect();
        let add = redis::Script::new(script::SNAPSHOT_ADD);
        for chunk in days.chunks(CHUNK) {
            let mut call = add.prepare_invoke();
            call.key(conn.names.usage_index());
            for (key, plan, day, r) in chunk {
                for what in ["usage", "usage-adjust", "usage-reported"] {
                    call.key(conn.names.usage_day(what, plan, *day));
                }
                call.key(conn.names.usage_keys(plan));
                call.arg(&**key).arg(r.used).arg(r.adjust).arg(r.reported);
                call.arg(conn.ledger_ttl(*day, now)).arg(script::usage_member(plan, *day));
            }
            let mut manager = conn.manager.clone();
            match tokio::time::timeout(self.wait(), call.invoke_async::<i64>(&mut manager)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(UsageError::unavailable("restoring the usage ledger", e)),
                Err(_) => {
                    return Err(UsageError::unavailable("restoring the usage ledger", "redis did not answer in time"))
                }
            }
        }
        let quotas: Vec<_> = counts
            .quotas
            .into_iter()
            .filter(|(_, _, raw)| quota_holds_count(*raw, now))
            .filter_map(|(key, plan, raw)| Some((key, plan, raw, decode_quota(raw)?)))
            .collect();
        for chunk in quotas.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (key, plan, raw, (period, index, used)) in chunk {
                let name = quota_key(&conn.names.quota_stem(key, plan), quota_tag_of(*raw));
                let end = period.start_of_index(index.saturating_add(1));
                pipe.incr(&name, *used).ignore();
                pipe.expire(&name, ttl_secs(end.saturating_add(86_400), now)).ignore();
            }
            self.query::<()>(&pipe, "restoring the quota counters").await?;
        }
        // Customers' counts of an in-process snapshot (a move to Redis): added to the customers'
        // counters of the same period, as the keys' are.
        let customers: Vec<_> = counts
            .customers
            .into_iter()
            .filter(|(_, raw)| quota_holds_count(*raw, now))
            .filter_map(|(id, raw)| Some((id, raw, decode_quota(raw)?)))
            .collect();
        for chunk in customers.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (id, raw, (period, index, used)) in chunk {
                let name = quota_key(&conn.names.customer_quota_stem(id), quota_tag_of(*raw));
                let end = period.start_of_index(index.saturating_add(1));
                pipe.incr(&name, *used).ignore();
                pipe.expire(&name, ttl_secs(end.saturating_add(86_400), now)).ignore();
            }
            self.query::<()>(&pipe, "restoring the customers' quota counters").await?;
        }
        Ok(())
    }
}

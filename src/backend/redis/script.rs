//! The Lua script and the names of the Redis keys.
//!
//! Every key of a deployment carries the hash tag `{prefix}`, so that all keys a request touches
//! (per-key, stage and account buckets, the quota) live in one hash slot: on Redis Cluster one
//! script can check them all at once.

use crate::engine::BucketSlot;
use crate::engine::Gcra;
use crate::rejection::ThrottleScope;

/// Checks every bucket of a request, all-or-nothing, on the server's clock, and optionally takes
/// `want` requests from the quota.
///
/// `KEYS[1..nb]`: buckets; `KEYS[nb+1]` (optional): the quota counter of the current period.
/// `ARGV[1]` = nb; then per bucket its emission interval and tolerance in whole microseconds;
/// then (with a quota) limit, want, and the unix time at which the counter expires.
///
/// Returns `{1, granted, used}` when admitted (`used` after the grant), `{0, bucket, wait_us}`
/// when bucket number `bucket` (1-based) refused, `{2, used, 0}` when the quota has no room.
/// A bucket's state is its theoretical arrival time in microseconds since the epoch (exact in a
/// Lua double until the year 2255), set to expire once the bucket is full again.
pub(super) const CHECK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nb = tonumber(ARGV[1])
local new = {}
for i = 1, nb do
  local period = tonumber(ARGV[2 * i])
  local tau = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  if tat - now > tau then
    return {0, i, tat - now - tau}
  end
  new[i] = tat + period
end
local granted = 0
local used = 0
if #KEYS > nb then
  local q = KEYS[nb + 1]
  local base = 2 * nb + 2
  local limit = tonumber(ARGV[base])
  local want = tonumber(ARGV[base + 1])
  used = tonumber(redis.call('GET', q) or 0)
  if want > 0 then
    granted = math.min(want, limit - used)
    if granted <= 0 then
      return {2, used, 0}
    end
    used = redis.call('INCRBY', q, granted)
    redis.call('EXPIREAT', q, ARGV[base + 2])
  end
end
for i = 1, nb do
  local ttl = math.floor((new[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%d', new[i]), 'PX', ttl)
end
return {1, granted, used}
"#;

/// Writes a count back. `ARGV[1]` > 0: usage admitted during an outage, added, and the counter
/// set to expire at `ARGV[2]`. `ARGV[1]` < 0: an unused lease given back, subtracted but never
/// below 0, and only if the counter still exists (a restarted Redis that lost it must not go
/// negative). Returns the counter's value.
pub(super) const WRITE_BACK: &str = r#"
local n = tonumber(ARGV[1])
if n < 0 then
  local cur = redis.call('GET', KEYS[1])
  if not cur then return 0 end
  local new = math.max(0, tonumber(cur) + n)
  redis.call('SET', KEYS[1], string.format('%d', new), 'KEEPTTL')
  return new
end
local v = redis.call('INCRBY', KEYS[1], n)
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return v
"#;

/// A bucket of one request, as the script needs it.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// The bucket's key in Redis.
    pub(super) name: String,
    pub(super) gcra: Gcra,
    pub(super) scope: ThrottleScope,
    pub(super) slot: BucketSlot,
}

/// The quota part of a [`CHECK`] call.
#[derive(Debug, Clone)]
pub(super) struct QuotaArgs {
    /// The counter of the current period ([`quota_key`]).
    pub(super) counter: String,
    pub(super) limit: u64,
    /// Requests to take (a lease, or this request).
    pub(super) want: u64,
    /// Unix seconds at which the counter expires.
    pub(super) expire_at: i64,
}

/// The keys and arguments of a [`CHECK`] call for `specs`, and the quota if any.
pub(super) fn check_call(specs: &[Spec], quota: Option<QuotaArgs>) -> (Vec<String>, Vec<i64>) {
    let mut names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut args: Vec<i64> = Vec::with_capacity(2 * specs.len() + 4);
    args.push(specs.len() as i64);
    for spec in specs {
        // Whole microseconds, the interval rounded up and the tolerance kept at (burst - 1)
        // intervals: never earlier and never more at once than the bucket allows.
        let (t, tau) = spec.gcra.params();
        let t_us = micros_up(t);
        args.push(t_us as i64);
        args.push(((tau / t.max(1)).saturating_mul(t_us)) as i64);
    }
    if let Some(q) = quota {
        names.push(q.counter);
        args.extend([q.limit as i64, q.want as i64, q.expire_at]);
    }
    (names, args)
}

fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1000).max(1)
}

/// `part` with its length in front, so that no two different lists of parts make one name
/// (ids may contain the separator).
fn part(out: &mut String, s: &str) {
    use std::fmt::Write;
    let _ = write!(out, ":{}:{s}", s.len());
}

/// Names of a deployment's keys.
#[derive(Debug, Clone)]
pub(super) struct Names {
    tag: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Self {
        Self { tag: format!("{{{prefix}}}") }
    }

    /// The account bucket (one for everything this deployment serves).
    pub(super) fn account(&self) -> String {
        format!("{}:account", self.tag)
    }

    /// The stage default bucket.
    pub(super) fn stage(&self, api: &str, stage: &str) -> String {
        let mut s = format!("{}:stage", self.tag);
        part(&mut s, api);
        part(&mut s, stage);
        s
    }

    /// A stage method bucket.
    pub(super) fn stage_method(&self, api: &str, stage: &str, method: &str) -> String {
        let mut s = format!("{}:stage-method", self.tag);
        part(&mut s, api);
        part(&mut s, stage);
        part(&mut s, method);
        s
    }

    /// A key's plan bucket.
    pub(super) fn key(&self, id: &str, plan: &str) -> String {
        let mut s = format!("{}:key", self.tag);
        part(&mut s, id);
        part(&mut s, plan);
        s
    }

    /// A key's bucket for a method throttle of its plan on a stage.
    pub(super) fn key_method(&self, id: &str, plan: &str, api: &str, stage: &str, method: &str) -> String {
        let mut s = format!("{}:key-method", self.tag);
        for p in [id, plan, api, stage, method] {
            part(&mut s, p);
        }
        s
    }

    /// The stem of a key's quota counters; the period's tag follows (`{stem}:{tag}`).
    pub(super) fn quota_stem(&self, id: &str, plan: &str) -> String {
        let mut s = format!("{}:quota", self.tag);
        part(&mut s, id);
        part(&mut s, plan);
        s
    }
}

/// The quota counter of one period.
pub(super) fn quota_key(stem: &str, period_tag: u64) -> String {
    format!("{stem}:{period_tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_one_hash_tag_and_cannot_collide() {
        let n = Names::new("tup");
        assert_eq!(n.key("a:1", "p"), "{tup}:key:3:a:1:1:p");
        assert_ne!(n.key("a:1", "p"), n.key("a", "1:p"));
        for name in [n.account(), n.stage("x", "y"), n.stage_method("x", "y", "/GET"), n.quota_stem("k", "p")] {
            assert!(name.starts_with("{tup}:"), "{name}");
        }
    }
}

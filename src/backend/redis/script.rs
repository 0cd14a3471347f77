//! The Lua script and the names of the Redis keys.
//!
//! Every key of a deployment carries the hash tag `{prefix}`, so that all keys a request touches
//! (per-key, stage and account buckets, the quota) live in one hash slot: on Redis Cluster one
//! script can check them all at once.

use crate::engine::BucketSlot;
use crate::engine::Gcra;
use crate::rejection::ThrottleScope;

/// Checks every bucket of a request, all-or-nothing, on the server's clock, and optionally takes
/// `want` requests from the key's quota and one from its customer's.
///
/// `KEYS[1..nb]`: buckets; with a key quota, then the quota counter of the current period and
/// the key's usage-update hold (see `revoke.rs`: while it exists, one request is granted at a
/// time, no lease); with a customer quota, then the customer's counter of its current period.
/// `ARGV[1]` = nb; then per bucket its emission interval and tolerance in whole microseconds;
/// then two flags (1: a key quota, 1: a customer quota); then (key quota) limit, want, and the
/// counter's time to live in seconds (from the deciding request's clock, [`ttl_secs`], so that it
/// expires alike whatever the server's own time); then (customer quota) limit and time to live.
///
/// Returns `{1, granted, used, customer_used}` when admitted (counts after the grant),
/// `{0, bucket, wait_us, 0}` when bucket number `bucket` (1-based) refused, `{2, used, held, 0}`
/// when the key's quota has no room (`held` 1: during a usage update, a refusal not to cache),
/// `{3, customer_used, 0, 0}` when the customer's has none. Nothing is written unless admitted.
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
    return {0, i, tat - now - tau, 0}
  end
  new[i] = tat + period
end
local kq = tonumber(ARGV[2 * nb + 2])
local cq = tonumber(ARGV[2 * nb + 3])
local base = 2 * nb + 4
local granted, used, cused = 0, 0, 0
if kq == 1 then
  local limit = tonumber(ARGV[base])
  local want = tonumber(ARGV[base + 1])
  used = tonumber(redis.call('GET', KEYS[nb + 1]) or 0)
  local held = 0
  if want > 0 and redis.call('EXISTS', KEYS[nb + 2]) == 1 then
    want = 1
    held = 1
  end
  if want > 0 then
    granted = math.min(want, limit - used)
    if granted <= 0 then
      return {2, used, held, 0}
    end
  end
end
local c = KEYS[nb + 2 * kq + 1]
if cq == 1 then
  cused = tonumber(redis.call('GET', c) or 0)
  if cused >= tonumber(ARGV[base + 3 * kq]) then
    return {3, cused, 0, 0}
  end
end
if granted > 0 then
  used = redis.call('INCRBY', KEYS[nb + 1], granted)
  redis.call('EXPIRE', KEYS[nb + 1], ARGV[base + 2])
end
if cq == 1 then
  cused = redis.call('INCR', c)
  redis.call('EXPIRE', c, ARGV[base + 3 * kq + 1])
end
for i = 1, nb do
  local ttl = math.floor((new[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%d', new[i]), 'PX', ttl)
end
return {1, granted, used, cused}
"#;

/// Writes a count back. `ARGV[1]` > 0: usage admitted during an outage, added, and the counter
/// set to expire in `ARGV[2]` seconds. `ARGV[1]` < 0: an unused lease given back, subtracted but never
/// below 0, and only if the counter still exists (a restarted Redis that lost it must not go
/// negative). Returns the counter's value.
pub(super) const WRITE_BACK: &str = r#"
local n = tonumber(ARGV[1])
if n < 0 then
  local cur = redis.call('GET', KEYS[1])
  if not cur then return 0 end
  -- Never below 0, unless it was (an UpdateUsage that granted more than the limit).
  local new = tonumber(cur) + n
  if tonumber(cur) >= 0 and new < 0 then new = 0 end
  redis.call('SET', KEYS[1], string.format('%d', new), 'KEEPTTL')
  return new
end
local v = redis.call('INCRBY', KEYS[1], n)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return v
"#;

/// Adds this replica's ledger counts. `KEYS[1]`: the index of (day, plan) hashes; then per entry
/// its day's hash and its plan's set of keys. `ARGV`: per entry key id, count, the seconds the
/// day has left to live (to the end of its retention), the index member. Expiries only move
/// later: a key's time to live is raised to the entry's, never lowered.
pub(super) const USAGE_ADD: &str = r#"
local function later(k, ttl)
  local cur = redis.call('TTL', k)
  if cur < 0 or cur < ttl then redis.call('EXPIRE', k, ttl) end
end
local n = (#KEYS - 1) / 2
for i = 1, n do
  local day, keys = KEYS[2 * i], KEYS[2 * i + 1]
  local id, count, at, member = ARGV[4 * i - 3], ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), ARGV[4 * i]
  redis.call('HINCRBY', day, id, count)
  later(day, at)
  redis.call('SADD', keys, id)
  later(keys, at)
  redis.call('SADD', KEYS[1], member)
  later(KEYS[1], at)
end
return n
"#;

/// Adds a snapshot's ledger days. `KEYS[1]`: the index; then per entry its day's hashes of
/// forwarded requests, UpdateUsage changes and acknowledged counts, and its plan's set of keys.
/// `ARGV`: per entry key id, used, change, reported, the day's time to live in seconds, the index
/// member. Counts add up, `reported` keeps the larger; expiries only move later.
pub(super) const SNAPSHOT_ADD: &str = r#"
local function later(k, ttl)
  local cur = redis.call('TTL', k)
  if cur < 0 or cur < ttl then redis.call('EXPIRE', k, ttl) end
end
local n = (#KEYS - 1) / 4
for i = 1, n do
  local used, adjust, reported, keys = KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i], KEYS[4 * i + 1]
  local b = 6 * i - 6
  local id, ttl = ARGV[b + 1], tonumber(ARGV[b + 5])
  if tonumber(ARGV[b + 2]) ~= 0 then
    redis.call('HINCRBY', used, id, ARGV[b + 2])
    later(used, ttl)
  end
  if tonumber(ARGV[b + 3]) ~= 0 then
    redis.call('HINCRBY', adjust, id, ARGV[b + 3])
    later(adjust, ttl)
  end
  local was = tonumber(redis.call('HGET', reported, id) or 0)
  if tonumber(ARGV[b + 4]) > was then
    redis.call('HSET', reported, id, ARGV[b + 4])
    later(reported, ttl)
  end
  redis.call('SADD', keys, id)
  later(keys, ttl)
  redis.call('SADD', KEYS[1], ARGV[b + 6])
  later(KEYS[1], ttl)
end
return n
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
    /// The key's usage-update hold ([`Names::quota_hold`]).
    pub(super) hold: String,
    pub(super) limit: u64,
    /// Requests to take (a lease, or this request).
    pub(super) want: u64,
    /// Seconds the counter lives ([`ttl_secs`] of its expiry by the request's clock).
    pub(super) ttl_secs: i64,
}

/// The customer quota part of a [`CHECK`] call: one request taken from it.
#[derive(Debug, Clone)]
pub(super) struct CustomerArgs {
    /// The customer's counter of its current period ([`quota_key`] of
    /// [`Names::customer_quota_stem`]).
    pub(super) counter: String,
    pub(super) limit: u64,
    pub(super) ttl_secs: i64,
}

/// The keys and arguments of a [`CHECK`] call for `specs`, and the quotas if any.
pub(super) fn check_call(
    specs: &[Spec],
    quota: Option<QuotaArgs>,
    customer: Option<CustomerArgs>,
) -> (Vec<String>, Vec<i64>) {
    let mut names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut args: Vec<i64> = Vec::with_capacity(2 * specs.len() + 8);
    args.push(specs.len() as i64);
    for spec in specs {
        // Whole microseconds, the interval rounded up and the tolerance kept at (burst - 1)
        // intervals: never earlier and never more at once than the bucket allows.
        let (t, tau) = spec.gcra.params();
        let t_us = micros_up(t);
        args.push(t_us as i64);
        args.push(((tau / t.max(1)).saturating_mul(t_us)) as i64);
    }
    args.extend([i64::from(quota.is_some()), i64::from(customer.is_some())]);
    if let Some(q) = quota {
        names.push(q.counter);
        names.push(q.hold);
        args.extend([q.limit as i64, q.want as i64, q.ttl_secs]);
    }
    if let Some(c) = customer {
        names.push(c.counter);
        args.extend([c.limit as i64, c.ttl_secs]);
    }
    (names, args)
}

/// The time to live, in whole seconds and at least 1, of a key meant to expire at unix time
/// `expire_at` when the injected clock reads `now_unix`. Scripts are given this (`EXPIRE`), never
/// an absolute time: Redis's own clock may read otherwise (a test's manual clock, a replica's
/// drift), and an absolute time in its past would drop the key at once.
pub(super) fn ttl_secs(expire_at: i64, now_unix: i64) -> i64 {
    expire_at.saturating_sub(now_unix).max(1)
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

    /// A customer's bucket, shared by its keys (whatever their plans).
    pub(super) fn customer(&self, id: &str) -> String {
        let mut s = format!("{}:customer", self.tag);
        part(&mut s, id);
        s
    }

    /// The stem of a customer's quota counters (whatever its keys' plans); the period's tag
    /// follows (`{stem}:{tag}`). Not under `:quota:`, so snapshots of keys' counts skip it.
    pub(super) fn customer_quota_stem(&self, id: &str) -> String {
        let mut s = format!("{}:customer-quota", self.tag);
        part(&mut s, id);
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

    /// The `SCAN MATCH` pattern of every quota counter of the deployment (glob characters of the
    /// prefix escaped).
    pub(super) fn quota_pattern(&self) -> String {
        let mut s = String::with_capacity(self.tag.len() + 8);
        for c in self.tag.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push_str(":quota:*");
        s
    }

    /// The key id, plan id and period tag of a quota counter's name ([`quota_key`] of
    /// [`Names::quota_stem`]); `None` for any other name.
    pub(super) fn parse_quota(&self, name: &str) -> Option<(String, String, u64)> {
        let rest = name.strip_prefix(self.tag.as_str())?.strip_prefix(":quota")?;
        let (id, rest) = unpart(rest)?;
        let (plan, rest) = unpart(rest)?;
        let tag = rest.strip_prefix(':')?;
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((id.to_owned(), plan.to_owned(), tag.parse().ok()?))
    }
}

/// The first [`part`] of `s` and what follows it.
fn unpart(s: &str) -> Option<(&str, &str)> {
    let (len, rest) = s.strip_prefix(':')?.split_once(':')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

impl Names {
    /// A plan's ledger of one day, by what (`usage`: forwarded, `usage-adjust`: UpdateUsage
    /// changes, `usage-reported`: what a sink acknowledged): a hash of key id to count.
    pub(super) fn usage_day(&self, what: &str, plan: &str, day: i32) -> String {
        let mut s = format!("{}:{what}", self.tag);
        part(&mut s, plan);
        part(&mut s, &day.to_string());
        s
    }

    /// The set of key ids with ledger days under `plan`.
    pub(super) fn usage_keys(&self, plan: &str) -> String {
        let mut s = format!("{}:usage-keys", self.tag);
        part(&mut s, plan);
        s
    }

    /// The set of (day, plan) with ledger days, as `<day>:<plan>` ([`usage_member`]).
    pub(super) fn usage_index(&self) -> String {
        format!("{}:usage-index", self.tag)
    }

    /// A key's usage-update hold, by the stem of its quota counters.
    pub(super) fn quota_hold(&self, stem: &str) -> String {
        let mut s = format!("{}:quota-hold", self.tag);
        part(&mut s, stem);
        s
    }

    /// The stream of usage updates every replica reads.
    pub(super) fn revocations(&self) -> String {
        format!("{}:usage-updates", self.tag)
    }

    /// The sorted set of replicas alive (by their last heartbeat, in milliseconds).
    pub(super) fn replicas(&self) -> String {
        format!("{}:replicas", self.tag)
    }

    /// The stem of the names of usage update `id`'s state: `<stem>:<id>:<what>`.
    pub(super) fn revocation_stem(&self) -> String {
        format!("{}:usage-update", self.tag)
    }

    /// The set of replicas that answered usage update `id`.
    pub(super) fn revocation_acks(&self, id: &str) -> String {
        format!("{}:{id}:acks", self.revocation_stem())
    }

    /// The set of replicas usage update `id` waits for (those alive when it was announced).
    pub(super) fn revocation_expected(&self, id: &str) -> String {
        format!("{}:{id}:expect", self.revocation_stem())
    }

    /// The mark of usage update `id` done.
    pub(super) fn revocation_done(&self, id: &str) -> String {
        format!("{}:{id}:done", self.revocation_stem())
    }
}

/// A member of the ledger's index: the day, then the plan (a day has no `:`).
pub(super) fn usage_member(plan: &str, day: i32) -> String {
    format!("{day}:{plan}")
}

/// The quota counter of one period.
pub(super) fn quota_key(stem: &str, period_tag: u64) -> String {
    format!("{stem}:{period_tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_relative_to_the_injected_clock_and_at_least_one_second() {
        let noon = 1_795_435_200; // 2026-11-23T12:00:00Z
        assert_eq!(ttl_secs(noon + 86_400, noon), 86_400);
        assert_eq!(ttl_secs(noon + 1, noon), 1);
        assert_eq!(ttl_secs(noon, noon), 1, "due now: still written, gone a second later");
        assert_eq!(ttl_secs(noon - 3600, noon), 1, "already past");
        assert_eq!(ttl_secs(i64::MIN, i64::MAX), 1, "no overflow");
        assert_eq!(ttl_secs(i64::MAX, i64::MIN), i64::MAX);
    }

    #[test]
    fn quota_counter_names_parse_back() {
        let n = Names::new("tup");
        let name = quota_key(&n.quota_stem("a:1:b", "p:7"), 4_194_400);
        assert_eq!(n.parse_quota(&name), Some((String::from("a:1:b"), String::from("p:7"), 4_194_400)));
        assert_eq!(n.parse_quota(&quota_key(&n.quota_stem("é", ""), 9)), Some((String::from("é"), String::new(), 9)));
        for other in [n.key("k", "p"), n.quota_stem("k", "p"), format!("{}:x", n.quota_stem("k", "p")), n.usage_index()]
        {
            assert_eq!(n.parse_quota(&other), None, "{other}");
        }
        assert_eq!(Names::new("tup").parse_quota(&quota_key(&Names::new("tu").quota_stem("k", "p"), 1)), None);
        assert_eq!(n.parse_quota("{tup}:quota:99:k:1:p:1"), None, "a length past the end");
        assert_eq!(Names::new("a*[b]").quota_pattern(), "{a\\*\\[b\\]}:quota:*");
        // A customer's counter is none of a key's (snapshots and usage updates skip it).
        let customer = quota_key(&n.customer_quota_stem("k"), 7);
        assert_eq!((n.parse_quota(&customer), customer.starts_with("{tup}:quota:")), (None, false));
        assert_ne!(n.customer_quota_stem("a:1"), n.customer_quota_stem("a"));
    }

    #[test]
    fn names_share_one_hash_tag_and_cannot_collide() {
        let n = Names::new("tup");
        assert_eq!(n.key("a:1", "p"), "{tup}:key:3:a:1:1:p");
        assert_ne!(n.key("a:1", "p"), n.key("a", "1:p"));
        let ledger = [n.usage_day("usage", "p", 3), n.usage_keys("p"), n.usage_index()];
        assert_ne!(n.usage_day("usage", "p:1", 2), n.usage_day("usage", "p", 12));
        for name in [n.account(), n.stage("x", "y"), n.stage_method("x", "y", "/GET"), n.quota_stem("k", "p")]
            .into_iter()
            .chain(ledger)
        {
            assert!(name.starts_with("{tup}:"), "{name}");
        }
    }
}

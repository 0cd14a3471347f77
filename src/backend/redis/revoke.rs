//! Lease revocation: how UpdateUsage made through one replica sets the remaining quota of the
//! whole deployment exactly, leases other replicas hold included.
//!
//! A replica spends its lease without asking Redis, so a counter set while leases are out
//! would be wrong by what they hold. UpdateUsage therefore runs in four steps:
//!
//! 1. **Announce** ([`announce`], one script): a *hold* on the key's quota (while it lasts the
//!    check script grants one request at a time, no lease, and a quota refusal it answers is not
//!    cached), and an entry in the deployment's revocation stream. The script also counts the
//!    other replicas alive (each writes a heartbeat every second into a sorted set).
//! 2. **Give back**: every replica reads the stream ([`start`], a blocking `XREAD` on a
//!    connection of its own) and, for the key, forgets its cached quota refusal, swaps its lease
//!    to 0 and gives it back together with any queued return of the key, then acknowledges, in
//!    one script ([`REVOKED`]) that does nothing once the update is done. The updating replica
//!    gives back its own the same way.
//! 3. **Wait** for as many acknowledgements as replicas were alive, one second at most.
//! 4. **Set** the counter ([`FINISH`]): it now counts exactly the requests forwarded (no lease
//!    is out), so the change booked in the ledger is exact too; the hold ends and the update is
//!    marked done.
//!
//! A replica that did not acknowledge within the second (cut off from Redis, or stalled) may
//! still spend the lease it held: the deployment admits at most that lease more (logged, and
//! stated in `docs/distributed.md`). A lease it gives back after the update is dropped, not
//! subtracted (the [`REVOKED`] script sees the update done).

use super::conn::{Conn, Connection};
use super::lease::{unpack, RedisKey};
use super::script::quota_key;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long UpdateUsage waits for the other replicas' acknowledgements.
pub(super) const ACK_WAIT: Duration = Duration::from_secs(1);
/// How long a hold lasts if the updating replica dies before it ends it (milliseconds).
const HOLD_MS: i64 = 5_000;
/// A replica whose heartbeat is older than this is not waited for (milliseconds).
const ALIVE_MS: i64 = 3_000;
/// Longest block of one stream read (milliseconds).
const BLOCK_MS: usize = 500;
/// How long a done mark and an acknowledgement set are kept (seconds).
const KEEP_SECS: i64 = 60;

/// Step 1. `KEYS`: the hold, the stream, the replicas. `ARGV`: hold ms, key id, plan id, this
/// replica, alive ms. Returns the entry's id and the number of other replicas alive.
const ANNOUNCE: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'key', ARGV[2], 'plan', ARGV[3], 'from', ARGV[4])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = ms - tonumber(ARGV[5])
local live = redis.call('ZCOUNT', KEYS[3], since, '+inf')
local me = redis.call('ZSCORE', KEYS[3], ARGV[4])
if me and tonumber(me) >= since then live = live - 1 end
return {id, live}
"#;

/// Step 2. `KEYS`: the update's done mark, its acknowledgements, then counters. `ARGV`: the
/// acknowledging replica ('' for none), the keep time, then per counter the amount to subtract.
/// Once the update is done, nothing is written (the counter was set without these leases).
/// A counter is never taken below 0, and one that no longer exists is left alone.
pub(super) const REVOKED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur then
    local new = math.max(0, tonumber(cur) - tonumber(ARGV[i]))
    redis.call('SET', KEYS[i], string.format('%d', new), 'KEEPTTL')
  end
end
if ARGV[1] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1
"#;

/// Step 4. `KEYS`: the counter, the day's adjustments, the plan's keys, the ledger's index,
/// the hold, the done mark. `ARGV`: the new count, the counter's time to live (s), the key id,
/// the count to use when the counter is gone (the ledger's), the ledger's time to live (s), the
/// index member, the done mark's time to live (s). Returns the count replaced.
pub(super) const FINISH: &str = r#"
local cur = redis.call('GET', KEYS[1])
local old = tonumber(cur or ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], tonumber(ARGV[1]) - old)
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[6])
for i = 2, 4 do
  local ttl = redis.call('TTL', KEYS[i])
  if ttl < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
redis.call('DEL', KEYS[5])
redis.call('SET', KEYS[6], '1', 'EX', ARGV[7])
return old
"#;

/// Heartbeat. `KEYS[1]`: the replicas. `ARGV[1]`: this replica. Drops replicas silent for a
/// minute.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - 60000)
redis.call('PEXPIRE', KEYS[1], 120000)
return ms
"#;

/// An update announced: the stream entry's id and the replicas to wait for.
#[derive(Debug)]
pub(super) struct Announced {
    pub(super) id: String,
    pub(super) others: u64,
}

/// A random name for this replica (hex of 64 random bits; a clock-derived one if the OS has no
/// random source).
pub(super) fn instance_name() -> String {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        buf = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

async fn bounded<T: redis::FromRedisValue>(
    conn: &Conn,
    call: redis::ScriptInvocation<'_>,
    wait: Duration,
) -> Result<T, String> {
    let mut manager = conn.manager.clone();
    match tokio::time::timeout(wait, call.invoke_async::<T>(&mut manager)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("redis did not answer in time".into()),
    }
}

fn wait_of(conn: &Conn) -> Duration {
    (conn.settings.timeout * 10).max(Duration::from_secs(1))
}

/// Step 1: the hold and the stream entry for `key` under `plan`.
pub(super) async fn announce(conn: &Conn, key: &str, plan: &str) -> Result<Announced, String> {
    let names = &conn.names;
    let stem = names.quota_stem(key, plan);
    let script = redis::Script::new(ANNOUNCE);
    let mut call = script.prepare_invoke();
    call.key(names.quota_hold(&stem)).key(names.revocations()).key(names.replicas());
    call.arg(HOLD_MS).arg(key).arg(plan).arg(&conn.instance).arg(ALIVE_MS);
    let (id, others): (String, i64) = bounded(conn, call, wait_of(conn)).await?;
    Ok(Announced { id, others: u64::try_from(others).unwrap_or(0) })
}

/// Step 2 for this replica's state of a key (if it holds one): forgets a cached quota refusal,
/// and gives back its lease and queued returns unless the update `id` is done; acknowledges
/// with `ack` (`None`: the updating replica itself).
pub(super) async fn give_back(
    conn: &Conn,
    key: Option<&Arc<RedisKey>>,
    id: &str,
    ack: Option<&str>,
) -> Result<(), String> {
    let names = &conn.names;
    let mut counters: Vec<(String, i64)> = Vec::new();
    if let Some(k) = key {
        k.revoked(id);
        let (tag, n) = unpack(k.lease.swap(0, Ordering::AcqRel));
        if n > 0 {
            counters.push((quota_key(&k.quota_stem, tag), n as i64));
        }
        counters.extend(conn.returns.take_returns_of(&k.quota_stem));
    }
    let script = redis::Script::new(REVOKED);
    let mut call = script.prepare_invoke();
    call.key(names.revocation_done(id)).key(names.revocation_acks(id));
    call.arg(ack.unwrap_or("")).arg(KEEP_SECS);
    for (counter, n) in &counters {
        call.key(counter);
        call.arg(*n);
    }
    let result = bounded::<i64>(conn, call, wait_of(conn)).await.map(|_| ());
    if result.is_err() {
        // Not written: queued as ordinary returns (written at the next round, if still
        // undone then the counter was set without them: an under-count, never an over-count).
        for (counter, n) in counters {
            conn.returns.push(counter, -n, 0);
        }
    }
    result
}

/// Step 3: waits until `others` replicas acknowledged update `id`, for [`ACK_WAIT`] at most;
/// returns how many did.
pub(super) async fn acknowledged(conn: &Conn, id: &str, others: u64) -> u64 {
    let name = conn.names.revocation_acks(id);
    let deadline = Instant::now() + ACK_WAIT;
    let mut seen = 0;
    while seen < others && Instant::now() < deadline {
        let mut manager = conn.manager.clone();
        let mut cmd = redis::cmd("SCARD");
        cmd.arg(&name);
        if let Ok(Ok(n)) = tokio::time::timeout(wait_of(conn), cmd.query_async::<u64>(&mut manager)).await {
            seen = n;
        }
        if seen < others {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    seen
}

/// A stale grant (a lease granted before an update this replica has since taken part in) given
/// back, unless the update is done already.
pub(super) async fn give_back_stale(conn: &Conn, counter: String, n: u64, id: &str) {
    let script = redis::Script::new(REVOKED);
    let mut call = script.prepare_invoke();
    call.key(conn.names.revocation_done(id)).key(conn.names.revocation_acks(id));
    call.arg("").arg(KEEP_SECS).key(&counter).arg(n as i64);
    if let Err(e) = bounded::<i64>(conn, call, wait_of(conn)).await {
        tracing::warn!(error = %e, "a lease granted during a usage update could not be given back");
    }
}

/// The revocation feed's own connection: a blocking read must not hold up the requests'.
pub(super) type Feed = Connection;

/// Starts the task that writes this replica's heartbeat and answers revocations, until the
/// last handle of `conn` is dropped. A lost feed is logged once and read again from where it
/// stopped when Redis answers again (entries are kept in the stream meanwhile).
pub(super) fn start(conn: &Arc<Conn>, mut feed: Feed) {
    let weak = Arc::downgrade(conn);
    let stream = conn.names.revocations();
    tokio::spawn(async move {
        let heartbeat = redis::Script::new(HEARTBEAT);
        let mut last: Option<String> = None;
        let mut beat_at = Instant::now();
        let mut lost = false;
        let mut first = true;
        loop {
            let Some(conn) = weak.upgrade() else { return };
            if first || beat_at.elapsed() >= Duration::from_secs(1) {
                first = false;
                beat_at = Instant::now();
                let mut call = heartbeat.prepare_invoke();
                call.key(conn.names.replicas()).arg(&conn.instance);
                match bounded::<i64>(&conn, call, wait_of(&conn)).await {
                    // From a second back: an update announced as this replica registered is not missed
                    // (one from before it held anything is acknowledged harmlessly).
                    Ok(ms) if last.is_none() => last = Some(format!("{}-0", ms.saturating_sub(1_000))),
                    _ => {}
                }
            }
            let Some(from) = last.clone() else {
                drop(conn);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            drop(conn);
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(100).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS").arg(&stream).arg(&from);
            let read = tokio::time::timeout(
                Duration::from_millis(BLOCK_MS as u64 + 2_000),
                cmd.query_async::<Option<redis::streams::StreamReadReply>>(&mut feed),
            )
            .await;
            let entries = match read {
                Ok(Ok(reply)) => {
                    if lost {
                        tracing::info!("usage update feed is back");
                        lost = false;
                    }
                    reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default()
                }
                failed => {
                    if !lost {
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "no answer in time".into(),
                        };
                        tracing::warn!(
                            error = %why,
                            "usage update feed lost: a usage update made through another replica \
                             reaches this one's leases and refusals only within a second \
                             (reconnecting)"
                        );
                        lost = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Some(conn) = weak.upgrade() else { return };
            for entry in entries {
                last = Some(entry.id.clone());
                let field = |name: &str| match entry.map.get(name) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                    Some(redis::Value::SimpleString(s)) => Some(s.clone()),
                    _ => None,
                };
                let (Some(key), Some(plan), Some(from)) = (field("key"), field("plan"), field("from")) else {
                    continue;
                };
                if from == conn.instance {
                    continue;
                }
                let held = conn.key_if_held(&key, &plan);
                if let Err(e) = give_back(&conn, held.as_ref(), &entry.id, Some(&conn.instance)).await {
                    tracing::warn!(error = %e, "could not answer a usage update");
                }
            }
        }
    });
}

/// Removes this replica from the replicas alive (at shutdown: no update waits for it).
pub(super) async fn leave(conn: &Conn) {
    let mut manager = conn.manager.clone();
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(conn.names.replicas()).arg(&conn.instance);
    let _ = tokio::time::timeout(wait_of(conn), cmd.query_async::<i64>(&mut manager)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_16_hex_digits_and_differ() {
        let (a, b) = (instance_name(), instance_name());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

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
//! What a request decided before the update puts back afterwards (a refund, a lease granted
//! by a call the update overtook, a request refused after it took from the lease) is not put
//! back into the lease: each key counts the updates it took part in, and checks that count
//! under one lock with the give-back. A grant so overtaken is given back unless the update is
//! done. The replica answers an update between two of its maintenance rounds, so that no lease
//! return a round had taken is written after the counter is set.
//!
//! Bounds (stated in `docs/distributed.md`):
//! - A replica that did not acknowledge within the second (cut off from Redis, or stalled) may
//!   still spend the lease it held: the deployment admits at most that lease more (logged). A
//!   lease it gives back after the update is dropped, not subtracted ([`REVOKED`] sees the
//!   update done): it under-admits instead.
//! - A replica cut off for more than 3 s is no longer waited for, and is not logged.
//! - Two updates of one key at once share the hold: the first to finish ends it, so the other
//!   may miss a lease granted meanwhile.

use super::conn::{Conn, Connection};
use super::lease::RedisKey;
use super::script::quota_key;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long UpdateUsage waits for the other replicas' acknowledgements.
pub(super) const ACK_WAIT: Duration = Duration::from_secs(1);
/// How long a hold lasts at least if the updating replica dies before it ends it
/// (milliseconds); longer with long call timeouts (see [`hold_ms`]).
const HOLD_MS: u64 = 5_000;
/// A replica whose heartbeat is older than this is not waited for (milliseconds).
const ALIVE_MS: i64 = 3_000;
/// Longest block of one stream read (milliseconds).
const BLOCK_MS: usize = 500;
/// How long a done mark and an acknowledgement set are kept (seconds).
const KEEP_SECS: i64 = 60;

/// Step 1. `KEYS`: the hold, the stream, the replicas, then the stem of the update's sets
/// (`<stem>:<id>:expect`, the replicas waited for, and `<stem>:<id>:acks`). `ARGV`: hold ms,
/// key id, plan id, this replica, alive ms, keep seconds. Returns the entry's id and the number
/// of other replicas alive (those whose acknowledgements count).
const ANNOUNCE: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'key', ARGV[2], 'plan', ARGV[3], 'from', ARGV[4])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = redis.call('ZRANGEBYSCORE', KEYS[3], ms - tonumber(ARGV[5]), '+inf')
local expect = KEYS[4] .. ':' .. id .. ':expect'
local n = 0
for _, r in ipairs(alive) do
  if r ~= ARGV[4] then
    redis.call('SADD', expect, r)
    n = n + 1
  end
end
if n > 0 then redis.call('EXPIRE', expect, ARGV[6]) end
return {id, n}
"#;

/// Step 2. `KEYS`: the update's done mark, its acknowledgements, the replicas it waits for,
/// then counters. `ARGV`: the acknowledging replica ('' for none), the keep time, then per
/// counter the amount to subtract. Once the update is done, nothing is written (the counter was
/// set without these leases). A counter is never taken below 0 (unless it was), and one that
/// no longer exists is left alone. Only a replica the update waits for is counted as an answer.
pub(super) const REVOKED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 4, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur then
    local new = tonumber(cur) - tonumber(ARGV[i - 1])
    if tonumber(cur) >= 0 and new < 0 then new = 0 end
    redis.call('SET', KEYS[i], string.format('%d', new), 'KEEPTTL')
  end
end
if ARGV[1] ~= '' and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
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

/// The hold outlasts the whole update: the announce, this replica's give-back, the wait, and
/// the final write (each call bounded by [`wait_of`]), with a second to spare.
fn hold_ms(conn: &Conn) -> u64 {
    let bound = wait_of(conn) * 3 + ACK_WAIT + Duration::from_secs(1);
    (bound.as_millis() as u64).max(HOLD_MS)
}

/// Step 1: the hold and the stream entry for `key` under `plan`.
pub(super) async fn announce(conn: &Conn, key: &str, plan: &str) -> Result<Announced, String> {
    let names = &conn.names;
    let stem = names.quota_stem(key, plan);
    let script = redis::Script::new(ANNOUNCE);
    let mut call = script.prepare_invoke();
    call.key(names.quota_hold(&stem)).key(names.revocations()).key(names.replicas()).key(names.revocation_stem());
    call.arg(hold_ms(conn)).arg(key).arg(plan).arg(&conn.instance).arg(ALIVE_MS).arg(KEEP_SECS);
    let (id, others): (String, i64) = bounded(conn, call, wait_of(conn)).await?;
    Ok(Announced { id, others: u64::try_from(others).unwrap_or(0) })
}

/// Step 2 for key `key` under `plan` on this replica: forgets a cached quota refusal, and gives
/// back the lease (of `held`, its state if this replica holds one) and the queued returns of
/// its counters unless the update `id` is done; acknowledges as `ack` (`None`: the updating
/// replica itself). Run between maintenance rounds, so that no return a round has taken is
/// written after the update.
///
/// What could not be written is dropped (logged): if the update went on without it, the counter
/// was set without these leases, and writing them later would admit them twice. At worst the
/// deployment then admits that much less.
pub(super) async fn give_back(
    conn: &Conn,
    key: &str,
    plan: &str,
    held: Option<&Arc<RedisKey>>,
    id: &str,
    ack: Option<&str>,
) -> Result<(), String> {
    let names = &conn.names;
    let mut counters: Vec<(String, i64)> = Vec::new();
    if let Some(k) = held {
        let (tag, n) = k.revoke(id);
        if n > 0 {
            counters.push((quota_key(&k.quota_stem, tag), n as i64));
        }
    }
    counters.extend(conn.returns.take_returns_of(&names.quota_stem(key, plan)));
    let script = redis::Script::new(REVOKED);
    let mut call = script.prepare_invoke();
    call.key(names.revocation_done(id)).key(names.revocation_acks(id)).key(names.revocation_expected(id));
    call.arg(ack.unwrap_or("")).arg(KEEP_SECS);
    for (counter, n) in &counters {
        call.key(counter);
        call.arg(*n);
    }
    let result = bounded::<i64>(conn, call, wait_of(conn)).await.map(|_| ());
    if let Err(e) = &result {
        let dropped: i64 = counters.iter().map(|(_, n)| n).sum();
        tracing::warn!(error = %e, dropped, "usage update: a lease could not be given back");
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

/// A stale grant (a lease granted by a call that usage update `id` overtook) given back,
/// unless the update is done already.
pub(super) async fn give_back_stale(conn: Arc<Conn>, counter: String, n: u64, id: Arc<str>) {
    let conn = &*conn;
    let names = &conn.names;
    let script = redis::Script::new(REVOKED);
    let mut call = script.prepare_invoke();
    call.key(names.revocation_done(&id)).key(names.revocation_acks(&id)).key(names.revocation_expected(&id));
    call.arg("").arg(KEEP_SECS).key(&counter).arg(n as i64);
    if let Err(e) = bounded::<i64>(conn, call, wait_of(conn)).await {
        tracing::warn!(error = %e, "a lease granted during a usage update could not be given back");
    }
}

/// The revocation feed's own connection: a blocking read must not hold up the requests'.
pub(super) type Feed = Connection;

/// Writes this replica's heartbeat; returns Redis's time in milliseconds. Until the replica has
/// joined, bounded by the call timeout.
async fn beat(conn: &Conn) -> Option<i64> {
    let script = redis::Script::new(HEARTBEAT);
    let mut call = script.prepare_invoke();
    call.key(conn.names.replicas()).arg(&conn.instance);
    let wait = if conn.in_deployment.load(std::sync::atomic::Ordering::Acquire) {
        wait_of(conn)
    } else {
        conn.settings.timeout
    };
    bounded::<i64>(conn, call, wait).await.ok()
}

/// The replica has joined the deployment at Redis time `ms`: it may lease, and reads the feed
/// from a second back (an update announced as it registered is not missed; one from before it
/// held anything is acknowledged harmlessly).
fn joined(conn: &Conn, ms: i64) -> String {
    conn.in_deployment.store(true, std::sync::atomic::Ordering::Release);
    format!("{}-0", ms.saturating_sub(1_000))
}

/// Starts the task that writes this replica's heartbeat and answers revocations, until the
/// last handle of `conn` is dropped. A lost feed is logged once and read again from where it
/// stopped when Redis answers again (entries are kept in the stream meanwhile).
pub(super) async fn start(conn: &Arc<Conn>, mut feed: Feed) {
    // The first heartbeat before the backend is handed out, so that its first requests may
    // lease (an unreachable Redis leaves it to the task).
    let mut last: Option<String> = beat(conn).await.map(|ms| joined(conn, ms));
    let weak = Arc::downgrade(conn);
    let stream = conn.names.revocations();
    tokio::spawn(async move {
        let mut beat_at = Instant::now();
        let mut lost = false;
        loop {
            let Some(conn) = weak.upgrade() else { return };
            if last.is_none() || beat_at.elapsed() >= Duration::from_secs(1) {
                beat_at = Instant::now();
                if let (Some(ms), true) = (beat(&conn).await, last.is_none()) {
                    last = Some(joined(&conn, ms));
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
                let answer = || give_back(&conn, &key, &plan, held.as_ref(), &entry.id, Some(&conn.instance));
                // A failure is logged by give_back; the update then goes on without this replica.
                let _ = conn.between_rounds(answer).await;
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

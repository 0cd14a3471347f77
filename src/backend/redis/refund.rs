//! What an admitted request can give back (refund policy): its count of the key's quota (to the
//! lease, or to Redis), of its customer's quota (to Redis), and of the usage ledger.

use super::conn::Conn;
use super::customer::CustomerQuota;
use super::lease::RedisKey;
use crate::engine::{Now, Refund, Refused};
use std::sync::Arc;

/// Gives one counted request back: to the lease when `to_lease` (it is counted in Redis already),
/// to Redis itself otherwise; not at all if a usage update came since the request was counted
/// (its count of updates `seen`): the update set the counter without it.
pub(super) fn refund_to(k: &Arc<RedisKey>, conn: &Arc<Conn>, tag: u64, seen: u64, to_lease: bool) -> Refund {
    let (k, conn) = (Arc::clone(k), Arc::clone(conn));
    Box::new(move || {
        if to_lease {
            k.add_lease_since(seen, &conn.returns, tag, 1);
        } else {
            k.give_back_one_since(seen, &conn.returns, tag);
        }
    })
}

/// Gives the request counted in the customer's quota back to Redis (queued, written with the
/// next maintenance round; never below 0).
pub(super) fn customer_refund(c: &CustomerQuota, conn: &Arc<Conn>) -> Refund {
    let (counter, conn) = (c.counter.clone(), Arc::clone(conn));
    Box::new(move || conn.returns.push(counter, -1, 0))
}

/// Both refunds, in one.
pub(super) fn both(a: Option<Refund>, b: Option<Refund>) -> Option<Refund> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::new(move || {
            a();
            b();
        })),
        (a, b) => a.or(b),
    }
}

/// Counts an admitted request of a key in the ledger (its day by the request's clock), and makes
/// its refund take it back from the ledger too.
pub(super) fn counted(
    conn: &Arc<Conn>,
    key: Option<&Arc<RedisKey>>,
    now: Now,
    want_refund: bool,
    result: Result<Option<Refund>, Refused>,
) -> Result<Option<Refund>, Refused> {
    let Some(k) = key else { return result };
    let inner = result?;
    let day = crate::engine::ledger::day_of(now.unix_secs);
    k.count_day(day, &conn.ledger);
    if !want_refund {
        return Ok(inner);
    }
    let (k, conn) = (Arc::clone(k), Arc::clone(conn));
    Ok(Some(Box::new(move || {
        if let Some(inner) = inner {
            inner();
        }
        k.uncount_day(day, &conn.ledger);
    })))
}

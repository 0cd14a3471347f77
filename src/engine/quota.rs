//! Exact quota counting on one `AtomicU64`: the period the count belongs to, and the count.
//!
//! Layout: high 24 bits hold `period index + 1` (0 = never used), low 40 bits the count of
//! forwarded requests in that period. Every change is one CAS, so no request is admitted over
//! the limit under any concurrency, and a new period starts from zero without a reset job.

use crate::model::{Quota, QuotaPeriod};
use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const MAX_TAG: i64 = (1 << (64 - COUNT_BITS)) - 1;

/// A plan's quota, ready for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuotaRule {
    quota: Quota,
    /// Index of the period the plan was created in (the one `offset` applies to).
    initial: Option<i64>,
}

/// The quota as a client sees it right after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QuotaView {
    /// The limit of the current period (after `offset` in the initial period).
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Seconds until the period ends.
    pub(crate) resets_in_secs: u64,
    /// Length of the current period, seconds.
    pub(crate) window_secs: u64,
}

/// Which period a counted request was counted in, for refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

fn tag(index: i64) -> u64 {
    (index.clamp(0, MAX_TAG - 1) + 1) as u64
}

impl QuotaRule {
    pub(crate) fn new(quota: Quota, created_unix: Option<i64>) -> Self {
        Self { quota, initial: created_unix.map(|c| quota.period().index_of(c)) }
    }

    pub(crate) fn period(&self) -> QuotaPeriod {
        self.quota.period()
    }

    fn limit_for(&self, index: i64) -> u64 {
        if self.initial == Some(index) {
            self.quota.limit() - self.quota.offset()
        } else {
            self.quota.limit()
        }
    }

    fn view(&self, index: i64, unix: i64, used: u64) -> QuotaView {
        let p = self.quota.period();
        let (start, end) = (p.start_of_index(index), p.start_of_index(index + 1));
        let limit = self.limit_for(index);
        QuotaView {
            limit,
            remaining: limit.saturating_sub(used),
            resets_in_secs: u64::try_from(end - unix).unwrap_or(0).max(1),
            window_secs: u64::try_from(end - start).unwrap_or(0),
        }
    }

    /// Counts one request at `unix` if the period has room. `Err` carries the view (remaining 0).
    pub(crate) fn acquire(&self, state: &AtomicU64, unix: i64) -> Result<(Ticket, QuotaView), QuotaView> {
        let index = self.period().index_of(unix);
        let mut cur = state.load(Ordering::Acquire);
        loop {
            let (stored_tag, count) = (cur >> COUNT_BITS, cur & COUNT_MASK);
            // A new period starts from zero; if wall time stepped back, keep counting the newer one.
            let (t, used) = if stored_tag < tag(index) { (tag(index), 0) } else { (stored_tag, count) };
            let idx = t as i64 - 1;
            let limit = self.limit_for(idx);
            if used >= limit {
                return Err(self.view(idx, unix, used));
            }
            let next = (t << COUNT_BITS) | (used + 1);
            match state.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok((Ticket(t), self.view(idx, unix, used + 1))),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back one counted request if its period is still the current one.
    pub(crate) fn refund(state: &AtomicU64, ticket: Ticket) {
        let _ = state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            (cur >> COUNT_BITS == ticket.0 && cur & COUNT_MASK > 0).then(|| cur - 1)
        });
    }

    /// The quota at `unix` (read only).
    pub(crate) fn peek(&self, state: &AtomicU64, unix: i64) -> QuotaView {
        let index = self.period().index_of(unix);
        let cur = state.load(Ordering::Acquire);
        let (stored_tag, count) = (cur >> COUNT_BITS, cur & COUNT_MASK);
        if stored_tag < tag(index) {
            self.view(index, unix, 0)
        } else {
            self.view(stored_tag as i64 - 1, unix, count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn rule(limit: u64, period: QuotaPeriod, offset: u64, created: Option<i64>) -> QuotaRule {
        QuotaRule::new(Quota::new(limit, period).unwrap().with_offset(offset).unwrap(), created)
    }

    #[test]
    fn counts_to_the_limit_then_refuses_until_the_period_ends() {
        let r = rule(3, QuotaPeriod::Day, 0, None);
        let s = AtomicU64::new(0);
        let noon = datetime!(2026-11-23 12:00 UTC).unix_timestamp();
        for left in [2, 1, 0] {
            assert_eq!(r.acquire(&s, noon).unwrap().1.remaining, left);
        }
        let refused = r.acquire(&s, noon).unwrap_err();
        assert_eq!((refused.remaining, refused.resets_in_secs, refused.window_secs), (0, 12 * 3600, 86_400));
        // Midnight: a fresh period.
        let midnight = datetime!(2026-11-24 0:00 UTC).unix_timestamp();
        assert_eq!(r.acquire(&s, midnight).unwrap().1.remaining, 2);
    }

    #[test]
    fn offset_applies_to_the_initial_period_only() {
        let created = datetime!(2026-11-10 8:00 UTC).unix_timestamp();
        let r = rule(10, QuotaPeriod::Month, 4, Some(created));
        let s = AtomicU64::new(0);
        let nov = datetime!(2026-11-20 0:00 UTC).unix_timestamp();
        assert_eq!(r.acquire(&s, nov).unwrap().1.limit, 6);
        let admitted = 1 + (0..20).filter(|_| r.acquire(&s, nov).is_ok()).count();
        assert_eq!(admitted, 6);
        let dec = datetime!(2026-12-01 0:00 UTC).unix_timestamp();
        assert_eq!(r.acquire(&s, dec).unwrap().1.limit, 10);
    }

    #[test]
    fn refund_only_in_the_same_period() {
        let r = rule(1, QuotaPeriod::Day, 0, None);
        let s = AtomicU64::new(0);
        let (ticket, _) = r.acquire(&s, 100).unwrap();
        QuotaRule::refund(&s, ticket);
        let (ticket, _) = r.acquire(&s, 100).unwrap();
        assert!(r.acquire(&s, 200).is_err());
        r.acquire(&s, 86_400 + 5).unwrap();
        QuotaRule::refund(&s, ticket); // stale ticket: ignored
        assert!(r.acquire(&s, 86_400 + 6).is_err());
    }

    #[test]
    fn wall_clock_stepping_back_does_not_reset_the_count() {
        let r = rule(2, QuotaPeriod::Day, 0, None);
        let s = AtomicU64::new(0);
        r.acquire(&s, 86_400 * 3).unwrap();
        r.acquire(&s, 86_400 * 3).unwrap();
        assert!(r.acquire(&s, 86_400 * 3 - 10).is_err());
    }
}

//! Exact quota counting on one `AtomicU64`: the period the count belongs to, and the count.
//!
//! Layout: high 24 bits are the period's tag — its kind (DAY, WEEK, MONTH: 2 bits) and
//! `index + 1` (22 bits; 0 = never used) — and the low 40 bits the count of forwarded requests
//! in that period, signed (two's complement): UpdateUsage may grant more than the limit for the
//! rest of a period, which sets the count below zero. A count made under another kind of period
//! (a plan changed from DAY to MONTH) is not comparable and starts over. Every change is one CAS, so no request is admitted over
//! the limit under any concurrency, and a new period starts from zero without a reset job.

use crate::model::{Calendar, Quota, QuotaAnchor, QuotaPeriod};
use crate::view::QuotaView;
use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const INDEX_BITS: u32 = 64 - COUNT_BITS - 2;
const MAX_INDEX: i64 = (1 << INDEX_BITS) - 2;
/// Counts are 40-bit two's complement: from `MIN_COUNT` to `MAX_COUNT`.
const MAX_COUNT: i64 = (1 << (COUNT_BITS - 1)) - 1;
const MIN_COUNT: i64 = -(1 << (COUNT_BITS - 1));

/// The signed count in the low bits of `raw`.
fn count_of(raw: u64) -> i64 {
    (((raw & COUNT_MASK) << (64 - COUNT_BITS)) as i64) >> (64 - COUNT_BITS)
}

/// `count` as the low bits of a raw word (clamped to the representable range).
fn count_bits(count: i64) -> u64 {
    (count.clamp(MIN_COUNT, MAX_COUNT) as u64) & COUNT_MASK
}

/// A plan's quota, ready for counting.
#[derive(Debug)]
pub(crate) struct QuotaRule {
    quota: Quota,
    /// The quota's periods (anchored or not).
    calendar: Calendar,
    /// Index of the period the plan was created in (the one `offset` applies to).
    initial: Option<i64>,
    /// The current period, so calendar math runs once per period, not per request:
    /// `index` (24 bits) | first day (24 bits) | length in days (16 bits); 0 = unset. Days are of
    /// shifted time (`unix - calendar.time_of_day()`), in which every period starts at midnight;
    /// without an anchor they are UTC days.
    current: AtomicU64,
}

/// One period: its index and `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    index: i64,
    start: i64,
    end: i64,
}

/// The result of counting (or refusing) one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) ticket: Ticket,
    period: Period,
    used: i64,
}

/// The current period, for backends that count elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct PeriodInfo {
    /// Kind and index: differs for every period (and every kind).
    pub(crate) tag: u64,
    pub(crate) limit: u64,
    /// Unix seconds at which the period ends.
    pub(crate) end: i64,
}

/// Which period a counted request was counted in, for refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

fn kind_bits(period: QuotaPeriod) -> u64 {
    match period {
        QuotaPeriod::Day => 1,
        QuotaPeriod::Week => 2,
        QuotaPeriod::Month => 3,
    }
}

/// The tag of period `index` of kind `period`.
fn tag(period: QuotaPeriod, index: i64) -> u64 {
    (kind_bits(period) << INDEX_BITS) | (index.clamp(0, MAX_INDEX) + 1) as u64
}

fn index_of_tag(tag: u64) -> i64 {
    (tag & ((1 << INDEX_BITS) - 1)) as i64 - 1
}

impl QuotaRule {
    /// `created_unix`: when the plan was created; `offset` applies to that period (none if `None`).
    /// `anchor`: where periods start (UTC calendar periods if `None`).
    pub(crate) fn new(quota: Quota, created_unix: Option<i64>, anchor: Option<QuotaAnchor>) -> Self {
        let calendar = Calendar::new(quota.period(), anchor);
        Self { quota, calendar, initial: created_unix.map(|c| calendar.index_of(c)), current: AtomicU64::new(0) }
    }

    /// The periods this rule counts in.
    #[allow(dead_code)] // for the lead's wiring (views, reports)
    pub(crate) fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Period `index`: its bounds.
    fn period_of_index(&self, index: i64) -> Period {
        Period { index, start: self.calendar.start_of_index(index), end: self.calendar.start_of_index(index + 1) }
    }

    /// The period containing `unix`, from the one-atomic cache when it is the current one.
    fn period_at(&self, unix: i64) -> Period {
        const DAY: i64 = 86_400;
        let tod = self.calendar.time_of_day();
        let day = unix.saturating_sub(tod).div_euclid(DAY);
        let packed = self.current.load(Ordering::Relaxed);
        if packed != 0 {
            let (index, start, len) =
                ((packed >> 40) as i64, ((packed >> 16) & 0xFF_FFFF) as i64, (packed & 0xFFFF) as i64);
            if (start..start + len).contains(&day) {
                return Period { index, start: start * DAY + tod, end: (start + len) * DAY + tod };
            }
        }
        let period = self.period_of_index(self.calendar.index_of(unix));
        let index = period.index;
        let (start_day, len) = ((period.start - tod).div_euclid(DAY), (period.end - period.start) / DAY);
        if (0..1 << 24).contains(&index) && (0..1 << 24).contains(&start_day) && (1..1 << 16).contains(&len) {
            self.current.store(((index as u64) << 40) | ((start_day as u64) << 16) | len as u64, Ordering::Relaxed);
        }
        period
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

    fn view(&self, period: Period, unix: i64, used: i64) -> QuotaView {
        let limit = self.limit_for(period.index);
        QuotaView {
            limit,
            remaining: u64::try_from(i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(used)).unwrap_or(0),
            resets_in_secs: u64::try_from(period.end - unix).unwrap_or(0).max(1),
            window_secs: u64::try_from(period.end - period.start).unwrap_or(0),
        }
    }

    /// What a client sees after `counted`.
    pub(crate) fn view_of(&self, counted: &Counted, unix: i64) -> QuotaView {
        self.view(counted.period, unix, counted.used)
    }

    /// Counts one request at `unix` if the period has room; `Err` when it has none.
    pub(crate) fn acquire(&self, state: &AtomicU64, unix: i64) -> Result<Counted, Counted> {
        let now = self.period_at(unix);
        let mut cur = state.load(Ordering::Acquire);
        loop {
            let (stored_tag, count) = (cur >> COUNT_BITS, count_of(cur));
            // A new period starts from zero; if wall time stepped back, keep counting the newer one.
            let current = tag(self.period(), now.index);
            let same_kind = stored_tag >> INDEX_BITS == current >> INDEX_BITS;
            let (t, used, period) = if !same_kind || stored_tag < current {
                (current, 0, now)
            } else if stored_tag == current {
                (stored_tag, count, now)
            } else {
                (stored_tag, count, self.period_of_index(index_of_tag(stored_tag)))
            };
            if used >= i64::try_from(self.limit_for(period.index)).unwrap_or(i64::MAX) {
                return Err(Counted { ticket: Ticket(t), period, used });
            }
            let next = (t << COUNT_BITS) | count_bits(used + 1);
            match state.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Counted { ticket: Ticket(t), period, used: used + 1 }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back one counted request if its period is still the current one.
    pub(crate) fn refund(state: &AtomicU64, ticket: Ticket) {
        let _ = state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            (cur >> COUNT_BITS == ticket.0 && count_of(cur) > MIN_COUNT)
                .then(|| (cur & !COUNT_MASK) | count_bits(count_of(cur) - 1))
        });
    }

    /// The current period at `unix`: its tag (kind and index, unique per period), limit and end
    /// (unix seconds). For backends that count elsewhere, and for usage queries.
    pub(crate) fn current(&self, unix: i64) -> PeriodInfo {
        let p = self.period_at(unix);
        PeriodInfo { tag: tag(self.period(), p.index), limit: self.limit_for(p.index), end: p.end }
    }

    /// What a client sees when `used` requests were counted in the current period.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn view_used(&self, unix: i64, used: u64) -> QuotaView {
        self.view(self.period_at(unix), unix, i64::try_from(used).unwrap_or(i64::MAX))
    }

    /// Requests counted in the period containing `unix` (0 when the count is of another period;
    /// below 0 after UpdateUsage granted more than the limit).
    pub(crate) fn used(&self, state: &AtomicU64, unix: i64) -> i64 {
        let now = self.period_at(unix);
        let cur = state.load(Ordering::Acquire);
        if cur >> COUNT_BITS == tag(self.period(), now.index) {
            count_of(cur)
        } else {
            0
        }
    }

    /// The limit of the period containing `unix` (after `offset` in the initial period).
    pub(crate) fn limit_at(&self, unix: i64) -> u64 {
        self.limit_for(self.period_at(unix).index)
    }

    /// Sets the count of the period containing `unix` to `used`; returns the count it replaced.
    pub(crate) fn set_used(&self, state: &AtomicU64, unix: i64, used: i64) -> i64 {
        let now = tag(self.period(), self.period_at(unix).index);
        let next = (now << COUNT_BITS) | count_bits(used);
        let old = state.swap(next, Ordering::AcqRel);
        if old >> COUNT_BITS == now {
            count_of(old)
        } else {
            0
        }
    }

    /// `[start, end)` of the period containing day `day` (days since the epoch), in days.
    ///
    /// With an anchored time of day, a day stands for the 24 hours from that time on it, and a
    /// period for the days it starts on up to the day it ends on: the ledger's UTC day on which
    /// a period starts (and its hours before the anchor) is counted in that period.
    pub(crate) fn days_of_period(&self, day: i32) -> (i32, i32) {
        const DAY: i64 = 86_400;
        let tod = self.calendar.time_of_day();
        let period = self.period_of_index(self.calendar.index_of(i64::from(day) * DAY + tod));
        let days = |unix: i64| i32::try_from((unix - tod).div_euclid(DAY)).unwrap_or(i32::MAX);
        (days(period.start), days(period.end))
    }

    /// The limit of the period containing day `day` (as [`days_of_period`](Self::days_of_period)
    /// counts days).
    pub(crate) fn limit_on_day(&self, day: i32) -> u64 {
        self.limit_for(self.calendar.index_of(i64::from(day) * 86_400 + self.calendar.time_of_day()))
    }

    /// The quota at `unix` (read only).
    pub(crate) fn peek(&self, state: &AtomicU64, unix: i64) -> QuotaView {
        let now = self.period_at(unix);
        let cur = state.load(Ordering::Acquire);
        let (stored_tag, count) = (cur >> COUNT_BITS, count_of(cur));
        if stored_tag == tag(self.period(), now.index) {
            self.view(now, unix, count)
        } else {
            self.view(now, unix, 0)
        }
    }
}

/// A raw quota count taken apart, for snapshots: period kind, period index, count.
pub(crate) fn decode(raw: u64) -> Option<(QuotaPeriod, i64, i64)> {
    let t = raw >> COUNT_BITS;
    let period = match t >> INDEX_BITS {
        1 => QuotaPeriod::Day,
        2 => QuotaPeriod::Week,
        3 => QuotaPeriod::Month,
        _ => return None,
    };
    let index = index_of_tag(t);
    (index >= 0).then_some((period, index, count_of(raw)))
}

/// Two raw counts of one key and plan made apart (before and after a restart): counts of the
/// same period add up; otherwise the later period's count wins.
pub(crate) fn merge_quota(cur: u64, restored: u64) -> u64 {
    let (a, b) = (cur >> COUNT_BITS, restored >> COUNT_BITS);
    if a == b {
        (cur & !COUNT_MASK) | count_bits(count_of(cur).saturating_add(count_of(restored)))
    } else if (b & ((1 << INDEX_BITS) - 1)) > (a & ((1 << INDEX_BITS) - 1)) || a == 0 {
        restored
    } else {
        cur
    }
}

/// Whether raw count `raw` holds requests counted in a period that is not over at `unix` (judged
/// by the period kind in its own tag, whatever plan reads it now). A count of an anchored period
/// is judged by the UTC calendar too: anchored periods are numbered so that this is never false
/// while the period runs, and true at most one period longer (see `model/calendar.rs`).
pub(crate) fn quota_holds_count(raw: u64, unix: i64) -> bool {
    decode(raw).is_some_and(|(period, index, count)| count != 0 && index >= period.index_of(unix))
}

/// The raw quota count of `used` requests in period `index` of kind `period`.
pub(crate) fn encode(period: QuotaPeriod, index: i64, used: i64) -> u64 {
    (tag(period, index) << COUNT_BITS) | count_bits(used)
}

/// The raw quota count of `used` requests in the period of tag `tag` ([`PeriodInfo::tag`]), for
/// backends that keep a count per period (Redis).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn encode_tagged(tag: u64, used: i64) -> u64 {
    (tag << COUNT_BITS) | count_bits(used)
}

/// The period tag ([`PeriodInfo::tag`]) of a raw quota count.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn tag_of(raw: u64) -> u64 {
    raw >> COUNT_BITS
}

#[cfg(test)]
mod anchored;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn rule(limit: u64, period: QuotaPeriod, offset: u64, created: Option<i64>) -> QuotaRule {
        QuotaRule::new(Quota::new(limit, period).unwrap().with_offset(offset).unwrap(), created, None)
    }

    #[test]
    fn a_tagged_count_is_the_raw_count_of_its_period() {
        let r = rule(3, QuotaPeriod::Week, 0, None);
        let noon = datetime!(2026-11-23 12:00 UTC).unix_timestamp();
        let tag = r.current(noon).tag;
        let raw = encode_tagged(tag, -5);
        assert_eq!(tag_of(raw), tag);
        assert_eq!(raw, encode(QuotaPeriod::Week, QuotaPeriod::Week.index_of(noon), -5));
        assert_eq!(decode(raw).map(|(p, _, n)| (p, n)), Some((QuotaPeriod::Week, -5)));
        assert!(quota_holds_count(raw, noon) && !quota_holds_count(raw, noon + 7 * 86_400));
    }

    #[test]
    fn counts_to_the_limit_then_refuses_until_the_period_ends() {
        let r = rule(3, QuotaPeriod::Day, 0, None);
        let s = AtomicU64::new(0);
        let noon = datetime!(2026-11-23 12:00 UTC).unix_timestamp();
        for left in [2, 1, 0] {
            assert_eq!(r.view_of(&r.acquire(&s, noon).unwrap(), noon).remaining, left);
        }
        let refused = r.view_of(&r.acquire(&s, noon).unwrap_err(), noon);
        assert_eq!((refused.remaining, refused.resets_in_secs, refused.window_secs), (0, 12 * 3600, 86_400));
        // Midnight: a fresh period.
        let midnight = datetime!(2026-11-24 0:00 UTC).unix_timestamp();
        assert_eq!(r.view_of(&r.acquire(&s, midnight).unwrap(), midnight).remaining, 2);
    }

    #[test]
    fn offset_applies_to_the_initial_period_only() {
        let created = datetime!(2026-11-10 8:00 UTC).unix_timestamp();
        let r = rule(10, QuotaPeriod::Month, 4, Some(created));
        let s = AtomicU64::new(0);
        let nov = datetime!(2026-11-20 0:00 UTC).unix_timestamp();
        assert_eq!(r.view_of(&r.acquire(&s, nov).unwrap(), nov).limit, 6);
        let admitted = 1 + (0..20).filter(|_| r.acquire(&s, nov).is_ok()).count();
        assert_eq!(admitted, 6);
        let dec = datetime!(2026-12-01 0:00 UTC).unix_timestamp();
        assert_eq!(r.view_of(&r.acquire(&s, dec).unwrap(), dec).limit, 10);
    }

    #[test]
    fn refund_only_in_the_same_period() {
        let r = rule(1, QuotaPeriod::Day, 0, None);
        let s = AtomicU64::new(0);
        let ticket = r.acquire(&s, 100).unwrap().ticket;
        QuotaRule::refund(&s, ticket);
        let ticket = r.acquire(&s, 100).unwrap().ticket;
        assert!(r.acquire(&s, 200).is_err());
        r.acquire(&s, 86_400 + 5).unwrap();
        QuotaRule::refund(&s, ticket); // stale ticket: ignored
        assert!(r.acquire(&s, 86_400 + 6).is_err());
    }

    #[test]
    fn the_period_cache_follows_the_calendar() {
        let r = rule(1_000_000, QuotaPeriod::Month, 0, None);
        let s = AtomicU64::new(0);
        for (at, start, end) in [
            (datetime!(2024-02-10 0:00 UTC), datetime!(2024-02-01 0:00 UTC), datetime!(2024-03-01 0:00 UTC)),
            (datetime!(2024-02-29 23:59:59 UTC), datetime!(2024-02-01 0:00 UTC), datetime!(2024-03-01 0:00 UTC)),
            (datetime!(2024-03-01 0:00 UTC), datetime!(2024-03-01 0:00 UTC), datetime!(2024-04-01 0:00 UTC)),
            (datetime!(2024-01-31 12:00 UTC), datetime!(2024-01-01 0:00 UTC), datetime!(2024-02-01 0:00 UTC)),
        ] {
            let p = r.period_at(at.unix_timestamp());
            assert_eq!((p.start, p.end), (start.unix_timestamp(), end.unix_timestamp()), "{at}");
            assert_eq!(p, r.period_at(at.unix_timestamp()), "cached answer for {at}");
            let v = r.view_of(&r.acquire(&s, at.unix_timestamp()).unwrap(), at.unix_timestamp());
            assert_eq!(v.window_secs as i64, end.unix_timestamp() - start.unix_timestamp());
        }
    }

    #[test]
    fn a_count_from_another_kind_of_period_starts_over() {
        let s = AtomicU64::new(0);
        let noon = datetime!(2026-11-23 12:00 UTC).unix_timestamp();
        let daily = rule(2, QuotaPeriod::Day, 0, None);
        daily.acquire(&s, noon).unwrap();
        daily.acquire(&s, noon).unwrap();
        assert!(daily.acquire(&s, noon).is_err());
        // The same counter under a monthly plan (an upgrade): a fresh count, and it resets at the
        // end of the month, not in some far-off "period".
        let monthly = rule(1000, QuotaPeriod::Month, 0, None);
        let v = monthly.view_of(&monthly.acquire(&s, noon).unwrap(), noon);
        assert_eq!((v.remaining, v.resets_in_secs), (999, 7 * 86_400 + 12 * 3600));
        // And back to daily: the monthly count is not a daily one.
        assert!(daily.acquire(&s, noon).is_ok());
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

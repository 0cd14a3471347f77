//! `QuotaRule` with anchored periods.

use super::*;
use time::macros::datetime;
use time::OffsetDateTime;

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn rule(limit: u64, period: QuotaPeriod, anchor: &str) -> QuotaRule {
    QuotaRule::new(Quota::new(limit, period).unwrap(), None, Some(QuotaAnchor::parse(anchor).unwrap()))
}

/// Limit 2 from `start`: two admitted, then refused up to the second before `boundary`, then
/// admitted again exactly at `boundary`.
fn assert_rolls_over_at(r: &QuotaRule, start: OffsetDateTime, boundary: OffsetDateTime) {
    let s = AtomicU64::new(0);
    let (start, boundary) = (ts(start), ts(boundary));
    assert!(r.acquire(&s, start).is_ok() && r.acquire(&s, start).is_ok(), "two admitted at {start}");
    let refused = r.acquire(&s, start).unwrap_err();
    assert_eq!(r.view_of(&refused, start).resets_in_secs, u64::try_from(boundary - start).unwrap());
    let last = r.acquire(&s, boundary - 1).unwrap_err();
    assert_eq!(r.view_of(&last, boundary - 1).resets_in_secs, 1);
    let next = r.acquire(&s, boundary).expect("a fresh period at the anchored boundary");
    assert_eq!(r.view_of(&next, boundary).remaining, 1);
    assert_eq!(r.current(boundary).end, r.calendar().start_of_index(r.calendar().index_of(boundary) + 1));
}

#[test]
fn monthly_on_the_31st_rolls_over_at_the_anchor_or_the_months_last_day() {
    let r = rule(2, QuotaPeriod::Month, "2026-01-31T09:30:00Z");
    for (start, boundary) in [
        (datetime!(2026-02-10 0:00 UTC), datetime!(2026-02-28 09:30 UTC)),
        (datetime!(2028-02-01 0:00 UTC), datetime!(2028-02-29 09:30 UTC)),
        (datetime!(2026-04-01 0:00 UTC), datetime!(2026-04-30 09:30 UTC)),
        (datetime!(2026-05-30 23:00 UTC), datetime!(2026-05-31 09:30 UTC)),
        (datetime!(2026-12-01 0:00 UTC), datetime!(2026-12-31 09:30 UTC)),
        (datetime!(2027-01-01 0:00 UTC), datetime!(2027-01-31 09:30 UTC)),
    ] {
        assert_rolls_over_at(&r, start, boundary);
    }
    // What a client is told: the time to the anchored end and the anchored period's length.
    let v = r.view_used(ts(datetime!(2026-02-27 09:30 UTC)), 0);
    assert_eq!((v.resets_in_secs, v.window_secs), (86_400, 28 * 86_400));
    let v = r.view_used(ts(datetime!(2026-03-01 0:00 UTC)), 1);
    assert_eq!((v.remaining, v.resets_in_secs, v.window_secs), (1, 30 * 86_400 + 9 * 3600 + 1800, 31 * 86_400));
}

#[test]
fn weekly_on_a_wednesday_noon() {
    let r = rule(2, QuotaPeriod::Week, "2026-11-25T12:00:00Z");
    assert_rolls_over_at(&r, datetime!(2026-11-23 0:00 UTC), datetime!(2026-11-25 12:00 UTC));
    assert_rolls_over_at(&r, datetime!(2026-11-30 0:00 UTC), datetime!(2026-12-02 12:00 UTC));
    let v = r.view_used(ts(datetime!(2026-11-30 12:00 UTC)), 0);
    assert_eq!((v.resets_in_secs, v.window_secs), (2 * 86_400, 7 * 86_400));
}

#[test]
fn daily_at_six() {
    let r = rule(2, QuotaPeriod::Day, "2026-01-01T06:00:00Z");
    assert_rolls_over_at(&r, datetime!(2026-11-23 0:00 UTC), datetime!(2026-11-23 06:00 UTC));
    assert_rolls_over_at(&r, datetime!(2026-11-23 23:59:59 UTC), datetime!(2026-11-24 06:00 UTC));
    let v = r.view_used(ts(datetime!(2026-11-23 18:00 UTC)), 0);
    assert_eq!((v.resets_in_secs, v.window_secs), (12 * 3600, 86_400));
}

#[test]
fn the_period_cache_follows_the_anchored_calendar() {
    let r = rule(1_000_000, QuotaPeriod::Month, "2026-01-31T09:30:00Z");
    for (at, start, end) in [
        (datetime!(2026-02-28 09:00 UTC), datetime!(2026-01-31 09:30 UTC), datetime!(2026-02-28 09:30 UTC)),
        // The same shifted day as the last one, but past the anchor: the next period.
        (datetime!(2026-02-28 09:30 UTC), datetime!(2026-02-28 09:30 UTC), datetime!(2026-03-31 09:30 UTC)),
        (datetime!(2026-03-31 09:29:59 UTC), datetime!(2026-02-28 09:30 UTC), datetime!(2026-03-31 09:30 UTC)),
        (datetime!(2026-03-01 0:00 UTC), datetime!(2026-02-28 09:30 UTC), datetime!(2026-03-31 09:30 UTC)),
        (datetime!(2026-01-31 09:29:59 UTC), datetime!(2025-12-31 09:30 UTC), datetime!(2026-01-31 09:30 UTC)),
    ] {
        let p = r.period_at(ts(at));
        assert_eq!((p.start, p.end), (ts(start), ts(end)), "{at}");
        assert_eq!(p, r.period_at(ts(at)), "cached answer for {at}");
    }
}

#[test]
fn offset_applies_to_the_anchored_initial_period() {
    let created = ts(datetime!(2026-02-10 8:00 UTC));
    let anchor = QuotaAnchor::parse("2026-01-31T09:30:00Z").unwrap();
    let r = QuotaRule::new(
        Quota::new(10, QuotaPeriod::Month).unwrap().with_offset(4).unwrap(),
        Some(created),
        Some(anchor),
    );
    assert_eq!(r.limit_at(ts(datetime!(2026-02-28 09:29:59 UTC))), 6);
    assert_eq!(r.limit_at(ts(datetime!(2026-02-28 09:30 UTC))), 10);
    assert_eq!(r.limit_at(ts(datetime!(2026-01-31 09:30 UTC))), 6);
    assert_eq!(r.limit_at(ts(datetime!(2026-01-31 09:29:59 UTC))), 10);
}

#[test]
fn days_of_an_anchored_period() {
    let day = |t: OffsetDateTime| i32::try_from(ts(t) / 86_400).unwrap();
    let r = rule(10, QuotaPeriod::Month, "2026-01-31T09:30:00Z");
    let (feb28, mar31) = (day(datetime!(2026-02-28 0:00 UTC)), day(datetime!(2026-03-31 0:00 UTC)));
    assert_eq!(r.days_of_period(feb28), (feb28, mar31));
    assert_eq!(r.days_of_period(mar31 - 1), (feb28, mar31));
    assert_eq!(r.days_of_period(feb28 - 1).1, feb28);
    // Unanchored: UTC calendar months.
    let plain = QuotaRule::new(Quota::new(10, QuotaPeriod::Month).unwrap(), None, None);
    assert_eq!(plain.days_of_period(feb28), (day(datetime!(2026-02-01 0:00 UTC)), day(datetime!(2026-03-01 0:00 UTC))));
}

#[test]
fn an_anchored_count_holds_while_its_period_runs() {
    // Anchored at 06:00, 03:00 UTC on Nov 24 is in the period that started Nov 23 06:00: judged
    // by the UTC calendar alone, its count must not look over.
    let r = rule(5, QuotaPeriod::Day, "2026-01-01T06:00:00Z");
    let s = AtomicU64::new(0);
    let at = ts(datetime!(2026-11-24 03:00 UTC));
    r.acquire(&s, at).unwrap();
    let raw = s.load(Ordering::Acquire);
    assert!(quota_holds_count(raw, at));
    assert!(quota_holds_count(raw, ts(datetime!(2026-11-24 05:59:59 UTC))));
    // Held at most one period longer than needed.
    assert!(!quota_holds_count(raw, ts(datetime!(2026-11-25 0:00 UTC))));
    // The period a snapshot restores it into ends no earlier than the count's.
    let (period, index, used) = decode(raw).unwrap();
    assert_eq!(used, 1);
    assert!(period.start_of_index(index + 1) >= r.current(at).end);
    // A monthly count on March 1, in the period that started Feb 28 09:30.
    let m = rule(5, QuotaPeriod::Month, "2026-01-31T09:30:00Z");
    let s = AtomicU64::new(0);
    let at = ts(datetime!(2026-03-01 0:00 UTC));
    m.acquire(&s, at).unwrap();
    assert!(quota_holds_count(s.load(Ordering::Acquire), ts(datetime!(2026-03-31 09:29:59 UTC))));
}

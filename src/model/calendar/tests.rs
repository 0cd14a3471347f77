use super::*;
use proptest::prelude::*;
use time::macros::datetime;

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn anchored(period: QuotaPeriod, anchor: &str) -> Calendar {
    Calendar::new(period, Some(QuotaAnchor::parse(anchor).unwrap()))
}

/// The period containing `at` is `[start, end)`, and the index round-trips.
fn assert_period(c: &Calendar, at: OffsetDateTime, start: OffsetDateTime, end: OffsetDateTime) {
    let i = c.index_of(ts(at));
    assert_eq!(c.bounds(ts(at)), (ts(start), ts(end)), "period of {at}");
    assert_eq!(c.index_of(ts(start)), i, "start of the period of {at}");
    assert_eq!(c.index_of(ts(end) - 1), i, "last second of the period of {at}");
    assert_eq!(c.index_of(ts(end)), i + 1, "end of the period of {at}");
}

#[test]
fn monthly_on_the_31st_falls_on_the_last_day_of_shorter_months() {
    let c = anchored(QuotaPeriod::Month, "2026-01-31T09:30:00Z");
    let jan31 = datetime!(2026-01-31 09:30 UTC);
    let feb28 = datetime!(2026-02-28 09:30 UTC);
    let mar31 = datetime!(2026-03-31 09:30 UTC);
    let apr30 = datetime!(2026-04-30 09:30 UTC);
    let may31 = datetime!(2026-05-31 09:30 UTC);
    assert_period(&c, datetime!(2026-02-15 0:00 UTC), jan31, feb28);
    assert_period(&c, datetime!(2026-02-28 09:29:59 UTC), jan31, feb28);
    assert_period(&c, feb28, feb28, mar31);
    assert_period(&c, datetime!(2026-03-31 09:29:59 UTC), feb28, mar31);
    assert_period(&c, datetime!(2026-04-15 0:00 UTC), mar31, apr30);
    assert_period(&c, apr30, apr30, may31);
    assert_period(&c, may31, may31, datetime!(2026-06-30 09:30 UTC));
    // A leap year: February 29.
    let leap = datetime!(2028-02-29 09:30 UTC);
    assert_period(&c, datetime!(2028-02-29 09:29:59 UTC), datetime!(2028-01-31 09:30 UTC), leap);
    assert_period(&c, leap, leap, datetime!(2028-03-31 09:30 UTC));
    // Across a year's end.
    let dec31 = datetime!(2026-12-31 09:30 UTC);
    assert_period(&c, datetime!(2026-12-31 09:29:59 UTC), datetime!(2026-11-30 09:30 UTC), dec31);
    assert_period(&c, datetime!(2027-01-01 0:00 UTC), dec31, datetime!(2027-01-31 09:30 UTC));
    // A period is numbered by the calendar month its last second is in.
    assert_eq!(c.index_of(ts(jan31)), QuotaPeriod::Month.index_of(ts(datetime!(2026-02-01 0:00 UTC))));
}

#[test]
fn monthly_on_the_15th() {
    let c = anchored(QuotaPeriod::Month, "2025-07-15T00:00:00Z");
    let (feb15, mar15) = (datetime!(2026-02-15 0:00 UTC), datetime!(2026-03-15 0:00 UTC));
    assert_period(&c, datetime!(2026-03-14 23:59:59 UTC), feb15, mar15);
    assert_period(&c, mar15, mar15, datetime!(2026-04-15 0:00 UTC));
}

#[test]
fn weekly_on_a_wednesday_noon() {
    // 2026-11-25 is a Wednesday.
    let c = anchored(QuotaPeriod::Week, "2026-01-07T12:00:00Z");
    let (wed, next) = (datetime!(2026-11-25 12:00 UTC), datetime!(2026-12-02 12:00 UTC));
    assert_period(&c, wed, wed, next);
    assert_period(&c, datetime!(2026-11-30 0:00 UTC), wed, next);
    assert_period(&c, datetime!(2026-11-25 11:59:59 UTC), datetime!(2026-11-18 12:00 UTC), wed);
    // Across a year's end.
    assert_period(&c, datetime!(2027-01-01 0:00 UTC), datetime!(2026-12-30 12:00 UTC), datetime!(2027-01-06 12:00 UTC));
}

#[test]
fn daily_at_six() {
    let c = anchored(QuotaPeriod::Day, "2020-02-02T06:00:00Z");
    let (six, next) = (datetime!(2026-11-23 06:00 UTC), datetime!(2026-11-24 06:00 UTC));
    assert_period(&c, six, six, next);
    assert_period(&c, datetime!(2026-11-24 05:59:59 UTC), six, next);
    assert_period(&c, datetime!(2026-11-23 05:59:59 UTC), datetime!(2026-11-22 06:00 UTC), six);
    assert_eq!(c.time_of_day(), 6 * 3600);
}

#[test]
fn an_anchor_where_periods_start_anyway_changes_nothing() {
    for (period, anchor) in [
        (QuotaPeriod::Day, "2026-03-04T00:00:00Z"),
        (QuotaPeriod::Week, "2026-11-23T00:00:00Z"), // a Monday
        (QuotaPeriod::Month, "2026-05-01T00:00:00Z"),
    ] {
        let c = anchored(period, anchor);
        for t in [0, -1, 1_769_851_800, 1_769_851_800 + 13 * 86_400 + 7] {
            assert_eq!(c.index_of(t), period.index_of(t), "{period:?} {anchor} {t}");
            assert_eq!(c.start_of_index(c.index_of(t)), period.start_of_index(period.index_of(t)));
        }
    }
}

#[test]
fn extreme_instants_do_not_panic() {
    for period in [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month] {
        for anchor in [None, Some("2026-01-31T23:59:59Z"), Some("0001-01-01T00:00:01Z"), Some("9999-12-31T23:59:59Z")] {
            let c = Calendar::new(period, anchor.map(|a| QuotaAnchor::parse(a).unwrap()));
            for t in [i64::MIN, i64::MAX, -62_135_596_800, 253_402_300_799] {
                let (s, e) = c.bounds(t);
                assert!(s < e, "{period:?} {anchor:?} {t}");
            }
            let _ = (c.start_of_index(i64::MIN), c.start_of_index(i64::MAX));
        }
    }
}

fn any_period() -> impl Strategy<Value = QuotaPeriod> {
    prop_oneof![Just(QuotaPeriod::Day), Just(QuotaPeriod::Week), Just(QuotaPeriod::Month)]
}

/// Instants from 1900 to 2200.
const SPAN: std::ops::Range<i64> = -2_208_988_800..7_258_118_400;

proptest! {
    #[test]
    fn every_instant_is_in_its_period(period in any_period(), anchor in SPAN, t in SPAN) {
        let a = QuotaAnchor::from_unix_secs(anchor).unwrap();
        let c = Calendar::new(period, Some(a));
        let i = c.index_of(t);
        let (s, e) = (c.start_of_index(i), c.start_of_index(i + 1));
        prop_assert!(s <= t && t < e, "{s} <= {t} < {e}");
        prop_assert_eq!(c.index_of(s), i);
        prop_assert_eq!(c.index_of(e), i + 1);
        // Periods start at the anchor's time of day (weekday, day of month or the month's last).
        let (start, at) = (OffsetDateTime::from_unix_timestamp(s).unwrap(), a.utc());
        prop_assert_eq!(start.time(), at.time().replace_nanosecond(0).unwrap());
        let days = (e - s) / DAY;
        match period {
            QuotaPeriod::Day => prop_assert_eq!(e - s, DAY),
            QuotaPeriod::Week => {
                prop_assert_eq!(e - s, WEEK);
                prop_assert_eq!(start.weekday(), at.weekday());
            }
            QuotaPeriod::Month => {
                prop_assert!((28..=31).contains(&days) && (e - s) % DAY == 0);
                prop_assert_eq!(start.day(), at.day().min(last_day(start.year(), start.month())));
            }
        }
        // Judged by its kind alone, a period is never over before its end and at most one
        // period late.
        prop_assert!(period.index_of(t) <= i && i <= period.index_of(t) + 1);
        prop_assert!(c.start_of_index(i + 1) <= period.start_of_index(i + 1));
    }

    #[test]
    fn unanchored_is_the_calendar(period in any_period(), t in SPAN, i in -30_000i64..80_000) {
        let c = Calendar::new(period, None);
        prop_assert_eq!(c.index_of(t), period.index_of(t));
        prop_assert_eq!(c.start_of_index(i), period.start_of_index(i));
        prop_assert_eq!(c.time_of_day(), 0);
    }
}

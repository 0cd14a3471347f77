//! Quota period math: which UTC calendar period an instant falls in, and where periods start.
//!
//! A period is named by its index: days since 1970-01-01, ISO weeks since the Monday
//! 1969-12-29, or months since January 1970. Instants are Unix seconds.

use crate::model::QuotaPeriod;
use time::{Date, Month, OffsetDateTime};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday; the ISO week containing it started on Monday 1969-12-29.
const MONDAY_BEFORE_EPOCH: i64 = -3 * DAY;

/// Unix seconds clamped to what calendar math supports (years 1..=9999).
fn clamp(unix: i64) -> i64 {
    unix.clamp(-62_135_596_800, 253_402_300_799)
}

impl QuotaPeriod {
    /// Index of the period that contains the instant `unix` (seconds).
    pub(crate) fn index_of(self, unix: i64) -> i64 {
        let unix = clamp(unix);
        match self {
            QuotaPeriod::Day => unix.div_euclid(DAY),
            QuotaPeriod::Week => (unix - MONDAY_BEFORE_EPOCH).div_euclid(WEEK),
            QuotaPeriod::Month => {
                let date = OffsetDateTime::from_unix_timestamp(unix).map(|t| t.date()).unwrap_or(Date::MIN);
                (i64::from(date.year()) - 1970) * 12 + i64::from(u8::from(date.month())) - 1
            }
        }
    }

    /// Unix second at which period `index` starts.
    pub(crate) fn start_of_index(self, index: i64) -> i64 {
        match self {
            QuotaPeriod::Day => index.saturating_mul(DAY),
            QuotaPeriod::Week => index.saturating_mul(WEEK).saturating_add(MONDAY_BEFORE_EPOCH),
            QuotaPeriod::Month => {
                let year = 1970 + index.div_euclid(12);
                let month = Month::try_from(index.rem_euclid(12) as u8 + 1).unwrap_or(Month::January);
                match i32::try_from(year).ok().and_then(|y| Date::from_calendar_date(y, month, 1).ok()) {
                    Some(date) => date.midnight().assume_utc().unix_timestamp(),
                    None if index < 0 => i64::MIN / 2,
                    None => i64::MAX / 2,
                }
            }
        }
    }

    /// `[start, end)` of the period that contains `unix`, in Unix seconds.
    #[cfg(test)]
    pub(crate) fn bounds(self, unix: i64) -> (i64, i64) {
        let index = self.index_of(unix);
        (self.start_of_index(index), self.start_of_index(index + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ts(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn day_boundaries() {
        let p = QuotaPeriod::Day;
        assert_eq!(
            p.bounds(ts(datetime!(2026-11-23 18:00 UTC))),
            (ts(datetime!(2026-11-23 0:00 UTC)), ts(datetime!(2026-11-24 0:00 UTC)))
        );
        // The last second of a day and the first of the next are in different periods.
        assert_eq!(
            p.index_of(ts(datetime!(2026-11-23 23:59:59 UTC))) + 1,
            p.index_of(ts(datetime!(2026-11-24 0:00 UTC)))
        );
        // Before the epoch.
        assert_eq!(p.bounds(-1), (-DAY, 0));
    }

    #[test]
    fn week_starts_on_monday() {
        let p = QuotaPeriod::Week;
        // 2026-11-23 is a Monday.
        let monday = ts(datetime!(2026-11-23 0:00 UTC));
        assert_eq!(p.bounds(monday), (monday, monday + WEEK));
        assert_eq!(p.bounds(monday - 1), (monday - WEEK, monday));
        // Sunday night is still the previous week.
        assert_eq!(p.bounds(ts(datetime!(2026-11-29 23:59:59 UTC))).0, monday);
        // A week that crosses a year: 2024-12-30 (Mon) .. 2025-01-06 (Mon).
        assert_eq!(
            p.bounds(ts(datetime!(2025-01-01 12:00 UTC))),
            (ts(datetime!(2024-12-30 0:00 UTC)), ts(datetime!(2025-01-06 0:00 UTC)))
        );
        // The epoch itself (a Thursday) is in the week of Monday 1969-12-29.
        assert_eq!(p.bounds(0).0, MONDAY_BEFORE_EPOCH);
    }

    #[test]
    fn month_ends_and_leap_years() {
        let p = QuotaPeriod::Month;
        assert_eq!(
            p.bounds(ts(datetime!(2024-02-29 23:59:59 UTC))),
            (ts(datetime!(2024-02-01 0:00 UTC)), ts(datetime!(2024-03-01 0:00 UTC)))
        );
        assert_eq!(p.bounds(ts(datetime!(2024-03-01 0:00 UTC))).0, ts(datetime!(2024-03-01 0:00 UTC)));
        // 2100 is not a leap year: February has 28 days.
        let (s, e) = p.bounds(ts(datetime!(2100-02-15 0:00 UTC)));
        assert_eq!((e - s) / DAY, 28);
        // 2000 is: 29 days.
        let (s, e) = p.bounds(ts(datetime!(2000-02-15 0:00 UTC)));
        assert_eq!((e - s) / DAY, 29);
        // December rolls into the next year.
        assert_eq!(p.bounds(ts(datetime!(2026-12-31 23:59:59 UTC))).1, ts(datetime!(2027-01-01 0:00 UTC)));
        assert_eq!(p.index_of(0), 0);
        assert_eq!(p.index_of(-1), -1);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for p in [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month] {
            let (s, e) = p.bounds(i64::MAX);
            assert!(s < e);
            let (s, e) = p.bounds(i64::MIN);
            assert!(s < e);
        }
    }
}

//! The periods of one quota: its kind ([`QuotaPeriod`]) and, optionally, the instant they are
//! anchored to ([`QuotaAnchor`]).
//!
//! Unanchored, this is exactly [`QuotaPeriod`]'s UTC calendar math (same indexes). Anchored, the
//! math runs on the shifted time `unix - tod` (`tod`: the anchor's second of the day), in which
//! every period starts at midnight: DAY is the shifted day, WEEK the shifted week starting on the
//! anchor's weekday, MONTH the month whose start (the anchor's day of month, or the last day of a
//! shorter month) is at or before the shifted instant.
//!
//! **Numbering.** An anchored period is numbered by the unanchored period its last second falls
//! in: a monthly period anchored on Jan 31 09:30 (Jan 31 09:30 .. Feb 28 09:30) is February's.
//! So an anchored period's index is never below the unanchored index of any instant in it, and
//! its end is never after the end of the unanchored period of the same index. Code that judges
//! a count by its period kind alone (`quota_holds_count`, snapshot expiries) is therefore never
//! wrong in the unsafe direction: it keeps an anchored count at most one period longer than
//! needed and never drops one whose period still runs. An anchor at midnight (DAY), Monday
//! midnight (WEEK) or the 1st at midnight (MONTH) numbers periods exactly as no anchor does.

use crate::model::{QuotaAnchor, QuotaPeriod};
use time::{Date, Month, OffsetDateTime};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// The Monday 1969-12-29, where week 0 starts (see `period.rs`).
const MONDAY_BEFORE_EPOCH: i64 = -3 * DAY;

/// Unix seconds clamped to what calendar math supports (years 1..=9999).
fn clamp(unix: i64) -> i64 {
    unix.clamp(-62_135_596_800, 253_402_300_799)
}

/// The last day of `month` in `year`.
fn last_day(year: i32, month: Month) -> u8 {
    match month {
        Month::February if time::util::is_leap_year(year) => 29,
        Month::February => 28,
        Month::April | Month::June | Month::September | Month::November => 30,
        _ => 31,
    }
}

/// What of an anchor the math needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    /// Second of the day, `0..DAY`.
    tod: i64,
    /// Days after Monday, `0..7`.
    weekday: i64,
    /// Day of the month, `1..=31`.
    mday: u8,
    /// 1 when periods do not start where unanchored ones do (see the module docs), else 0.
    bump: i64,
}

/// The calendar of one quota: which period an instant falls in, and where periods start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Calendar {
    period: QuotaPeriod,
    anchor: Option<QuotaAnchor>,
    shift: Option<Shift>,
}

impl Calendar {
    /// The periods of kind `period`, anchored to `anchor` (UTC calendar periods if `None`).
    pub(crate) fn new(period: QuotaPeriod, anchor: Option<QuotaAnchor>) -> Self {
        let shift = anchor.map(|a| {
            let t = a.utc();
            let tod = i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second());
            let weekday = i64::from(t.weekday().number_days_from_monday());
            let mday = t.day();
            let moved = match period {
                QuotaPeriod::Day => tod != 0,
                QuotaPeriod::Week => tod != 0 || weekday != 0,
                QuotaPeriod::Month => tod != 0 || mday != 1,
            };
            Shift { tod, weekday, mday, bump: i64::from(moved) }
        });
        Self { period, anchor, shift }
    }

    /// The anchor, if any.
    #[allow(dead_code)] // for the lead's wiring (views, reports)
    pub(crate) fn anchor(&self) -> Option<QuotaAnchor> {
        self.anchor
    }

    /// The second of the day every period starts at (0 without an anchor). Instants minus this
    /// are "shifted time", in which every period starts at midnight.
    pub(crate) fn time_of_day(&self) -> i64 {
        self.shift.map_or(0, |s| s.tod)
    }

    /// Index of the period that contains the instant `unix` (seconds).
    pub(crate) fn index_of(&self, unix: i64) -> i64 {
        let Some(s) = self.shift else { return self.period.index_of(unix) };
        let shifted = clamp(clamp(unix) - s.tod);
        let index = match self.period {
            QuotaPeriod::Day => shifted.div_euclid(DAY),
            QuotaPeriod::Week => (shifted - MONDAY_BEFORE_EPOCH - s.weekday * DAY).div_euclid(WEEK),
            QuotaPeriod::Month => {
                let date = OffsetDateTime::from_unix_timestamp(shifted).map(|t| t.date()).unwrap_or(Date::MIN);
                let month = (i64::from(date.year()) - 1970) * 12 + i64::from(u8::from(date.month())) - 1;
                if date.day() >= s.mday.min(last_day(date.year(), date.month())) {
                    month
                } else {
                    month - 1
                }
            }
        };
        index + s.bump
    }

    /// Unix second at which period `index` starts.
    pub(crate) fn start_of_index(&self, index: i64) -> i64 {
        let Some(s) = self.shift else { return self.period.start_of_index(index) };
        let index = index.saturating_sub(s.bump);
        let midnight = match self.period {
            QuotaPeriod::Day => index.saturating_mul(DAY),
            QuotaPeriod::Week => index.saturating_mul(WEEK).saturating_add(MONDAY_BEFORE_EPOCH + s.weekday * DAY),
            QuotaPeriod::Month => {
                let year = index.div_euclid(12).saturating_add(1970);
                let month = Month::try_from(index.rem_euclid(12) as u8 + 1).unwrap_or(Month::January);
                let date = i32::try_from(year)
                    .ok()
                    .and_then(|y| Date::from_calendar_date(y, month, s.mday.min(last_day(y, month))).ok());
                match date {
                    Some(date) => date.midnight().assume_utc().unix_timestamp(),
                    None if index < 0 => return i64::MIN / 2,
                    None => return i64::MAX / 2,
                }
            }
        };
        midnight.saturating_add(s.tod)
    }

    /// `[start, end)` of the period that contains `unix`, in Unix seconds.
    #[cfg(test)]
    pub(crate) fn bounds(&self, unix: i64) -> (i64, i64) {
        let index = self.index_of(unix);
        (self.start_of_index(index), self.start_of_index(index + 1))
    }
}

#[cfg(test)]
mod tests;

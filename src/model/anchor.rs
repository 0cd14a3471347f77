//! `QuotaAnchor`: the instant a key's or customer's quota periods are anchored to (a billing day).

use crate::error::ConfigError;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The field a refused anchor is reported under.
const FIELD: &str = "quota_anchor";
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the instants an anchor may be.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

/// The UTC instant quota periods are anchored to, for billing cycles that do not start at
/// midnight or on the 1st.
///
/// Periods start at the anchor's time of day (`DAY`), at its weekday and time of day (`WEEK`),
/// at its day of month and time of day (`MONTH`). An anchor on the 29th, 30th or 31st falls on
/// the last day of a shorter month: anchored on the 31st, a monthly period starts on Feb 28 (29
/// in a leap year), on Apr 30, and on the 31st again in May. Only the anchor's phase matters, not
/// its year: periods before the anchor follow the same calendar.
///
/// An anchor is a whole second (a fraction is dropped), between years 1 and 9999. It is written
/// and read as RFC 3339 (`2026-01-31T09:30:00Z`; an offset such as `+02:00` is read and turned
/// into UTC), also by serde.
///
/// ```
/// use tower_usage_plans::QuotaAnchor;
/// let a = QuotaAnchor::parse("2026-01-31T10:30:00+01:00").unwrap();
/// assert_eq!(a.to_string(), "2026-01-31T09:30:00Z");
/// assert_eq!(QuotaAnchor::parse("31 Jan").unwrap_err().field(), "quota_anchor");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaAnchor {
    /// Unix seconds, in `FIRST..=LAST`.
    unix: i64,
}

impl QuotaAnchor {
    /// The anchor from an RFC 3339 date and time (`2026-01-31T09:30:00Z`).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field `quota_anchor` when `text` is not RFC 3339 or is outside
    /// the years 1 to 9999.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let at = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| {
            ConfigError::invalid(FIELD, format!("is not an RFC 3339 date and time like 2026-01-31T09:30:00Z: {e}"))
        })?;
        Self::from_unix_secs(at.unix_timestamp())
    }

    /// The anchor at `at` (to the second).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field `quota_anchor` when `at` is outside the years 1 to 9999.
    pub fn from_system_time(at: SystemTime) -> Result<Self, ConfigError> {
        let unix = match at.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            // Before the epoch: round down to the whole second.
            Err(e) => {
                let before = e.duration();
                let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                if before.subsec_nanos() > 0 {
                    secs.saturating_add(1).saturating_neg()
                } else {
                    secs.saturating_neg()
                }
            }
        };
        Self::from_unix_secs(unix)
    }

    /// The anchor at `unix` seconds since 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field `quota_anchor` when `unix` is outside the years 1 to 9999.
    pub fn from_unix_secs(unix: i64) -> Result<Self, ConfigError> {
        if (FIRST..=LAST).contains(&unix) {
            Ok(Self { unix })
        } else {
            Err(ConfigError::invalid(FIELD, "is outside the years 1 to 9999"))
        }
    }

    /// The anchor in seconds since 1970-01-01T00:00:00Z.
    #[must_use]
    pub fn unix_secs(self) -> i64 {
        self.unix
    }

    /// The anchor as a `SystemTime`.
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_secs(self.unix.unsigned_abs());
        if self.unix >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    /// The anchor as a UTC date and time.
    pub(crate) fn utc(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for QuotaAnchor {
    /// RFC 3339 in UTC, to the second: `2026-01-31T09:30:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds of the years 1 to 9999 (checked when made): always formattable.
        f.write_str(&self.utc().format(&Rfc3339).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for QuotaAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuotaAnchor({self})")
    }
}

impl FromStr for QuotaAnchor {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<SystemTime> for QuotaAnchor {
    type Error = ConfigError;

    fn try_from(at: SystemTime) -> Result<Self, Self::Error> {
        Self::from_system_time(at)
    }
}

impl Serialize for QuotaAnchor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuotaAnchor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = QuotaAnchor;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date and time like 2026-01-31T09:30:00Z")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuotaAnchor, E> {
                QuotaAnchor::parse(v).map_err(|e| E::custom(e.reason()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_rfc3339_in_utc() {
        let a = QuotaAnchor::parse("2026-01-31T09:30:00Z").unwrap();
        assert_eq!(a.unix_secs(), 1_769_851_800);
        assert_eq!(a.to_string(), "2026-01-31T09:30:00Z");
        assert_eq!(format!("{a:?}"), "QuotaAnchor(2026-01-31T09:30:00Z)");
        // An offset is turned into UTC; a fraction of a second is dropped.
        assert_eq!(QuotaAnchor::parse("2026-01-31T07:30:00.75-02:00").unwrap(), a);
        assert_eq!("2026-01-31T09:30:00Z".parse::<QuotaAnchor>().unwrap(), a);
    }

    #[test]
    fn refusals_name_the_field() {
        for bad in ["", "2026-01-31", "2026-02-30T00:00:00Z", "2026-01-31 09:30", "0000-01-01T00:00:00Z"] {
            let e = QuotaAnchor::parse(bad).unwrap_err();
            assert_eq!(e.field(), "quota_anchor", "{bad:?}");
        }
        assert_eq!(QuotaAnchor::from_unix_secs(LAST + 1).unwrap_err().field(), "quota_anchor");
        assert!(QuotaAnchor::from_unix_secs(FIRST).is_ok() && QuotaAnchor::from_unix_secs(LAST).is_ok());
        assert_eq!(QuotaAnchor::from_unix_secs(FIRST).unwrap().to_string(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn system_time_round_trips_to_the_second() {
        let a = QuotaAnchor::parse("2026-01-31T09:30:00Z").unwrap();
        assert_eq!(QuotaAnchor::from_system_time(a.to_system_time()).unwrap(), a);
        let later = a.to_system_time() + Duration::from_millis(999);
        assert_eq!(QuotaAnchor::try_from(later).unwrap(), a);
        // Before the epoch, a fraction rounds down too.
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(QuotaAnchor::from_system_time(before).unwrap().unix_secs(), -2);
        assert_eq!(QuotaAnchor::from_unix_secs(-2).unwrap().to_system_time(), UNIX_EPOCH - Duration::from_secs(2));
    }

    #[test]
    fn serde_is_the_rfc3339_string() {
        let a = QuotaAnchor::parse("2028-02-29T23:59:59Z").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"2028-02-29T23:59:59Z\"");
        assert_eq!(serde_json::from_str::<QuotaAnchor>("\"2028-02-29T23:59:59Z\"").unwrap(), a);
        let e = serde_json::from_str::<QuotaAnchor>("\"yesterday\"").unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
        assert!(serde_json::from_str::<QuotaAnchor>("17").is_err());
    }
}

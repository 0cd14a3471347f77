//! Throttles (token buckets) and quotas: the two kinds of limit a plan sets.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Largest quota limit a counter can hold (2^39 - 1, about 550 billion requests per period; API
/// Gateway's own limit is a 32-bit integer). Counts are signed, so that UpdateUsage can grant
/// more than the limit for the rest of a period.
pub const MAX_QUOTA_LIMIT: u64 = (1 << 39) - 1;

/// A token bucket: holds at most `burst` tokens and refills `rate` tokens per second.
///
/// A flood that starts from a full bucket gets exactly `burst + floor(rate * t)` requests through
/// in `t` seconds.
///
/// ```
/// use tower_usage_plans::Throttle;
/// let t = Throttle::new(50.0, 100).unwrap();
/// assert_eq!(t.burst(), 100);
/// assert!(Throttle::new(0.0, 1).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawThrottle", into = "RawThrottle")]
pub struct Throttle {
    rate: f64,
    burst: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    rate: f64,
    burst: u32,
}

impl TryFrom<RawThrottle> for Throttle {
    type Error = ConfigError;
    fn try_from(raw: RawThrottle) -> Result<Self, ConfigError> {
        Throttle::new(raw.rate, raw.burst)
    }
}

impl From<Throttle> for RawThrottle {
    fn from(t: Throttle) -> Self {
        RawThrottle { rate: t.rate, burst: t.burst }
    }
}

impl Throttle {
    /// A bucket of `burst` tokens refilled at `rate` tokens per second.
    ///
    /// Errors when `rate` is not a finite number in `(0, 1e9]`, when `burst` is 0, or when the
    /// bucket would take longer than about 70 years to refill.
    pub fn new(rate: f64, burst: u32) -> Result<Self, ConfigError> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(ConfigError::invalid("rate", format!("must be a number greater than 0, got {rate}")));
        }
        if rate > 1e9 {
            return Err(ConfigError::invalid("rate", format!("must be at most 1e9 per second, got {rate}")));
        }
        if burst == 0 {
            return Err(ConfigError::invalid("burst", "must be at least 1"));
        }
        let t = Self { rate, burst };
        if t.emission_interval_nanos().checked_mul(u64::from(burst)).is_none_or(|v| v > i64::MAX as u64 / 2) {
            return Err(ConfigError::invalid("rate", format!("{rate} per second is too slow for a burst of {burst}")));
        }
        Ok(t)
    }

    /// Tokens added per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Largest number of tokens the bucket holds.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds between two tokens: `1e9 / rate`, rounded **up** to a whole nanosecond (at
    /// least 1), so a bucket never admits earlier than the exact schedule. Where `1e9 / rate` is
    /// a whole number (rates such as 0.5, 1, 2, 4, 5, 10, 1000) the schedule is exact; otherwise
    /// the k-th refilled token arrives at most k nanoseconds late.
    #[must_use]
    pub fn emission_interval_nanos(&self) -> u64 {
        let exact = 1e9 / self.rate;
        let nearest = exact.round();
        // Absorb floating-point noise around whole numbers (1e9 / 1e3 must give 1e6, not 1e6 + 1).
        let t = if (exact - nearest).abs() <= nearest * 1e-12 { nearest } else { exact.ceil() };
        (t as u64).max(1)
    }
}

/// The calendar period a quota counts over. Periods are UTC calendar periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// From 00:00 UTC to the next 00:00 UTC.
    Day,
    /// ISO week: from Monday 00:00 UTC to the next Monday 00:00 UTC.
    Week,
    /// From the 1st of the month 00:00 UTC to the 1st of the next month.
    Month,
}

/// At most `limit` requests per `period`; `offset` is taken off the limit of the initial period
/// (the period that contains the plan's creation time).
///
/// ```
/// use tower_usage_plans::{Quota, QuotaPeriod};
/// let q = Quota::new(5000, QuotaPeriod::Month).unwrap().with_offset(100).unwrap();
/// assert_eq!(q.limit(), 5000);
/// assert_eq!(q.offset(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawQuota", into = "RawQuota")]
pub struct Quota {
    limit: u64,
    period: QuotaPeriod,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    limit: u64,
    period: QuotaPeriod,
    #[serde(default)]
    offset: u64,
}

impl TryFrom<RawQuota> for Quota {
    type Error = ConfigError;
    fn try_from(raw: RawQuota) -> Result<Self, ConfigError> {
        Quota::new(raw.limit, raw.period)?.with_offset(raw.offset)
    }
}

impl From<Quota> for RawQuota {
    fn from(q: Quota) -> Self {
        RawQuota { limit: q.limit, period: q.period, offset: q.offset }
    }
}

impl Quota {
    /// `limit` requests per `period`. Errors when `limit` is 0 or above [`MAX_QUOTA_LIMIT`].
    pub fn new(limit: u64, period: QuotaPeriod) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::invalid("limit", "must be at least 1"));
        }
        if limit > MAX_QUOTA_LIMIT {
            return Err(ConfigError::invalid("limit", format!("must be at most {MAX_QUOTA_LIMIT}")));
        }
        Ok(Self { limit, period, offset: 0 })
    }

    /// Takes `offset` requests off the initial period. Errors unless `offset < limit`.
    pub fn with_offset(mut self, offset: u64) -> Result<Self, ConfigError> {
        if offset >= self.limit {
            return Err(ConfigError::invalid(
                "offset",
                format!("must be less than the limit ({}), got {offset}", self.limit),
            ));
        }
        self.offset = offset;
        Ok(self)
    }

    /// Requests allowed per period.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period the quota counts over.
    #[must_use]
    pub fn period(&self) -> QuotaPeriod {
        self.period
    }

    /// Requests taken off the initial period's limit.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_validation_names_field() {
        assert_eq!(Throttle::new(-1.0, 5).unwrap_err().field(), "rate");
        assert_eq!(Throttle::new(f64::NAN, 5).unwrap_err().field(), "rate");
        assert_eq!(Throttle::new(1.0, 0).unwrap_err().field(), "burst");
        assert!(Throttle::new(1e-12, u32::MAX).is_err());
        assert_eq!(Throttle::new(1000.0, 1).unwrap().emission_interval_nanos(), 1_000_000);
        assert_eq!(Throttle::new(3.0, 1).unwrap().emission_interval_nanos(), 333_333_334);
        assert_eq!(Throttle::new(7.0, 1).unwrap().emission_interval_nanos(), 142_857_143);
        assert_eq!(Throttle::new(0.5, 1).unwrap().emission_interval_nanos(), 2_000_000_000);
        assert_eq!(Throttle::new(1e9, 1).unwrap().emission_interval_nanos(), 1);
    }

    #[test]
    fn quota_validation() {
        assert_eq!(Quota::new(0, QuotaPeriod::Day).unwrap_err().field(), "limit");
        assert_eq!(Quota::new(10, QuotaPeriod::Day).unwrap().with_offset(10).unwrap_err().field(), "offset");
        assert!(Quota::new(MAX_QUOTA_LIMIT + 1, QuotaPeriod::Day).is_err());
    }

    #[test]
    fn serde_rejects_bad_values_and_unknown_fields() {
        let e = serde_json::from_str::<Throttle>(r#"{"rate":0,"burst":1}"#).unwrap_err();
        assert!(e.to_string().contains("rate"), "{e}");
        assert!(serde_json::from_str::<Throttle>(r#"{"rate":1,"burst":1,"x":1}"#).is_err());
        let q: Quota = serde_json::from_str(r#"{"limit":5,"period":"WEEK"}"#).unwrap();
        assert_eq!((q.limit(), q.period(), q.offset()), (5, QuotaPeriod::Week, 0));
        assert!(serde_json::from_str::<Quota>(r#"{"limit":5,"period":"YEAR"}"#).is_err());
    }
}

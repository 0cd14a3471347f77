//! The columns of schema version 3: a key's own limits (the JSON of `usage_plans_keys.limits`),
//! concurrency caps, billing anchors and customer rows. A leaf: the store's files read and
//! write these through it.

use super::error::SqlStoreError;
use crate::error::ConfigError;
use crate::model::{ApiKey, Customer, Overrides, Quota, QuotaAnchor, QuotaPeriod, Throttle};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::num::NonZeroU32;

/// Columns 0-8 of a customer row `c`, read by [`customer_from_row`].
macro_rules! customer_columns {
    () => {
        "c.id, c.name, c.throttle_rate, c.throttle_burst, c.quota_limit, c.quota_period, c.quota_offset, \
         c.concurrency, c.quota_anchor"
    };
}
pub(super) use customer_columns;

/// The JSON of `usage_plans_keys.limits`: every member optional, unknown members refused.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttle: Option<RawThrottle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<RawQuota>,
    /// Present (even empty): replaces the plan's method throttles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<RawMethod>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrency: Option<i64>,
    /// Unix seconds (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota_anchor: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    rate: f64,
    burst: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    limit: i64,
    period: String,
    #[serde(default)]
    offset: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    method: String,
    rate: f64,
    burst: i64,
}

impl RawThrottle {
    fn of(t: Throttle) -> Self {
        Self { rate: t.rate(), burst: i64::from(t.burst()) }
    }
}

impl RawQuota {
    fn of(q: Quota) -> Self {
        Self { limit: q.limit() as i64, period: period_name(q.period()).to_owned(), offset: q.offset() as i64 }
    }
}

/// `DAY`, `WEEK` or `MONTH`, as the `quota_period` columns hold periods.
pub(super) fn period_name(p: QuotaPeriod) -> &'static str {
    match p {
        QuotaPeriod::Day => "DAY",
        QuotaPeriod::Week => "WEEK",
        QuotaPeriod::Month => "MONTH",
    }
}

/// A throttle from its columns (both or neither set).
pub(super) fn throttle(rate: Option<f64>, burst: Option<i64>) -> Result<Option<Throttle>, ConfigError> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (Some(rate), Some(burst)) => {
            let burst = u32::try_from(burst).map_err(|_| ConfigError::invalid("throttle_burst", "out of range"))?;
            Throttle::new(rate, burst).map(Some).map_err(|e| e.under("throttle"))
        }
        _ => Err(ConfigError::invalid("throttle_rate", "rate and burst must both be set or both null")),
    }
}

/// A quota from its columns (limit and period both or neither set; offset 0 when null).
pub(super) fn quota(
    limit: Option<i64>,
    period: Option<&str>,
    offset: Option<i64>,
) -> Result<Option<Quota>, ConfigError> {
    match (limit, period) {
        (None, None) => Ok(None),
        (Some(limit), Some(period)) => {
            let period = match period {
                "DAY" => QuotaPeriod::Day,
                "WEEK" => QuotaPeriod::Week,
                "MONTH" => QuotaPeriod::Month,
                other => return Err(ConfigError::invalid("quota_period", format!("unknown period {other:?}"))),
            };
            let limit = u64::try_from(limit).map_err(|_| ConfigError::invalid("quota_limit", "negative"))?;
            let offset =
                u64::try_from(offset.unwrap_or(0)).map_err(|_| ConfigError::invalid("quota_offset", "negative"))?;
            Quota::new(limit, period).and_then(|q| q.with_offset(offset)).map(Some).map_err(|e| e.under("quota"))
        }
        _ => Err(ConfigError::invalid("quota_limit", "limit and period must both be set or both null")),
    }
}

/// A concurrency cap from its column: 1 to `u32::MAX`, or NULL for none.
pub(super) fn concurrency(n: Option<i64>) -> Result<Option<NonZeroU32>, ConfigError> {
    // A stored row holds what a write checked: a bad value is a damaged row, said briefly.
    n.map(|n| {
        crate::model::concurrency_cap("concurrency", i128::from(n))
            .map_err(|_| ConfigError::invalid("concurrency", "out of range"))
    })
    .transpose()
}

/// A billing anchor from unix seconds.
pub(super) fn anchor(secs: Option<i64>) -> Result<Option<QuotaAnchor>, ConfigError> {
    secs.map(QuotaAnchor::from_unix_secs).transpose()
}

/// Unix seconds of a billing anchor (whole seconds, as every time of the schema).
pub(super) fn anchor_secs(a: QuotaAnchor) -> i64 {
    a.unix_secs()
}

/// What `usage_plans_keys.limits` holds for `key`: NULL when it has no limits of its own.
pub(super) fn write_limits(key: &ApiKey) -> Option<String> {
    let o = key.overrides()?;
    let raw = RawLimits {
        throttle: o.throttle.map(RawThrottle::of),
        quota: o.quota.map(RawQuota::of),
        methods: o.methods.as_ref().map(|list| {
            list.iter()
                .map(|(k, t)| RawMethod { method: k.to_string(), rate: t.rate(), burst: i64::from(t.burst()) })
                .collect()
        }),
        concurrency: o.concurrency.map(|n| i64::from(n.get())),
        quota_anchor: o.anchor.map(anchor_secs),
    };
    // Plain numbers and strings always serialize.
    Some(serde_json::to_string(&raw).unwrap_or_default())
}

/// The limits of a `limits` column (NULL: none); errors name the member.
pub(super) fn read_limits(column: Option<String>) -> Result<Option<Overrides>, ConfigError> {
    let Some(text) = column else { return Ok(None) };
    let raw: RawLimits = serde_json::from_str(&text)
        .map_err(|e| ConfigError::invalid("", format!("not the JSON of a key's limits: {e}")))?;
    let mut o = Overrides {
        throttle: raw.throttle.map(|t| throttle(Some(t.rate), Some(t.burst))).transpose()?.flatten(),
        quota: match &raw.quota {
            Some(q) => quota(Some(q.limit), Some(&q.period), Some(q.offset))?,
            None => None,
        },
        methods: None,
        concurrency: concurrency(raw.concurrency)?,
        anchor: anchor(raw.quota_anchor)?,
    };
    if let Some(methods) = raw.methods {
        o.methods = Some(Vec::with_capacity(methods.len()));
        for m in methods {
            let t = throttle(Some(m.rate), Some(m.burst)).map_err(|e| e.under(&format!("methods.{:?}", m.method)))?;
            if let Some(t) = t {
                o.push_method(&m.method, t)?;
            }
        }
    }
    Ok(Some(o))
}

/// Checks a key's own method throttles as a plan stage's are checked (no two routes alike).
pub(super) fn check_methods(key: &ApiKey) -> Result<(), ConfigError> {
    match key.method_throttles() {
        Some(list) => crate::engine::check_routes(list.iter().map(|(k, _)| k)).map_err(|e| e.under("methods")),
        None => Ok(()),
    }
}

fn column<'r, T>(row: &'r AnyRow, i: usize) -> Result<T, SqlStoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(i).map_err(|e| SqlStoreError::db(format!("read column {i}"), e))
}

/// The customer of the [`customer_columns!`] starting at column `at`; `None` when the row has
/// none (a left join found no customer).
pub(super) fn customer_from_row(row: &AnyRow, at: usize) -> Result<Option<Customer>, SqlStoreError> {
    let Some(id) = column::<Option<String>>(row, at)? else { return Ok(None) };
    let bad = |e: ConfigError| SqlStoreError::bad_row(format!("usage_plans_customers[{id:?}]"), &e);
    let mut c = Customer::new(id.as_str());
    if let Some(name) = column::<Option<String>>(row, at + 1)? {
        c = c.with_name(name);
    }
    if let Some(t) = throttle(column(row, at + 2)?, column(row, at + 3)?).map_err(bad)? {
        c = c.with_throttle(t);
    }
    let period: Option<String> = column(row, at + 5)?;
    if let Some(q) = quota(column(row, at + 4)?, period.as_deref(), column(row, at + 6)?).map_err(bad)? {
        c = c.with_quota(q);
    }
    if let Some(n) = concurrency(column(row, at + 7)?).map_err(bad)? {
        c = c.with_concurrency(n);
    }
    if let Some(a) = anchor(column(row, at + 8)?).map_err(bad)? {
        c = c.with_quota_anchor(a);
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_keys_limits_round_trip_through_their_json() {
        let at = UNIX_EPOCH + Duration::from_secs(1_769_851_800);
        let key = ApiKey::new("k")
            .with_throttle(Throttle::new(5.0, 2).unwrap())
            .with_quota(Quota::new(100, QuotaPeriod::Month).unwrap().with_offset(3).unwrap())
            .method_throttle("/pets/GET", Throttle::new(1.5, 4).unwrap())
            .unwrap()
            .with_concurrency(NonZeroU32::new(3).unwrap())
            .with_quota_anchor(QuotaAnchor::from_system_time(at).unwrap());
        let json = write_limits(&key).unwrap();
        assert_eq!(
            json,
            r#"{"throttle":{"rate":5.0,"burst":2},"quota":{"limit":100,"period":"MONTH","offset":3},"methods":[{"method":"/pets/GET","rate":1.5,"burst":4}],"concurrency":3,"quota_anchor":1769851800}"#
        );
        let back = read_limits(Some(json)).unwrap().unwrap();
        assert_eq!(Some(&back), key.overrides().map(|o| &**o));
        // An empty own list (no method throttles at all) is kept apart from none.
        let none = ApiKey::new("k").without_method_throttles();
        assert_eq!(write_limits(&none).as_deref(), Some(r#"{"methods":[]}"#));
        assert_eq!(read_limits(Some(r#"{"methods":[]}"#.into())).unwrap().unwrap().methods, Some(vec![]));
        assert_eq!(write_limits(&ApiKey::new("k")), None);
    }

    #[test]
    fn bad_limits_name_the_member() {
        let e = |json: &str| read_limits(Some(json.into())).unwrap_err().to_string();
        assert!(
            e(r#"{"throttle":{"rate":1.0,"burst":0}}"#).starts_with("throttle.burst"),
            "{}",
            e(r#"{"throttle":{"rate":1.0,"burst":0}}"#)
        );
        assert_eq!(e(r#"{"concurrency":0}"#), "concurrency: out of range");
        assert_eq!(e(r#"{"quota":{"limit":1,"period":"YEAR"}}"#), "quota_period: unknown period \"YEAR\"");
        assert!(e(r#"{"speed":1}"#).contains("unknown field"));
    }
}

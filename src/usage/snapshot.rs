//! Snapshots of the counts (quota counts and the ledger), so a restart loses nothing.

use super::backend::Counts;
use super::error::UsageError;
use super::handle::Usage;
use super::report::{date_of_day, day_of_date};
use crate::engine::ledger::Row;
use crate::engine::{decode_quota, encode_quota};
use crate::model::QuotaPeriod;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use time::macros::format_description;
use time::Date;

/// The counts of a layer at one instant: every key's quota count in its current period and
/// every day of the usage ledger. Serializes to JSON (format version 1, documented in
/// `docs/usage.md`); key values never appear in it, only key ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSnapshot {
    version: u32,
    quotas: Vec<QuotaEntry>,
    days: Vec<DayEntry>,
    /// Customers' quota counts (a later addition to version 1: absent in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    customers: Vec<CustomerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CustomerEntry {
    customer: String,
    period: QuotaPeriod,
    /// First day of the (calendar) period the count's tag names.
    period_start: String,
    used: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QuotaEntry {
    key: String,
    plan: String,
    period: QuotaPeriod,
    /// First day of the period the count belongs to.
    period_start: String,
    /// Below 0 after UpdateUsage granted more than the limit.
    used: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DayEntry {
    key: String,
    plan: String,
    date: String,
    used: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    adjust: i64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    reported: u64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u(v: &u64) -> bool {
    *v == 0
}

const VERSION: u32 = 1;

fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
}

impl UsageSnapshot {
    /// Number of quota counts and ledger days held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.quotas.len() + self.days.len() + self.customers.len()
    }

    /// Whether it holds no counts.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn from_counts(counts: Counts) -> Self {
        let quotas = counts
            .quotas
            .into_iter()
            .filter_map(|(key, plan, raw)| {
                let (period, index, used) = decode_quota(raw)?;
                let start = period.start_of_index(index).div_euclid(86_400);
                Some(QuotaEntry {
                    key: key.to_string(),
                    plan: plan.to_string(),
                    period,
                    period_start: format_date(date_of_day(i32::try_from(start).ok()?)),
                    used,
                })
            })
            .collect();
        let days = counts
            .days
            .into_iter()
            .map(|(key, plan, day, r)| DayEntry {
                key: key.to_string(),
                plan: plan.to_string(),
                date: format_date(date_of_day(day)),
                used: r.used,
                adjust: r.adjust,
                reported: r.reported,
            })
            .collect();
        let customers = counts
            .customers
            .into_iter()
            .filter_map(|(id, raw)| {
                let (period, index, used) = decode_quota(raw)?;
                let start = period.start_of_index(index).div_euclid(86_400);
                Some(CustomerEntry {
                    customer: id.to_string(),
                    period,
                    period_start: format_date(date_of_day(i32::try_from(start).ok()?)),
                    used,
                })
            })
            .collect();
        Self { version: VERSION, quotas, days, customers }
    }

    fn into_counts(self) -> Result<Counts, String> {
        if self.version != VERSION {
            return Err(format!("version {} is not supported (this build reads version {VERSION})", self.version));
        }
        let date = |text: &str, what: &str| parse_date(text).ok_or_else(|| format!("{what}: {text:?} is not a date"));
        let mut counts = Counts::default();
        for (i, q) in self.quotas.into_iter().enumerate() {
            let start = date(&q.period_start, &format!("quotas[{i}].period_start"))?;
            let index = q.period.index_of(i64::from(day_of_date(start)) * 86_400);
            counts.quotas.push((Arc::from(q.key), Arc::from(q.plan), encode_quota(q.period, index, q.used)));
        }
        for (i, c) in self.customers.into_iter().enumerate() {
            let start = date(&c.period_start, &format!("customers[{i}].period_start"))?;
            let index = c.period.index_of(i64::from(day_of_date(start)) * 86_400);
            counts.customers.push((Arc::from(c.customer), encode_quota(c.period, index, c.used)));
        }
        for (i, d) in self.days.into_iter().enumerate() {
            let day = day_of_date(date(&d.date, &format!("days[{i}].date"))?);
            let row = Row { used: d.used, adjust: d.adjust, reported: d.reported };
            counts.days.push((Arc::from(d.key), Arc::from(d.plan), day, row));
        }
        Ok(counts)
    }
}

impl Usage {
    /// The counts now: every key's quota count and every day of the usage ledger (within the
    /// retention). With the Redis backend, the whole deployment's (this replica's pending counts
    /// written first, its quota leases given back so that they are not counted as used); other
    /// replicas' unspent leases count as used, and their last second of traffic may be missing.
    ///
    /// ```
    /// use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = r#"
    ///     stage = { api = "petstore", name = "prod" }
    ///     [[plans]]
    ///     id = "free"
    ///     quota = { limit = 100, period = "DAY" }
    ///     stages = [{ api = "petstore", stage = "prod" }]
    /// "#;
    /// let before = UsagePlanLayer::new(InMemoryKeyStore::from_toml_str(config)?).unwrap();
    /// // ... serve; at shutdown:
    /// let snapshot = before.usage().snapshot().await?;
    /// let json = serde_json::to_string(&snapshot)?; // or `save(path)`
    /// // The next process, before serving:
    /// let after = UsagePlanLayer::new(InMemoryKeyStore::from_toml_str(config)?).unwrap();
    /// after.usage().restore(serde_json::from_str(&json)?).await?; // or `load(path)`
    /// assert_eq!(after.usage().snapshot().await?, snapshot);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn snapshot(&self) -> Result<UsageSnapshot, UsageError> {
        Ok(UsageSnapshot::from_counts(self.backend()?.counts().await?))
    }

    /// Adds a snapshot's counts to this layer's (call it at start, before serving: counts of
    /// the same quota period add up). Returns an error, and changes nothing, if the snapshot is
    /// of a format this version cannot read. With the Redis backend the counts are added to the
    /// deployment's in Redis: restore a snapshot once per deployment, not once per replica.
    pub async fn restore(&self, snapshot: UsageSnapshot) -> Result<(), UsageError> {
        let backend = self.backend()?;
        let counts = snapshot.into_counts().map_err(|reason| UsageError::snapshot("(in memory)", reason))?;
        backend.restore(counts).await
    }

    /// Writes a snapshot to `path` with [`write_atomic`](super::write_atomic): a new, uniquely
    /// named file beside it (mode 0600, never a leftover or a link), synced, then renamed over
    /// it, so a crash mid-write leaves the previous snapshot whole. The file is written with
    /// blocking I/O once the counts are read (a snapshot is small).
    pub async fn save(&self, path: impl AsRef<Path>) -> Result<(), UsageError> {
        let snapshot = self.snapshot().await?;
        let path = path.as_ref();
        let io = |source| UsageError::io(path.display().to_string(), source);
        let json = serde_json::to_vec(&snapshot).map_err(|e| io(std::io::Error::other(e)))?;
        super::file::write_atomic(path, &json).map_err(io)?;
        Ok(())
    }

    /// Restores the snapshot at `path` if there is one: `Ok(false)` when the file does not
    /// exist (a first start), an error naming the file when it cannot be read or parsed. The
    /// file is read with blocking I/O.
    pub async fn load(&self, path: impl AsRef<Path>) -> Result<bool, UsageError> {
        let path = path.as_ref();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(UsageError::io(path.display().to_string(), source)),
        };
        let snapshot: UsageSnapshot = serde_json::from_slice(&text)
            .map_err(|e| UsageError::snapshot(path.display().to_string(), e.to_string()))?;
        let backend = self.backend()?;
        let counts =
            snapshot.into_counts().map_err(|reason| UsageError::snapshot(path.display().to_string(), reason))?;
        backend.restore(counts).await?;
        Ok(true)
    }
}

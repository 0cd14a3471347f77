//! Usage per day (GetUsage), the current quota, and UpdateUsage.

use super::backend::DayTotal;
use super::error::UsageError;
use super::handle::Usage;
use crate::engine::ledger::day_of;
use crate::engine::QuotaRule;
use crate::model::{ApiKey, Overrides, UsagePlan};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::Date;

/// Usage of a plan's keys per day, as API Gateway's GetUsage reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageReport {
    /// The plan.
    pub plan_id: String,
    /// First day reported.
    pub start: Date,
    /// Last day reported (inclusive).
    pub end: Date,
    /// Per key id (never a key value), one entry per day from `start` to `end`.
    pub keys: BTreeMap<String, Vec<DayUsage>>,
}

/// One key's usage on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DayUsage {
    /// The day.
    pub date: Date,
    /// Requests forwarded that day.
    pub used: u64,
    /// Quota remaining at the end of that day (now, for today and later days of the current
    /// period); `None` when the plan has no quota.
    pub remaining: Option<u64>,
}

/// A key's quota in the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaUsage {
    /// The limit of this period (after the plan's `offset` in its first period).
    pub limit: u64,
    /// Requests counted in this period, as UpdateUsage left it: `limit - remaining` after an
    /// UpdateUsage (below 0 when it granted more than the limit).
    pub used: i64,
    /// `limit - used`, at least 0.
    pub remaining: u64,
    /// First day of the period.
    pub period_start: Date,
    /// When the period ends and the count starts over.
    pub resets_at: SystemTime,
}

pub(super) fn date_of_day(day: i32) -> Date {
    Date::from_julian_day(day.saturating_add(2_440_588)).unwrap_or(Date::MAX)
}

pub(super) fn day_of_date(date: Date) -> i32 {
    date.to_julian_day() - 2_440_588
}

/// The last day a report covers.
const LAST_DATE: Date = time::macros::date!(9999 - 12 - 31);

/// Longest range one report covers.
const MAX_REPORT_DAYS: i32 = 366;

impl Usage {
    /// Today (UTC) by the layer's clock.
    #[must_use]
    pub fn today(&self) -> Date {
        date_of_day(day_of(self.now().unix_secs))
    }

    /// The plan as it applies to a key with `overrides` (its own quota or billing anchor), or to
    /// every key of the plan; `None` when that has no quota.
    fn plan_rule_for(
        &self,
        plan: &UsagePlan,
        overrides: Option<&Overrides>,
    ) -> Result<Option<Arc<crate::engine::CompiledPlan>>, UsageError> {
        let plan = Arc::new(plan.clone());
        let compiled = self.engine.compile_for(&plan, overrides, None, self.now())?;
        Ok(compiled.quota.is_some().then_some(compiled))
    }

    fn plan_rule(&self, plan: &UsagePlan) -> Result<Option<Arc<crate::engine::CompiledPlan>>, UsageError> {
        self.plan_rule_for(plan, None)
    }

    /// The quota of `key_id` under `plan` in the current period; `None` when the plan has no
    /// quota. For a key with a quota or billing anchor of its own, use [`Usage::key_quota`].
    pub async fn quota(&self, plan: &UsagePlan, key_id: &str) -> Result<Option<QuotaUsage>, UsageError> {
        self.quota_with(plan, key_id, None).await
    }

    /// The quota of `key` under `plan` in the current period, with the key's own quota and
    /// billing anchor if it has them; `None` when neither the key nor the plan has a quota.
    pub async fn key_quota(&self, plan: &UsagePlan, key: &ApiKey) -> Result<Option<QuotaUsage>, UsageError> {
        self.quota_with(plan, key.id(), key.overrides().map(|o| &**o)).await
    }

    async fn quota_with(
        &self,
        plan: &UsagePlan,
        key_id: &str,
        overrides: Option<&Overrides>,
    ) -> Result<Option<QuotaUsage>, UsageError> {
        let backend = self.backend()?;
        let Some(compiled) = self.plan_rule_for(plan, overrides)? else { return Ok(None) };
        let Some(rule) = compiled.quota.as_ref() else { return Ok(None) };
        let unix = self.now().unix_secs;
        Ok(Some(quota_usage(rule, unix, backend.quota_used(key_id, plan.id(), rule, unix).await?)))
    }

    /// Sets the quota `key_id` has left in the current period (API Gateway's UpdateUsage
    /// `replace /remaining`): from the next request on, exactly `remaining` more are admitted in
    /// this period. It may be more than the limit (API Gateway's "temporary extension"): the
    /// next period starts from the plan's limit again. The change is recorded in the ledger, so
    /// earlier days' figures stay right.
    pub async fn set_remaining(
        &self,
        plan: &UsagePlan,
        key_id: &str,
        remaining: u64,
    ) -> Result<QuotaUsage, UsageError> {
        self.set_remaining_with(plan, key_id, None, remaining).await
    }

    /// [`Usage::set_remaining`] for `key`, with its own quota and billing anchor if it has them.
    pub async fn set_key_remaining(
        &self,
        plan: &UsagePlan,
        key: &ApiKey,
        remaining: u64,
    ) -> Result<QuotaUsage, UsageError> {
        self.set_remaining_with(plan, key.id(), key.overrides().map(|o| &**o), remaining).await
    }

    async fn set_remaining_with(
        &self,
        plan: &UsagePlan,
        key_id: &str,
        overrides: Option<&Overrides>,
        remaining: u64,
    ) -> Result<QuotaUsage, UsageError> {
        let backend = self.backend()?;
        let no_quota = || UsageError::no_quota(plan.id());
        let compiled = self.plan_rule_for(plan, overrides)?.ok_or_else(no_quota)?;
        let rule = compiled.quota.as_ref().ok_or_else(no_quota)?;
        let unix = self.now().unix_secs;
        let limit = rule.limit_at(unix);
        let most = limit.saturating_add(crate::model::MAX_QUOTA_LIMIT);
        if remaining > most {
            return Err(UsageError::invalid(
                "remaining",
                format!("{remaining} is more than {most}, the most a counter holds"),
            ));
        }
        // Both below 2^40: no overflow.
        let used = limit as i64 - remaining as i64;
        let key: Arc<str> = key_id.into();
        backend.set_quota_used(&key, plan.id_arc(), rule, unix, used).await?;
        Ok(quota_usage(rule, unix, used))
    }

    /// The ids of the keys with counts or ledger days under `plan` (whether or not they are in
    /// it now), unordered.
    pub async fn keys_with_usage(&self, plan: &UsagePlan) -> Result<Vec<String>, UsageError> {
        Ok(self.backend()?.keys_of_plan(plan.id()).await?.iter().map(|k| k.to_string()).collect())
    }

    /// Usage per day from `start` to `end` (inclusive, UTC days) of `plan`: every key in `keys`
    /// and every key with counts under the plan ([`Usage::keys_with_usage`]), the same set the
    /// admin API's GetUsage reports, with zeros on days a key forwarded nothing. Each day is
    /// `[used, remaining]` as API Gateway's GetUsage defines it: requests forwarded that day, and
    /// quota left at the end of that day in its period. Days before the retention read as unused.
    pub async fn report(
        &self,
        plan: &UsagePlan,
        keys: &[&str],
        start: Date,
        end: Date,
    ) -> Result<UsageReport, UsageError> {
        let mut all: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        all.extend(self.keys_with_usage(plan).await?);
        all.sort_unstable();
        all.dedup();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.report_keys(plan, &all, start, end).await
    }

    /// Like [`Usage::report`], for exactly the keys in `keys`. A key with a quota or billing
    /// anchor of its own is reported under the plan's: use [`Usage::report_api_keys`] for those.
    pub async fn report_keys(
        &self,
        plan: &UsagePlan,
        keys: &[&str],
        start: Date,
        end: Date,
    ) -> Result<UsageReport, UsageError> {
        let keys: Vec<(&str, Option<&Overrides>)> = keys.iter().map(|k| (*k, None)).collect();
        self.report_with(plan, &keys, start, end).await
    }

    /// Like [`Usage::report_keys`], for these key records: each key's `remaining` follows its own
    /// quota and billing anchor when it has them.
    pub async fn report_api_keys(
        &self,
        plan: &UsagePlan,
        keys: &[&ApiKey],
        start: Date,
        end: Date,
    ) -> Result<UsageReport, UsageError> {
        let keys: Vec<(&str, Option<&Overrides>)> =
            keys.iter().map(|k| (k.id(), k.overrides().map(|o| &**o))).collect();
        self.report_with(plan, &keys, start, end).await
    }

    async fn report_with(
        &self,
        plan: &UsagePlan,
        keys: &[(&str, Option<&Overrides>)],
        start: Date,
        end: Date,
    ) -> Result<UsageReport, UsageError> {
        let backend = self.backend()?;
        let (first, last) = (day_of_date(start), day_of_date(end));
        if last < first {
            return Err(UsageError::invalid("endDate", "is before startDate"));
        }
        if first < 0 || last > day_of_date(LAST_DATE) {
            return Err(UsageError::invalid("startDate", "dates go from 1970-01-01 to 9999-12-31"));
        }
        if last - first >= MAX_REPORT_DAYS {
            return Err(UsageError::invalid("endDate", format!("a report covers at most {MAX_REPORT_DAYS} days")));
        }
        let shared = self.plan_rule(plan)?;
        let unix = self.now().unix_secs;
        let today = day_of(unix);
        let mut out = BTreeMap::new();
        for (key, overrides) in keys {
            let own = match overrides {
                Some(o) => self.plan_rule_for(plan, Some(o))?,
                None => None,
            };
            let compiled = if overrides.is_some() { own.as_ref() } else { shared.as_ref() };
            let rule = compiled.and_then(|c| c.quota.as_ref());
            let from = rule.map_or(first, |r| r.days_of_period(first).0.min(first));
            let totals = backend.days(key, plan.id(), from, last.max(today)).await?;
            let by_day: BTreeMap<i32, DayTotal> = totals.into_iter().map(|t| (t.day, t)).collect();
            let now_used = match rule {
                Some(r) => Some(backend.quota_used(key, plan.id(), r, unix).await?),
                None => None,
            };
            let days = (first..=last)
                .map(|day| DayUsage {
                    date: date_of_day(day),
                    used: by_day.get(&day).map_or(0, |t| t.used),
                    remaining: rule.zip(now_used).map(|(r, used)| remaining_on(r, &by_day, day, today, unix, used)),
                })
                .collect();
            out.insert((*key).to_owned(), days);
        }
        Ok(UsageReport { plan_id: plan.id().to_owned(), start, end, keys: out })
    }
}

pub(super) fn quota_usage(rule: &QuotaRule, unix: i64, used: i64) -> QuotaUsage {
    let limit = rule.limit_at(unix);
    let (start, _) = rule.days_of_period(day_of(unix));
    let end = rule.current(unix).end;
    QuotaUsage {
        limit,
        used,
        remaining: left(limit, used),
        period_start: date_of_day(start),
        resets_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(end).unwrap_or(0)),
    }
}

/// `limit - used`, at least 0.
fn left(limit: u64, used: i64) -> u64 {
    u64::try_from(i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(used)).unwrap_or(0)
}

/// Quota left at the end of `day`. In the current period it is read back from the live count
/// (`used_now`), so changes by UpdateUsage and counts from before the retention are right: what
/// is left now, plus what was used or taken by UpdateUsage after `day`. In a past period it is
/// the limit less what the ledger holds for that period up to `day`.
fn remaining_on(
    rule: &QuotaRule,
    by_day: &BTreeMap<i32, DayTotal>,
    day: i32,
    today: i32,
    unix: i64,
    used_now: i64,
) -> u64 {
    let counted = |from: i32, to: i32| -> i64 {
        if from > to {
            return 0;
        }
        by_day.range(from..=to).map(|(_, t)| i64::try_from(t.used).unwrap_or(i64::MAX).saturating_add(t.adjust)).sum()
    };
    let (start, end) = rule.days_of_period(day);
    let limit = rule.limit_on_day(day);
    if (start..end).contains(&today) {
        let now = left(rule.limit_at(unix), used_now);
        if day >= today {
            return now;
        }
        return u64::try_from(i64::try_from(now).unwrap_or(i64::MAX).saturating_add(counted(day + 1, today)))
            .unwrap_or(0);
    }
    if start > today {
        return limit;
    }
    left(limit, counted(start, day))
}

//! Reading: the raw file checked field by field into a [`Config`]; errors name the field.

use super::check::nonempty;
use super::raw::{Methods, RawFile, RawQuota, RawThrottle, RawTime};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::plan::{too_many_in_all, too_many_methods};
use crate::model::UsagePlan;
use crate::model::{ApiKey, Config, Customer, KeySecret, MethodKey, PlanStage, Quota, QuotaAnchor, Stage, Throttle};
use crate::model::{MAX_METHODS_PER_STAGE, MAX_METHOD_THROTTLES};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl RawTime {
    fn parse(&self, field: &str) -> Result<SystemTime, ConfigError> {
        let text = match self {
            RawTime::Text(s) => s.clone(),
            RawTime::Toml(d) => d.to_string(),
        };
        let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).map_err(|e| {
            ConfigError::invalid(field, format!("{text:?} is not an RFC 3339 date-time with an offset ({e})"))
        })?;
        let (secs, nanos) = (t.unix_timestamp(), t.nanosecond());
        let offset = Duration::new(secs.unsigned_abs(), 0);
        let at = if secs >= 0 { UNIX_EPOCH.checked_add(offset) } else { UNIX_EPOCH.checked_sub(offset) };
        at.and_then(|at| at.checked_add(Duration::from_nanos(u64::from(nanos)))).ok_or_else(|| {
            ConfigError::invalid(field, format!("{text:?} is out of the range this system can represent"))
        })
    }
}

/// A concurrency cap: 1 to `u32::MAX`.
fn concurrency(field: &str, n: i64) -> Result<NonZeroU32, ConfigError> {
    crate::model::concurrency_cap(field, i128::from(n))
}

impl RawThrottle {
    fn validate(&self, field: &str) -> Result<Throttle, ConfigError> {
        let burst = u32::try_from(self.burst).map_err(|_| {
            ConfigError::invalid(
                "burst",
                if self.burst < 1 { "must be at least 1".to_owned() } else { format!("must be at most {}", u32::MAX) },
            )
        });
        burst.and_then(|b| Throttle::new(self.rate, b)).map_err(|e| e.under(field))
    }
}

impl RawQuota {
    fn validate(&self, field: &str) -> Result<Quota, ConfigError> {
        let limit = u64::try_from(self.limit).map_err(|_| ConfigError::invalid("limit", "must be at least 1"));
        let offset = u64::try_from(self.offset).map_err(|_| ConfigError::invalid("offset", "must not be negative"));
        limit
            .and_then(|l| Quota::new(l, self.period))
            .and_then(|q| offset.and_then(|o| q.with_offset(o)))
            .map_err(|e| e.under(field))
    }
}

/// Adds the method throttles at `field`, counted against [`MAX_METHODS_PER_STAGE`] and
/// `total` (for [`MAX_METHOD_THROTTLES`]); duplicates found with a set, so `n` cost `O(n log n)`.
fn add_methods(
    field: &str,
    raw: &Methods,
    list: &mut Vec<(MethodKey, Throttle)>,
    total: &mut usize,
) -> Result<(), ConfigError> {
    if raw.0.len() > MAX_METHODS_PER_STAGE {
        return Err(too_many_methods(field, raw.0.len(), "method throttles"));
    }
    *total += raw.0.len();
    if *total > MAX_METHOD_THROTTLES {
        return Err(too_many_in_all(field, *total));
    }
    let mut seen: HashSet<(String, String)> = HashSet::with_capacity(raw.0.len());
    for (key, throttle) in &raw.0 {
        let f = format!("{field}.{key:?}");
        let t = throttle.validate(&f)?;
        let method: MethodKey = key.parse().map_err(|e: ConfigError| ConfigError::new(e.kind(), &f, e.reason()))?;
        if !seen.insert((method.method().to_owned(), method.normalized_path().to_owned())) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                f,
                "the same method (up to parameter names) is listed twice",
            ));
        }
        list.push((method, t));
    }
    Ok(())
}

impl RawFile {
    /// Checks every field and assembles the configuration ([`Config::new`] then the previous
    /// values of rotated keys).
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        nonempty("stage.api", &self.stage.api)?;
        nonempty("stage.name", &self.stage.name)?;
        let mut stage = Stage::new(self.stage.api, self.stage.name);
        if let Some(t) = &self.stage.throttle {
            stage = stage.with_throttle(t.validate("stage.throttle")?);
        }
        let mut total = 0;
        add_methods("stage.methods", &self.stage.methods, stage.methods_mut(), &mut total)?;
        let public = &self.stage.public_methods;
        if public.len() > MAX_METHODS_PER_STAGE {
            return Err(too_many_methods("stage.public_methods", public.len(), "public methods"));
        }
        for (i, m) in public.iter().enumerate() {
            let key: MethodKey = m.parse().map_err(|e: ConfigError| {
                ConfigError::new(e.kind(), format!("stage.public_methods[{i}]"), e.reason())
            })?;
            stage.public_methods_mut().push(key);
        }
        // The routes of the stage's methods are checked together once, by `Config::new`.
        if let Some(t) = self.account.as_ref().and_then(|a| a.throttle.as_ref()) {
            stage = stage.account_throttle(t.validate("account.throttle")?);
        }

        let mut plans = Vec::with_capacity(self.plans.len());
        for (i, raw) in self.plans.into_iter().enumerate() {
            let f = format!("plans[{i}]");
            nonempty(&format!("{f}.id"), &raw.id)?;
            let mut plan = UsagePlan::new(raw.id.as_str()).with_name(raw.name.unwrap_or(raw.id));
            if let Some(d) = raw.description {
                plan = plan.with_description(d);
            }
            if let Some(code) = raw.product_code {
                plan = plan.with_product_code(code);
            }
            for (name, value) in raw.tags {
                plan = plan.tag(name, value);
            }
            if let Some(t) = &raw.throttle {
                plan = plan.with_throttle(t.validate(&format!("{f}.throttle"))?);
            }
            if let Some(q) = &raw.quota {
                plan = plan.with_quota(q.validate(&format!("{f}.quota"))?);
            }
            if let Some(c) = &raw.created {
                plan = plan.with_created(c.parse(&format!("{f}.created"))?);
            }
            if let Some(n) = raw.concurrency {
                plan = plan.with_concurrency(concurrency(&format!("{f}.concurrency"), n)?);
            }
            let mut bound: HashSet<(String, String)> = HashSet::with_capacity(raw.stages.len());
            for (j, s) in raw.stages.into_iter().enumerate() {
                let sf = format!("{f}.stages[{j}]");
                nonempty(&format!("{sf}.api"), &s.api)?;
                nonempty(&format!("{sf}.stage"), &s.stage)?;
                if !bound.insert((s.api.clone(), s.stage.clone())) {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Duplicate,
                        sf,
                        format!("stage {}/{} is listed twice", s.api, s.stage),
                    ));
                }
                let mut ps = PlanStage::new(s.api, s.stage);
                add_methods(&format!("{sf}.methods"), &s.methods, ps.methods_mut(), &mut total)?;
                plan = plan.stage(ps);
            }
            plans.push(plan);
        }

        let mut keys = Vec::with_capacity(self.keys.len());
        let mut previous = Vec::new();
        for (i, raw) in self.keys.into_iter().enumerate() {
            let f = format!("keys[{i}]");
            nonempty(&format!("{f}.id"), &raw.id)?;
            let secret = KeySecret::new(raw.value).map_err(|e| e.under(&f))?;
            let mut key =
                ApiKey::new(raw.id.as_str()).with_name(raw.name.unwrap_or(raw.id)).enabled(raw.enabled.unwrap_or(true));
            if let Some(d) = raw.description {
                key = key.with_description(d);
            }
            if let Some(c) = raw.customer_id {
                key = key.with_customer_id(c);
            }
            if let Some(e) = &raw.expires {
                key = key.with_expires(e.parse(&format!("{f}.expires"))?);
            }
            if let Some(c) = &raw.created {
                key = key.with_created(c.parse(&format!("{f}.created"))?);
            }
            if let Some(u) = &raw.last_updated {
                key = key.with_last_updated(u.parse(&format!("{f}.last_updated"))?);
            }
            for (name, value) in raw.tags {
                key = key.tag(name, value);
            }
            for p in raw.plans {
                key = key.plan(p);
            }
            if let Some(t) = &raw.throttle {
                key = key.with_throttle(t.validate(&format!("{f}.throttle"))?);
            }
            if let Some(q) = &raw.quota {
                key = key.with_quota(q.validate(&format!("{f}.quota"))?);
            }
            if let Some(m) = &raw.methods {
                let mut list = Vec::new();
                add_methods(&format!("{f}.methods"), m, &mut list, &mut total)?;
                key = key.without_method_throttles();
                for (k, t) in list {
                    key = key.method_throttle(&k.to_string(), t).map_err(|e| e.under(&f))?;
                }
            }
            if let Some(n) = raw.concurrency {
                key = key.with_concurrency(concurrency(&format!("{f}.concurrency"), n)?);
            }
            if let Some(a) = &raw.quota_anchor {
                let at = a.parse(&format!("{f}.quota_anchor"))?;
                key = key.with_quota_anchor(QuotaAnchor::from_system_time(at).map_err(|e| e.under(&f))?);
            }
            for (j, p) in raw.previous_values.into_iter().enumerate() {
                let pf = format!("{f}.previous_values[{j}]");
                let value = KeySecret::new(p.value).map_err(|e| e.under(&pf))?;
                previous.push((pf.clone(), key.id().to_owned(), value, p.until.parse(&format!("{pf}.until"))?));
            }
            keys.push((secret, key));
        }
        let mut customers = Vec::with_capacity(self.customers.len());
        for (i, raw) in self.customers.into_iter().enumerate() {
            let f = format!("customers[{i}]");
            nonempty(&format!("{f}.id"), &raw.id)?;
            let mut c = Customer::new(raw.id.as_str());
            if let Some(n) = raw.name {
                c = c.with_name(n);
            }
            if let Some(t) = &raw.throttle {
                c = c.with_throttle(t.validate(&format!("{f}.throttle"))?);
            }
            if let Some(q) = &raw.quota {
                c = c.with_quota(q.validate(&format!("{f}.quota"))?);
            }
            if let Some(n) = raw.concurrency {
                c = c.with_concurrency(concurrency(&format!("{f}.concurrency"), n)?);
            }
            if let Some(a) = &raw.quota_anchor {
                let at = a.parse(&format!("{f}.quota_anchor"))?;
                c = c.with_quota_anchor(QuotaAnchor::from_system_time(at).map_err(|e| e.under(&f))?);
            }
            customers.push(c);
        }
        let mut config = Config::new(stage, plans, keys)?.with_customers(customers)?;
        for (field, key_id, value, until) in previous {
            config = config.with_previous_value(&key_id, value, until).map_err(|e| e.under(&field))?;
        }
        Ok(config)
    }
}

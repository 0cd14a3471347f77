//! Reading: the raw file checked field by field into a [`Config`]; errors name the field.

use super::check::nonempty;
use super::raw::{Methods, RawFile, RawQuota, RawThrottle, RawTime};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::plan::push_method;
use crate::model::{ApiKey, Config, KeySecret, MethodKey, PlanStage, Quota, Stage, Throttle, UsagePlan};
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

fn add_methods(field: &str, raw: &Methods, list: &mut Vec<(MethodKey, Throttle)>) -> Result<(), ConfigError> {
    for (key, throttle) in &raw.0 {
        let t = throttle.validate(&format!("{field}.{key:?}"))?;
        push_method(list, key, t).map_err(|e| ConfigError::new(e.kind(), format!("{field}.{key:?}"), e.reason()))?;
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
        add_methods("stage.methods", &self.stage.methods, stage.methods_mut())?;
        for (i, m) in self.stage.public_methods.iter().enumerate() {
            stage = stage
                .public_method(m)
                .map_err(|e| ConfigError::new(e.kind(), format!("stage.public_methods[{i}]"), e.reason()))?;
        }
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
            for (j, s) in raw.stages.into_iter().enumerate() {
                let sf = format!("{f}.stages[{j}]");
                nonempty(&format!("{sf}.api"), &s.api)?;
                nonempty(&format!("{sf}.stage"), &s.stage)?;
                if plan.stage_binding(&s.api, &s.stage).is_some() {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Duplicate,
                        sf,
                        format!("stage {}/{} is listed twice", s.api, s.stage),
                    ));
                }
                let mut ps = PlanStage::new(s.api, s.stage);
                add_methods(&format!("{sf}.methods"), &s.methods, ps.methods_mut())?;
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
            for (j, p) in raw.previous_values.into_iter().enumerate() {
                let pf = format!("{f}.previous_values[{j}]");
                let value = KeySecret::new(p.value).map_err(|e| e.under(&pf))?;
                previous.push((pf.clone(), key.id().to_owned(), value, p.until.parse(&format!("{pf}.until"))?));
            }
            keys.push((secret, key));
        }
        let mut config = Config::new(stage, plans, keys)?;
        for (field, key_id, value, until) in previous {
            config = config.with_previous_value(&key_id, value, until).map_err(|e| e.under(&field))?;
        }
        Ok(config)
    }
}

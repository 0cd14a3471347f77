//! Writing: a [`Config`] back into the raw file structure, then JSON or TOML text that reads back
//! into an equal configuration.

use super::raw::{
    Methods, RawAccount, RawCustomer, RawFile, RawKey, RawPlan, RawPlanStage, RawPreviousValue, RawQuota, RawStage,
    RawThrottle, RawTime,
};
use crate::model::{Config, MethodKey, Quota, Throttle};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// 0000-01-01T00:00:00Z, the earliest instant RFC 3339 can write, in Unix nanoseconds.
const FIRST_NANOS: i128 = -62_167_219_200 * 1_000_000_000;
/// 9999-12-31T23:59:59.999999999Z, the last one.
const LAST_NANOS: i128 = 253_402_300_800 * 1_000_000_000 - 1;

/// `at` in RFC 3339: UTC (`Z`), with as many fraction digits as it needs (none for a whole
/// second, up to nine). An instant outside the years 0000 to 9999 is written as the nearest one
/// inside.
pub(super) fn rfc3339(at: SystemTime) -> String {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos.clamp(FIRST_NANOS, LAST_NANOS))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .expect("every instant of the years 0000 to 9999 has an RFC 3339 form")
}

fn throttle(t: Throttle) -> RawThrottle {
    RawThrottle { rate: t.rate(), burst: i64::from(t.burst()) }
}

fn quota(q: Quota) -> RawQuota {
    let wide = |n: u64| i64::try_from(n).expect("quota limits are at most 2^40");
    RawQuota { limit: wide(q.limit()), period: q.period(), offset: wide(q.offset()) }
}

fn methods(list: &[(MethodKey, Throttle)]) -> Methods {
    Methods(list.iter().map(|(k, t)| (k.to_string(), throttle(*t))).collect())
}

fn time(at: Option<SystemTime>) -> Option<RawTime> {
    at.map(|at| RawTime::Text(rfc3339(at)))
}

impl RawFile {
    /// Everything `config` holds, in the file's structure; rotated keys' old values go under their
    /// key, in the order of [`Config::previous_values`].
    pub(super) fn from_config(config: &Config) -> Self {
        let s = config.stage();
        let stage = RawStage {
            api: s.api().to_owned(),
            name: s.stage_name().to_owned(),
            throttle: s.throttle().map(throttle),
            methods: methods(s.methods()),
            public_methods: s.public_methods().iter().map(MethodKey::to_string).collect(),
        };
        let account = s.account().map(|t| RawAccount { throttle: Some(throttle(t)) });
        let plans = config
            .plans()
            .iter()
            .map(|p| RawPlan {
                id: p.id().to_owned(),
                name: Some(p.name().to_owned()),
                description: p.description().map(str::to_owned),
                throttle: p.throttle().map(throttle),
                quota: p.quota().map(quota),
                created: time(p.created()),
                concurrency: p.concurrency().map(|n| i64::from(n.get())),
                product_code: p.product_code().map(str::to_owned),
                tags: p.tags().clone(),
                stages: p
                    .stages()
                    .iter()
                    .map(|ps| RawPlanStage {
                        api: ps.api().to_owned(),
                        stage: ps.stage_name().to_owned(),
                        methods: methods(ps.methods()),
                    })
                    .collect(),
            })
            .collect();
        let keys = config
            .keys()
            .iter()
            .map(|(secret, k)| RawKey {
                id: k.id().to_owned(),
                name: Some(k.name().to_owned()),
                value: secret.expose().to_owned(),
                description: k.description().map(str::to_owned),
                enabled: Some(k.is_enabled()),
                customer_id: k.customer_id().map(str::to_owned),
                plans: k.plan_ids().iter().map(|p| p.to_string()).collect(),
                expires: time(k.expires()),
                created: time(k.created()),
                last_updated: time(k.last_updated()),
                tags: k.tags().clone(),
                previous_values: config
                    .previous_values()
                    .iter()
                    .filter(|p| p.key_id() == k.id())
                    .map(|p| RawPreviousValue {
                        value: p.value().expose().to_owned(),
                        until: RawTime::Text(rfc3339(p.until())),
                    })
                    .collect(),
                throttle: k.throttle().map(throttle),
                quota: k.quota().map(quota),
                methods: k.method_throttles().map(methods),
                concurrency: k.concurrency().map(|n| i64::from(n.get())),
                quota_anchor: time(k.quota_anchor().map(|a| a.to_system_time())),
            })
            .collect();
        let customers = config
            .customers()
            .iter()
            .map(|c| RawCustomer {
                id: c.id().to_owned(),
                name: c.name().map(str::to_owned),
                throttle: c.throttle().map(throttle),
                quota: c.quota().map(quota),
                concurrency: c.concurrency().map(|n| i64::from(n.get())),
                quota_anchor: time(c.quota_anchor().map(|a| a.to_system_time())),
            })
            .collect();
        RawFile { stage, account, plans, keys, customers }
    }

    /// Pretty-printed JSON.
    pub(super) fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// TOML laid out as a person writes it (see `examples/plans.toml`): `[stage]`, `[account]`,
    /// then `[[plans]]` each followed by its `[[plans.stages]]`, then `[[keys]]`; throttles,
    /// quotas, method maps, tags and previous values as inline tables on one line each.
    pub(super) fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut out = String::new();
        table(&mut out, "[stage]", &self.stage, None)?;
        if let Some(account) = &self.account {
            table(&mut out, "[account]", account, None)?;
        }
        for plan in &self.plans {
            table(&mut out, "[[plans]]", plan, Some("stages"))?;
            for stage in &plan.stages {
                table(&mut out, "[[plans.stages]]", stage, None)?;
            }
        }
        for key in &self.keys {
            table(&mut out, "[[keys]]", key, None)?;
        }
        for customer in &self.customers {
            table(&mut out, "[[customers]]", customer, None)?;
        }
        Ok(out)
    }
}

/// Writes `header` then one `field = <inline value>` line per field of `value` but `skip` (which
/// the caller writes under its own header). Field names are Rust identifiers, hence bare keys.
fn table(out: &mut String, header: &str, value: &impl Serialize, skip: Option<&str>) -> Result<(), toml::ser::Error> {
    let fields = toml::Table::try_from(value)?;
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(header);
    out.push('\n');
    for (name, v) in &fields {
        if skip != Some(name.as_str()) {
            let _ = writeln!(out, "{name} = {v}");
        }
    }
    Ok(())
}

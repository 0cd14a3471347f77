//! The configuration file (TOML or JSON): raw serde structs, validated once into runtime types.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::import::ImportedKey;
use crate::model::plan::push_method;
use crate::model::tags::{check_tags, Tags};
use crate::model::{ApiKey, KeySecret, MethodKey, PlanStage, Quota, QuotaPeriod, Stage, Throttle, UsagePlan};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A validated configuration: the stage a layer guards, the plans, and the keys with their secrets.
///
/// ```
/// use tower_usage_plans::Config;
/// let config = Config::from_toml_str(r#"
///     [stage]
///     api = "petstore"
///     name = "prod"
///
///     [[plans]]
///     id = "free"
///     throttle = { rate = 1.0, burst = 5 }
///     stages = [{ api = "petstore", stage = "prod" }]
///
///     [[keys]]
///     id = "k1"
///     value = "free-0123456789abcdefghij"
///     plans = ["free"]
/// "#).unwrap();
/// assert_eq!(config.plans().len(), 1);
///
/// let err = Config::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"\n[[plans]]\nid = \"p\"\nthrottle = { rate = 0.0, burst = 5 }").unwrap_err();
/// assert_eq!(err.to_string(), "plans[0].throttle.rate: must be a number greater than 0, got 0");
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    stage: Stage,
    plans: Vec<Arc<UsagePlan>>,
    keys: Vec<(KeySecret, ApiKey)>,
    previous: Vec<PreviousValue>,
}

/// A rotated key's old value, accepted until a given time (see
/// [`Config::with_previous_value`]). `Debug` never shows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousValue {
    value: KeySecret,
    key_id: Arc<str>,
    until: SystemTime,
}

impl PreviousValue {
    /// The old value. Do not log it.
    pub fn value(&self) -> &KeySecret {
        &self.value
    }

    /// The key it belongs to.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// From this instant on the old value gets 403.
    #[must_use]
    pub fn until(&self) -> SystemTime {
        self.until
    }
}

impl Config {
    /// Assembles a configuration from parts, with the same checks as a file.
    pub fn new(stage: Stage, plans: Vec<UsagePlan>, keys: Vec<(KeySecret, ApiKey)>) -> Result<Self, ConfigError> {
        let plans: Vec<Arc<UsagePlan>> = plans.into_iter().map(Arc::new).collect();
        stage.check_routes().map_err(|e| e.under("stage"))?;
        for (i, plan) in plans.iter().enumerate() {
            for (j, ps) in plan.stages().iter().enumerate() {
                let own = ps.methods().iter().map(|(k, _)| k);
                let result = if ps.api() == stage.api() && ps.stage_name() == stage.stage_name() {
                    crate::engine::check_routes(
                        own.chain(stage.methods().iter().map(|(k, _)| k)).chain(stage.public_methods()),
                    )
                } else {
                    crate::engine::check_routes(own)
                };
                result
                    .map_err(|e| ConfigError::new(e.kind(), format!("plans[{i}].stages[{j}].methods"), e.reason()))?;
            }
        }
        for (i, plan) in plans.iter().enumerate() {
            check_tags(plan.tags()).map_err(|e| e.under(&format!("plans[{i}]")))?;
        }
        for (i, (_, key)) in keys.iter().enumerate() {
            check_tags(key.tags()).map_err(|e| e.under(&format!("keys[{i}]")))?;
        }
        check_cross_references(&plans, &keys)?;
        Ok(Self { stage, plans, keys, previous: Vec::new() })
    }

    /// Keeps accepting `value`, an old value of the key `key_id`, until `until`: rotation with an
    /// overlap. During it the old and the new value both work and share the key's counters (its
    /// quota is not doubled); from `until` on the old value gets 403.
    ///
    /// In a file: `previous_values = [{ value = "...", until = "2026-12-01T00:00:00Z" }]` on the
    /// key.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_usage_plans::{Config, KeySecret};
    /// let config = Config::from_toml_str(r#"
    ///     [stage]
    ///     api = "petstore"
    ///     name = "prod"
    ///     [[keys]]
    ///     id = "acme"
    ///     value = "acme-new-0123456789abcdefghij"
    /// "#).unwrap();
    /// let old = KeySecret::new("acme-old-0123456789abcdefghij").unwrap();
    /// let day = SystemTime::now() + Duration::from_secs(86_400);
    /// let config = config.with_previous_value("acme", old.clone(), day).unwrap();
    /// assert_eq!(config.previous_values()[0].key_id(), "acme");
    /// let err = config.with_previous_value("nobody", old, day).unwrap_err();
    /// assert_eq!(err.to_string(), r#"key_id: no key has the id "nobody""#);
    /// ```
    pub fn with_previous_value(
        mut self,
        key_id: &str,
        value: KeySecret,
        until: SystemTime,
    ) -> Result<Self, ConfigError> {
        let Some((_, key)) = self.keys.iter().find(|(_, k)| k.id() == key_id) else {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownReference,
                "key_id",
                format!("no key has the id {key_id:?}"),
            ));
        };
        let key_id = Arc::clone(key.id_arc());
        if let Some(i) = self.keys.iter().position(|(s, _)| *s == value) {
            return Err(ConfigError::new(ConfigErrorKind::Duplicate, "value", format!("the same value as keys[{i}]")));
        }
        if let Some(i) = self.previous.iter().position(|p| p.value == value) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                "value",
                format!("the same value as previous value {i}"),
            ));
        }
        self.previous.push(PreviousValue { value, key_id, until });
        Ok(self)
    }

    /// Old values of rotated keys and until when they work.
    #[must_use]
    pub fn previous_values(&self) -> &[PreviousValue] {
        &self.previous
    }

    /// Parses and validates TOML.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| ConfigError::new(ConfigErrorKind::Syntax, "", e.message().trim()))?;
        raw.validate()
    }

    /// Parses and validates JSON (same structure as the TOML form).
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| ConfigError::new(ConfigErrorKind::Syntax, "", e))?;
        raw.validate()
    }

    /// Reads a `.toml` or `.json` file (by extension; anything else is read as TOML).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(ConfigErrorKind::Io, path.display().to_string(), e))?;
        let parsed = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        parsed.map_err(|e| if e.kind() == ConfigErrorKind::Syntax { e.under(&path.display().to_string()) } else { e })
    }

    /// The stage the configuration guards.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The plans.
    #[must_use]
    pub fn plans(&self) -> &[Arc<UsagePlan>] {
        &self.plans
    }

    /// The keys with their secrets.
    pub fn keys(&self) -> &[(KeySecret, ApiKey)] {
        &self.keys
    }

    /// Adds keys read by [`parse_api_keys_csv`](crate::import::parse_api_keys_csv), each under a new
    /// id from [`keys::generate_id`](crate::keys::generate_id), and validates the result as
    /// [`Config::new`] does.
    ///
    /// Errors name the CSV line and column, never the key value: a plan id that no plan has
    /// (`line 3, column UsagePlanIds: no plan has the id "gold"`), two plans of one key on the same
    /// stage, or a value that an existing key (`line 3, column Key: the same value as keys[0]`) or
    /// another imported key already has.
    ///
    /// ```
    /// use tower_usage_plans::{import, Config};
    /// let config = Config::from_toml_str(r#"
    ///     [stage]
    ///     api = "petstore"
    ///     name = "prod"
    ///
    ///     [[plans]]
    ///     id = "c7y23b"
    ///     stages = [{ api = "petstore", stage = "prod" }]
    /// "#).unwrap();
    /// let csv = "Name,Key,UsagePlanIds\nalice,alice-0123456789abcdefghij,c7y23b\nbob,bob-0123456789abcdefghij,gold\n";
    /// let keys = import::parse_api_keys_csv(csv).unwrap();
    /// let err = config.clone().with_imported_keys(keys.clone()).unwrap_err();
    /// assert_eq!(err.to_string(), r#"line 3, column UsagePlanIds: no plan has the id "gold""#);
    ///
    /// let config = config.with_imported_keys(keys.into_iter().take(1).collect()).unwrap();
    /// assert_eq!(config.keys()[0].1.display_name(), "alice");
    /// ```
    pub fn with_imported_keys(self, imported: Vec<ImportedKey>) -> Result<Self, ConfigError> {
        let (stage, plans, mut keys, previous) = self.into_parts();
        let existing = keys.len();
        let mut ids: HashSet<String> = keys.iter().map(|(_, k)| k.id().to_owned()).collect();
        let mut lines = Vec::with_capacity(imported.len());
        for key in imported {
            let id = loop {
                let id = crate::keys::generate_id();
                if ids.insert(id.clone()) {
                    break id;
                }
            };
            lines.push(key.line);
            keys.push(key.into_api_key(id));
        }
        let label =
            |i: usize| if i < existing { format!("keys[{i}]") } else { format!("line {}", lines[i - existing]) };
        let plan_index = index_plans(&plans)?;
        let mut values: HashMap<&str, usize> =
            keys[..existing].iter().enumerate().map(|(i, (s, _))| (s.expose(), i)).collect();
        for (i, (secret, key)) in keys.iter().enumerate().skip(existing) {
            if let Some(first) = values.insert(secret.expose(), i) {
                return Err(ConfigError::new(
                    ConfigErrorKind::Duplicate,
                    format!("{}, column Key", label(i)),
                    format!("the same value as {}", label(first)),
                ));
            }
            check_key_plans(&plans, &plan_index, key)
                .map_err(|(_, e)| e.under(&format!("{}, column UsagePlanIds", label(i))))?;
        }
        let mut config = Config::new(stage, plans.into_iter().map(Arc::unwrap_or_clone).collect(), keys)?;
        for (i, p) in previous.into_iter().enumerate() {
            config = config
                .with_previous_value(&p.key_id, p.value, p.until)
                .map_err(|e| ConfigError::new(e.kind(), format!("previous value {i}"), e.reason()))?;
        }
        Ok(config)
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(self) -> (Stage, Vec<Arc<UsagePlan>>, Vec<(KeySecret, ApiKey)>, Vec<PreviousValue>) {
        (self.stage, self.plans, self.keys, self.previous)
    }
}

fn check_cross_references(plans: &[Arc<UsagePlan>], keys: &[(KeySecret, ApiKey)]) -> Result<(), ConfigError> {
    let plan_index = index_plans(plans)?;
    let mut key_ids: HashMap<&str, usize> = HashMap::new();
    let mut values: HashMap<&str, usize> = HashMap::new();
    for (i, (secret, key)) in keys.iter().enumerate() {
        if let Some(first) = key_ids.insert(key.id(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("keys[{i}].id"),
                format!("{:?} is already the id of keys[{first}]", key.id()),
            ));
        }
        if let Some(first) = values.insert(secret.expose(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("keys[{i}].value"),
                format!("the same value as keys[{first}]"),
            ));
        }
        check_key_plans(plans, &plan_index, key).map_err(|(j, e)| match j {
            Some(j) => e.under(&format!("keys[{i}].plans[{j}]")),
            None => e.under(&format!("keys[{i}].plans")),
        })?;
    }
    Ok(())
}

/// Plan id -> index; refuses duplicate ids.
fn index_plans(plans: &[Arc<UsagePlan>]) -> Result<HashMap<&str, usize>, ConfigError> {
    let mut plan_index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        if let Some(first) = plan_index.insert(p.id(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("plans[{i}].id"),
                format!("{:?} is already the id of plans[{first}]", p.id()),
            ));
        }
    }
    Ok(plan_index)
}

/// Checks that every plan of `key` exists and that no two apply to the same stage. The error has
/// an empty field; with it comes the index of the offending plan id (`None`: the list as a whole).
fn check_key_plans(
    plans: &[Arc<UsagePlan>],
    plan_index: &HashMap<&str, usize>,
    key: &ApiKey,
) -> Result<(), (Option<usize>, ConfigError)> {
    let mut stages: HashMap<(&str, &str), &str> = HashMap::new();
    for (j, plan_id) in key.plan_ids().iter().enumerate() {
        let Some(&p) = plan_index.get(&**plan_id) else {
            let e = ConfigError::new(ConfigErrorKind::UnknownReference, "", format!("no plan has the id {plan_id:?}"));
            return Err((Some(j), e));
        };
        for s in plans[p].stages() {
            if let Some(other) = stages.insert((s.api(), s.stage_name()), plan_id) {
                if other != &**plan_id {
                    let e = ConfigError::new(
                        ConfigErrorKind::Duplicate,
                        "",
                        format!("plans {other:?} and {plan_id:?} both apply to stage {}/{}; a key may belong to at most one plan per stage", s.api(), s.stage_name()),
                    );
                    return Err((None, e));
                }
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    stage: RawStage,
    account: Option<RawAccount>,
    #[serde(default)]
    plans: Vec<RawPlan>,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    api: String,
    name: String,
    throttle: Option<RawThrottle>,
    #[serde(default)]
    methods: BTreeMap<String, RawThrottle>,
    #[serde(default)]
    public_methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    throttle: Option<RawThrottle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    rate: f64,
    burst: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    limit: i64,
    period: QuotaPeriod,
    #[serde(default)]
    offset: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    throttle: Option<RawThrottle>,
    quota: Option<RawQuota>,
    created: Option<RawTime>,
    #[serde(default)]
    stages: Vec<RawPlanStage>,
    product_code: Option<String>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlanStage {
    api: String,
    stage: String,
    #[serde(default)]
    methods: BTreeMap<String, RawThrottle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    name: Option<String>,
    value: String,
    #[serde(default)]
    description: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    plans: Vec<String>,
    customer_id: Option<String>,
    expires: Option<RawTime>,
    #[serde(default)]
    previous_values: Vec<RawPreviousValue>,
    created: Option<RawTime>,
    last_updated: Option<RawTime>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreviousValue {
    value: String,
    until: RawTime,
}

/// RFC 3339 timestamps: a string in JSON and TOML, or a bare TOML datetime.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawTime {
    Text(String),
    Toml(toml::value::Datetime),
}

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

fn nonempty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    Ok(())
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

fn add_methods(
    field: &str,
    raw: &BTreeMap<String, RawThrottle>,
    list: &mut Vec<(MethodKey, Throttle)>,
) -> Result<(), ConfigError> {
    for (key, throttle) in raw {
        let t = throttle.validate(&format!("{field}.{key:?}"))?;
        push_method(list, key, t).map_err(|e| ConfigError::new(e.kind(), format!("{field}.{key:?}"), e.reason()))?;
    }
    Ok(())
}

impl RawFile {
    fn validate(self) -> Result<Config, ConfigError> {
        nonempty("stage.api", &self.stage.api)?;
        nonempty("stage.name", &self.stage.name)?;
        let mut stage = Stage::new(self.stage.api, self.stage.name);
        if let Some(t) = &self.stage.throttle {
            stage = stage.throttle(t.validate("stage.throttle")?);
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
            let mut plan = UsagePlan::new(raw.id.as_str()).name(raw.name.unwrap_or(raw.id));
            if let Some(d) = raw.description {
                plan = plan.description(d);
            }
            if let Some(code) = raw.product_code {
                plan = plan.product_code(code);
            }
            for (name, value) in raw.tags {
                plan = plan.tag(name, value);
            }
            if let Some(t) = &raw.throttle {
                plan = plan.throttle(t.validate(&format!("{f}.throttle"))?);
            }
            if let Some(q) = &raw.quota {
                plan = plan.quota(q.validate(&format!("{f}.quota"))?);
            }
            if let Some(c) = &raw.created {
                plan = plan.created(c.parse(&format!("{f}.created"))?);
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
                ApiKey::new(raw.id.as_str()).name(raw.name.unwrap_or(raw.id)).enabled(raw.enabled.unwrap_or(true));
            if let Some(d) = raw.description {
                key = key.description(d);
            }
            if let Some(c) = raw.customer_id {
                key = key.customer_id(c);
            }
            if let Some(e) = &raw.expires {
                key = key.expires(e.parse(&format!("{f}.expires"))?);
            }
            if let Some(c) = &raw.created {
                key = key.created(c.parse(&format!("{f}.created"))?);
            }
            if let Some(u) = &raw.last_updated {
                key = key.last_updated(u.parse(&format!("{f}.last_updated"))?);
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[stage]\napi = \"petstore\"\nname = \"prod\"\n";

    fn err(extra: &str) -> String {
        Config::from_toml_str(&format!("{BASE}{extra}")).unwrap_err().to_string()
    }

    #[test]
    fn full_example_from_the_issue_parses() {
        let c = Config::from_toml_str(include_str!("../../examples/plans.toml")).unwrap();
        assert_eq!(c.stage().api(), "petstore");
        assert!(!c.plans().is_empty());
        assert!(!c.keys().is_empty());
    }

    #[test]
    fn json_form_has_the_same_structure() {
        let c = Config::from_json_str(
            r#"{"stage":{"api":"a","name":"b","throttle":{"rate":10,"burst":5}},
               "account":{"throttle":{"rate":100,"burst":50}},
               "plans":[{"id":"p","quota":{"limit":10,"period":"DAY"},"created":"2026-11-01T00:00:00Z",
                         "stages":[{"api":"a","stage":"b","methods":{"/pets/GET":{"rate":1,"burst":1}}}]}],
               "keys":[{"id":"k","value":"0123456789abcdefghijk","plans":["p"],"expires":"2027-01-01T00:00:00+01:00"}]}"#,
        )
        .unwrap();
        assert_eq!(c.stage().account().unwrap().burst(), 50);
        assert_eq!(c.plans()[0].stages()[0].methods().len(), 1);
        assert!(c.keys()[0].1.expires_at().is_some());
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let cases = [
            ("[[plans]]\nid = \"p\"\nthrottle = { rate = 1.0, burst = 0 }", "plans[0].throttle.burst: must be at least 1"),
            ("[[plans]]\nid = \"p\"\nquota = { limit = 0, period = \"DAY\" }", "plans[0].quota.limit: must be at least 1"),
            ("[[plans]]\nid = \"p\"\nquota = { limit = 5, period = \"DAY\", offset = 5 }", "plans[0].quota.offset: must be less than the limit (5), got 5"),
            ("[[keys]]\nid = \"k\"\nvalue = \"0123456789abcdefghij\"\nplans = [\"nope\"]", "keys[0].plans[0]: no plan has the id \"nope\""),
            ("[[keys]]\nid = \"k\"\nvalue = \"short\"", "keys[0].value: must be 20 to 128 characters long, got 5"),
            ("[[plans]]\nid = \"p\"\n[[plans.stages]]\napi = \"a\"\nstage = \"b\"\nmethods = { \"/pets/FETCH\" = { rate = 1.0, burst = 1 } }", "plans[0].stages[0].methods.\"/pets/FETCH\""),
            ("[[plans]]\nid = \"p\"\ncreated = \"yesterday\"", "plans[0].created: \"yesterday\" is not an RFC 3339"),
        ];
        for (extra, want) in cases {
            let got = err(extra);
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn conflicting_routes_are_refused_at_load() {
        let e = err("[[plans]]\nid = \"p\"\n[[plans.stages]]\napi = \"petstore\"\nstage = \"prod\"\nmethods = { \"/x/{a}/GET\" = { rate = 1.0, burst = 1 }, \"/x/{b+}/GET\" = { rate = 1.0, burst = 1 } }");
        assert!(e.starts_with("plans[0].stages[0].methods: conflicts"), "{e}");
    }

    #[test]
    fn one_plan_per_stage_per_key() {
        let text = "[[plans]]\nid = \"a\"\nstages = [{ api = \"petstore\", stage = \"prod\" }]\n[[plans]]\nid = \"b\"\nstages = [{ api = \"petstore\", stage = \"prod\" }]\n[[keys]]\nid = \"k\"\nvalue = \"0123456789abcdefghij\"\nplans = [\"a\", \"b\"]";
        let e = Config::from_toml_str(&format!("{BASE}{text}")).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Duplicate);
        assert_eq!(e.field(), "keys[0].plans");
    }

    #[test]
    fn duplicate_values_do_not_leak_the_secret() {
        let text = "[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\n[[keys]]\nid = \"b\"\nvalue = \"0123456789abcdefghij\"";
        let e = err(text);
        assert_eq!(e, "keys[1].value: the same value as keys[0]");
    }

    #[test]
    fn key_descriptions_are_kept() {
        let c = Config::from_toml_str(&format!(
            "{BASE}[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ndescription = \"Acme's CI\"\n[[keys]]\nid = \"b\"\nvalue = \"0123456789abcdefghijk\""
        ))
        .unwrap();
        assert_eq!(c.keys()[0].1.description_text(), Some("Acme's CI"));
        assert_eq!(c.keys()[1].1.description_text(), None);
    }

    #[test]
    fn management_metadata_is_kept() {
        let c = Config::from_toml_str(&format!(
            "{BASE}[[plans]]\nid = \"p\"\ndescription = \"Gold tier\"\nproduct_code = \"prod-1\"\ntags = {{ tier = \"gold\" }}\n\
             [[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ncreated = \"2026-11-01T00:00:00Z\"\n\
             last_updated = \"2026-11-02T00:00:00Z\"\ntags = {{ team = \"billing\" }}"
        ))
        .unwrap();
        let plan = &c.plans()[0];
        assert_eq!((plan.description_text(), plan.product_code_text()), (Some("Gold tier"), Some("prod-1")));
        assert_eq!(plan.tags()["tier"], "gold");
        let key = &c.keys()[0].1;
        assert_eq!(key.created_at(), Some(UNIX_EPOCH + Duration::from_secs(1_793_491_200)));
        assert_eq!(key.last_updated_at(), Some(UNIX_EPOCH + Duration::from_secs(1_793_577_600)));
        assert_eq!(key.tags()["team"], "billing");
        let e = err("[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ntags = { \"aws:x\" = \"1\" }");
        assert_eq!(e, "keys[0].tags.\"aws:x\": tag names starting with \"aws:\" are reserved");
    }

    #[test]
    fn unknown_fields_and_missing_stage_are_refused() {
        assert!(
            Config::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"\nthrotle = { rate = 1.0, burst = 1 }").is_err()
        );
        assert_eq!(Config::from_toml_str("[[plans]]\nid = \"p\"").unwrap_err().kind(), ConfigErrorKind::Syntax);
        assert_eq!(Config::from_path("/nonexistent/plans.toml").unwrap_err().kind(), ConfigErrorKind::Io);
    }

    #[test]
    fn far_dates_are_exact_or_refused() {
        let c = Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = \"9999-12-31T23:59:59.5Z\""))
            .unwrap();
        let at = c.plans()[0].created_at().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(at, Duration::new(253_402_300_799, 500_000_000));
        let c =
            Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = \"1200-01-01T00:00:00Z\"")).unwrap();
        assert!(c.plans()[0].created_at().unwrap() < UNIX_EPOCH);
    }

    #[test]
    fn bare_toml_datetimes_are_accepted() {
        let c = Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = 2026-11-01T00:00:00Z")).unwrap();
        assert_eq!(c.plans()[0].created_at(), Some(UNIX_EPOCH + Duration::from_secs(1_793_491_200)));
    }
}

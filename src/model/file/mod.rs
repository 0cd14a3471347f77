//! The configuration file (TOML or JSON): read into raw serde structs and checked once into
//! runtime types (`read.rs`), written back from them (`write.rs`).
//!
//! - `raw.rs`: the file's structure (serde).
//! - `read.rs`: raw structs to a [`Config`], errors naming the field.
//! - `check.rs`: checks across parts (ids, references, one plan per stage per key).
//! - `write.rs`: a [`Config`] to JSON or TOML text that reads back into an equal one.

mod check;
mod locate;
mod raw;
mod read;
mod write;

use self::check::{check_cross_references, check_key_plans, check_names, index_plans};
use self::raw::RawFile;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::import::ImportedKey;
use crate::model::tags::check_tags;
use crate::model::{ApiKey, Customer, KeySecret, Stage, UsagePlan};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

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
/// assert_eq!(err.to_string(), "plans[0].throttle.rate (line 6, column 21): must be a number greater than 0, got 0");
/// assert_eq!((err.field(), err.line()), ("plans[0].throttle.rate", Some(6)));
/// ```
///
/// Two configurations are equal when every part is (plans, keys and previous values in the same
/// order); [`to_json_string`](Self::to_json_string) and [`to_toml_string`](Self::to_toml_string)
/// write a configuration that reads back into an equal one.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    stage: Stage,
    plans: Vec<Arc<UsagePlan>>,
    keys: Vec<(KeySecret, ApiKey)>,
    previous: Vec<PreviousValue>,
    customers: Vec<Arc<Customer>>,
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
        check_names(&stage, &plans, &keys)?;
        stage.check_routes().map_err(|e| e.under("stage"))?;
        for (i, plan) in plans.iter().enumerate() {
            for (j, ps) in plan.stages().iter().enumerate() {
                if ps.methods().is_empty() {
                    continue; // The stage's own routes are checked above.
                }
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
        for (i, (_, key)) in keys.iter().enumerate() {
            if let Some(own) = key.method_throttles().filter(|m| !m.is_empty()) {
                crate::engine::check_routes(
                    own.iter()
                        .map(|(k, _)| k)
                        .chain(stage.methods().iter().map(|(k, _)| k))
                        .chain(stage.public_methods()),
                )
                .map_err(|e| ConfigError::new(e.kind(), format!("keys[{i}].methods"), e.reason()))?;
            }
        }
        for (i, plan) in plans.iter().enumerate() {
            check_tags(plan.tags()).map_err(|e| e.under(&format!("plans[{i}]")))?;
        }
        for (i, (_, key)) in keys.iter().enumerate() {
            check_tags(key.tags()).map_err(|e| e.under(&format!("keys[{i}]")))?;
        }
        check_cross_references(&plans, &keys)?;
        Ok(Self { stage, plans, keys, previous: Vec::new(), customers: Vec::new() })
    }

    /// Adds customers (`[[customers]]` in a file): limits shared by every key whose
    /// `customer_id` names one. Replaces the customers the configuration had.
    ///
    /// # Errors
    ///
    /// An empty or repeated id, naming `customers[i].id`.
    ///
    /// ```
    /// use tower_usage_plans::{Config, Customer, Quota, QuotaPeriod, Stage};
    /// let acme = Customer::new("acme").with_quota(Quota::new(4, QuotaPeriod::Day).unwrap());
    /// let config = Config::new(Stage::new("petstore", "prod"), vec![], vec![])?.with_customers(vec![acme])?;
    /// assert_eq!(config.customer("acme").unwrap().quota().unwrap().limit(), 4);
    /// let err = config.with_customers(vec![Customer::new("a"), Customer::new("a")]).unwrap_err();
    /// assert_eq!(err.to_string(), r#"customers[1].id: "a" is already the id of customers[0]"#);
    /// # Ok::<(), tower_usage_plans::ConfigError>(())
    /// ```
    pub fn with_customers(mut self, customers: Vec<Customer>) -> Result<Self, ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, c) in customers.iter().enumerate() {
            check::nonempty(&format!("customers[{i}].id"), c.id())?;
            if let Some(first) = seen.insert(c.id(), i) {
                return Err(ConfigError::new(
                    ConfigErrorKind::Duplicate,
                    format!("customers[{i}].id"),
                    format!("{:?} is already the id of customers[{first}]", c.id()),
                ));
            }
        }
        self.customers = customers.into_iter().map(Arc::new).collect();
        Ok(self)
    }

    /// The customers, in file order.
    #[must_use]
    pub fn customers(&self) -> &[Arc<Customer>] {
        &self.customers
    }

    /// Customer `id`, if there is one.
    #[must_use]
    pub fn customer(&self, id: &str) -> Option<&Arc<Customer>> {
        self.customers.iter().find(|c| c.id() == id)
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
        let Some(k) = self.keys.iter().position(|(_, k)| k.id() == key_id) else {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownReference,
                "key_id",
                format!("no key has the id {key_id:?}"),
            ));
        };
        let key_id = Arc::clone(self.keys[k].1.id_arc());
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
        // Kept grouped by key in the order of the keys, as a file holds them (under their key).
        let key_index = |id: &str| self.keys.iter().position(|(_, k)| k.id() == id);
        let at = self.previous.partition_point(|p| key_index(&p.key_id) <= Some(k));
        self.previous.insert(at, PreviousValue { value, key_id, until });
        Ok(self)
    }

    /// Old values of rotated keys and until when they work: grouped by key, in the order of
    /// [`keys`](Self::keys), each key's in the order they were added (as a file lists them).
    #[must_use]
    pub fn previous_values(&self) -> &[PreviousValue] {
        &self.previous
    }

    /// Parses and validates TOML. Errors name the field path and the line and column, e.g.
    /// `plans[0].quota.period (line 9, column 30): unknown period "YEAR": expected DAY, WEEK or
    /// MONTH` ([`ConfigError::line`]).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let place = |field: String, e: toml::de::Error| {
            let error = ConfigError::new(ConfigErrorKind::Syntax, field, e.message().trim());
            let offset = e.span().map(|s| s.start).or_else(|| match error.field() {
                "" => locate::toml_failing_line(text, error.reason()),
                field => locate::in_toml(text, field),
            });
            match offset {
                Some(offset) => place_at(error, text, offset),
                None => error,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| place(String::new(), e))?;
        let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = locate::render(e.path());
            place(field, e.into_inner())
        })?;
        raw.validate().map_err(|e| match locate::in_toml(text, e.field()) {
            Some(offset) => place_at(e, text, offset),
            None => e,
        })
    }

    /// Parses and validates JSON (same structure as the TOML form). Errors name the field path
    /// and the line and column, as [`from_toml_str`](Self::from_toml_str)'s do.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let place = |field: String, e: serde_json::Error| {
            // serde_json's message ends with where it is; the place is kept apart.
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let reason = message.strip_suffix(&suffix).unwrap_or(&message);
            let error = ConfigError::new(ConfigErrorKind::Syntax, field, reason);
            match e.line() {
                0 => error,
                line => {
                    error.at(u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(e.column()).unwrap_or(u32::MAX))
                }
            }
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = locate::render(e.path());
            place(field, e.into_inner())
        })?;
        de.end().map_err(|e| place(String::new(), e))?;
        raw.validate().map_err(|e| match locate::in_json(text, e.field()) {
            Some(offset) => place_at(e, text, offset),
            None => e,
        })
    }

    /// Reads a `.toml` or `.json` file (by extension; anything else is read as TOML).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(ConfigErrorKind::Io, "", e).in_file(&path.display().to_string()))?;
        let parsed = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        parsed.map_err(|e| e.in_file(&path.display().to_string()))
    }

    /// The configuration as pretty-printed JSON in the form [`from_json_str`](Self::from_json_str)
    /// reads: reading it back gives an equal configuration, with every field (stage, account,
    /// plans, keys, old values of rotated keys). Times are written in RFC 3339, UTC; one before
    /// the year 0000 or after 9999 (which no file can hold) is written as the nearest instant in
    /// that range.
    ///
    /// **The output holds the value of every key** (and every old value), as the configuration
    /// file does: store it as carefully as the keys (a file only the app can read), never log it.
    /// `Debug` of a `Config` still never shows a value. To persist the changes made to an
    /// [`InMemoryKeyStore`](crate::InMemoryKeyStore), write
    /// [`store.config()`](crate::InMemoryKeyStore::config)`.to_json_string()`.
    ///
    /// ```
    /// use tower_usage_plans::Config;
    /// let config = Config::from_toml_str(r#"
    ///     [stage]
    ///     api = "petstore"
    ///     name = "prod"
    ///     [[keys]]
    ///     id = "k1"
    ///     value = "k1-0123456789abcdefghij"
    ///     created = "2026-11-01T00:00:00Z"
    /// "#).unwrap();
    /// let json = config.to_json_string();
    /// assert!(json.contains(r#""created": "2026-11-01T00:00:00Z""#));
    /// assert_eq!(Config::from_json_str(&json).unwrap(), config);
    /// ```
    #[must_use]
    pub fn to_json_string(&self) -> String {
        RawFile::from_config(self).to_json().expect("the file's structure has string keys only")
    }

    /// The configuration as TOML in the form [`from_toml_str`](Self::from_toml_str) reads, laid
    /// out as `examples/plans.toml` is (`[stage]`, `[account]`, `[[plans]]` with their
    /// `[[plans.stages]]`, `[[keys]]`; throttles, quotas and tags inline). Everything a
    /// configuration holds can be written in TOML, so this cannot fail; otherwise as
    /// [`to_json_string`](Self::to_json_string), and **the output holds every key value** too.
    ///
    /// ```
    /// use tower_usage_plans::Config;
    /// let config = Config::from_toml_str(r#"
    ///     [stage]
    ///     api = "petstore"
    ///     name = "prod"
    ///     [[plans]]
    ///     id = "free"
    ///     throttle = { rate = 1.0, burst = 5 }
    ///     stages = [{ api = "petstore", stage = "prod" }]
    /// "#).unwrap();
    /// let toml = config.to_toml_string();
    /// assert!(toml.contains("[[plans.stages]]\napi = \"petstore\"\nstage = \"prod\"\n"));
    /// assert!(toml.contains("throttle = { rate = 1.0, burst = 5 }\n"));
    /// assert_eq!(Config::from_toml_str(&toml).unwrap(), config);
    /// ```
    #[must_use]
    pub fn to_toml_string(&self) -> String {
        RawFile::from_config(self).to_toml().expect("the file's structure is expressible in TOML")
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
    /// assert_eq!(config.keys()[0].1.name(), "alice");
    /// ```
    pub fn with_imported_keys(self, imported: Vec<ImportedKey>) -> Result<Self, ConfigError> {
        let customers = self.customers.clone();
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
        config.customers = customers;
        Ok(config)
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(self) -> (Stage, Vec<Arc<UsagePlan>>, Vec<(KeySecret, ApiKey)>, Vec<PreviousValue>) {
        (self.stage, self.plans, self.keys, self.previous)
    }
}

/// `error` placed at byte `offset` of `text`.
fn place_at(error: ConfigError, text: &str, offset: usize) -> ConfigError {
    let (line, column) = locate::line_column(text, offset);
    error.at(line, column)
}

#[cfg(test)]
mod tests;

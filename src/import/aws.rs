//! Importing usage plans and API keys from the JSON the AWS CLI prints, to move off API Gateway
//! in one step.
//!
//! ```text
//! aws apigateway get-usage-plans > plans.json
//! aws apigateway get-api-keys --include-values > keys.json
//! aws apigateway get-usage-plan-keys --usage-plan-id 3x4mpl > plan-3x4mpl-keys.json   # once per plan
//! ```
//!
//! [`AwsImport`] reads the three documents and builds the [`Config`] of the layer guarding one
//! stage. What is kept, and how:
//!
//! - Plans: `id`, `name` (none: the id), `description`, `throttle` (`rateLimit`, `burstLimit`),
//!   `quota` (`limit`, `period`), `apiStages` with their method throttles (keys
//!   `"<resourcePath>/<METHOD>"`, as [`MethodKey`](crate::MethodKey) reads them). The stage a
//!   layer guards is named by API Gateway's API id: `Stage::new("a1b2c3d4e5", "prod")`.
//! - `quota.offset` ("requests subtracted from the limit in the initial time period"): API
//!   Gateway does not export when a plan was created, and the initial period of a plan that is
//!   being migrated is usually long over, so **offsets are dropped** (with a `tracing` warning)
//!   unless [`AwsImport::plans_created`] says when the plans count as created: then each plan
//!   gets that creation time and keeps its offset, which applies to the period containing it.
//! - Keys: `id`, `value`, `name` (none: the id), `description`, `customerId`, `enabled` (absent:
//!   `false`, API Gateway's default; disabled keys are kept disabled), and their plans from the
//!   `get-usage-plan-keys` documents.
//! - Kept: `productCode` and `tags` of plans; `createdDate`, `lastUpdatedDate` (ISO 8601 text
//!   or epoch seconds, both accepted) and `tags` of keys. Dropped: `stageKeys` of keys (API
//!   Gateway's deprecated binding; plans bind keys to stages here) and `name` of plan keys (the
//!   key's own name is kept). Unknown members are ignored (AWS adds members over time), and so
//!   is `position`.
//!
//! Pagination: the CLI fetches every page itself. A document printed with `--no-paginate` or
//! `--max-items` holds one page: pass each one; calling a method again appends.
//!
//! Errors ([`ImportError`]) name the document (after the command that prints it), the item by its
//! id and the field, and never contain a key value:
//!
//! ```
//! use tower_usage_plans::import::aws::AwsImport;
//! use tower_usage_plans::{InMemoryKeyStore, Stage};
//!
//! let plans = r#"{"items": [{"id": "3x4mpl", "name": "Silver",
//!     "apiStages": [{"apiId": "a1b2c3d4e5", "stage": "prod"}],
//!     "throttle": {"burstLimit": 100, "rateLimit": 50.0},
//!     "quota": {"limit": 5000, "offset": 0, "period": "MONTH"}}]}"#;
//! let keys = r#"{"items": [{"id": "k1", "value": "acme-0123456789abcdefghij", "name": "Acme",
//!     "enabled": true, "createdDate": "2024-05-01T10:00:00+00:00", "stageKeys": []}]}"#;
//! let plan_keys = r#"{"items": [{"id": "k1", "type": "API_KEY", "value": "acme-0123456789abcdefghij", "name": "Acme"}]}"#;
//!
//! let config = AwsImport::new()
//!     .usage_plans(plans)?
//!     .api_keys(keys)?
//!     .usage_plan_keys("3x4mpl", plan_keys)?
//!     .into_config(Stage::new("a1b2c3d4e5", "prod"))?;
//! let store = InMemoryKeyStore::from_config(config);
//! assert_eq!(store.get("acme-0123456789abcdefghij").unwrap().plans()[0].id(), "3x4mpl");
//!
//! let err = AwsImport::new().api_keys(r#"{"items": [{"id": "k1", "name": "Acme", "enabled": true}]}"#).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"get-api-keys, key "k1", field value: no value: export the keys with `aws apigateway get-api-keys --include-values`"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{ImportError, ImportErrorKind, MAX_IMPORT_ROWS};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::{ApiKey, Config, KeySecret, Stage, UsagePlan};
use crate::wire::with_offset;
use std::collections::HashMap;
use std::time::SystemTime;

mod json;

pub use json::MAX_JSON_BYTES;
use json::{Item, ParsedPlan};

const PLANS_DOC: &str = "get-usage-plans";
const KEYS_DOC: &str = "get-api-keys";

fn plan_keys_doc(plan_id: &str) -> String {
    format!("get-usage-plan-keys --usage-plan-id {plan_id}")
}

/// Usage plans, API keys and plan memberships read from the AWS CLI's JSON, on the way to a
/// [`Config`]. `Debug` never shows a key value.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AwsImport {
    plans: Vec<ParsedPlan>,
    keys: Vec<(KeySecret, ApiKey)>,
    members: Vec<Member>,
    created: Option<SystemTime>,
}

/// One key of one plan, from `get-usage-plan-keys`.
#[derive(Debug, Clone)]
struct Member {
    plan_id: String,
    key_id: String,
    value: Option<KeySecret>,
}

impl AwsImport {
    /// Nothing imported yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the plans printed by `aws apigateway get-usage-plans`.
    pub fn usage_plans(mut self, json: &str) -> Result<Self, ImportError> {
        for (i, value) in json::items(PLANS_DOC, json)?.iter().enumerate() {
            let item = Item::new(PLANS_DOC, i, value, "plan")?;
            let parsed = item.usage_plan()?;
            if self.plans.iter().any(|p| p.plan.id() == parsed.plan.id()) {
                let reason = "a plan with this id was already imported (was a page passed twice?)";
                return Err(item.err(ImportErrorKind::Duplicate, "id", reason));
            }
            self.plans.push(parsed);
        }
        Ok(self)
    }

    /// Adds the keys printed by `aws apigateway get-api-keys --include-values` (without
    /// `--include-values` the keys have no value, which is an error).
    pub fn api_keys(mut self, json: &str) -> Result<Self, ImportError> {
        for (i, value) in json::items(KEYS_DOC, json)?.iter().enumerate() {
            let item = Item::new(KEYS_DOC, i, value, "key")?;
            let (secret, key) = item.api_key()?;
            if self.keys.iter().any(|(_, k)| k.id() == key.id()) {
                let reason = "a key with this id was already imported (was a page passed twice?)";
                return Err(item.err(ImportErrorKind::Duplicate, "id", reason));
            }
            if let Some((_, other)) = self.keys.iter().find(|(s, _)| *s == secret) {
                let reason = format!("the same value as key {:?}", other.id());
                return Err(item.err(ImportErrorKind::Duplicate, "value", reason));
            }
            if self.keys.len() == MAX_IMPORT_ROWS {
                let reason = format!("more than {MAX_IMPORT_ROWS} keys");
                return Err(item.err(ImportErrorKind::TooManyRows, "", reason));
            }
            self.keys.push((secret, key));
        }
        Ok(self)
    }

    /// Adds the keys of plan `usage_plan_id`, printed by `aws apigateway get-usage-plan-keys
    /// --usage-plan-id <usage_plan_id>`. Plan and key ids are checked against the other
    /// documents by [`into_config`](Self::into_config), so the documents may come in any order.
    pub fn usage_plan_keys(mut self, usage_plan_id: &str, json: &str) -> Result<Self, ImportError> {
        let doc = plan_keys_doc(usage_plan_id);
        for (i, value) in json::items(&doc, json)?.iter().enumerate() {
            let (key_id, value) = Item::new(&doc, i, value, "key")?.usage_plan_key()?;
            if !self.members.iter().any(|m| m.plan_id == usage_plan_id && m.key_id == key_id) {
                self.members.push(Member { plan_id: usage_plan_id.to_owned(), key_id, value });
            }
        }
        Ok(self)
    }

    /// The imported plans count as created at `at`: they keep their quota offsets, which apply
    /// to the quota period containing `at` (without this, offsets are dropped; see the
    /// [module documentation](self)).
    pub fn plans_created(mut self, at: SystemTime) -> Self {
        self.created = Some(at);
        self
    }

    /// The configuration for the layer guarding `stage` (usually one of the plans' `apiStages`:
    /// its API is named by API Gateway's API id). Every plan and key is kept, including those of
    /// other stages.
    ///
    /// Errors when no plan applies to `stage`, when a `get-usage-plan-keys` document names a plan
    /// or a key that the other documents do not have (or a key with another value), when a key
    /// belongs to two plans of one stage, or when a kept quota offset is not below its limit.
    pub fn into_config(self, stage: Stage) -> Result<Config, ImportError> {
        let plans = self.plans_for_config()?;
        if !plans.iter().any(|p| p.stage_binding(stage.api(), stage.stage_name()).is_some()) {
            let mut known: Vec<String> =
                plans.iter().flat_map(|p| p.stages()).map(|s| format!("{}/{}", s.api(), s.stage_name())).collect();
            known.sort();
            known.dedup();
            let reason = format!(
                "no usage plan applies to stage {}/{} (the plans apply to: {}); name the stage's API by its API Gateway id",
                stage.api(),
                stage.stage_name(),
                if known.is_empty() { "no stage".to_owned() } else { known.join(", ") }
            );
            return Err(ImportError::in_document(
                ImportErrorKind::UnknownReference,
                Some(PLANS_DOC),
                None,
                None,
                reason,
            ));
        }
        let plan_index: HashMap<&str, &UsagePlan> = plans.iter().map(|p| (p.id(), p)).collect();
        let mut keys = self.keys;
        let key_index: HashMap<String, usize> =
            keys.iter().enumerate().map(|(i, (_, k))| (k.id().to_owned(), i)).collect();
        // Per key: (api, stage) -> the plan that applies there.
        let mut bound: HashMap<usize, HashMap<(String, String), String>> = HashMap::new();
        for m in &self.members {
            let doc = plan_keys_doc(&m.plan_id);
            let fail = |kind, field: Option<&str>, reason: String| {
                let item = Some(format!("key {:?}", m.key_id));
                ImportError::in_document(kind, Some(&doc), item, field.map(str::to_owned), reason)
            };
            let Some(plan) = plan_index.get(m.plan_id.as_str()) else {
                let reason = format!("get-usage-plans has no plan with the id {:?}", m.plan_id);
                return Err(ImportError::in_document(
                    ImportErrorKind::UnknownReference,
                    Some(&doc),
                    None,
                    None,
                    reason,
                ));
            };
            let Some(&k) = key_index.get(&m.key_id) else {
                let reason = "get-api-keys has no key with this id (pass every page of get-api-keys)".to_owned();
                return Err(fail(ImportErrorKind::UnknownReference, Some("id"), reason));
            };
            if m.value.as_ref().is_some_and(|v| *v != keys[k].0) {
                let reason =
                    "not the value get-api-keys has for this key (were the documents exported at different times?)";
                return Err(fail(ImportErrorKind::Invalid, Some("value"), reason.to_owned()));
            }
            let stages = bound.entry(k).or_default();
            for s in plan.stages() {
                let at = (s.api().to_owned(), s.stage_name().to_owned());
                if let Some(other) = stages.insert(at, m.plan_id.clone()) {
                    let reason = format!(
                        "plans {other:?} and {:?} both apply to stage {}/{}; a key may belong to at most one plan per stage (API Gateway refuses this too: were the documents exported at different times?)",
                        m.plan_id,
                        s.api(),
                        s.stage_name()
                    );
                    return Err(fail(ImportErrorKind::Duplicate, None, reason));
                }
            }
            keys[k].1 = keys[k].1.clone().plan(m.plan_id.as_str());
        }
        let ids: Vec<String> = plans.iter().map(|p| p.id().to_owned()).collect();
        Config::new(stage, plans, keys).map_err(|e| config_error(&e, &ids))
    }

    /// The plans as they go into the configuration: with the creation time and the offsets kept,
    /// or with the offsets dropped.
    fn plans_for_config(&self) -> Result<Vec<UsagePlan>, ImportError> {
        let mut out = Vec::with_capacity(self.plans.len());
        for ParsedPlan { plan, offset } in &self.plans {
            let mut plan = plan.clone();
            match (self.created, plan.quota()) {
                (Some(at), quota) => {
                    plan = plan.with_created(at);
                    if let Some(q) = quota {
                        let q = with_offset(q, *offset, "quota").map_err(|e| {
                            let item = Some(format!("plan {:?}", plan.id()));
                            let field = Some(e.path().to_owned());
                            ImportError::in_document(ImportErrorKind::Invalid, Some(PLANS_DOC), item, field, e.reason())
                        })?;
                        plan = plan.with_quota(q);
                    }
                }
                (None, Some(_)) if *offset > 0 => {
                    tracing::warn!(
                        plan = plan.id(),
                        offset,
                        "quota offset dropped: API Gateway does not export when the plan was created (see AwsImport::plans_created)"
                    );
                }
                (None, _) => {}
            }
            out.push(plan);
        }
        Ok(out)
    }
}

/// A refusal of [`Config::new`], named after the AWS documents: `plans[1].stages[0].methods`
/// becomes plan "p2", field `apiStages[0].throttle`.
fn config_error(e: &ConfigError, plan_ids: &[String]) -> ImportError {
    let kind = match e.kind() {
        ConfigErrorKind::Duplicate => ImportErrorKind::Duplicate,
        ConfigErrorKind::UnknownReference => ImportErrorKind::UnknownReference,
        _ => ImportErrorKind::Invalid,
    };
    let plan = e.field().strip_prefix("plans[").and_then(|rest| {
        let (index, rest) = rest.split_once(']')?;
        Some((plan_ids.get(index.parse::<usize>().ok()?)?, rest.trim_start_matches('.')))
    });
    match plan {
        Some((id, field)) => {
            let field = field.replace("stages[", "apiStages[").replace("].methods", "].throttle");
            let field = (!field.is_empty()).then_some(field);
            ImportError::in_document(kind, Some(PLANS_DOC), Some(format!("plan {id:?}")), field, e.reason())
        }
        None => ImportError::in_document(kind, None, None, Some(e.field().to_owned()), e.reason()),
    }
}

#[cfg(test)]
mod tests;

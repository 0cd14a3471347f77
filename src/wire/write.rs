//! Writing the shapes the admin API answers with (restJson1): member names as in the service
//! model, camelCase, absent optional members omitted (never `null`), timestamps as epoch seconds.

use crate::model::{ApiKey, Customer, KeySecret, MethodKey, PlanStage, Quota, Throttle, UsagePlan};
use crate::wire::key::API_KEY_TYPE;
use crate::wire::limits::period_name;
use crate::wire::overrides::anchor_text;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// `ApiKey`. `Debug` never shows the value.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiKeyOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_date: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_updated_date: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
    /// The key's own limits (members beyond API Gateway's), each omitted when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<ThrottleOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaOut>,
    /// Present (even `{}`) when the key's own list replaces its plan's method throttles.
    #[serde(skip_serializing_if = "Option::is_none")]
    method_throttles: Option<BTreeMap<String, ThrottleOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_anchor: Option<String>,
}

/// A method throttle list keyed `"<resourcePath>/<METHOD>"`.
fn methods(list: &[(MethodKey, Throttle)]) -> BTreeMap<String, ThrottleOut> {
    list.iter().map(|(k, t)| (k.to_string(), ThrottleOut::new(*t))).collect()
}

impl<'a> ApiKeyOut<'a> {
    /// The key, with its value only when `value` is given (`includeValue`).
    pub(crate) fn new(key: &'a ApiKey, value: Option<&'a KeySecret>) -> Self {
        Self {
            id: key.id(),
            value: value.map(KeySecret::expose),
            name: key.name(),
            customer_id: key.customer_id(),
            description: key.description(),
            enabled: key.is_enabled(),
            created_date: key.created().map(epoch_seconds),
            last_updated_date: key.last_updated().map(epoch_seconds),
            tags: key.tags(),
            throttle: key.throttle().map(ThrottleOut::new),
            quota: key.quota().map(QuotaOut::new),
            method_throttles: key.method_throttles().map(methods),
            concurrency: key.concurrency().map(|n| n.get()),
            quota_anchor: key.quota_anchor().map(anchor_text),
        }
    }
}

impl fmt::Debug for ApiKeyOut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyOut")
            .field("id", &self.id)
            .field("value", &self.value.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// `UsagePlan`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsagePlanOut<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    api_stages: Vec<ApiStageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<ThrottleOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_code: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
    /// Beyond API Gateway's members: the per-key concurrency cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u32>,
}

impl<'a> UsagePlanOut<'a> {
    /// The plan (its creation time is not shown: the model has no member for it).
    pub(crate) fn new(plan: &'a UsagePlan) -> Self {
        Self {
            id: plan.id(),
            name: plan.name(),
            description: plan.description(),
            api_stages: plan.stages().iter().map(ApiStageOut::new).collect(),
            throttle: plan.throttle().map(ThrottleOut::new),
            quota: plan.quota().map(QuotaOut::new),
            product_code: plan.product_code(),
            tags: plan.tags(),
            concurrency: plan.concurrency().map(|n| n.get()),
        }
    }
}

/// `ApiStage`: its `throttle` map is keyed `"<resourcePath>/<METHOD>"`, as in API Gateway.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiStageOut<'a> {
    api_id: &'a str,
    stage: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    throttle: BTreeMap<String, ThrottleOut>,
}

impl<'a> ApiStageOut<'a> {
    fn new(s: &'a PlanStage) -> Self {
        Self { api_id: s.api(), stage: s.stage_name(), throttle: methods(s.methods()) }
    }
}

/// `ThrottleSettings`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThrottleOut {
    burst_limit: u32,
    rate_limit: f64,
}

impl ThrottleOut {
    fn new(t: Throttle) -> Self {
        Self { burst_limit: t.burst(), rate_limit: t.rate() }
    }
}

/// `QuotaSettings`.
#[derive(Debug, Serialize)]
struct QuotaOut {
    limit: u64,
    offset: u64,
    period: &'static str,
}

impl QuotaOut {
    fn new(q: Quota) -> Self {
        Self { limit: q.limit(), offset: q.offset(), period: period_name(q.period()) }
    }
}

/// `Customer` (not an API Gateway shape): `{"id", "name", "throttle", "quota", "concurrency",
/// "quotaAnchor"}`, unset members omitted.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<ThrottleOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_anchor: Option<String>,
}

impl<'a> CustomerOut<'a> {
    /// The customer.
    pub(crate) fn new(c: &'a Customer) -> Self {
        Self {
            id: c.id(),
            name: c.name(),
            throttle: c.throttle().map(ThrottleOut::new),
            quota: c.quota().map(QuotaOut::new),
            concurrency: c.concurrency().map(|n| n.get()),
            quota_anchor: c.quota_anchor().map(anchor_text),
        }
    }
}

/// `UsagePlanKey`: an API key as a member of a plan (API Gateway shows its value here).
/// `Debug` never shows the value.
#[derive(Serialize)]
pub(crate) struct UsagePlanKeyOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    key_type: &'static str,
    /// Absent when the store keeps only the value's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    name: &'a str,
}

impl<'a> UsagePlanKeyOut<'a> {
    /// `key`, whose value is `value` (if the store keeps it), as a plan's key.
    pub(crate) fn new(key: &'a ApiKey, value: Option<&'a KeySecret>) -> Self {
        Self { id: key.id(), key_type: API_KEY_TYPE, value: value.map(KeySecret::expose), name: key.name() }
    }
}

impl fmt::Debug for UsagePlanKeyOut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsagePlanKeyOut").field("id", &self.id).field("value", &"<redacted>").finish_non_exhaustive()
    }
}

/// A page of a collection: `ApiKeys`, `UsagePlans`, `UsagePlanKeys`. The list's JSON member is
/// `item` (the model's `locationName`).
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    /// The id of the next item, when more follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) position: Option<String>,
    /// This page's items.
    pub(crate) item: Vec<T>,
}

/// `ApiKeyIds`, ImportApiKeys' answer.
#[derive(Debug, Serialize)]
pub(crate) struct ApiKeyIds {
    /// The ids of the keys imported.
    pub(crate) ids: Vec<String>,
    /// Rows skipped with a warning (none: a bad row fails the call).
    pub(crate) warnings: Vec<String>,
}

/// Whole seconds since the epoch (negative before it), restJson1's default timestamp format.
fn epoch_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

//! Usage operations: GetUsage (`GET /usageplans/{usageplanId}/usage`) and UpdateUsage
//! (`PATCH /usageplans/{usageplanId}/keys/{keyId}/usage`), over the layer's usage ledger
//! ([`crate::usage::Usage`], given with [`AdminRouter::usage`](crate::admin::AdminRouter::usage)).
//!
//! GetUsage answers API Gateway's `Usage` shape: `usagePlanId`, `startDate`, `endDate`, `values`
//! (per key id, one `[used, remaining]` pair per day from `startDate` to `endDate`) and `position`
//! when more keys follow (`limit` keys a page, default 25). A day of a plan without quota is
//! `[used, -1]`. UpdateUsage takes one operation, `replace /remaining` with a whole number, 0 or
//! more (more than the limit is a temporary extension for the rest of the period), and answers
//! today's `Usage` of the key.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::{Paging, MAX_LIMIT};
use crate::admin::{json, Admin, AwsPath};
use crate::model::ApiKey;
use crate::store::KeyQuery;
use crate::usage::{DayUsage, UsageError, UsageErrorKind, UsageReport};
use crate::wire::{Object, Source};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, patch};
use axum::Router;
use http::{StatusCode, Uri};
use serde::Serialize;
use std::collections::BTreeMap;
use time::Date;

/// Adds the usage routes to `router`.
pub(crate) fn routes(router: Router<Admin>) -> Router<Admin> {
    router
        .route("/usageplans/{usageplanId}/usage", get(get_usage))
        .route("/usageplans/{usageplanId}/keys/{keyId}/usage", patch(update_usage))
}

/// API Gateway's `Usage`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageOut {
    usage_plan_id: String,
    start_date: String,
    end_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<String>,
    values: BTreeMap<String, Vec<[i64; 2]>>,
}

fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(query: &Query, name: &str) -> ApiResult<Date> {
    let text = query.get(name).ok_or_else(|| ApiError::invalid(name, "is required (YYYY-MM-DD)"))?;
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| ApiError::invalid(name, "must be a date written YYYY-MM-DD"))
}

fn pairs(days: &[DayUsage]) -> Vec<[i64; 2]> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    days.iter().map(|d| [n(d.used), d.remaining.map_or(-1, n)]).collect()
}

fn usage_error(e: UsageError) -> ApiError {
    match (e.kind(), e.field()) {
        (UsageErrorKind::Invalid, Some(field)) => ApiError::invalid(field, e.reason()),
        (UsageErrorKind::Unavailable, _) => {
            tracing::warn!(error = %e, "admin: the usage counts could not be reached");
            ApiError::unavailable("The usage counts are unavailable (Redis could not be reached). Try again.")
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}

fn usage_of(admin: &Admin) -> ApiResult<&crate::usage::Usage> {
    admin.usage.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "Usage is not available here: the admin router was built without a layer's usage \
             (AdminRouter::usage)",
        )
    })
}

/// Every key in plan `plan_id`, page by page from the store.
async fn plan_keys(admin: &Admin, plan_id: &str) -> ApiResult<Vec<ApiKey>> {
    let mut ids = Vec::new();
    let mut query = KeyQuery::new().with_plan_id(plan_id).with_limit(MAX_LIMIT);
    loop {
        let (items, position) = admin.store.get_api_keys(query.clone()).await?.into_parts();
        ids.extend(items.into_iter().map(|k| k.key().clone()));
        match position {
            Some(p) => query = query.with_position(p),
            None => return Ok(ids),
        }
    }
}

/// GetUsage: the plan's keys (or `keyId`) from `startDate` to `endDate`, both included.
async fn get_usage(State(admin): State<Admin>, AwsPath(plan_id): AwsPath<String>, uri: Uri) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    let paging = Paging::parse(&query)?;
    let (start, end) = (parse_date(&query, "startDate")?, parse_date(&query, "endDate")?);
    let plan = admin.plan(&plan_id).await?;
    let usage = usage_of(&admin)?;
    // The page's keys first (the plan's keys and every key with usage under it, in id order),
    // then the figures of those keys only.
    // Keys are reported with their own quota and billing anchor; a key with usage under the plan
    // that is gone from it (or from the store) under the plan's.
    let keys: Vec<(String, Option<ApiKey>)> = match query.get("keyId") {
        Some(key) => {
            let stored = admin.key(key).await?;
            vec![(key.to_owned(), Some(stored.key().clone()))]
        }
        None => {
            let mut keys: Vec<(String, Option<ApiKey>)> =
                plan_keys(&admin, &plan_id).await?.into_iter().map(|k| (k.id().to_owned(), Some(k))).collect();
            let known: std::collections::HashSet<String> = keys.iter().map(|(id, _)| id.clone()).collect();
            let gone = usage.keys_with_usage(&plan).await.map_err(usage_error)?;
            keys.extend(gone.into_iter().filter(|id| !known.contains(id)).map(|id| (id, None)));
            keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            keys.dedup_by(|a, b| a.0 == b.0);
            keys
        }
    };
    let page = paging.page(keys.into_iter().map(|(id, k)| (id.clone(), (id, k))).collect());
    let records: Vec<ApiKey> =
        page.item.iter().map(|(id, k)| k.clone().unwrap_or_else(|| ApiKey::new(id.as_str()))).collect();
    let refs: Vec<&ApiKey> = records.iter().collect();
    let report: UsageReport = usage.report_api_keys(&plan, &refs, start, end).await.map_err(usage_error)?;
    let out = UsageOut {
        usage_plan_id: plan_id,
        start_date: format_date(start),
        end_date: format_date(end),
        position: page.position,
        values: report.keys.into_iter().map(|(id, days)| (id, pairs(&days))).collect(),
    };
    Ok(json(StatusCode::OK, &out))
}

/// UpdateUsage: `replace /remaining` sets the quota the key has left in the current period.
async fn update_usage(
    State(admin): State<Admin>,
    AwsPath((plan_id, key_id)): AwsPath<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let ops = Object::new(&body, Source::Request).objects("patchOperations")?;
    let [op] = ops.as_slice() else {
        return Err(ApiError::invalid("patchOperations", "must hold exactly one operation: replace /remaining"));
    };
    let (name, path) = (op.required_string("op")?, op.required_string("path")?);
    if name != "replace" || path != "/remaining" {
        return Err(ApiError::bad_request(format!(
            "Invalid patch path '{path}' specified for op '{name}'. Supported: replace /remaining"
        )));
    }
    let remaining: u64 = op
        .required_string("value")?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(&op.field("value"), "must be a whole number of requests, 0 or more"))?;
    let plan = admin.plan(&plan_id).await?;
    let stored = admin.key(&key_id).await?;
    if !stored.key().plan_ids().iter().any(|p| **p == *plan_id) {
        return Err(ApiError::not_found(
            "Invalid Usage Plan Key identifier specified: the API key is not in the usage plan",
        ));
    }
    let usage = usage_of(&admin)?;
    usage.set_key_remaining(&plan, stored.key(), remaining).await.map_err(usage_error)?;
    let today = usage.today();
    let report = usage.report_api_keys(&plan, &[stored.key()], today, today).await.map_err(usage_error)?;
    let out = UsageOut {
        usage_plan_id: plan_id,
        start_date: format_date(today),
        end_date: format_date(today),
        position: None,
        values: report.keys.into_iter().map(|(id, days)| (id, pairs(&days))).collect(),
    };
    Ok(json(StatusCode::OK, &out))
}

//! Usage plan operations: CreateUsagePlan, GetUsagePlan, GetUsagePlans, UpdateUsagePlan,
//! DeleteUsagePlan.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::Paging;
use crate::admin::{accepted, json, patch, Admin, AwsPath};
use crate::model::tags::check_tags;
use crate::model::UsagePlan;
use crate::wire::{concurrency, Object, Page, PlanLimits, Source, UsagePlanOut};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};
use std::time::SystemTime;

/// CreateUsagePlan. The plan's creation time is now: a quota `offset` applies to the current period.
pub(crate) async fn create(State(admin): State<Admin>, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let o = Object::new(&body, Source::Request);
    let id = admin.new_id(true).await?;
    let mut plan = UsagePlan::new(id).with_name(o.required_string("name")?).with_created(SystemTime::now());
    if let Some(d) = o.string("description")?.filter(|d| !d.is_empty()) {
        plan = plan.with_description(d);
    }
    let tags = o.tags("tags")?;
    check_tags(&tags)?;
    for (name, value) in tags {
        plan = plan.tag(name, value);
    }
    let limits = PlanLimits::read(&o)?;
    if let Some(i) = limits.repeated_stage() {
        let reason = format!("{} is listed twice", limits.api_stages[i].label());
        return Err(ApiError::invalid(&format!("apiStages[{i}].stage"), reason));
    }
    limits.apply(&mut plan)?;
    // Beyond API Gateway's members: the per-key concurrency cap.
    if let Some(n) = o.whole("concurrency")? {
        plan = plan.with_concurrency(concurrency("concurrency", n)?);
    }
    let plan = admin.store.create_usage_plan(plan).await?;
    Ok(json(StatusCode::CREATED, &UsagePlanOut::new(&plan)))
}

/// GetUsagePlan.
pub(crate) async fn get(State(admin): State<Admin>, AwsPath(id): AwsPath<String>) -> ApiResult<Response> {
    let plan = admin.plan(&id).await?;
    Ok(json(StatusCode::OK, &UsagePlanOut::new(&plan)))
}

/// GetUsagePlans; with `keyId`, the plans that key is in.
pub(crate) async fn list(State(admin): State<Admin>, uri: Uri) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    let paging = Paging::parse(&query)?;
    let mut plans = paging.plan_query();
    if let Some(id) = query.get("keyId") {
        plans = plans.with_key_id(id);
    }
    let (items, position) = admin.store.get_usage_plans(plans).await?.into_parts();
    Ok(json(StatusCode::OK, &Page { position, item: items.iter().map(UsagePlanOut::new).collect() }))
}

/// UpdateUsagePlan: the patch operations of [`patch`], all or none.
pub(crate) async fn update(
    State(admin): State<Admin>,
    AwsPath(id): AwsPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let ops = patch::parse(&Object::new(&parse_body(&body)?, Source::Request))?;
    let plan = admin.store.update_usage_plan(&id, Box::new(move |plan| Ok(patch::patch_plan(plan, &ops)?))).await?;
    Ok(json(StatusCode::OK, &UsagePlanOut::new(&plan)))
}

/// DeleteUsagePlan: its keys leave it.
pub(crate) async fn delete(State(admin): State<Admin>, AwsPath(id): AwsPath<String>) -> ApiResult<Response> {
    admin.store.delete_usage_plan(&id).await?;
    Ok(accepted())
}

//! Usage plan key operations (an API key's membership of a plan): CreateUsagePlanKey,
//! GetUsagePlanKey, GetUsagePlanKeys, DeleteUsagePlanKey.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::Paging;
use crate::admin::{accepted, json, Admin, AwsPath};
use crate::model::ApiKey;
use crate::store::StoredKey;
use crate::wire::{check_key_type, Object, Page, Source, UsagePlanKeyOut};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};

fn in_plan(key: &ApiKey, plan_id: &str) -> bool {
    key.plan_ids().iter().any(|p| &**p == plan_id)
}

/// The plan must exist, and the key must exist and be in it.
async fn member(admin: &Admin, plan_id: &str, key_id: &str) -> ApiResult<StoredKey> {
    let _plan = admin.plan(plan_id).await?;
    let stored = admin.key(key_id).await?;
    if !in_plan(stored.key(), plan_id) {
        return Err(ApiError::not_found(
            "Invalid Usage Plan Key identifier specified: the API key is not in the usage plan",
        ));
    }
    Ok(stored)
}

/// CreateUsagePlanKey: `keyType` must be `API_KEY`. A key may be in one plan per stage (409).
pub(crate) async fn create(
    State(admin): State<Admin>,
    AwsPath(plan_id): AwsPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let o = Object::new(&body, Source::Request);
    let key_id = o.required_string("keyId")?;
    o.required_string("keyType")?;
    check_key_type(&o, "keyType")?;
    let _plan = admin.plan(&plan_id).await?;
    let stored = admin.key(key_id).await?;
    if in_plan(stored.key(), &plan_id) {
        return Err(ApiError::conflict("The API key is already in the usage plan"));
    }
    admin.store.create_usage_plan_key(&plan_id, key_id).await?;
    Ok(json(StatusCode::CREATED, &UsagePlanKeyOut::new(stored.key(), stored.value())))
}

/// GetUsagePlanKey.
pub(crate) async fn get(
    State(admin): State<Admin>,
    AwsPath((plan_id, key_id)): AwsPath<(String, String)>,
) -> ApiResult<Response> {
    let stored = member(&admin, &plan_id, &key_id).await?;
    Ok(json(StatusCode::OK, &UsagePlanKeyOut::new(stored.key(), stored.value())))
}

/// GetUsagePlanKeys: `name` matches names that start with it.
pub(crate) async fn list(
    State(admin): State<Admin>,
    AwsPath(plan_id): AwsPath<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    let paging = Paging::parse(&query)?;
    let _plan = admin.plan(&plan_id).await?;
    let keys = paging.key_query().with_plan_id(plan_id).with_name_prefix(query.get("name").unwrap_or_default());
    let (items, position) = admin.store.get_api_keys(keys).await?.into_parts();
    let item = items.iter().map(|k| UsagePlanKeyOut::new(k.key(), k.value())).collect();
    Ok(json(StatusCode::OK, &Page { position, item }))
}

/// DeleteUsagePlanKey: the key leaves the plan (the key itself stays).
pub(crate) async fn delete(
    State(admin): State<Admin>,
    AwsPath((plan_id, key_id)): AwsPath<(String, String)>,
) -> ApiResult<Response> {
    let _member = member(&admin, &plan_id, &key_id).await?;
    admin.store.delete_usage_plan_key(&plan_id, &key_id).await?;
    Ok(accepted())
}

//! Usage plan key operations (an API key's membership of a plan): CreateUsagePlanKey,
//! GetUsagePlanKey, GetUsagePlanKeys, DeleteUsagePlanKey.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::Paging;
use crate::admin::{accepted, json, Admin, AwsPath};
use crate::model::{ApiKey, KeySecret};
use crate::wire::{check_key_type, Object, Source, UsagePlanKeyOut};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};

fn in_plan(key: &ApiKey, plan_id: &str) -> bool {
    key.plan_ids().iter().any(|p| &**p == plan_id)
}

/// The plan must exist, and the key must exist and be in it.
fn member(admin: &Admin, plan_id: &str, key_id: &str) -> ApiResult<(KeySecret, ApiKey)> {
    if admin.store.plan_by_id(plan_id).is_none() {
        return Err(ApiError::no_such_plan());
    }
    let (value, key) = admin.store.key_by_id(key_id).ok_or_else(ApiError::no_such_key)?;
    if !in_plan(&key, plan_id) {
        return Err(ApiError::not_found(
            "Invalid Usage Plan Key identifier specified: the API key is not in the usage plan",
        ));
    }
    Ok((value, key))
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
    if admin.store.plan_by_id(&plan_id).is_none() {
        return Err(ApiError::no_such_plan());
    }
    let (value, key) = admin.store.key_by_id(key_id).ok_or_else(ApiError::no_such_key)?;
    if in_plan(&key, &plan_id) {
        return Err(ApiError::conflict("The API key is already in the usage plan"));
    }
    admin.store.add_key_to_plan(key_id, &plan_id)?;
    Ok(json(StatusCode::CREATED, &UsagePlanKeyOut::new(&key, &value)))
}

/// GetUsagePlanKey.
pub(crate) async fn get(
    State(admin): State<Admin>,
    AwsPath((plan_id, key_id)): AwsPath<(String, String)>,
) -> ApiResult<Response> {
    let (value, key) = member(&admin, &plan_id, &key_id)?;
    Ok(json(StatusCode::OK, &UsagePlanKeyOut::new(&key, &value)))
}

/// GetUsagePlanKeys: `name` matches names that start with it.
pub(crate) async fn list(
    State(admin): State<Admin>,
    AwsPath(plan_id): AwsPath<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    let paging = Paging::parse(&query)?;
    if admin.store.plan_by_id(&plan_id).is_none() {
        return Err(ApiError::no_such_plan());
    }
    let name = query.get("name").unwrap_or_default();
    let config = admin.store.config();
    let items = config
        .keys()
        .iter()
        .filter(|(_, k)| in_plan(k, &plan_id) && k.name().starts_with(name))
        .map(|(v, k)| (k.id().to_owned(), UsagePlanKeyOut::new(k, v)))
        .collect();
    Ok(json(StatusCode::OK, &paging.page(items)))
}

/// DeleteUsagePlanKey: the key leaves the plan (the key itself stays).
pub(crate) async fn delete(
    State(admin): State<Admin>,
    AwsPath((plan_id, key_id)): AwsPath<(String, String)>,
) -> ApiResult<Response> {
    let _member = member(&admin, &plan_id, &key_id)?;
    admin.store.remove_key_from_plan(&key_id, &plan_id)?;
    Ok(accepted())
}

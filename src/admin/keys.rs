//! API key operations: CreateApiKey, GetApiKey, GetApiKeys, UpdateApiKey, DeleteApiKey and
//! ImportApiKeys (`POST /apikeys?mode=import`, the same path as CreateApiKey).

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::Paging;
use crate::admin::{accepted, json, patch, Admin, AwsPath};
use crate::import::parse_api_keys_csv;
use crate::model::tags::check_tags;
use crate::model::ApiKey;
use crate::wire::{ApiKeyIds, ApiKeyOut, ApiKeyShape, LimitsShape, Object, Page, Source};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};
use std::time::SystemTime;

/// `POST /apikeys`: CreateApiKey, or ImportApiKeys with `?mode=import`.
pub(crate) async fn create_or_import(State(admin): State<Admin>, uri: Uri, body: Bytes) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    match query.get("mode") {
        None => create(&admin, &body).await,
        Some("import") => import(&admin, &query, &body).await,
        Some(_) => Err(ApiError::invalid("mode", "must be import (ImportApiKeys), or absent (CreateApiKey)")),
    }
}

async fn create(admin: &Admin, body: &[u8]) -> ApiResult<Response> {
    let body = parse_body(body)?;
    let o = Object::new(&body, Source::Request);
    if o.has_items("stageKeys") {
        return Err(ApiError::invalid(
            "stageKeys",
            "is not supported (API Gateway deprecated it for usage plans): add the key to a usage plan with CreateUsagePlanKey",
        ));
    }
    o.boolean("generateDistinctId")?; // Deprecated; ids are always distinct from values here.
    let shape = ApiKeyShape::read(&o)?;
    let secret = shape.value.unwrap_or_else(crate::keys::generate);
    let now = SystemTime::now();
    let id = admin.new_id(false).await?;
    // API Gateway creates keys disabled unless `enabled` is true.
    let mut key = ApiKey::new(id).enabled(shape.enabled.unwrap_or(false)).with_created(now).with_last_updated(now);
    if let Some(name) = shape.name.filter(|n| !n.is_empty()) {
        patch::check_key_name(name)?;
        key = key.with_name(name);
    }
    if let Some(d) = shape.description.filter(|d| !d.is_empty()) {
        key = key.with_description(d);
    }
    if let Some(c) = shape.customer_id.filter(|c| !c.is_empty()) {
        key = key.with_customer_id(c);
    }
    check_tags(&shape.tags)?;
    for (name, value) in shape.tags {
        key = key.tag(name, value);
    }
    // Members beyond API Gateway's: the key's own limits.
    key.set_overrides(Some(LimitsShape::read(&o, true)?.build()?));
    let key = admin.store.create_api_key(key, secret.clone()).await?;
    Ok(json(StatusCode::CREATED, &ApiKeyOut::new(&key, Some(&secret))))
}

/// ImportApiKeys: all keys of the CSV or, on any error, none (`failonwarnings` or not).
async fn import(admin: &Admin, query: &Query, body: &[u8]) -> ApiResult<Response> {
    match query.get("format") {
        Some("csv") => {}
        _ => return Err(ApiError::invalid("format", "must be csv")),
    }
    query.boolean("failonwarnings")?;
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("The body must be CSV text in UTF-8"))?;
    let keys = parse_api_keys_csv(text)?;
    let ids = admin.store.import_api_keys(keys).await?;
    Ok(json(StatusCode::CREATED, &ApiKeyIds { ids, warnings: Vec::new() }))
}

/// GetApiKey.
pub(crate) async fn get(State(admin): State<Admin>, AwsPath(id): AwsPath<String>, uri: Uri) -> ApiResult<Response> {
    let include_value = Query::parse(&uri)?.boolean("includeValue")?.unwrap_or(false);
    let stored = admin.key(&id).await?;
    let value = stored.value().filter(|_| include_value);
    Ok(json(StatusCode::OK, &ApiKeyOut::new(stored.key(), value)))
}

/// GetApiKeys: `name` matches names that start with it, `customerId` exactly.
pub(crate) async fn list(State(admin): State<Admin>, uri: Uri) -> ApiResult<Response> {
    let query = Query::parse(&uri)?;
    let paging = Paging::parse(&query)?;
    let include_values = query.boolean("includeValues")?.unwrap_or(false);
    let mut keys = paging.key_query().with_name_prefix(query.get("name").unwrap_or_default());
    if let Some(customer) = query.get("customerId") {
        keys = keys.with_customer_id(customer);
    }
    let (items, position) = admin.store.get_api_keys(keys).await?.into_parts();
    let item = items.iter().map(|k| ApiKeyOut::new(k.key(), k.value().filter(|_| include_values))).collect();
    Ok(json(StatusCode::OK, &Page { position, item }))
}

/// UpdateApiKey.
pub(crate) async fn update(
    State(admin): State<Admin>,
    AwsPath(id): AwsPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let ops = patch::parse(&Object::new(&parse_body(&body)?, Source::Request))?;
    let key = admin.store.update_api_key(&id, Box::new(move |key| Ok(patch::patch_key(key, &ops)?))).await?;
    Ok(json(StatusCode::OK, &ApiKeyOut::new(&key, None)))
}

/// DeleteApiKey.
pub(crate) async fn delete(State(admin): State<Admin>, AwsPath(id): AwsPath<String>) -> ApiResult<Response> {
    admin.store.delete_api_key(&id).await?;
    Ok(accepted())
}

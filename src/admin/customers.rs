//! Customers (not an API Gateway resource): `POST /customers`, `GET /customers`,
//! `GET /customers/{id}`, `PUT /customers/{id}`, `DELETE /customers/{id}`, over the store's
//! customer operations, in the wire format of the other routes.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::{parse_body, Query};
use crate::admin::page::Paging;
use crate::admin::{accepted, json, Admin, AwsPath};
use crate::wire::{CustomerOut, CustomerShape, Object, Page, Source};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};

fn no_such_customer() -> ApiError {
    ApiError::not_found("Invalid Customer identifier specified")
}

/// `POST /customers`: creates a customer; `id` is required (it is what keys' `customerId`
/// names); 409 if a customer has it.
pub(crate) async fn create(State(admin): State<Admin>, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let o = Object::new(&body, Source::Request);
    let id = o.required_string("id")?;
    let customer = CustomerShape::read(&o)?.build(id)?;
    let customer = admin.store.create_customer(customer).await?;
    Ok(json(StatusCode::CREATED, &CustomerOut::new(&customer)))
}

/// `GET /customers`: a page of customers in id order (`limit`, `position`).
pub(crate) async fn list(State(admin): State<Admin>, uri: Uri) -> ApiResult<Response> {
    let paging = Paging::parse(&Query::parse(&uri)?)?;
    let (items, position) = admin.store.get_customers(paging.customer_query()).await?.into_parts();
    Ok(json(StatusCode::OK, &Page { position, item: items.iter().map(CustomerOut::new).collect() }))
}

/// `GET /customers/{id}`.
pub(crate) async fn get(State(admin): State<Admin>, AwsPath(id): AwsPath<String>) -> ApiResult<Response> {
    let customer = admin.store.get_customer(&id).await?.ok_or_else(no_such_customer)?;
    Ok(json(StatusCode::OK, &CustomerOut::new(&customer)))
}

/// `PUT /customers/{id}`: creates or replaces the customer with the body's members (a member
/// left out is unset); an `id` in the body must be the path's.
pub(crate) async fn put(State(admin): State<Admin>, AwsPath(id): AwsPath<String>, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let o = Object::new(&body, Source::Request);
    let shape = CustomerShape::read(&o)?;
    if shape.id.is_some_and(|given| given != id) {
        return Err(ApiError::invalid("id", "must be the id of the path, or absent"));
    }
    let customer = admin.store.put_customer(shape.build(&id)?).await?;
    Ok(json(StatusCode::OK, &CustomerOut::new(&customer)))
}

/// `DELETE /customers/{id}`: its keys keep their `customerId` and lose the shared limits.
pub(crate) async fn delete(State(admin): State<Admin>, AwsPath(id): AwsPath<String>) -> ApiResult<Response> {
    match admin.store.delete_customer(&id).await {
        Err(e) if e.kind() == crate::store::ManageErrorKind::NotFound && e.field() == "customerId" => {
            Err(no_such_customer())
        }
        other => other.map(|()| accepted()).map_err(ApiError::from),
    }
}

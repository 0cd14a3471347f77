//! The [`Caller`] as an axum extractor (feature `axum`).

use crate::caller::Caller;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use std::convert::Infallible;

/// The rejection of the [`Caller`] extractor: the request carries no `Caller`, because the
/// route is not behind [`UsagePlanLayer`](crate::UsagePlanLayer), the method is public (no key),
/// or the layer was built with [`caller(false)`](crate::UsagePlanLayerBuilder::caller). A
/// configuration mistake, answered 500 `{"message":"Internal server error"}` (logged at `error`);
/// extract `Option<Caller>` where a route may be reached without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingCaller;

impl std::fmt::Display for MissingCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request carries no Caller: is the route behind UsagePlanLayer, with a key?")
    }
}

impl std::error::Error for MissingCaller {}

impl IntoResponse for MissingCaller {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"Internal server error"}"#).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

/// `async fn handler(caller: Caller)`: the caller of a request the layer admitted with a key.
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_usage_plans::{Caller, InMemoryKeyStore, UsagePlanLayer};
///
/// async fn whoami(caller: Caller) -> String {
///     format!("{} ({}) on {}", caller.key_name(), caller.key_id(), caller.plan_id())
/// }
///
/// # fn app(store: InMemoryKeyStore) -> Result<Router, tower_usage_plans::ConfigError> {
/// let app = Router::new().route("/whoami", get(whoami)).layer(UsagePlanLayer::new(store)?);
/// # Ok(app) }
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = MissingCaller;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or(MissingCaller)
    }
}

/// `async fn handler(caller: Option<Caller>)`: `None` on public methods.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

//! Usage operations: GetUsage (`GET /usageplans/{usageplanId}/usage`) and UpdateUsage
//! (`PATCH /usageplans/{usageplanId}/keys/{keyId}/usage`). Not implemented yet: both answer
//! 400. This file owns their routes, so that it can be replaced on its own.

use crate::admin::error::ApiError;
use crate::admin::Admin;
use axum::routing::{get, patch};
use axum::Router;

/// Adds the usage routes to `router`.
pub(crate) fn routes(router: Router<Admin>) -> Router<Admin> {
    router
        .route("/usageplans/{usageplanId}/usage", get(get_usage))
        .route("/usageplans/{usageplanId}/keys/{keyId}/usage", patch(update_usage))
}

async fn get_usage() -> ApiError {
    ApiError::bad_request("GetUsage is not implemented yet")
}

async fn update_usage() -> ApiError {
    ApiError::bad_request("UpdateUsage is not implemented yet")
}

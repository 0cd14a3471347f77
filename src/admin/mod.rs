//! Management over HTTP: an axum [`Router`] speaking API Gateway's REST wire format, so that
//! boto3, the AWS CLI and the AWS SDKs (with `endpoint_url` pointing here) manage the keys and
//! plans of a [`ManagedKeyStore`] while the app serves: an
//! [`InMemoryKeyStore`](crate::InMemoryKeyStore), a [`SqlKeyStore`](crate::SqlKeyStore)
//! (feature `sqlx`; every replica on one database sees every change), or a store of your own.
//!
//! The 17 operations on `/apikeys` and `/usageplans` of the API Gateway service model
//! (`apigateway` 2015-07-09), with its member names, status codes and error shapes
//! (`x-amzn-ErrorType` and `{"message": ...}`): CreateApiKey, GetApiKey, GetApiKeys,
//! UpdateApiKey, DeleteApiKey, ImportApiKeys, CreateUsagePlan, GetUsagePlan, GetUsagePlans,
//! UpdateUsagePlan, DeleteUsagePlan, CreateUsagePlanKey, GetUsagePlanKey, GetUsagePlanKeys,
//! DeleteUsagePlanKey, and GetUsage and UpdateUsage over a layer's usage ledger
//! ([`AdminRouter::usage`]). Other paths get 404
//! `NotFoundException`, other methods on these paths 400 `BadRequestException`.
//! Every change is one atomic change of the store: checked as a configuration file is, nothing
//! changes on error, and layers see it from their next request. A store that fails answers 503
//! `ServiceUnavailableException` (its reason goes to the log, not to the caller).
//!
//! Every request is authenticated first ([`AdminAuth`]: bearer tokens or AWS Signature Version
//! 4) against the URI as received, mount prefix included, in this order:
//!
//! 1. A client address with no failed authentication left (10 at once, then 1 a second by
//!    default: [`AdminRouter::failed_auth_limit`]) gets 429 `TooManyRequestsException`, with
//!    `Retry-After`, and its credentials are not checked. Addresses come from axum's
//!    `ConnectInfo<SocketAddr>`: serve with `into_make_service_with_connect_info::<SocketAddr>()`;
//!    without it every caller shares one allowance.
//! 2. The head: no credentials, unreadable ones, an unknown bearer token or access key id, a
//!    wrong scope, a stale `X-Amz-Date` or an unexpected signed host
//!    ([`AdminAuth::expected_hosts`]) get 403 at once, before one byte of the body is read. A
//!    bearer token is then fully checked.
//! 3. The body, for callers that passed the head: at most [`max_body_bytes`] (1 MiB by
//!    default; larger is 400 `BadRequestException`, refused from `Content-Length` when it is
//!    declared), within [`body_timeout`] (10 s by default; then 408
//!    `RequestTimeoutException`), and within a budget of body bytes shared by every request in
//!    flight through the router, [`max_buffered_bytes`] (16 MiB by default; a request takes its
//!    `Content-Length` up front, or its bytes as they arrive, and gives them back when its
//!    answer is ready; over it, 503 `ServiceUnavailableException` with `Retry-After: 1`).
//! 4. A SigV4 signature, which covers the body, is checked last; a mismatch is 403.
//!
//! Each 403 counts as a failed authentication of the caller's address.
//!
//! [`max_body_bytes`]: AdminRouter::max_body_bytes
//! [`body_timeout`]: AdminRouter::body_timeout
//! [`max_buffered_bytes`]: AdminRouter::max_buffered_bytes
//!
//! Choices where API Gateway's behaviour had to be decided, or cannot be kept:
//! - CreateApiKey: keys are created disabled unless `enabled` is true, as in API Gateway; a
//!   value is generated when none is given (40 characters); `stageKeys` (deprecated) is refused
//!   with 400 rather than ignored, since a key bound to nothing would fail silently;
//!   `generateDistinctId` is ignored (ids are always distinct from values).
//! - `createdDate` and `lastUpdatedDate` are set by this API (and `lastUpdatedDate` by the
//!   store's key changes); keys loaded from a file without them show neither in an
//!   `InMemoryKeyStore`. The SQL store gives every key a creation time: one loaded without it
//!   (e.g. by the quickstart) shows the time it was loaded.
//! - ImportApiKeys imports all rows or none: a bad row fails the call (400, 404 or 409, naming
//!   the line and column), whatever `failonwarnings` says; `warnings` is always empty.
//! - Throttles need both `rateLimit` (> 0) and `burstLimit` (>= 1), quotas `limit` (>= 1) and
//!   `period` (a zero limit is refused). A plan may name any API stage, as in a configuration
//!   file.
//! - `limit` above 500 or below 1 is a 400; `name` filters of GetApiKeys and GetUsagePlanKeys
//!   match names that start with the text.
//! - Tags are kept and shown, but set on create only (TagResource is not implemented). A plan's
//!   creation time is kept (quota offsets use it) but not shown: the model has no member for it.
//! - A store that keeps only hashes of key values (the SQL store) shows a key's `value` once,
//!   in CreateApiKey's answer. GetApiKey and GetApiKeys with `includeValue(s)=true`, and
//!   CreateUsagePlanKey and GetUsagePlanKey(s) (where API Gateway always shows it), leave `value`
//!   out: the value cannot be shown, and an empty string would read as one. Everything else
//!   (statuses, errors, shapes, order, pages) is the same over both stores; `tests/admin` runs
//!   every scenario against both.
//!
//! # Members and routes beyond API Gateway's
//!
//! The crate's own limits travel in the same wire format, as members API Gateway does not
//! have (its SDKs ignore them), each omitted from answers when unset:
//!
//! - **A key's own limits** (replacing its plan's for that key only) on CreateApiKey's body and
//!   in every `ApiKey` answer (CreateApiKey, GetApiKey, GetApiKeys, UpdateApiKey):
//!   `"throttle": {"rateLimit": 5.0, "burstLimit": 2}`,
//!   `"quota": {"limit": 100, "period": "MONTH", "offset": 0}` (the shapes of a usage plan's),
//!   `"methodThrottles": {"/pets/GET": {"rateLimit": 1.0, "burstLimit": 2}}` (keyed
//!   `"<resourcePath>/<METHOD>"`; present, even `{}`, it replaces all the plan's method
//!   throttles), `"concurrency": 3` (at most 3 requests of the key in the inner service at
//!   once) and `"quotaAnchor": "2026-01-31T09:30:00Z"` (RFC 3339; the key's DAY, WEEK or MONTH
//!   periods start at its time of day, weekday or day of month). UpdateApiKey changes them
//!   with patch operations (`{"op": "replace", "path": "/throttle/burstLimit", "value": "2"}`;
//!   the paths are listed in the `patch` table: `replace` (or `add`) `/throttle/rateLimit`,
//!   `/throttle/burstLimit`, `/quota/limit`, `/quota/period`, `/quota/offset`,
//!   `/methodThrottles/{resourcePath}/{httpMethod}/rateLimit|burstLimit`; `replace`
//!   `/concurrency`, `/quotaAnchor`; `remove` `/throttle`, `/quota`, `/concurrency`,
//!   `/quotaAnchor`, `/methodThrottles` (back to the plan's) and
//!   `/methodThrottles/{resourcePath}/{httpMethod}`).
//! - **A plan's `"concurrency": N`** (per key of the plan) on CreateUsagePlan and in every
//!   `UsagePlan` answer; UpdateUsagePlan: `replace /concurrency` (value `"N"`),
//!   `remove /concurrency`.
//! - **Customers**, whose throttle, quota and concurrency cap every key whose `customerId`
//!   names them shares: `POST /customers` (201; `id` required, 409 `ConflictException` if
//!   taken), `GET /customers` (a page `{"item": [...], "position": ...}` in id order, with
//!   `limit` and `position` as elsewhere), `GET /customers/{id}` (200, or 404
//!   `NotFoundException`), `PUT /customers/{id}` (200: creates or replaces it whole, a member
//!   left out is unset; an `id` in the body must be the path's) and `DELETE /customers/{id}`
//!   (202; its keys keep their `customerId` and lose the shared limits). The shape:
//!   `{"id": "acme", "name": "Acme Corp", "throttle": {...}, "quota": {...},
//!   "concurrency": 20, "quotaAnchor": "2026-01-31T09:30:00Z"}`. The same authentication and
//!   limits as every route. A store that keeps no customers (a [`ManagedKeyStore`] of your
//!   own without the customer methods) lists none and refuses to create one (400).
//!
//! A member that does not fit is refused as the others are: 400 `BadRequestException` naming
//! it (`throttle.burstLimit: must be at least 1`, `concurrency: must be at least 1, got 0`,
//! `quotaAnchor: must be an RFC 3339 time, e.g. 2026-01-31T09:30:00Z`,
//! `methodThrottles."/pets/GET".rateLimit: is required in a throttle`).
//!
//! ```
//! use axum::body::Body;
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_usage_plans::admin::{AdminAuth, AdminRouter};
//! use tower_usage_plans::InMemoryKeyStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"petstore\"\nname = \"prod\"")?;
//! let admin = AdminRouter::new(store.clone(), AdminAuth::new().bearer("admin-secret-token"));
//! let app = axum::Router::new().nest("/admin", admin.into_router());
//!
//! let create = Request::post("/admin/usageplans")
//!     .header("authorization", "Bearer admin-secret-token")
//!     .body(Body::from(r#"{"name": "Free", "throttle": {"rateLimit": 10, "burstLimit": 20},
//!                          "apiStages": [{"apiId": "petstore", "stage": "prod"}]}"#))?;
//! let response = app.clone().oneshot(create).await?;
//! assert_eq!(response.status(), 201);
//! assert_eq!(store.config().plans()[0].name(), "Free");
//!
//! let anonymous = app.oneshot(Request::get("/admin/usageplans").body(Body::empty())?).await?;
//! assert_eq!(anonymous.status(), 403);
//! # Ok(())
//! # }
//! ```

mod auth;
mod customers;
mod error;
mod failures;
mod guard;
mod input;
mod keys;
mod page;
mod patch;
mod plan_keys;
mod plans;
mod usage;

pub use auth::{AdminAuth, AdminAuthError, AdminAuthErrorKind, AuthError, AuthErrorKind, MIN_BEARER_CHARS};

use crate::engine::{Clock, SystemClock};
use crate::model::UsagePlan;
use crate::store::{DynManagedKeyStore, ManagedKeyStore, StoredKey};
use crate::usage::Usage;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use error::{ApiError, ApiResult};
use failures::FailureLimit;
use guard::{Budget, Guard};
use http::request::Parts;
use http::{header, HeaderValue, Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Default largest request body: 1 MiB.
const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default time to receive a body: 10 s.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default body bytes held by all requests in flight: 16 MiB.
const DEFAULT_MAX_BUFFERED: usize = 16 << 20;
/// Default failed authentications per client address: 10 at once, then 1 a second.
const DEFAULT_FAILED_AUTH: (u32, f64) = (10, 1.0);

/// Builds the admin [`Router`] over a store. See the [module documentation](self).
#[must_use]
pub struct AdminRouter {
    store: Arc<dyn DynManagedKeyStore>,
    auth: AdminAuth,
    max_body_bytes: usize,
    body_timeout: Duration,
    max_buffered_bytes: usize,
    failed_auth: Option<(u32, f64)>,
    clock: Arc<dyn Clock>,
    usage: Option<Usage>,
}

impl std::fmt::Debug for AdminRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRouter")
            .field("auth", &self.auth)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("failed_auth_limit", &self.failed_auth)
            .field("usage", &self.usage.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminRouter {
    /// The admin API of `store` (an [`InMemoryKeyStore`](crate::InMemoryKeyStore), a
    /// [`SqlKeyStore`](crate::SqlKeyStore) or any [`ManagedKeyStore`]), for callers that `auth`
    /// accepts. Give the layer a clone of the same store, so that it sees every change on its
    /// next request.
    pub fn new(store: impl ManagedKeyStore, auth: AdminAuth) -> Self {
        Self {
            store: Arc::new(store),
            auth,
            max_body_bytes: DEFAULT_MAX_BODY,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED,
            failed_auth: Some(DEFAULT_FAILED_AUTH),
            clock: Arc::new(SystemClock::new()),
            usage: None,
        }
    }

    /// Serves GetUsage and UpdateUsage from this layer's usage ledger
    /// ([`UsagePlanLayer::usage`](crate::UsagePlanLayer::usage)); without it they answer 400.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Largest request body accepted (default 1 MiB, enough for an ImportApiKeys CSV of 10,000
    /// keys); a larger one gets 400 `BadRequestException` (after the head's credentials are
    /// checked: a caller refused there gets 403).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// How long an authenticated caller may take to send its body, from the end of the head
    /// (default 10 s); a body still incomplete then gets 408 `RequestTimeoutException`. Uses
    /// tokio's timer: serve on a tokio runtime with time enabled (as `#[tokio::main]` is).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Most body bytes held at once by all requests in flight through this router (default
    /// 16 MiB): a request takes its declared `Content-Length` up front (or its bytes as they
    /// arrive) and gives them back when its answer is ready. A request that does not fit gets
    /// 503 `ServiceUnavailableException` with `Retry-After: 1`. Keep it at least
    /// [`max_body_bytes`](Self::max_body_bytes), or the largest bodies never fit.
    pub fn max_buffered_bytes(mut self, n: usize) -> Self {
        self.max_buffered_bytes = n;
        self
    }

    /// Failed authentications allowed per client address: `burst` at once, then `per_second`
    /// (default 10, then 1 a second). While an address has none left, its requests get 429
    /// `TooManyRequestsException` (`{"message": "Too Many Requests"}`, with `Retry-After`)
    /// without their credentials being checked; a successful authentication costs nothing.
    /// Each request takes one failure up front and gives it back once authenticated: a bearer
    /// token at once, a SigV4 request when its signature is checked over the body, so a SigV4
    /// request whose body never comes (408), is too large or finds the byte budget spent stays
    /// counted, and one address has at most `burst` unauthenticated bodies in flight. IPv4
    /// addresses count one by one, IPv6 addresses by /64. The last 4,096 addresses are
    /// remembered (the one that failed least recently is forgotten first).
    ///
    /// The address is the peer's, from axum's `ConnectInfo<SocketAddr>`: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. Without it, every caller shares
    /// one allowance (so failing callers slow down the right ones too). Behind a proxy, the
    /// proxy's address is the one seen.
    ///
    /// # Panics
    ///
    /// If `burst` is 0 or `per_second` is not a positive number
    /// ([`no_failed_auth_limit`](Self::no_failed_auth_limit) turns the limit off).
    pub fn failed_auth_limit(mut self, burst: u32, per_second: f64) -> Self {
        assert!(burst >= 1, "AdminRouter::failed_auth_limit: burst must be at least 1");
        assert!(
            per_second.is_finite() && per_second > 0.0,
            "AdminRouter::failed_auth_limit: per_second must be a positive number"
        );
        self.failed_auth = Some((burst, per_second));
        self
    }

    /// No limit on failed authentications (see [`failed_auth_limit`](Self::failed_auth_limit)).
    pub fn no_failed_auth_limit(mut self) -> Self {
        self.failed_auth = None;
        self
    }

    /// The clock of the failed-authentication limit and of SigV4's `X-Amz-Date` check;
    /// [`SystemClock`] by default. Use a [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The router, to mount with `Router::nest("/admin", ...)` (SDK clients then use
    /// `endpoint_url = "http://host/admin"`) or to serve at the root.
    pub fn into_router(self) -> Router {
        let guard = Arc::new(Guard {
            auth: self.auth,
            max_body: self.max_body_bytes,
            body_timeout: self.body_timeout,
            buffered: Budget::new(self.max_buffered_bytes),
            failures: self.failed_auth.map(|(burst, rate)| FailureLimit::new(burst, rate, failures::MAX_ADDRESSES)),
            clock: self.clock,
        });
        let router = Router::new()
            .route("/apikeys", get(keys::list).post(keys::create_or_import))
            .route("/apikeys/{api_Key}", get(keys::get).patch(keys::update).delete(keys::delete))
            .route("/usageplans", get(plans::list).post(plans::create))
            .route("/usageplans/{usageplanId}", get(plans::get).patch(plans::update).delete(plans::delete))
            .route("/usageplans/{usageplanId}/keys", get(plan_keys::list).post(plan_keys::create))
            .route("/usageplans/{usageplanId}/keys/{keyId}", get(plan_keys::get).delete(plan_keys::delete))
            .route("/customers", get(customers::list).post(customers::create))
            .route("/customers/{customerId}", get(customers::get).put(customers::put).delete(customers::delete));
        usage::routes(router)
            .fallback(unsupported_path)
            .method_not_allowed_fallback(unsupported_method)
            // The guard has read the body within its own limit.
            .layer(DefaultBodyLimit::disable())
            .layer(middleware::from_fn_with_state(guard, guard::authenticate))
            .with_state(Admin { store: self.store, usage: self.usage })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Admin {
    store: Arc<dyn DynManagedKeyStore>,
    usage: Option<Usage>,
}

impl Admin {
    /// Plan `id`, or API Gateway's 404.
    async fn plan(&self, id: &str) -> ApiResult<UsagePlan> {
        self.store.get_usage_plan(id).await?.ok_or_else(ApiError::no_such_plan)
    }

    /// A new id like API Gateway's, free for a plan (`plan`) or a key.
    async fn new_id(&self, plan: bool) -> ApiResult<String> {
        loop {
            let id = crate::keys::generate_id();
            let taken = if plan {
                self.store.get_usage_plan(&id).await?.is_some()
            } else {
                self.store.get_api_key(&id).await?.is_some()
            };
            if !taken {
                return Ok(id);
            }
        }
    }

    /// Key `id`, or API Gateway's 404.
    async fn key(&self, id: &str) -> ApiResult<StoredKey> {
        self.store.get_api_key(id).await?.ok_or_else(ApiError::no_such_key)
    }
}

/// A JSON response with `status` (the body one of the shapes of [`crate::wire`]).
pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        // Plain structs of strings and numbers always serialize.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// 202 with no body, the answer to a delete.
pub(crate) fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Path parameters, refused in API Gateway's error shape.
#[derive(Debug)]
pub(crate) struct AwsPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AwsPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Self(p.0)),
            Err(_) => Err(ApiError::bad_request("Invalid path parameter")),
        }
    }
}

/// Top-level resources of API Gateway's REST API (named in the answer to an unsupported call;
/// any other first segment is not repeated, since a path could hold anything, even a key).
const AWS_RESOURCES: [&str; 12] = [
    "account",
    "apikeys",
    "clientcertificates",
    "deployments",
    "documentationparts",
    "domainnameaccessassociations",
    "domainnames",
    "restapis",
    "sdktypes",
    "tags",
    "usageplans",
    "vpclinks",
];

/// Any path that is not one of the operations served here.
async fn unsupported_path(method: Method, uri: Uri) -> ApiError {
    let first = uri.path().trim_start_matches('/').split('/').next().unwrap_or_default();
    let what = match AWS_RESOURCES.iter().find(|r| **r == first) {
        Some(r) => format!("{method} /{r}..."),
        None => format!("{method} on this path"),
    };
    ApiError::not_found(format!(
        "Unsupported operation: {what} is not one of the API Gateway operations served here \
         (API keys under /apikeys, usage plans and their keys under /usageplans, customers under /customers)"
    ))
}

async fn unsupported_method(method: Method) -> ApiError {
    ApiError::bad_request(format!("Unsupported operation: {method} is not an operation on this resource"))
}

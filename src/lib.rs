//! API Gateway style **usage plans** for any [tower] service: axum, tonic, hyper.
//!
//! Add one layer. Every request must then carry an API key (header `x-api-key` by default) that
//! belongs to a usage plan bound to this API stage. The plan throttles the key (token bucket:
//! rate + burst, also per method) and caps it with a quota (N requests per DAY, WEEK or MONTH);
//! stage-wide and account-wide throttles protect the backend. Refusals are API Gateway's:
//!
//! | case | status | body | `x-amzn-ErrorType` |
//! |---|---|---|---|
//! | missing / invalid / disabled / expired / wrong-stage key | 403 | `{"message":"Forbidden"}` | `ForbiddenException` |
//! | any throttle | 429 | `{"message":"Too Many Requests"}` | `TooManyRequestsException` |
//! | quota | 429 | `{"message":"Limit Exceeded"}` | `LimitExceededException` |
//!
//! Every 429 has `Retry-After` (whole seconds, rounded up, never 0); responses to identified keys
//! carry `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10, see
//! [`RateLimitHeaders`]); gRPC requests get a Trailers-Only answer with `grpc-status` 16, 7 or 8.
//! Limits are exact within one process: no request over burst, none over quota, under any
//! concurrency.
//!
//! Beyond API Gateway: a handler learns who is calling from the [`Caller`] in the request
//! extensions (an axum extractor with feature `axum`); a key may carry its own limits instead of
//! its plan's ([`ApiKey::with_throttle`], [`ApiKey::with_quota`]); a [`Customer`] shares a
//! throttle, a quota and a concurrency cap among its keys; a [`QuotaAnchor`] starts quota periods
//! on a billing day; concurrency caps bound the requests in flight
//! ([`UsagePlan::with_concurrency`]); [`keys::generate_with_prefix`] makes keys whose typos are
//! refused without asking the store.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryKeyStore::from_toml_str(r#"
//!     [stage]
//!     api = "petstore"
//!     name = "prod"
//!
//!     [[plans]]
//!     id = "free"
//!     throttle = { rate = 0.1, burst = 2 }           # 2 at once, then one every 10 s
//!     quota = { limit = 1000, period = "DAY" }
//!     stages = [{ api = "petstore", stage = "prod" }]
//!
//!     [[keys]]
//!     id = "k1"
//!     value = "free-0123456789abcdefghij"
//!     plans = ["free"]
//! "#)?;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(UsagePlanLayer::new(store)?)
//!     .service(service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("hi"))) }));
//!
//! let call = |key: Option<&str>| {
//!     let mut req = Request::get("/pets");
//!     if let Some(k) = key {
//!         req = req.header("x-api-key", k);
//!     }
//!     svc.clone().oneshot(req.body(String::new()).unwrap())
//! };
//!
//! assert_eq!(call(Some("free-0123456789abcdefghij")).await?.status(), StatusCode::OK);
//! assert_eq!(call(None).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(call(Some("free-0123456789abcdefghij")).await?.status(), StatusCode::OK);
//! let refused = call(Some("free-0123456789abcdefghij")).await?;
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "10");
//! # Ok(())
//! # }
//! ```
//!
//! # Architecture
//!
//! Data flows one way: **extract → look up → decide → forward → record**.
//!
//! - `model`: plans, keys, throttles, quotas and the configuration file ([`Config`]), validated once.
//! - `engine`: the decision, pure and synchronous with time passed in through a [`Clock`]: token
//!   buckets (GCRA on one atomic each), exact quota counters, UTC period math, route matching.
//! - `backend`: where counters live. The engine says which buckets and which quota a request
//!   must pass; the counter backend holds their state and answers all-or-nothing. In-process
//!   atomics by default; a distributed backend (Redis) plugs in here and may answer later, which
//!   the service awaits without other changes.
//! - `store`: the [`KeyStore`] trait and [`InMemoryKeyStore`]; with feature `sqlx`,
//!   `SqlKeyStore` (PostgreSQL or SQLite, keys stored as SHA-256 hashes).
//! - `http`: [`UsagePlanLayer`], [`UsagePlanService`], [`ResponseFuture`], key extraction
//!   ([`KeySource`]), rejection rendering ([`RenderRejection`]) and rate-limit headers.
//! - [`usage`]: the usage ledger (per key, plan and UTC day) seen from outside: API Gateway's
//!   GetUsage and UpdateUsage figures, snapshots across restarts, usage sinks for billing.
//! - `admin` (feature `admin`): API Gateway's REST management API as an axum Router, with SigV4
//!   and bearer authentication.
//! - [`import`]: ImportApiKeys CSV files and the JSON of the aws CLI (`import::aws`).
//! - `wire`: API Gateway's JSON shapes (usage plans, API stages, throttles, quotas, API keys),
//!   read and written in one place for `admin` and `import`, with one error for a member that
//!   does not fit.
//!
//! Every clone of the layer and of its services shares one state. `poll_ready` is the inner
//! service's; refusals are responses, so `Error = S::Error`.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod backend;
mod caller;
mod engine;
mod error;
mod http;
pub mod import;
mod keycache;
pub mod keys;
mod model;
mod rejection;
mod store;
pub mod usage;
mod view;
mod wire;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::backend::redis::{
    FailurePolicy, RedisBackend, RedisBackendBuilder, RedisBackendError, RedisBackendErrorKind, RedisStats,
};
pub use crate::caller::Caller;
pub use crate::engine::{Clock, ManualClock, Now, SystemClock};
pub use crate::error::{ConfigError, ConfigErrorKind};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::http::MissingCaller;
pub use crate::http::{
    AuthorizerKey, AwsRejection, KeySource, RateLimitHeaders, RenderRejection, ResponseFuture, UsagePlanBody,
    UsagePlanLayer, UsagePlanLayerBuilder, UsagePlanService, MAX_PRESENTED_KEY_LEN,
};
pub use crate::keycache::KeyCacheStats;
pub use crate::model::{
    ApiKey, Config, Customer, KeySecret, MethodKey, PlanStage, PreviousValue, Quota, QuotaAnchor, QuotaPeriod, Stage,
    Throttle, UsagePlan, MAX_KEY_LEN, MAX_METHODS_PER_STAGE, MAX_METHOD_THROTTLES, MAX_QUOTA_LIMIT, MIN_KEY_LEN,
};
pub use crate::rejection::{Rejection, RejectionKind, ThrottleScope};
pub use crate::store::{
    CacheStats, CachedKeyStore, CachedKeyStoreBuilder, CustomerQuery, InMemoryKeyStore, Invalidation, KeyChange,
    KeyQuery, KeyRecord, KeyStore, Listing, LookupBudgetExhausted, ManageError, ManageErrorKind, ManagedKeyStore,
    PlanChange, PlanQuery, StoreError, StoreErrorKind, StoredKey,
};
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::store::{SqlKeyStore, SqlStoreError, SqlStoreErrorKind};

//! The admin router (feature `admin`): every operation through `ServiceExt::oneshot` with the exact
//! JSON shapes, bad input (status, `x-amzn-ErrorType`, message, and the store unchanged), auth
//! refusals, each against three stores (`stores`): `InMemoryKeyStore`, and (feature `sqlx`)
//! `SqlKeyStore` on SQLite and on PostgreSQL (`DATABASE_URL`; without it the PostgreSQL tests
//! print SKIPPED, and fail with `USAGE_PLANS_REQUIRE_SERVICES=1`); and boto3 and the AWS CLI
//! against a real server (`sdk`, in-memory store).

/// For each `async fn name(b: Backend)` listed, a module `name` with one test per store:
/// `memory`, `sqlite` and `postgres`.
macro_rules! per_store {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name($crate::Backend::Memory).await;
            }

            #[cfg(feature = "sqlx")]
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await;
            }

            #[cfg(feature = "sqlx")]
            #[tokio::test]
            async fn postgres() {
                if $crate::sql_support::postgres_url(module_path!()).is_some() {
                    super::$name($crate::Backend::Postgres).await;
                }
            }
        }
    )+};
}

mod customers;
mod errors;
mod guard;
mod keys;
mod plans;
mod sdk;
#[cfg(feature = "sqlx")]
#[path = "../sql_support/mod.rs"]
mod sql_support;
mod stores;
mod usage;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
pub(crate) use stores::{Backend, Store};
use tower::ServiceExt;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};

pub(crate) const TOKEN: &str = "admin-token-0123456789";
pub(crate) const K1: &str = "acme-0123456789abcdefghij";
pub(crate) const K2: &str = "beta-0123456789abcdefghij";

/// Stage petstore/prod; plans `gold` (throttle, quota, a method throttle) and `silver`, both on
/// the stage; key `k1` in gold, key `k2` in no plan.
pub(crate) const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"

[[plans]]
id = "gold"
name = "Gold"
throttle = { rate = 100.0, burst = 200 }
quota = { limit = 1000, period = "DAY" }
stages = [{ api = "petstore", stage = "prod", methods = { "/pets/GET" = { rate = 5.0, burst = 10 } } }]

[[plans]]
id = "silver"
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k1"
value = "acme-0123456789abcdefghij"
name = "Acme"
customer_id = "acme"
plans = ["gold"]

[[keys]]
id = "k2"
value = "beta-0123456789abcdefghij"
name = "Beta"
"#;

#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) store: Store,
    pub(crate) app: Router,
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) error_type: Option<String>,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    /// Asserts a status and returns the body.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self.body
    }
}

impl Harness {
    /// The admin router over a fresh store of `backend`.
    pub(crate) async fn new(backend: Backend) -> Self {
        Self::with(backend, |r| r).await
    }

    /// Like [`new`](Self::new), with the router changed by `f`.
    pub(crate) async fn with(backend: Backend, f: impl FnOnce(AdminRouter) -> AdminRouter) -> Self {
        Self::over(Store::new(backend).await, f)
    }

    /// The admin router over `store`, changed by `f`, nested under `/admin`.
    pub(crate) fn over(store: Store, f: impl FnOnce(AdminRouter) -> AdminRouter) -> Self {
        let admin = f(store.admin(AdminAuth::new().bearer(TOKEN))).into_router();
        Self { store, app: Router::new().nest("/admin", admin) }
    }

    /// Asserts that `item` shows the key value `value` if the store keeps values, and no
    /// `value` member if it keeps only hashes (the one documented difference); removes it.
    #[track_caller]
    pub(crate) fn take_value(&self, item: &mut Value, value: &str) {
        let shown = item.as_object_mut().unwrap().remove("value");
        match self.store.keeps_values() {
            true => assert_eq!(shown.as_ref().and_then(Value::as_str), Some(value), "{item}"),
            false => assert_eq!(shown, None, "a store of hashes shows no value: {item}"),
        }
    }

    /// Asserts that a key loaded from CONFIG shows the dates the store gives such keys: none
    /// in memory, the creation time (the time it was loaded) in SQL; removes them.
    #[track_caller]
    pub(crate) fn take_load_date(&self, item: &mut Value) {
        match self.store.dates_loaded_keys() {
            true => take_recent(item, "createdDate"),
            false => assert!(item.get("createdDate").is_none(), "{item}"),
        }
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let error_type = response.headers().get("x-amzn-errortype").map(|v| v.to_str().unwrap().to_owned());
        if status.as_u16() >= 400 {
            assert_eq!(response.headers()["content-type"], "application/json");
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, error_type, body }
    }

    /// `method` on `/admin{path}` with the admin token and `body` (JSON text).
    pub(crate) async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(format!("/admin{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.call("GET", path, "").await.expect(200)
    }

    /// Asserts that the call is refused with `status`, `aws_type` and a message starting with
    /// `message`, and that the store did not change.
    pub(crate) async fn refused(
        &self,
        method: &str,
        path: &str,
        body: &str,
        status: u16,
        aws_type: &str,
        message: &str,
    ) {
        let before = self.store.snapshot().await;
        let reply = self.call(method, path, body).await;
        assert_eq!(reply.status.as_u16(), status, "{method} {path} {body}: {}", reply.body);
        assert_eq!(reply.error_type.as_deref(), Some(aws_type), "{method} {path} {body}");
        assert!(
            reply.message().starts_with(message),
            "{method} {path} {body}: got {:?}, want {message:?}",
            reply.message()
        );
        assert_eq!(reply.body.as_object().unwrap().len(), 1, "only a message: {}", reply.body);
        for secret in [K1, K2] {
            assert!(!reply.message().contains(secret), "a key value in {:?}", reply.message());
        }
        assert_eq!(self.store.snapshot().await, before, "{method} {path} {body} changed the store");
    }
}

/// Epoch seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Asserts that `v` is a timestamp (epoch seconds) within a minute of now, and removes it.
#[track_caller]
pub(crate) fn take_recent(v: &mut Value, member: &str) {
    let t = v.as_object_mut().unwrap().remove(member).unwrap_or_else(|| panic!("no {member} in {v}"));
    let t = t.as_i64().unwrap_or_else(|| panic!("{member} is not whole epoch seconds: {t}"));
    assert!((now() - t).abs() < 60, "{member} = {t}");
}

//! The admin router (feature `admin`): every operation through `ServiceExt::oneshot` with the exact
//! JSON shapes, bad input (status, `x-amzn-ErrorType`, message, and the store unchanged), auth
//! refusals; and boto3 and the AWS CLI against a real server (`sdk`).

mod errors;
mod keys;
mod plans;
mod sdk;
mod usage;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::{ApiKey, InMemoryKeyStore, KeySecret, KeyStore, UsagePlan};

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
    pub(crate) store: InMemoryKeyStore,
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

/// What a failed call must leave as it was.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    plans: Vec<Arc<UsagePlan>>,
    keys: Vec<(KeySecret, ApiKey)>,
    generation: u64,
}

pub(crate) fn snapshot(store: &InMemoryKeyStore) -> Snapshot {
    let config = store.config();
    Snapshot {
        plans: config.plans().to_vec(),
        keys: config.keys().to_vec(),
        generation: store.invalidation().unwrap().generation(),
    }
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(|r| r)
    }

    pub(crate) fn with(f: impl FnOnce(AdminRouter) -> AdminRouter) -> Self {
        let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
        let admin = f(AdminRouter::new(store.clone(), AdminAuth::new().bearer(TOKEN))).into_router();
        Self { store, app: Router::new().nest("/admin", admin) }
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
        let before = snapshot(&self.store);
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
        assert_eq!(snapshot(&self.store), before, "{method} {path} {body} changed the store");
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

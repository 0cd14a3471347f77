//! Helpers shared by the end-to-end tests.
#![allow(dead_code, unreachable_pub)]

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_usage_plans::{InMemoryKeyStore, ManualClock, UsagePlanBody, UsagePlanLayer, UsagePlanLayerBuilder};

/// 2026-11-23T12:00:00Z, a Monday.
pub const NOON: u64 = 1_795_435_200;

pub fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON))
}

pub const HEAD: &str = r#"
[stage]
api = "petstore"
name = "prod"
"#;

/// A config with `stage_extra` under `[stage]`, one plan "p" with `plan_fields`, bound to
/// petstore/prod, and one key "k" (value `key("k")`) in it.
pub fn one_key(stage_extra: &str, plan_fields: &str) -> String {
    format!(
        "{stage_extra}\n[[plans]]\nid = \"p\"\n{plan_fields}\nstages = [{{ api = \"petstore\", stage = \"prod\" }}]\n\
         [[keys]]\nid = \"k\"\nvalue = \"k-0123456789abcdefghij\"\nplans = [\"p\"]\n"
    )
}

pub fn store(extra: &str) -> InMemoryKeyStore {
    InMemoryKeyStore::from_toml_str(&format!("{HEAD}{extra}")).unwrap_or_else(|e| panic!("config: {e}"))
}

pub fn builder(extra: &str, clock: &ManualClock) -> UsagePlanLayerBuilder {
    UsagePlanLayer::builder(store(extra)).clock(clock.clone())
}

pub type Svc = tower::util::BoxCloneSyncService<Request<String>, Response<UsagePlanBody<String>>, Infallible>;

/// The layer around a service that answers 200 "ok".
pub fn service(layer: &UsagePlanLayer) -> Svc {
    let inner = service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("ok"))) });
    tower::util::BoxCloneSyncService::new(layer.layer(inner))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
    pub extensions: http::Extensions,
}

pub async fn send(svc: &Svc, method: &str, path: &str, key: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    send_req(svc, req.body(String::new()).unwrap()).await
}

pub async fn send_req(svc: &Svc, req: Request<String>) -> Reply {
    let resp = svc.clone().ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
        extensions: parts.extensions,
    }
}

pub async fn get(svc: &Svc, path: &str, key: Option<&str>) -> Reply {
    send(svc, "GET", path, key).await
}

/// Statuses of `n` requests.
pub async fn statuses(svc: &Svc, method: &str, path: &str, key: Option<&str>, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(send(svc, method, path, key).await.status.as_u16());
    }
    out
}

pub fn count(v: &[u16], status: u16) -> usize {
    v.iter().filter(|&&s| s == status).count()
}

/// A key value from a short name.
pub fn key(name: &str) -> String {
    format!("{name}-0123456789abcdefghij")
}

pub fn forbidden(r: &Reply) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "body {}", r.body);
    assert_eq!(r.body, r#"{"message":"Forbidden"}"#);
    assert_eq!(r.headers["x-amzn-errortype"], "ForbiddenException");
    assert_eq!(r.headers["content-type"], "application/json");
}

pub fn too_many(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "body {}", r.body);
    assert_eq!(r.body, r#"{"message":"Too Many Requests"}"#);
    assert_eq!(r.headers["x-amzn-errortype"], "TooManyRequestsException");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
}

pub fn limit_exceeded(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "body {}", r.body);
    assert_eq!(r.body, r#"{"message":"Limit Exceeded"}"#);
    assert_eq!(r.headers["x-amzn-errortype"], "LimitExceededException");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
}

/// Kills the child process when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary of example `name` cargo built next to this test (`cargo test` builds examples,
/// with the test's features).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

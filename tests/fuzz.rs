//! Fuzzing on stable Rust (proptest) over what the crate reads from outside: configuration text
//! (TOML and JSON, arbitrary and mutated from `examples/plans.toml`), the presented API key
//! (headers, `Authorization: Bearer`, query strings), SigV4 `Authorization` headers
//! (`AdminAuth::verify`), the admin API's JSON bodies (CreateUsagePlan, UpdateUsagePlan,
//! CreateApiKey, UpdateApiKey, UpdateUsage) and CSV (ImportApiKeys).
//!
//! Nothing may panic; every configuration error names a field or a line; the layer answers 200,
//! 403 or 429; the admin API never answers 5xx, and its refusals carry a message without key values.
//!
//! Cases per target: `USAGE_PLANS_FUZZ_CASES` (default 256, so `cargo test` stays quick; CI runs
//! more, see `.ci/run`). A failing input is shrunk and printed; keep it as a regression test
//! below.

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use std::time::{Duration, UNIX_EPOCH};
use tower::{Layer, ServiceExt};
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::{Config, ConfigError, InMemoryKeyStore, KeySource, ManualClock, UsagePlanLayer};

const PLANS: &str = include_str!("../examples/plans.toml");
const TOKEN: &str = "admin-token-0123456789";
const KEY: &str = "fuzz-0123456789abcdefghij";
const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"
methods = { "/pets/GET" = { rate = 100.0, burst = 100 } }
public_methods = ["/health/GET"]

[[plans]]
id = "gold"
throttle = { rate = 1000.0, burst = 1000 }
quota = { limit = 100000, period = "DAY" }
stages = [{ api = "petstore", stage = "prod", methods = { "/pets/{id}/DELETE" = { rate = 100.0, burst = 100 } } }]

[[plans]]
id = "silver"
stages = [{ api = "other", stage = "prod" }]

[[keys]]
id = "k1"
value = "fuzz-0123456789abcdefghij"
plans = ["gold"]
"#;

fn cases() -> u32 {
    std::env::var("USAGE_PLANS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(RunConfig { cases: cases(), failure_persistence: None, ..RunConfig::default() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A configuration error names where it is: a field, a line, or both.
fn check_config_error(e: &ConfigError) -> Result<(), TestCaseError> {
    prop_assert!(!e.field().is_empty() || e.line().is_some(), "neither field nor line: {e:?}");
    prop_assert!(!e.reason().is_empty(), "no reason: {e:?}");
    Ok(())
}

/// Parses `text` as TOML and as JSON; what loads writes back into an equal configuration.
fn check_config_text(text: &str) -> Result<(), TestCaseError> {
    for parsed in [Config::from_toml_str(text), Config::from_json_str(text)] {
        match parsed {
            Ok(c) => {
                let toml = Config::from_toml_str(&c.to_toml_string());
                prop_assert_eq!(toml.as_ref(), Ok(&c), "written as TOML: {}", c.to_toml_string());
                let json = Config::from_json_str(&c.to_json_string());
                prop_assert_eq!(json.as_ref(), Ok(&c), "written as JSON: {}", c.to_json_string());
            }
            Err(e) => check_config_error(&e)?,
        }
    }
    Ok(())
}

/// Byte edits: (position, what, byte): 0 replaces, 1 inserts, 2 deletes.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"\"'[]{}=,.:\n 0123456789-+eE_#\\tfalsetrueDAYMONTH".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec((any::<usize>(), 0u8..3, byte), 1..6)
}

fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, op, b) in edits {
        let at = at % (bytes.len() + 1);
        match op {
            0 if at < bytes.len() => bytes[at] = b,
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, b),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn configuration_text() {
    let fragments = prop::collection::vec(
        prop_oneof![
            Just("[stage]\n".to_owned()),
            Just("[[plans]]\n".to_owned()),
            Just("[[keys]]\n".to_owned()),
            Just("[[plans.stages]]\n".to_owned()),
            "(api|name|id|stage|value|period|limit|burst|rate|offset|plans|methods|created) = ",
            "(\"[a-z/{}+]{0,12}\"|-?[0-9]{1,22}|[0-9]\\.[0-9]e[0-9]{1,3}|true|\\{ |\\}|\\[|\\]|, )\n?",
            ".{0,8}",
            // Deep keys and nesting: past toml's limit (80) some errors come without a span.
            "\\[{1,2}(stage|plans)(\\.[a-z]){60,100}\\]{1,2}\n",
            "[a-z](\\.[a-z]){60,100} = \\[{0,100}1\n",
        ],
        0..24,
    )
    .prop_map(|v| v.concat());
    let mut runner = runner();
    runner.run(&prop_oneof![any::<String>(), fragments], |text| check_config_text(&text)).unwrap();
}

/// A layer over `config` answers a request with each of its keys (and none) 200, 403 or 429.
fn serve(rt: &tokio::runtime::Runtime, config: Config) -> Result<(), TestCaseError> {
    let mut values: Vec<Option<String>> = config.keys().iter().map(|(s, _)| Some(s.expose().to_owned())).collect();
    values.push(None);
    let Ok(layer) = UsagePlanLayer::new(InMemoryKeyStore::from_config(config)) else { return Ok(()) };
    for (value, path) in values.into_iter().zip(["/pets", "/pets/1", "/health", "/"].into_iter().cycle()) {
        let mut req = Request::builder().uri(path).body(String::new()).unwrap();
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            req.headers_mut().insert("x-api-key", v);
        }
        let svc = layer.layer(tower::service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        }));
        let status = rt.block_on(svc.oneshot(req)).unwrap().status().as_u16();
        prop_assert!(matches!(status, 200 | 403 | 429), "{path} -> {status}");
    }
    Ok(())
}

#[test]
fn configuration_mutated_from_the_example() {
    let rt = runtime();
    let json = Config::from_toml_str(PLANS).unwrap().to_json_string();
    let mut runner = runner();
    runner
        .run(&(edits(), any::<bool>()), |(edits, as_json)| {
            let text = mutate(if as_json { &json } else { PLANS }, &edits);
            check_config_text(&text)?;
            match if as_json { Config::from_json_str(&text) } else { Config::from_toml_str(&text) } {
                Ok(config) => serve(&rt, config),
                Err(_) => Ok(()),
            }
        })
        .unwrap();
}

#[test]
fn key_extraction() {
    let rt = runtime();
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_795_435_200));
    let layers: Vec<UsagePlanLayer> = [
        KeySource::default(),
        KeySource::AuthorizationBearer,
        KeySource::Query("api_key".into()),
        KeySource::Header("x-tenant-key".parse().unwrap()),
    ]
    .into_iter()
    .map(|source| UsagePlanLayer::builder(store.clone()).clock(clock.clone()).key_source(source).build().unwrap())
    .collect();
    let value = prop_oneof![
        Just(KEY.as_bytes().to_vec()),
        Just(format!("Bearer {KEY}").into_bytes()),
        Just(format!("bearer  {KEY} ").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,40}".prop_map(String::into_bytes),
    ];
    let header = prop::sample::select(vec!["x-api-key", "authorization", "x-tenant-key", "cookie"]);
    let path = prop_oneof![
        Just("/pets".to_owned()),
        Just("/health".to_owned()),
        "/[a-z{}%0-9/]{0,12}",
        "/pets\\?(api_key|x|api_key=|&api_key)=[ -~]{0,40}",
        Just(format!("/pets?api_key={KEY}")),
        Just(format!("/pets?api_key={KEY}&api_key=other")),
    ];
    let method = prop::sample::select(vec!["GET", "HEAD", "DELETE", "POST", "BREW"]);
    let mut runner = runner();
    runner
        .run(&(0..layers.len(), header, value, path, method), |(layer, header, value, path, method)| {
            let Ok(uri) = path.parse::<Uri>() else { return Ok(()) };
            let mut req = Request::builder().method(method).uri(uri).body(String::new()).unwrap();
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                req.headers_mut().insert(header, v);
            }
            let svc = layers[layer].layer(tower::service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
            }));
            let status = rt.block_on(svc.oneshot(req)).unwrap().status().as_u16();
            // 429 once the (unmoving) clock's buckets are spent by the valid keys sent.
            prop_assert!(matches!(status, 200 | 403 | 429), "{method} {path} {header}: {value:?} -> {status}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn sigv4_authorization_headers() {
    let auth = AdminAuth::new().sigv4("AKIDFUZZ", "fuzz-secret-0123456789").bearer(TOKEN);
    let now = UNIX_EPOCH + Duration::from_secs(1_795_435_200);
    let part = prop_oneof![
        Just("Credential=AKIDFUZZ/20261123/us-east-1/apigateway/aws4_request".to_owned()),
        "Credential=[A-Z]{0,8}(/[0-9a-z_-]{0,12}){0,6}",
        Just("SignedHeaders=host;x-amz-date".to_owned()),
        "SignedHeaders=[a-z;-]{0,30}",
        "Signature=[0-9a-f]{0,70}",
        "[ -~]{0,30}",
    ];
    let params = prop::collection::vec((part, prop::sample::select(vec![", ", ",", " ", ",,", ""])), 0..6)
        .prop_map(|parts| parts.into_iter().map(|(p, sep)| format!("{p}{sep}")).collect::<String>());
    let date = prop_oneof![Just("20261123T120000Z".to_owned()), "[0-9TZ]{0,18}", "[ -~]{0,20}"];
    let mut runner = runner();
    runner
        .run(&(params, date, any::<bool>()), |(params, date, with_date)| {
            let mut headers = HeaderMap::new();
            let Ok(v) = HeaderValue::from_str(&format!("AWS4-HMAC-SHA256 {params}")) else { return Ok(()) };
            headers.insert("authorization", v);
            headers.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
            if let (true, Ok(d)) = (with_date, HeaderValue::from_str(&date)) {
                headers.insert("x-amz-date", d);
            }
            let uri: Uri = "/admin/apikeys?limit=5".parse().unwrap();
            let result = auth.verify(&Method::GET, &uri, &headers, b"", now);
            let e = match result {
                Ok(()) => return Err(TestCaseError::fail(format!("accepted a made-up signature: {params}"))),
                Err(e) => e,
            };
            prop_assert!(!e.message().is_empty());
            prop_assert!(!e.message().contains("fuzz-secret"), "{}", e.message());
            Ok(())
        })
        .unwrap();
}

/// The admin router over a fresh store of [`CONFIG`], a bearer token, and a layer's usage.
fn admin() -> axum::Router {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let layer = UsagePlanLayer::new(store.clone()).unwrap();
    let admin = AdminRouter::new(store, AdminAuth::new().bearer(TOKEN)).usage(layer.usage()).into_router();
    axum::Router::new().nest("/admin", admin)
}

/// Sends one request; checks the answer is no 5xx and a refusal is a message without a key value.
fn admin_call(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    method: &str,
    path: &str,
    body: String,
    secrets: &[&str],
) -> Result<u16, TestCaseError> {
    let req = Request::builder()
        .method(method)
        .uri(format!("/admin{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, bytes) = rt.block_on(async {
        let resp = app.clone().oneshot(req).await.unwrap();
        (resp.status().as_u16(), resp.into_body().collect().await.unwrap().to_bytes())
    });
    prop_assert!(status < 500, "{method} {path} {body} -> {status}: {bytes:?}");
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = v["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "{method} {path} {body} -> {status} without a message: {bytes:?}");
        // `field: reason` (`line 3, column Key: ...` for CSV), or API Gateway's own wording.
        prop_assert!(
            status != 400 || message.contains(": ") || message.starts_with("Invalid "),
            "{method} {path} {body}: a 400 naming nothing: {message:?}"
        );
        if path.contains("format=csv") && status == 400 {
            prop_assert!(message.starts_with("line "), "{body:?}: {message:?}");
        }
        for s in secrets {
            prop_assert!(!message.contains(s), "{method} {path}: a key value in {message:?}");
        }
    }
    Ok(status)
}

/// JSON values built from the members the admin API reads, and anything else.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let names = prop::sample::select(vec![
        "name",
        "description",
        "throttle",
        "rateLimit",
        "burstLimit",
        "quota",
        "limit",
        "period",
        "offset",
        "apiStages",
        "apiId",
        "stage",
        "enabled",
        "value",
        "customerId",
        "tags",
        "patchOperations",
        "op",
        "path",
        "from",
        "stageKeys",
        "productCode",
        "/pets/GET",
        "DAY",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec!["DAY", "WEEK", "MONTH", "YEAR", "petstore", "prod", "gold", "/pets/GET", ""])
            .prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// `{"patchOperations": [...]}` with ops and paths the admin API knows, and others.
fn patch_body() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["replace", "add", "remove", "copy", "move", "test", "x"]);
    let path = prop_oneof![
        prop::sample::select(vec![
            "/name",
            "/description",
            "/enabled",
            "/customerId",
            "/value",
            "/throttle/rateLimit",
            "/throttle/burstLimit",
            "/quota/limit",
            "/quota/period",
            "/quota/offset",
            "/apiStages",
            "/apiStages/petstore:prod/throttle/~1pets~1GET/rateLimit",
            "/apiStages/petstore:prod/throttle/~1pets/GET/burstLimit",
            "/apiStages/petstore:prod/throttle",
            "/remaining",
            "/stages",
            "/productCode",
            "/tags/x",
        ])
        .prop_map(str::to_owned),
        "/[ -~]{0,20}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "2.5",
            "1e400",
            "true",
            "false",
            "DAY",
            "YEAR",
            "petstore:prod",
            "x",
            ""
        ])
        .prop_map(serde_json::Value::from),
        json_value(),
    ];
    prop::collection::vec((op, path, value), 0..5).prop_map(|ops| {
        let ops: Vec<serde_json::Value> = ops
            .into_iter()
            .map(|(op, path, value)| serde_json::json!({"op": op, "path": path, "value": value}))
            .collect();
        serde_json::json!({ "patchOperations": ops }).to_string()
    })
}

#[test]
fn admin_json_bodies() {
    let rt = runtime();
    let app = admin();
    let target = prop::sample::select(vec![
        ("POST", "/usageplans"),
        ("PATCH", "/usageplans/gold"),
        ("PATCH", "/usageplans/silver"),
        ("POST", "/apikeys"),
        ("PATCH", "/apikeys/k1"),
        ("PATCH", "/usageplans/gold/keys/k1/usage"),
        ("POST", "/usageplans/gold/keys"),
    ]);
    let body = prop_oneof![json_value().prop_map(|v| v.to_string()), patch_body(), "[ -~]{0,40}",];
    let mut runner = runner();
    runner
        .run(&(target, body), |((method, path), body)| admin_call(&rt, &app, method, path, body, &[KEY]).map(|_| ()))
        .unwrap();
}

#[test]
fn admin_csv_import() {
    let rt = runtime();
    let app = admin();
    let column = prop::sample::select(vec![
        "Name",
        "Key",
        "Description",
        "Enabled",
        "UsagePlanIds",
        "CustomerId",
        "name",
        "key",
        "Tags",
        "",
    ]);
    let cell = prop_oneof![
        "[a-z]{3,6}-[0-9a-zA-Z]{16,20}",
        prop::sample::select(vec![
            "true",
            "false",
            "gold",
            "silver",
            "gold,silver",
            "\"gold,silver\"",
            "nope",
            "",
            "\""
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
    ];
    let csv = (prop::collection::vec(column, 0..6), prop::collection::vec(prop::collection::vec(cell, 0..7), 0..5))
        .prop_map(|(header, rows)| {
            let mut text = header.join(",");
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(","));
            }
            text
        });
    let mut runner = runner();
    runner
        .run(&(csv, any::<bool>()), |(csv, fail)| {
            let path = format!("/apikeys?mode=import&format=csv&failonwarnings={fail}");
            // The cells of a `Key` column long enough to be key values must not appear in a refusal
            // (other columns, such as plan ids, may be named).
            let mut lines = csv.split('\n');
            let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
            let secrets: Vec<&str> = lines
                .flat_map(|line| line.split(',').enumerate().collect::<Vec<_>>())
                .filter(|&(i, c)| header.get(i).is_some_and(|h| h.eq_ignore_ascii_case("key")) && c.len() >= 20)
                .map(|(_, c)| c)
                .collect();
            let status = admin_call(&rt, &app, "POST", &path, csv.clone(), &secrets)?;
            prop_assert!(matches!(status, 201 | 400 | 404 | 409), "{csv:?} -> {status}");
            Ok(())
        })
        .unwrap();
}

/// Inputs fuzzing found, kept: each failed before its fix.
#[test]
fn regressions() {
    // A table header 81 keys deep: toml's "recursion limit" has no span; it was reported with
    // neither field nor line.
    let deep = format!("[[stage{}]]\n[stage]\n", ".a".repeat(80));
    check_config_text(&deep).unwrap();
    assert_eq!(Config::from_toml_str(&deep).unwrap_err().line(), Some(1));
}

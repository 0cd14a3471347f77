//! What clients see: rate-limit headers, custom rejection bodies, gRPC answers, key sources,
//! and secrets kept out of `Debug`.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use tower_usage_plans::{AuthorizerKey, KeySource, RateLimitHeaders, Rejection, RejectionKind};

const TEXT: &str = r#"
[[plans]]
id = "p"
throttle = { rate = 10.0, burst = 4 }
quota = { limit = 100, period = "DAY" }
[[plans.stages]]
api = "petstore"
stage = "prod"
methods = { "/pets/{petId}/DELETE" = { rate = 0.5, burst = 2 } }
[[keys]]
id = "k"
value = "k-0123456789abcdefghij"
plans = ["p"]
"#;

#[tokio::test]
async fn draft_headers_describe_each_per_key_limit() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).build().unwrap());
    let r = get(&svc, "/pets", Some(&key("k"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit-policy"], r#""quota";q=100;w=86400, "throttle";q=4;w=1"#);
    assert_eq!(r.headers["ratelimit"], r#""quota";r=99;t=43200, "throttle";r=3;t=1"#);
    let r = send(&svc, "DELETE", "/pets/9", Some(&key("k"))).await;
    assert_eq!(r.headers["ratelimit-policy"], r#""quota";q=100;w=86400, "throttle";q=4;w=1, "method";q=2;w=4"#);
    assert_eq!(r.headers["ratelimit"], r#""quota";r=98;t=43200, "throttle";r=2;t=1, "method";r=1;t=2"#);
    // A 429 carries them too, with r=0 for the refusing bucket.
    send(&svc, "DELETE", "/pets/9", Some(&key("k"))).await;
    let r = send(&svc, "DELETE", "/pets/9", Some(&key("k"))).await;
    too_many(&r);
    assert_eq!(r.headers["retry-after"], "2");
    assert!(r.headers["ratelimit"].to_str().unwrap().contains(r#""method";r=0"#), "{:?}", r.headers["ratelimit"]);
    // Anonymous refusals carry none.
    assert!(!get(&svc, "/pets", None).await.headers.contains_key("ratelimit"));
}

#[tokio::test]
async fn legacy_headers_show_the_most_binding_limit() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).rate_limit_headers(RateLimitHeaders::Legacy).build().unwrap());
    let r = get(&svc, "/pets", Some(&key("k"))).await;
    assert_eq!(r.headers["x-ratelimit-limit"], "4");
    assert_eq!(r.headers["x-ratelimit-remaining"], "3");
    assert_eq!(r.headers["x-ratelimit-reset"], "1");
    assert!(!r.headers.contains_key("ratelimit"));
}

#[tokio::test]
async fn headers_off_sends_none() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).rate_limit_headers(RateLimitHeaders::Off).build().unwrap());
    let r = get(&svc, "/pets", Some(&key("k"))).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.keys().all(|k| !k.as_str().contains("ratelimit")), "{:?}", r.headers);
    for _ in 0..4 {
        get(&svc, "/pets", Some(&key("k"))).await;
    }
    let r = get(&svc, "/pets", Some(&key("k"))).await;
    assert_eq!(r.headers["retry-after"], "1", "Retry-After is always sent on 429");
}

#[tokio::test]
async fn custom_renderer_builds_the_body_and_the_layer_adds_retry_after() {
    let clock = clock();
    let layer = builder(TEXT, &clock)
        .render_rejection(|r: &Rejection| {
            let body =
                format!(r#"{{"title":"{}","status":{},"kind":"{:?}"}}"#, r.message(), r.status().as_u16(), r.kind());
            Response::builder()
                .status(r.status())
                .header("content-type", "application/problem+json")
                .body(Bytes::from(body))
                .unwrap()
        })
        .build()
        .unwrap();
    let svc = service(&layer);
    let r = get(&svc, "/pets", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body, r#"{"title":"Forbidden","status":403,"kind":"MissingKey"}"#);
    for _ in 0..4 {
        get(&svc, "/pets", Some(&key("k"))).await;
    }
    let r = get(&svc, "/pets", Some(&key("k"))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::Throttled);
}

fn grpc(path: &str, key: Option<&str>) -> Request<String> {
    let mut b = Request::post(path).header("content-type", "application/grpc+proto");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    b.body(String::new()).unwrap()
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_answers() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).build().unwrap());
    let r = send_req(&svc, grpc("/helloworld.Greeter/SayHello", None)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/grpc");
    assert_eq!(r.headers["grpc-status"], "16");
    assert_eq!(r.headers["grpc-message"], "missing API key");
    assert_eq!(r.body, "");
    for _ in 0..4 {
        assert_eq!(send_req(&svc, grpc("/helloworld.Greeter/SayHello", Some(&key("k")))).await.status, 200);
    }
    let r = send_req(&svc, grpc("/helloworld.Greeter/SayHello", Some(&key("k")))).await;
    assert_eq!((r.status.as_u16(), r.headers["grpc-status"].to_str().unwrap()), (200, "8"));
    assert_eq!(r.headers["grpc-retry-pushback-ms"], "100");
    assert!(!r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn other_key_sources() {
    let clock = clock();
    let bearer = service(&builder(TEXT, &clock).key_source(KeySource::AuthorizationBearer).build().unwrap());
    let req = Request::get("/").header("authorization", format!("Bearer {}", key("k"))).body(String::new()).unwrap();
    assert_eq!(send_req(&bearer, req).await.status, 200);
    assert_eq!(get(&bearer, "/", Some(&key("k"))).await.status, 403, "x-api-key is not read");

    let query = service(&builder(TEXT, &clock).key_source(KeySource::Query("api_key".into())).build().unwrap());
    assert_eq!(get(&query, &format!("/pets?limit=2&api_key={}", key("k")), None).await.status, 200);
    assert_eq!(get(&query, "/pets?api_key=", None).await.status, 403);

    let upstream = service(&builder(TEXT, &clock).key_source(KeySource::Authorizer).build().unwrap());
    let mut req = Request::get("/").body(String::new()).unwrap();
    req.extensions_mut().insert(AuthorizerKey::new(key("k")));
    assert_eq!(send_req(&upstream, req).await.status, 200);

    let custom =
        service(&builder(TEXT, &clock).key_source(KeySource::Header("x-tenant-key".parse().unwrap())).build().unwrap());
    let req = Request::get("/").header("x-tenant-key", key("k")).body(String::new()).unwrap();
    assert_eq!(send_req(&custom, req).await.status, 200);
}

#[tokio::test]
async fn odd_requests_do_not_panic() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).build().unwrap());
    for path in ["/", "/pets/", "//", "/pets/%F0%9F%90%B6/DELETE", "/a/b/c/d/e/f/g", "*"] {
        let uri = if path == "*" { "*".to_owned() } else { path.to_owned() };
        let req = Request::builder().method("OPTIONS").uri(uri).header("x-api-key", key("k")).body(String::new());
        if let Ok(req) = req {
            let r = send_req(&svc, req).await;
            assert!(r.status == 200 || r.status == 429, "{path}: {}", r.status);
        }
    }
    let req =
        Request::get("/").header("x-api-key", http::HeaderValue::from_bytes(b"\xff\xfe-0123456789abcdefghij").unwrap());
    forbidden(&send_req(&svc, req.body(String::new()).unwrap()).await);
}

#[test]
fn debug_output_never_shows_key_values() {
    let layer = tower_usage_plans::UsagePlanLayer::new(store(TEXT)).unwrap();
    let store = store(TEXT);
    let config = tower_usage_plans::Config::from_toml_str(&format!("{HEAD}{TEXT}")).unwrap();
    for text in [format!("{store:?}"), format!("{layer:?}"), format!("{config:?}"), format!("{:#?}", config.keys())] {
        assert!(!text.contains("0123456789abcdefghij"), "secret in {text}");
    }
}

#[tokio::test]
async fn grpc_web_clients_get_their_own_content_type_back() {
    let clock = clock();
    let svc = service(&builder(TEXT, &clock).build().unwrap());
    let req = Request::post("/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc-web+proto")
        .body(String::new())
        .unwrap();
    let r = send_req(&svc, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/grpc-web+proto");
    assert_eq!(r.headers["grpc-status"], "16");
    // Plain gRPC with a codec suffix gets application/grpc.
    let req = Request::post("/x.Y/Z").header("content-type", "application/grpc+json").body(String::new()).unwrap();
    assert_eq!(send_req(&svc, req).await.headers["content-type"], "application/grpc");
}

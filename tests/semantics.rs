//! The request contract of docs/design.md, through the real layer, with a manual clock.

mod common;

use common::*;
use std::time::Duration;
use tower_usage_plans::{Rejection, RejectionKind, ThrottleScope, UsagePlanLayer};

const PLANS: &str = r#"
[[plans]]
id = "burst5"
throttle = { rate = 0.001, burst = 5 }
stages = [{ api = "petstore", stage = "prod" }]

[[plans]]
id = "quota3"
throttle = { rate = 100.0, burst = 100 }
quota = { limit = 3, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]

[[plans]]
id = "deleter"
throttle = { rate = 100.0, burst = 100 }
[[plans.stages]]
api = "petstore"
stage = "prod"
methods = { "/pets/{petId}/DELETE" = { rate = 0.001, burst = 1 } }

[[plans]]
id = "staging"
stages = [{ api = "petstore", stage = "staging" }]

[[keys]]
id = "k-burst"
value = "burst-0123456789abcdefghij"
plans = ["burst5"]

[[keys]]
id = "k-quota"
value = "quota-0123456789abcdefghij"
plans = ["quota3"]

[[keys]]
id = "k-deleter"
value = "deleter-0123456789abcdefghij"
plans = ["deleter"]

[[keys]]
id = "k-staging"
value = "staging-0123456789abcdefghij"
plans = ["staging"]

[[keys]]
id = "k-disabled"
value = "disabled-0123456789abcdefghij"
enabled = false
plans = ["burst5"]

[[keys]]
id = "k-expiring"
value = "expiring-0123456789abcdefghij"
plans = ["burst5"]
expires = "2026-11-23T12:00:10Z"
"#;

fn svc(clock: &tower_usage_plans::ManualClock) -> Svc {
    service(&builder(PLANS, clock).build().unwrap())
}

#[tokio::test]
async fn burst_then_429_until_a_token_refills() {
    let clock = clock();
    let svc = svc(&clock);
    let k = key("burst");
    let got = statuses(&svc, "GET", "/pets", Some(&k), 8).await;
    assert_eq!(got, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = get(&svc, "/pets", Some(&k)).await;
    too_many(&r);
    // One token per 1000 s: Retry-After is the wait, rounded up.
    assert_eq!(r.headers["retry-after"], "1000");
    let rejection = r.extensions.get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.throttle_scope(), Some(ThrottleScope::Key));
    assert_eq!(rejection.key_id(), Some("k-burst"));
    clock.advance(Duration::from_millis(999_999));
    assert_eq!(get(&svc, "/pets", Some(&k)).await.status, 429);
    assert_eq!(get(&svc, "/pets", Some(&k)).await.headers["retry-after"], "1", "a wait of 1 ms rounds up to 1 s");
    clock.advance(Duration::from_millis(1));
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&k), 3).await, [200, 429, 429]);
}

#[tokio::test]
async fn quota_counts_forwarded_requests_then_limit_exceeded_until_the_next_day() {
    let clock = clock();
    let svc = svc(&clock);
    let k = key("quota");
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&k), 3).await, [200, 200, 200]);
    for _ in 0..5 {
        limit_exceeded(&get(&svc, "/pets", Some(&k)).await);
    }
    let r = get(&svc, "/pets", Some(&k)).await;
    // Noon: 12 h to midnight UTC.
    assert_eq!(r.headers["retry-after"], "43200");
    assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::QuotaExceeded);
    clock.advance(Duration::from_secs(12 * 3600 - 1));
    limit_exceeded(&get(&svc, "/pets", Some(&k)).await);
    clock.advance(Duration::from_secs(1));
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&k), 4).await, [200, 200, 200, 429]);
}

#[tokio::test]
async fn throttled_requests_do_not_use_quota() {
    let clock = clock();
    let svc = service(
        &builder(
            &one_key(
                r#"
"#,
                r#"
throttle = { rate = 1.0, burst = 2 }
quota = { limit = 4, period = "WEEK" }
"#,
            ),
            &clock,
        )
        .build()
        .unwrap(),
    );
    let k = key("k");
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 10).await, [200, 200, 429, 429, 429, 429, 429, 429, 429, 429]);
    clock.advance(Duration::from_secs(2));
    // Two more tokens, and the quota still has 2 of 4.
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 3).await, [200, 200, 429]);
    clock.advance(Duration::from_secs(10));
    let r = get(&svc, "/", Some(&k)).await;
    limit_exceeded(&r);
    // A quota refusal gives back the throttle token it took: the bucket is still full.
    clock.advance(Duration::from_secs(7 * 86_400));
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 3).await, [200, 200, 429]);
}

#[tokio::test]
async fn per_key_method_throttle_limits_only_that_method() {
    let clock = clock();
    let svc = svc(&clock);
    let k = key("deleter");
    assert_eq!(send(&svc, "DELETE", "/pets/1", Some(&k)).await.status, 200);
    let r = send(&svc, "DELETE", "/pets/2", Some(&k)).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::KeyMethod));
    assert_eq!(statuses(&svc, "GET", "/pets/1", Some(&k), 20).await, vec![200; 20]);
    assert_eq!(statuses(&svc, "POST", "/pets", Some(&k), 5).await, vec![200; 5]);
    // Other keys on other plans are not affected.
    assert_eq!(send(&svc, "DELETE", "/pets/1", Some(&key("burst"))).await.status, 200);
}

#[tokio::test]
async fn stage_method_throttle_limits_all_keys_together() {
    let clock = clock();
    let text = r#"
[[plans]]
id = "p"
throttle = { rate = 100.0, burst = 100 }
stages = [{ api = "petstore", stage = "prod" }]
[[keys]]
id = "a"
value = "a-0123456789abcdefghij"
plans = ["p"]
[[keys]]
id = "b"
value = "b-0123456789abcdefghij"
plans = ["p"]
"#;
    let store = store(text);
    let stage = tower_usage_plans::Stage::new("petstore", "prod")
        .method_throttle("/pets/GET", tower_usage_plans::Throttle::new(0.001, 3).unwrap())
        .unwrap();
    let svc = service(&UsagePlanLayer::builder(store).stage(stage).clock(clock.clone()).build().unwrap());
    let (a, b) = (key("a"), key("b"));
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&a), 2).await, [200, 200]);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&b), 2).await, [200, 429]);
    let r = get(&svc, "/pets", Some(&a)).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::StageMethod));
    // Other methods and paths are not held by it.
    assert_eq!(send(&svc, "POST", "/pets", Some(&a)).await.status, 200);
    assert_eq!(get(&svc, "/pets/7", Some(&b)).await.status, 200);
}

#[tokio::test]
async fn forbidden_cases() {
    let clock = clock();
    let svc = svc(&clock);
    let cases: Vec<(Option<String>, RejectionKind)> = vec![
        (None, RejectionKind::MissingKey),
        (Some(key("staging")), RejectionKind::WrongStage),
        (Some(key("disabled")), RejectionKind::DisabledKey),
        (Some(key("unknown")), RejectionKind::UnknownKey),
        (Some(String::new()), RejectionKind::MissingKey),
        (Some("has space-0123456789abcdefghij".into()), RejectionKind::MalformedKey),
        (Some("k".repeat(300)), RejectionKind::MalformedKey),
    ];
    for (k, kind) in cases {
        let r = get(&svc, "/pets", k.as_deref()).await;
        forbidden(&r);
        assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), kind, "key {k:?}");
        assert!(!r.headers.contains_key("retry-after"));
    }
    // Two x-api-key headers, even two good ones.
    let req = http::Request::get("/pets")
        .header("x-api-key", key("burst"))
        .header("x-api-key", key("burst"))
        .body(String::new())
        .unwrap();
    let r = send_req(&svc, req).await;
    forbidden(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::MalformedKey);
}

#[tokio::test]
async fn expired_key_is_refused_from_its_expiry_on() {
    let clock = clock();
    let svc = svc(&clock);
    let k = key("expiring");
    assert_eq!(get(&svc, "/pets", Some(&k)).await.status, 200);
    clock.advance(Duration::from_secs(9));
    assert_eq!(get(&svc, "/pets", Some(&k)).await.status, 200);
    clock.advance(Duration::from_secs(1));
    let r = get(&svc, "/pets", Some(&k)).await;
    forbidden(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::ExpiredKey);
}

fn public() -> String {
    one_key(
        r#"
throttle = { rate = 0.001, burst = 6 }
methods = { "/health/GET" = { rate = 0.001, burst = 2 } }
public_methods = ["/health/GET", "/docs/{proxy+}/GET"]

"#,
        r#"
quota = { limit = 1, period = "DAY" }
"#,
    )
}

#[tokio::test]
async fn public_methods_need_no_key_but_obey_stage_throttles() {
    let clock = clock();
    let svc = service(&builder(&public(), &clock).build().unwrap());
    let r = get(&svc, "/health", None).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    assert!(!r.headers.contains_key("ratelimit"), "no per-key headers for anonymous traffic");
    // The stage method throttle (burst 2) holds the public method too.
    let r = get(&svc, "/health", None).await;
    assert_eq!(r.status, 200);
    let r = get(&svc, "/health", None).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::StageMethod));
    // A key on a public method is ignored: no quota is used (the key's quota is 1).
    assert_eq!(get(&svc, "/docs/a/b", Some(&key("k"))).await.status, 200);
    assert_eq!(get(&svc, "/pets", Some(&key("k"))).await.status, 200);
    limit_exceeded(&get(&svc, "/pets", Some(&key("k"))).await);
    // The stage default throttle (burst 6) counts everything: health 2 + docs 1 + pets 1 = 4 so far
    // (refused requests took nothing); 2 more, then 429.
    assert_eq!(statuses(&svc, "GET", "/docs/x", None, 3).await, [200, 200, 429]);
    let r = get(&svc, "/pets", None).await;
    forbidden(&r);
}

#[tokio::test]
async fn account_throttle_covers_every_key_and_public_method() {
    let clock = clock();
    let text = r#"
public_methods = ["/health/GET"]
[account]
throttle = { rate = 0.001, burst = 4 }
[[plans]]
id = "p"
stages = [{ api = "petstore", stage = "prod" }]
[[keys]]
id = "a"
value = "a-0123456789abcdefghij"
plans = ["p"]
[[keys]]
id = "b"
value = "b-0123456789abcdefghij"
plans = ["p"]
"#;
    let svc = service(&builder(text, &clock).build().unwrap());
    assert_eq!(get(&svc, "/x", Some(&key("a"))).await.status, 200);
    assert_eq!(get(&svc, "/x", Some(&key("b"))).await.status, 200);
    assert_eq!(get(&svc, "/health", None).await.status, 200);
    assert_eq!(get(&svc, "/x", Some(&key("a"))).await.status, 200);
    let r = get(&svc, "/x", Some(&key("b"))).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::Account));
}

#[tokio::test]
async fn offset_lowers_only_the_initial_period() {
    let clock = clock();
    let text = &one_key(
        r#"
"#,
        r#"
quota = { limit = 5, period = "MONTH", offset = 3 }
created = "2026-11-02T09:00:00Z"
"#,
    );
    let svc = service(&builder(text, &clock).build().unwrap());
    let k = key("k");
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 4).await, [200, 200, 429, 429]);
    // December 1st, 00:00 UTC: 8 days and 12 hours after Monday noon, 2026-11-23.
    clock.advance(Duration::from_secs(8 * 86_400 + 12 * 3600));
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 6).await, [200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn clones_of_the_layer_and_service_share_one_state() {
    let clock = clock();
    let layer = builder(PLANS, &clock).build().unwrap();
    let a = service(&layer);
    let b = service(&layer.clone());
    let c = a.clone();
    let k = key("burst");
    let mut got = Vec::new();
    for svc in [&a, &b, &c, &a, &b, &c] {
        got.push(get(svc, "/", Some(&k)).await.status.as_u16());
    }
    assert_eq!(got, [200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn every_forwarded_request_counts_unless_a_refund_policy_says_otherwise() {
    use http::{Request, Response, StatusCode};
    use std::convert::Infallible;
    use tower::Layer;
    let text = &one_key(
        r#"
"#,
        r#"
quota = { limit = 3, period = "DAY" }
"#,
    );
    // The inner service fails with 500 on /broken.
    let inner = tower::service_fn(|req: Request<String>| async move {
        let status = if req.uri().path() == "/broken" { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
        Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap())
    });
    let k = key("k");
    for (refund, want) in [(false, vec![500, 500, 500, 429]), (true, vec![500, 500, 500, 500, 500, 200, 200, 200, 429])]
    {
        let clock = clock();
        let mut b = builder(text, &clock);
        if refund {
            b = b.refund_quota_when(|s: StatusCode| s.is_server_error());
        }
        let svc: Svc = tower::util::BoxCloneSyncService::new(b.build().unwrap().layer(inner));
        let mut got = Vec::new();
        for i in 0..want.len() {
            let path = if !refund || i < 5 { "/broken" } else { "/ok" };
            got.push(get(&svc, path, Some(&k)).await.status.as_u16());
        }
        assert_eq!(got, want, "refund policy {refund}");
    }
}

#[tokio::test]
async fn without_created_the_offset_applies_to_the_period_of_first_use() {
    let clock = clock();
    let text = &one_key(
        r#"
"#,
        r#"
quota = { limit = 5, period = "DAY", offset = 2 }
"#,
    );
    let svc = service(&builder(text, &clock).build().unwrap());
    let k = key("k");
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 4).await, [200, 200, 200, 429]);
    clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(statuses(&svc, "GET", "/", Some(&k), 6).await, [200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn head_is_held_by_get_limits_and_trailing_slashes_do_not_escape() {
    let clock = clock();
    let svc = service(&builder(&public(), &clock).build().unwrap());
    // HEAD /health is public like GET /health, and shares its stage method bucket (burst 2).
    assert_eq!(send(&svc, "HEAD", "/health", None).await.status, 200);
    assert_eq!(get(&svc, "/health/", None).await.status, 200);
    too_many(&send(&svc, "HEAD", "/health", None).await);
}

/// Readings handed out in order, as threads would see them: a reading can be older than one
/// already used by another request (its thread was preempted between reading and deciding).
#[derive(Debug)]
struct Scripted(parking_lot::Mutex<std::collections::VecDeque<u64>>);

impl tower_usage_plans::Clock for Scripted {
    fn now(&self) -> tower_usage_plans::Now {
        let mono_nanos = self.0.lock().pop_front().expect("script long enough");
        tower_usage_plans::Now { mono_nanos, unix_secs: NOON as i64 + (mono_nanos / 1_000_000_000) as i64 }
    }
}

#[tokio::test]
async fn a_stale_clock_reading_does_not_cause_a_spurious_429() {
    let text = one_key("", "throttle = { rate = 1.0, burst = 1 }");
    let s = 1_000_000_000u64;
    // Request 1 at 0 s (two readings: before and after the store lookup). Request 2 decides at
    // 5 s. Request 3 read the clock at 4 s, before request 2 decided (stale): refused with that
    // reading, it is decided again with a fresh one (6.5 s), where a token is due. Request 4 at
    // 6.6 s is refused for real: its fresh reading (6.7 s) agrees.
    let script = [0, 0, 5 * s, 4 * s, 6 * s + s / 2, 6 * s + s * 6 / 10, 6 * s + s * 7 / 10];
    let clock = Scripted(parking_lot::Mutex::new(script.into()));
    let svc = service(&tower_usage_plans::UsagePlanLayer::builder(store(&text)).clock(clock).build().unwrap());
    assert_eq!(statuses(&svc, "GET", "/", Some(&key("k")), 4).await, [200, 200, 200, 429]);
}

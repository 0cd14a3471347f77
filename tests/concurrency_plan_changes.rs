//! A concurrency cap holds across a new key state: the plan gained a method throttle, or the key
//! got method throttles of its own, while a request was in flight (found by review).
mod common;
use common::*;
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::{service_fn, Layer, ServiceExt};
use tower_usage_plans::{PlanStage, Throttle, UsagePlan, UsagePlanLayer};

const CFG: &str = r#"
[[plans]]
id = "p"
concurrency = 1
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k"
value = "k-0123456789abcdefghij"
plans = ["p"]
"#;

fn req() -> Request<String> {
    Request::get("/x").header("x-api-key", "k-0123456789abcdefghij").body(String::new()).unwrap()
}

async fn yield_a_while() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// A request A of the cap-1 key held in the inner service; `change` applied to the store; then
/// a request C of the same key must still be refused.
async fn cap_holds_across(change: impl FnOnce(&tower_usage_plans::InMemoryKeyStore)) {
    let clock = clock();
    let st = store(CFG);
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let inner = service_fn(move |_r: Request<String>| {
        let g = Arc::clone(&g);
        async move {
            g.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }
    });
    let svc = UsagePlanLayer::builder(st.clone()).clock(clock.clone()).build().unwrap().layer(inner);
    let a = tokio::spawn(svc.clone().oneshot(req()));
    yield_a_while().await;
    // B while A is in: refused (cap 1).
    assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    change(&st);
    // C while A is still in: refused too.
    let c = tokio::spawn(svc.clone().oneshot(req()));
    yield_a_while().await;
    let c_refused = c.is_finished();
    gate.add_permits(2);
    let _ = a.await;
    let status = c.await.unwrap().unwrap().status();
    assert!(c_refused && status == StatusCode::TOO_MANY_REQUESTS, "C got {status}: 2 in flight with a cap of 1");
}

#[tokio::test]
async fn cap_survives_a_method_throttle_change() {
    // The plan gains a method throttle (cap unchanged): the key gets a new state.
    cap_holds_across(|st| {
        let plan = UsagePlan::new("p").with_concurrency(NonZeroU32::new(1).unwrap()).stage(
            PlanStage::new("petstore", "prod").method_throttle("/y/GET", Throttle::new(100.0, 100).unwrap()).unwrap(),
        );
        st.put_plan(plan).unwrap();
    })
    .await;
}

#[tokio::test]
async fn cap_survives_a_key_override_of_method_throttles() {
    cap_holds_across(|st| {
        let _updated = st.update_key("k", |k| k.method_throttle("/y/GET", Throttle::new(100.0, 100).unwrap())).unwrap();
    })
    .await;
}

const CUST: &str = r#"
[[plans]]
id = "q3"
throttle = { rate = 0.001, burst = 100 }
quota = { limit = 3, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "a"
value = "a-0123456789abcdefghij"
customer_id = "acme"
plans = ["q3"]

[[customers]]
id = "acme"
throttle = { rate = 0.001, burst = 100 }
quota = { limit = 2, period = "DAY" }
"#;

#[tokio::test]
async fn a_customer_quota_refusal_gives_the_key_count_and_buckets_back() {
    let clock = clock();
    let st = store(CUST);
    let layer = UsagePlanLayer::builder(st.clone()).clock(clock.clone()).build().unwrap();
    let svc = service(&layer);
    let k = Some("a-0123456789abcdefghij");
    assert_eq!(statuses(&svc, "GET", "/x", k, 5).await, vec![200, 200, 429, 429, 429]);
    st.put_customer(
        tower_usage_plans::Customer::new("acme")
            .with_throttle(tower_usage_plans::Throttle::new(0.001, 100).unwrap())
            .with_quota(tower_usage_plans::Quota::new(100, tower_usage_plans::QuotaPeriod::Day).unwrap()),
    )
    .unwrap();
    // Key count 2 of 3: one more.
    assert_eq!(statuses(&svc, "GET", "/x", k, 2).await, vec![200, 429]);
}

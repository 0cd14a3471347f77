//! Throughput with two threads against one: one hot key (every request on the same key's
//! buckets and quota) and many keys (10k, visited in turn). Reports requests per second and the
//! 2-thread / 1-thread ratio. The machine has 2 cores; the figure shows contention, not a target.
//!
//! Run: `cargo bench --bench scaling`

use http::{HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{
    ApiKey, Config, InMemoryKeyStore, KeySecret, PlanStage, Quota, QuotaPeriod, RateLimitHeaders, Stage, Throttle,
    UsagePlan, UsagePlanLayer, MAX_QUOTA_LIMIT,
};

fn poll_now<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("ready at once"),
    }
}

fn key(i: usize) -> String {
    format!("scale-key-{i:08}-abcdefghijklmnop")
}

fn request(value: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/pets/42").body(()).unwrap();
    req.headers_mut().insert("x-api-key", value.clone());
    req
}

/// Requests per second over `threads` threads, each sending `per_thread` requests.
fn throughput(keys: usize, threads: usize, per_thread: usize) -> f64 {
    let plan = UsagePlan::new("p")
        .with_throttle(Throttle::new(1e9, u32::MAX).unwrap())
        .with_quota(Quota::new(MAX_QUOTA_LIMIT, QuotaPeriod::Month).unwrap())
        .stage(
            PlanStage::new("petstore", "prod")
                .method_throttle("/pets/{petId}/GET", Throttle::new(1e9, u32::MAX).unwrap())
                .unwrap(),
        );
    let secrets =
        (0..keys).map(|i| (KeySecret::new(key(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("p"))).collect();
    let store =
        InMemoryKeyStore::from_config(Config::new(Stage::new("petstore", "prod"), vec![plan], secrets).unwrap());
    let layer = UsagePlanLayer::builder(store).rate_limit_headers(RateLimitHeaders::Off).build().unwrap();
    let inner = service_fn(|_r: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));
    let values: Vec<HeaderValue> = (0..keys).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();
    let mut warm = layer.layer(inner);
    for v in &values {
        assert_eq!(poll_now(warm.call(request(v))).unwrap().status(), 200);
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let mut svc = layer.layer(inner);
            let values = &values;
            s.spawn(move || {
                let mut i = t * 7919 % values.len();
                for _ in 0..per_thread {
                    i = if i + 1 == values.len() { 0 } else { i + 1 };
                    let resp = poll_now(svc.call(request(&values[i]))).unwrap();
                    assert_eq!(resp.status(), 200);
                }
            });
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let per_thread: usize = std::env::var("REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    println!("| keys | 1 thread | 2 threads | 2 threads / 1 thread |");
    println!("|---|---|---|---|");
    for (label, keys) in [("1 (hot key)", 1), ("10k", 10_000)] {
        let one = throughput(keys, 1, per_thread);
        let two = throughput(keys, 2, per_thread);
        println!("| {label} | {:.2} M req/s | {:.2} M req/s | ×{:.2} |", one / 1e6, two / 1e6, two / one);
    }
}

//! Memory: bytes of state per active key at 1M keys, and proof that a flood of unknown keys
//! grows no state. A counting global allocator (`stats_alloc`) measures what the layer keeps.
//!
//! Run: `cargo bench --bench memory` (`KEYS=100000` for a smaller run). Prints a table; it
//! asserts nothing about speed.

use http::{HeaderValue, Request, Response};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::convert::Infallible;
use std::future::{ready, Future};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{
    ApiKey, Config, InMemoryKeyStore, KeySecret, PlanStage, Quota, QuotaPeriod, RateLimitHeaders, Stage, Throttle,
    UsagePlan, UsagePlanLayer,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn poll_now<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("ready at once"),
    }
}

fn key(i: usize) -> String {
    // 40 characters, like API Gateway's generated keys.
    format!("mem-key-{i:012}-abcdefghijklmnopqrst")
}

fn request(value: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/pets/42").body(()).unwrap();
    req.headers_mut().insert("x-api-key", value.clone());
    req
}

fn net(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    // stats_alloc already counts a realloc's growth in `bytes_allocated` (and shrinkage in
    // `bytes_deallocated`), so the live change is the difference of the two.
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

fn main() {
    let keys: usize = std::env::var("KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let plan = UsagePlan::new("p")
        .with_throttle(Throttle::new(1e6, 1_000_000).unwrap())
        .with_quota(Quota::new(1 << 30, QuotaPeriod::Month).unwrap())
        .stage(
            PlanStage::new("petstore", "prod")
                .method_throttle("/pets/{petId}/GET", Throttle::new(1e6, 1_000_000).unwrap())
                .unwrap(),
        );
    let secrets =
        (0..keys).map(|i| (KeySecret::new(key(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("p"))).collect();
    let store =
        InMemoryKeyStore::from_config(Config::new(Stage::new("petstore", "prod"), vec![plan], secrets).unwrap());
    let values: Vec<HeaderValue> = (0..keys).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();
    let inner = service_fn(|_r: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));

    // Without the `Caller` extension first (a layer of its own over the same store, dropped before
    // the measured one is built).
    let no_caller = {
        let mut svc = UsagePlanLayer::builder(store.clone())
            .rate_limit_headers(RateLimitHeaders::Off)
            .caller(false)
            .build()
            .unwrap()
            .layer(inner);
        let region = Region::new(GLOBAL);
        for v in &values {
            assert_eq!(poll_now(svc.call(request(v))).unwrap().status(), 200);
        }
        net(&region) as f64 / keys as f64
    };
    let mut svc =
        UsagePlanLayer::builder(store).rate_limit_headers(RateLimitHeaders::Off).build().unwrap().layer(inner);

    // Active keys: each key's first request makes its state.
    let region = Region::new(GLOBAL);
    for v in &values {
        assert_eq!(poll_now(svc.call(request(v))).unwrap().status(), 200);
    }
    let per_key = net(&region) as f64 / keys as f64;

    // The same keys again: no growth.
    let region = Region::new(GLOBAL);
    for v in values.iter().take(100_000) {
        poll_now(svc.call(request(v))).unwrap();
    }
    let again = net(&region);

    // Unknown keys, each new: refused with 403, and no state kept.
    let flood = keys;
    let region = Region::new(GLOBAL);
    let mut forbidden = 0;
    for i in 0..flood {
        let v =
            HeaderValue::from_str(&format!("unknown-{i:012}-{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).unwrap();
        if poll_now(svc.call(request(&v))).unwrap().status() == 403 {
            forbidden += 1;
        }
    }
    let flood_growth = net(&region);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| active keys | {keys} |");
    println!("| state per active key (layer, excluding the store), default (with the `Caller`) | {per_key:.0} B |");
    println!("| state per active key, `caller(false)` | {no_caller:.0} B |");
    println!("| growth after 100k more requests from known keys | {again} B |");
    println!("| unknown-key requests | {flood} ({forbidden} answered 403) |");
    println!("| growth after the unknown-key flood | {flood_growth} B |");
}

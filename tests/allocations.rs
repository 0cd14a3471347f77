//! The allowed path makes no heap allocation with rate-limit headers off (docs/design.md,
//! "Performance goals"). A counting global allocator counts what one request allocates.

use http::{HeaderValue, Request, Response};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::convert::Infallible;
use std::future::{ready, Future};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{InMemoryKeyStore, RateLimitHeaders, UsagePlanLayer};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (and reallocations) so far, all threads; this binary runs one test.
fn allocations() -> usize {
    let s = GLOBAL.stats();
    s.allocations + s.reallocations
}

fn poll_now<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("not ready"),
    }
}

const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"
throttle = { rate = 1000000.0, burst = 1000000 }
methods = { "/pets/GET" = { rate = 1000000.0, burst = 1000000 } }
[account]
throttle = { rate = 1000000.0, burst = 1000000 }
[[plans]]
id = "p"
throttle = { rate = 1000000.0, burst = 1000000 }
quota = { limit = 100000000, period = "MONTH" }
[[plans.stages]]
api = "petstore"
stage = "prod"
methods = { "/pets/{petId}/GET" = { rate = 1000000.0, burst = 1000000 } }
[[keys]]
id = "k"
value = "k-0123456789abcdefghij"
plans = ["p"]
[[keys]]
id = "prefixed"
value = "sk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm4"
plans = ["p"]
"#;

/// Allocations made by the layer for one allowed request: the request is built before counting
/// and the response dropped after.
/// Without a `Caller` in the request extensions (`caller(false)`): the allocation-free path.
fn per_request(style: RateLimitHeaders, path: &str) -> usize {
    per_request_with(style, path, "k-0123456789abcdefghij", &[], false)
}

/// [`per_request`] with the key `key`, on a layer checking `prefixes`, with or without the
/// `Caller` extension.
fn per_request_with(style: RateLimitHeaders, path: &str, key: &'static str, prefixes: &[&str], caller: bool) -> usize {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let inner = service_fn(|_req: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));
    let builder =
        UsagePlanLayer::builder(store).rate_limit_headers(style).key_prefixes(prefixes.iter().copied()).caller(caller);
    let mut svc = builder.build().unwrap().layer(inner);
    let key = HeaderValue::from_static(key);
    let request = || {
        let mut req = Request::get(path).body(()).unwrap();
        req.headers_mut().insert("x-api-key", key.clone());
        req
    };
    // The first request looks the key up in the store (allocates the cache entry).
    assert_eq!(poll_now(svc.call(request())).unwrap().status(), 200);
    let mut counts = Vec::new();
    for _ in 0..100 {
        let req = request();
        let before = allocations();
        let resp = poll_now(svc.call(req)).unwrap();
        counts.push(allocations() - before);
        assert_eq!(resp.status(), 200);
        drop(resp);
    }
    // The most any one request allocated: the allocator is global and this binary runs one test,
    // so nothing else allocates meanwhile.
    counts.into_iter().max().unwrap_or(0)
}

#[test]
fn allowed_path_allocates_nothing_with_headers_off() {
    // Per-key method throttle, per-key throttle, stage method throttle, stage default, account,
    // quota: every check runs.
    assert_eq!(per_request(RateLimitHeaders::Off, "/pets/42"), 0);
    assert_eq!(per_request(RateLimitHeaders::Off, "/pets"), 0);
    // With key prefixes: the checksum check allocates nothing either.
    let prefixed = "sk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm4";
    assert_eq!(per_request_with(RateLimitHeaders::Off, "/pets/42", prefixed, &["sk_test_", "sk_live_"], false), 0);
    // The `Caller` (on by default): its box, and the request's extension map (a box and its
    // table) when the request has none yet; nothing per request for the key's part.
    let caller = per_request_with(RateLimitHeaders::Off, "/pets/42", "k-0123456789abcdefghij", &[], true);
    assert!((1..=3).contains(&caller), "{caller} allocations with the Caller");
    let draft = per_request(RateLimitHeaders::Draft, "/pets/42");
    let legacy = per_request(RateLimitHeaders::Legacy, "/pets/42");
    let default = per_request_with(RateLimitHeaders::Draft, "/pets/42", "k-0123456789abcdefghij", &[], true);
    eprintln!(
        "allocations per allowed request: headers off 0, with the Caller {caller}, draft {draft}, legacy {legacy}, \
         draft with the Caller (the default) {default}"
    );
    assert!(draft > 0 && legacy > 0, "headers on must actually add headers");
}

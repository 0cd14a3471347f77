//! What a key lookup costs: the store alone, the caching wrapper's hits, and a request that has
//! to revalidate its key on every call (the layer's own cache off) through the wrapper.
//!
//! - `lookup/in_memory`: `InMemoryKeyStore::lookup` (a hash map and a clone of the record).
//! - `lookup/cached_known`, `lookup/cached_unknown`: `CachedKeyStore::lookup` answered from its
//!   cache, for a known key and for a remembered unknown one.
//! - `request/layer_cached`: a request whose key the layer has cached (the usual hot path).
//! - `request/revalidate_each_time`: the layer with `key_cache_ttl(0)` over a `CachedKeyStore`:
//!   every request asks the wrapper (boxed future, moka hit, record clone, key state handed over).
//!
//! Futures are polled with a no-op waker until ready (no runtime). Keys are visited in turn.
//!
//! Run: `cargo bench --bench store` (`-- --quick` for a fast look; `BENCH_KEYS=1,10000`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderName, HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{
    ApiKey, CachedKeyStore, Config, InMemoryKeyStore, KeySecret, KeyStore, PlanStage, RateLimitHeaders, Stage,
    Throttle, UsagePlan, UsagePlanLayer,
};

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn key(i: usize) -> String {
    format!("bench-key-{i:08}-abcdefghijklmnop")
}

fn store(keys: usize) -> InMemoryKeyStore {
    let plan =
        UsagePlan::new("bench").with_throttle(Throttle::new(1e9, 1_000_000).unwrap()).stage(PlanStage::new("a", "b"));
    let keys =
        (0..keys).map(|i| (KeySecret::new(key(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("bench"))).collect();
    InMemoryKeyStore::from_config(Config::new(Stage::new("a", "b"), vec![plan], keys).unwrap())
}

/// Polls until ready: these futures never wait for I/O, at most for a lock another poll holds.
fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_KEYS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1, 10_000],
    }
}

/// The cache as the bench uses it: no lookup budget, no timeout (no runtime here).
fn cached(n: usize) -> CachedKeyStore<InMemoryKeyStore> {
    let builder = CachedKeyStore::builder(store(n))
        .max_unknown_keys(2 * n as u64)
        .negative_ttl(Duration::from_secs(3600))
        .lookup_budget(None);
    #[cfg(feature = "tokio")]
    let builder = builder.lookup_timeout(None);
    builder.build()
}

fn lookups(c: &mut Criterion) {
    for n in sizes() {
        let mut group = c.benchmark_group("lookup");
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(40);
        let values: Vec<String> = (0..n).map(key).collect();
        let unknown: Vec<String> = (0..n).map(|i| format!("unknown-{i:08}-abcdefghijklmnop")).collect();
        let plain = store(n);
        let cached = cached(n);
        for (v, u) in values.iter().zip(&unknown) {
            assert!(poll_now(cached.lookup(v)).unwrap().is_some());
            assert!(poll_now(cached.lookup(u)).unwrap().is_none());
        }
        let mut i = 0;
        let mut next = move || {
            i = (i + 1) % n;
            i
        };
        group.bench_with_input(BenchmarkId::new("in_memory", n), &n, |b, _| {
            b.iter(|| black_box(poll_now(plain.lookup(&values[next()]))))
        });
        group.bench_with_input(BenchmarkId::new("cached_known", n), &n, |b, _| {
            b.iter(|| black_box(poll_now(cached.lookup(&values[next()]))))
        });
        group.bench_with_input(BenchmarkId::new("cached_unknown", n), &n, |b, _| {
            b.iter(|| black_box(poll_now(cached.lookup(&unknown[next()]))))
        });
        let stats = cached.stats();
        assert_eq!(stats.store_lookups, 2 * n as u64, "every measured lookup was a cache hit: {stats:?}");
        group.finish();
    }
}

fn requests(c: &mut Criterion) {
    fn answer(_req: Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>> {
        ready(Ok(Response::new(())))
    }
    for n in sizes() {
        let mut group = c.benchmark_group("request");
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(40);
        let values: Vec<HeaderValue> = (0..n).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();
        let variants = [
            (
                "layer_cached",
                UsagePlanLayer::builder(store(n)).rate_limit_headers(RateLimitHeaders::Off).build().unwrap(),
            ),
            (
                "revalidate_each_time",
                UsagePlanLayer::builder(cached(n))
                    .key_cache_ttl(Duration::ZERO)
                    .rate_limit_headers(RateLimitHeaders::Off)
                    .build()
                    .unwrap(),
            ),
        ];
        for (name, layer) in variants {
            let mut svc = layer.layer(service_fn(answer as fn(_) -> _));
            let mut call = |v: &HeaderValue| {
                let mut req = Request::get("/pets").body(()).unwrap();
                req.headers_mut().insert(API_KEY.clone(), v.clone());
                poll_now(svc.call(req)).unwrap()
            };
            for v in &values {
                assert_eq!(call(v).status(), 200);
            }
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) % n;
                    black_box(call(&values[i]))
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lookups, requests);
criterion_main!(benches);

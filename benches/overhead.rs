//! Allowed-path overhead of the layer over a bare `service_fn`.
//!
//! Every variant builds its request inside the measured closure (method, URI, one header), so
//! the difference between a variant and `bare` is what the layer adds. Futures are polled once
//! with a no-op waker: all of them are ready at once, no runtime is involved.
//!
//! Run: `cargo bench --bench overhead`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{InMemoryKeyStore, RateLimitHeaders, UsagePlanLayer};

fn config(keys: usize) -> String {
    let mut text = String::from(
        r#"
[stage]
api = "petstore"
name = "prod"

[[plans]]
id = "bench"
throttle = { rate = 1000000000.0, burst = 1000000 }
quota = { limit = 1000000000000, period = "MONTH" }
[[plans.stages]]
api = "petstore"
stage = "prod"
methods = { "/pets/{petId}/GET" = { rate = 1000000000.0, burst = 1000000 } }
"#,
    );
    for i in 0..keys {
        text.push_str(&format!("[[keys]]\nid = \"k{i}\"\nvalue = \"{}\"\nplans = [\"bench\"]\n", key(i)));
    }
    text
}

fn key(i: usize) -> String {
    format!("bench-key-{i:08}-abcdefghijklmnop")
}

fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmark futures are ready at once"),
    }
}

fn request(key: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/pets/42").body(()).unwrap();
    req.headers_mut().insert("x-api-key", key.clone());
    req
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed_path");
    let inner = service_fn(|_req: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));
    for keys in [1usize, 10_000] {
        let values: Vec<HeaderValue> = (0..keys).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();

        let mut bare = inner;
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("bare", keys), &keys, |b, _| {
            b.iter(|| {
                i = (i + 1) % keys;
                black_box(poll_now(bare.call(request(&values[i]))).unwrap());
            })
        });

        for (name, style) in
            [("layer_headers_off", RateLimitHeaders::Off), ("layer_headers_draft", RateLimitHeaders::Draft)]
        {
            let store = InMemoryKeyStore::from_toml_str(&config(keys)).unwrap();
            let mut svc = UsagePlanLayer::builder(store).rate_limit_headers(style).build().layer(inner);
            // Warm the cache: every key looked up once.
            for v in &values {
                let resp = poll_now(svc.call(request(v))).unwrap();
                assert_eq!(resp.status(), 200);
            }
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, keys), &keys, |b, _| {
                b.iter(|| {
                    i = (i + 1) % keys;
                    let resp = poll_now(svc.call(request(&values[i]))).unwrap();
                    debug_assert_eq!(resp.status(), 200);
                    black_box(resp);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);

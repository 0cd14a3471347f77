//! Per-request cost of the layer against a bare service and against the peers, in one run.
//!
//! Every variant builds its request inside the measured closure alike (`GET /pets/42` with an
//! `x-api-key` header) and calls the same inner `service_fn`, which answers at once; futures are
//! polled once with a no-op waker (no runtime). Keys are visited in turn, so with many keys
//! every request touches another key's state, as under real traffic.
//!
//! - `bare`: the inner service alone.
//! - `usage_plans/headers_off`, `usage_plans/headers_draft`: this crate's layer on the allowed
//!   path, with a plan throttle, a per-key method throttle on `/pets/{petId}/GET` (so the route
//!   matcher runs) and a monthly quota.
//! - `usage_plans/headers_off_no_caller`: headers off and no `Caller` in the extensions
//!   (`caller(false)`): none of issue 16's features used. `usage_plans/customer_no_caller`: the
//!   same with every key in one of 100 customers with a throttle and a quota (the customer check).
//! - `tower_governor`: tower_governor 0.8 keyed by the `x-api-key` header (one keyed token bucket).
//! - `axum_governor`: axum-governor 2.1 with its `Header` extractor (one keyed token bucket).
//! - `rejected/*`: this crate's 403 (unknown key), 429 (throttle), 429 (quota), 1 key.
//!
//! Run: `cargo bench --bench overhead` (`-- --quick` for a fast look).

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use http::{HeaderName, HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{
    ApiKey, Config, Customer, InMemoryKeyStore, KeySecret, PlanStage, Quota, QuotaPeriod, RateLimitHeaders, Stage,
    Throttle, UsagePlan, UsagePlanLayer, MAX_QUOTA_LIMIT,
};

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn key(i: usize) -> String {
    format!("bench-key-{i:08}-abcdefghijklmnop")
}

fn store(keys: usize, throttle: Throttle, quota: Quota) -> InMemoryKeyStore {
    let plan = UsagePlan::new("bench").with_throttle(throttle).with_quota(quota).stage(
        PlanStage::new("petstore", "prod")
            .method_throttle("/pets/{petId}/GET", Throttle::new(1e9, 1_000_000).unwrap())
            .unwrap(),
    );
    let keys =
        (0..keys).map(|i| (KeySecret::new(key(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("bench"))).collect();
    InMemoryKeyStore::from_config(Config::new(Stage::new("petstore", "prod"), vec![plan], keys).unwrap())
}

/// [`open_store`] with every key in one of 100 customers, each with a throttle and a quota as
/// open as the plan's: the customer check (a fourth bucket and a second quota count) on every
/// request.
fn customer_store(keys: usize) -> InMemoryKeyStore {
    let config = open_store(keys).config();
    let customers = (0..100)
        .map(|c| {
            Customer::new(format!("c{c}"))
                .with_throttle(Throttle::new(1e9, 1_000_000).unwrap())
                .with_quota(Quota::new(MAX_QUOTA_LIMIT, QuotaPeriod::Month).unwrap())
        })
        .collect();
    let keys = config
        .keys()
        .iter()
        .enumerate()
        .map(|(i, (v, k))| (v.clone(), k.clone().with_customer_id(format!("c{}", i % 100))))
        .collect();
    let plans = config.plans().iter().map(|p| UsagePlan::clone(p)).collect();
    let config = Config::new(config.stage().clone(), plans, keys).unwrap().with_customers(customers).unwrap();
    InMemoryKeyStore::from_config(config)
}

fn open_store(keys: usize) -> InMemoryKeyStore {
    store(keys, Throttle::new(1e9, 1_000_000).unwrap(), Quota::new(MAX_QUOTA_LIMIT, QuotaPeriod::Month).unwrap())
}

fn poll_now<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmark futures are ready at once"),
    }
}

fn request(key: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/pets/42").body(()).unwrap();
    req.headers_mut().insert(API_KEY.clone(), key.clone());
    req
}

type Inner = tower::util::ServiceFn<fn(Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>>>;

fn inner() -> Inner {
    fn answer(_req: Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
        ready(Ok(Response::new(Body::empty())))
    }
    service_fn(answer as fn(_) -> _)
}

/// Calls every key once (state is made on first sight), then measures the cycle.
fn run<S, B>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    values: &[HeaderValue],
    mut svc: S,
) where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for v in values {
        let status = poll_now(svc.call(request(v))).unwrap().status();
        assert_eq!(status, 200, "{name}: warm-up refused");
    }
    let mut i = 0;
    group.bench_with_input(BenchmarkId::new(name, values.len()), &values.len(), |b, _| {
        b.iter(|| {
            i += 1;
            if i == values.len() {
                i = 0;
            }
            black_box(poll_now(svc.call(request(&values[i]))).unwrap());
        })
    });
}

#[derive(Clone, Debug)]
struct HeaderKey;

impl tower_governor::key_extractor::KeyExtractor for HeaderKey {
    type Key = HeaderValue;
    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, tower_governor::GovernorError> {
        req.headers().get(&API_KEY).cloned().ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

fn allowed(c: &mut Criterion) {
    let sizes: Vec<usize> = match std::env::var("BENCH_KEYS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1, 10_000, 1_000_000],
    };
    for keys in sizes {
        let mut group = c.benchmark_group("allowed");
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(40);
        let values: Vec<HeaderValue> = (0..keys).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();

        run(&mut group, "bare", &values, inner());

        for (name, style) in
            [("usage_plans/headers_off", RateLimitHeaders::Off), ("usage_plans/headers_draft", RateLimitHeaders::Draft)]
        {
            let layer = UsagePlanLayer::builder(open_store(keys)).rate_limit_headers(style).build().unwrap();
            run(&mut group, name, &values, layer.layer(inner()));
        }
        // Without the `Caller` extension (what the layer did before it had one), and with a
        // customer check on top of that.
        let off = RateLimitHeaders::Off;
        let layer = UsagePlanLayer::builder(open_store(keys)).rate_limit_headers(off).caller(false).build().unwrap();
        run(&mut group, "usage_plans/headers_off_no_caller", &values, layer.layer(inner()));
        let layer =
            UsagePlanLayer::builder(customer_store(keys)).rate_limit_headers(off).caller(false).build().unwrap();
        run(&mut group, "usage_plans/customer_no_caller", &values, layer.layer(inner()));

        let config = tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000)
            .key_extractor(HeaderKey)
            .finish()
            .unwrap();
        run(&mut group, "tower_governor", &values, tower_governor::GovernorLayer::new(Arc::new(config)).layer(inner()));

        let config = axum_governor::GovernorConfigBuilder::default()
            .with_extractor(axum_governor::extractor::Header(&API_KEY))
            .quota_default(
                axum_governor::Quota::requests_per_second(NonZeroU32::new(u32::MAX).unwrap())
                    .burst(NonZeroU32::new(1_000_000).unwrap()),
            )
            .gc_disable()
            .finish()
            .unwrap();
        run(&mut group, "axum_governor", &values, axum_governor::GovernorLayer::new(config).layer(inner()));
        group.finish();
    }
}

fn rejected(c: &mut Criterion) {
    let mut group = c.benchmark_group("rejected");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(40);
    let good = HeaderValue::from_str(&key(0)).unwrap();
    let cases = [
        ("forbidden_unknown_key", open_store(1), HeaderValue::from_static("unknown-0123456789abcdefghij"), 403),
        (
            "throttled",
            store(1, Throttle::new(1e-6, 1).unwrap(), Quota::new(MAX_QUOTA_LIMIT, QuotaPeriod::Month).unwrap()),
            good.clone(),
            429,
        ),
        (
            "quota_exceeded",
            store(1, Throttle::new(1e9, 1_000_000).unwrap(), Quota::new(1, QuotaPeriod::Month).unwrap()),
            good,
            429,
        ),
    ];
    for (name, store, value, status) in cases {
        let mut svc =
            UsagePlanLayer::builder(store).rate_limit_headers(RateLimitHeaders::Off).build().unwrap().layer(inner());
        for _ in 0..2 {
            poll_now(svc.call(request(&value))).unwrap();
        }
        assert_eq!(poll_now(svc.call(request(&value))).unwrap().status(), status, "{name}");
        group.bench_function(name, |b| b.iter(|| black_box(poll_now(svc.call(request(&value))).unwrap())));
    }
    group.finish();
}

criterion_group!(benches, allowed, rejected);
criterion_main!(benches);

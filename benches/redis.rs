//! Allowed-path cost per request with the counters in Redis, against in-process counters, in one
//! run.
//!
//! Every request is `GET /pets` with an `x-api-key` header, built in the measured loop, through
//! the layer (rate-limit headers off) to a `service_fn` that answers at once. Limits are so high
//! that nothing is refused (a quota of 10^12 a month; a throttle of 10^9/s, burst 10^6, which the
//! script's whole microseconds make 10^6/s, burst 1 001 in Redis: still far above these rates);
//! every response is checked to be 200. Keys are visited in turn. Before measuring, each key is
//! used once; with `redis/quota/lease`, key `i` is used `1 + i % 100` times, so that leases (100
//! requests each) start at every level, as in the steady state.
//!
//! - `in_process/quota`, `in_process/throttle_quota`: in-process counters (no Redis), the
//!   baseline.
//! - `redis/quota/lease`: a quota-only plan, leases on (the default): a request that finds a
//!   lease makes no round trip.
//! - `redis/quota/no_lease`: the same plan, leases off: one script per request.
//! - `redis/throttle_quota/lease`: a plan with a throttle and a quota, leases on: one script per
//!   request for the throttle, the quota from the lease.
//!
//! A tokio multi-thread runtime (2 workers) drives the calls, the way a server's handlers run:
//! with `/1_task`, one spawned task sends the requests one after another (the time is a
//! request's latency); with `/16_tasks`, 16 spawned tasks share the requests (the time is wall
//! time divided by the requests: inverse throughput, round trips overlapping on the backend's
//! one multiplexed connection). Each request takes a unit of tokio's coop budget, as a server's
//! socket read would, so that tasks deciding locally yield to the connection's task. After each
//! variant the bench prints the backend's Redis round trips per request (`round_trips / checks`
//! of `RedisBackend::stats`, over criterion's warm-up and measurement), and its errors (timeouts).
//!
//! Redis: `REDIS_URL` if set (keys go under the hash tag `{tup-bench}`), else a private
//! `redis-server` from `PATH` on a free loopback port, killed at the end.
//!
//! Run: `cargo bench --features redis --bench redis` (`-- --quick` for a fast look;
//! `BENCH_KEYS=1,10000` by default).

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use http::{HeaderName, HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tower::{service_fn, Layer, Service};
use tower_usage_plans::{
    ApiKey, Config, InMemoryKeyStore, KeySecret, PlanStage, Quota, QuotaPeriod, RateLimitHeaders, RedisBackend,
    RedisStats, Stage, Throttle, UsagePlan, UsagePlanLayer, UsagePlanService, MAX_QUOTA_LIMIT,
};

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Tasks sharing the requests in the concurrent mode.
const TASKS: u64 = 16;

/// Requests a quota lease holds (`max_lease`; with a quota this high every lease is full size).
const LEASE: usize = 100;

/// A redis-server of the bench's own (or the one at `REDIS_URL`, left alone).
struct Server {
    child: Option<Child>,
    url: String,
}

impl Server {
    fn start() -> Server {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Server { child: None, url };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("this bench needs redis-server on PATH, or REDIS_URL");
        let server = Server { child: Some(child), url: format!("redis://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return server;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn key(i: usize) -> String {
    format!("bench-key-{i:08}-abcdefghijklmnop")
}

fn store(keys: usize, throttle: bool) -> InMemoryKeyStore {
    let mut plan = UsagePlan::new("bench").with_quota(Quota::new(MAX_QUOTA_LIMIT, QuotaPeriod::Month).unwrap());
    if throttle {
        plan = plan.with_throttle(Throttle::new(1e9, 1_000_000).unwrap());
    }
    let plan = plan.stage(PlanStage::new("petstore", "prod"));
    let keys =
        (0..keys).map(|i| (KeySecret::new(key(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("bench"))).collect();
    InMemoryKeyStore::from_config(Config::new(Stage::new("petstore", "prod"), vec![plan], keys).unwrap())
}

type Inner = tower::util::ServiceFn<fn(Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>>>;
type Svc = UsagePlanService<Inner>;

fn inner() -> Inner {
    fn answer(_req: Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
        ready(Ok(Response::new(Body::empty())))
    }
    service_fn(answer as fn(_) -> _)
}

fn request(key: &HeaderValue) -> Request<()> {
    let mut req = Request::get("/pets").body(()).unwrap();
    req.headers_mut().insert(API_KEY.clone(), key.clone());
    req
}

/// One request; panics unless it was allowed.
async fn call(svc: &mut Svc, value: &HeaderValue) {
    let resp = svc.call(request(value)).await.unwrap();
    assert_eq!(resp.status(), 200, "a request was refused");
    black_box(resp);
    // A request decided locally never waits, so a loop of them would hold its worker and starve
    // the Redis connection's task (round trips of other tasks then time out). Each request takes
    // a unit of tokio's coop budget, as a socket read in a server would.
    tokio::task::coop::consume_budget().await;
}

/// Sends `count` requests one after another, keys in turn from `start`.
async fn send(mut svc: Svc, values: Arc<[HeaderValue]>, start: usize, count: u64) {
    let n = values.len();
    let mut i = start % n;
    for _ in 0..count {
        call(&mut svc, &values[i]).await;
        i += 1;
        if i == n {
            i = 0;
        }
    }
}

/// `iters` requests over `tasks` spawned tasks; the wall time.
fn drive(rt: &Runtime, svc: &Svc, values: &Arc<[HeaderValue]>, tasks: u64, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let count = iters / tasks + u64::from(t < iters % tasks);
                let offset = (t as usize) * values.len() / (tasks as usize);
                tokio::spawn(send(svc.clone(), Arc::clone(values), offset, count))
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn report(name: &str, keys: usize, before: RedisStats, after: RedisStats) {
    let checks = after.checks - before.checks;
    let trips = after.round_trips - before.round_trips;
    println!(
        "counters/{name}/{keys}: {:.4} Redis round trips per request ({trips} in {checks} requests; lease hits {}, \
         errors {}, fallback decisions {})",
        trips as f64 / checks.max(1) as f64,
        after.lease_hits - before.lease_hits,
        after.errors - before.errors,
        after.fallback_decisions - before.fallback_decisions,
    );
}

fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_KEYS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1, 10_000],
    }
}

/// Measures one variant in both modes; prints its round trips per request when it has Redis.
///
/// Before measuring, key `i` makes `1 + i % stagger` requests: its state is made on the first
/// (and its first lease taken). With `stagger` = the lease size, the keys' leases are spread
/// evenly between full and empty, so that any window of requests refills as many as the steady
/// state does (not none, as when every key starts its measurement with a fresh lease).
fn variant(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    values: &Arc<[HeaderValue]>,
    svc: &Svc,
    backend: Option<&RedisBackend>,
    stagger: usize,
) {
    rt.block_on(async {
        let mut svc = svc.clone();
        for (i, v) in values.iter().enumerate() {
            for _ in 0..=i % stagger {
                call(&mut svc, v).await;
            }
        }
    });
    for (mode, tasks) in [("1_task", 1), ("16_tasks", TASKS)] {
        let id = format!("{name}/{mode}");
        let before = backend.map(RedisBackend::stats);
        group.bench_with_input(BenchmarkId::new(&id, values.len()), &values.len(), |b, _| {
            b.iter_custom(|iters| drive(rt, svc, values, tasks, iters))
        });
        if let (Some(backend), Some(before)) = (backend, before) {
            report(&id, values.len(), before, backend.stats());
        }
    }
}

fn allowed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = Server::start();
    for keys in sizes() {
        let mut group = c.benchmark_group("counters");
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(40);
        let values: Arc<[HeaderValue]> = (0..keys).map(|i| HeaderValue::from_str(&key(i)).unwrap()).collect();
        let builder =
            |throttle| UsagePlanLayer::builder(store(keys, throttle)).rate_limit_headers(RateLimitHeaders::Off);

        for (name, throttle) in [("in_process/quota", false), ("in_process/throttle_quota", true)] {
            let svc = builder(throttle).build().unwrap().layer(inner());
            variant(&mut group, &rt, name, &values, &svc, None, 1);
        }

        // The quota-only plan with leases is the one whose round trips depend on lease levels; the
        // others make one per request whatever the leases hold, so they skip the staggering.
        for (name, throttle, leasing, stagger) in [
            ("redis/quota/lease", false, true, LEASE),
            ("redis/quota/no_lease", false, false, 1),
            ("redis/throttle_quota/lease", true, true, 1),
        ] {
            let backend = RedisBackend::builder(server.url.as_str()).prefix("tup-bench").leasing(leasing);
            let backend = rt.block_on(backend.max_lease(LEASE as u64).connect()).unwrap();
            let svc = builder(throttle).redis(backend.clone()).build().unwrap().layer(inner());
            variant(&mut group, &rt, name, &values, &svc, Some(&backend), stagger);
            rt.block_on(backend.shutdown());
        }
        group.finish();
    }
    drop(server);
}

criterion_group!(benches, allowed);
criterion_main!(benches);

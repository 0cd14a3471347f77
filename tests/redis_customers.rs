//! Issue 16 in distributed mode: customers (their quota and throttle shared by their keys),
//! per-key overrides, anchored quota periods and concurrency caps behave on two replicas sharing
//! one Redis as they do in one process. Each test spawns its own `redis-server` on a free loopback
//! port (or uses `REDIS_URL` under a prefix of its own); without either it says loudly that it is
//! skipped (and fails when `USAGE_PLANS_REQUIRE_SERVICES=1`).
#![cfg(feature = "redis")]

mod common;

use common::{get, service, Svc};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_usage_plans::{ApiKey, Config, Customer, InMemoryKeyStore, KeySecret, ManualClock, PlanStage, Quota};
use tower_usage_plans::{FailurePolicy, QuotaAnchor, QuotaPeriod, RedisBackend, Stage, Throttle};
use tower_usage_plans::{UsagePlan, UsagePlanLayer};

/// A redis-server of this test's own (or `REDIS_URL`'s), and the test's key prefix.
struct Server {
    child: Option<Child>,
    url: String,
    prefix: String,
}

impl Server {
    fn spawn(test: &str) -> Option<Server> {
        let prefix = format!("tup-{test}-{}", std::process::id());
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(child) = spawned {
            let server = Server { child: Some(child), url: format!("redis://127.0.0.1:{port}"), prefix };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).is_ok() {
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("{test}: redis-server did not answer");
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(Server { child: None, url, prefix });
        }
        let required = std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(!required, "{test}: redis-server is required (USAGE_PLANS_REQUIRE_SERVICES=1) but cannot run");
        eprintln!("SKIPPED {test}: no redis-server binary on PATH (and no REDIS_URL)");
        None
    }

    /// A backend of one of `replicas` replicas, on `clock`.
    async fn backend(&self, replicas: u32, clock: &ManualClock) -> RedisBackend {
        RedisBackend::builder(self.url.clone())
            .prefix(self.prefix.clone())
            .replicas(replicas)
            .clock(clock.clone())
            .connect()
            .await
            .unwrap()
    }

    /// Sends `sig` to the server (pauses and resumes it); `false` for a shared one.
    fn signal(&self, sig: &str) -> bool {
        let Some(c) = &self.child else { return false };
        Command::new("kill").args([sig, &c.id().to_string()]).status().is_ok_and(|s| s.success())
    }

    /// The values of this test's keys whose name starts with `{prefix}:<what>`.
    fn counters(&self, what: &str) -> Vec<i64> {
        let mut con = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        let names: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}}}:{what}*", self.prefix)).query(&mut con).unwrap();
        names.iter().map(|k| redis::cmd("GET").arg(k).query::<Option<i64>>(&mut con).unwrap().unwrap_or(0)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => {
                if let Ok(mut con) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) {
                    let names: Vec<String> =
                        redis::cmd("KEYS").arg(format!("{{{}}}:*", self.prefix)).query(&mut con).unwrap_or_default();
                    for k in names {
                        let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut con);
                    }
                }
            }
        }
    }
}

fn value(id: &str) -> String {
    common::key(id)
}

/// A store with plan "p" (`plan`, bound to petstore/prod), the customer `customer` and `keys`.
fn store(plan: UsagePlan, customer: Option<Customer>, keys: Vec<ApiKey>) -> InMemoryKeyStore {
    let stage = Stage::new("petstore", "prod");
    let keys = keys.into_iter().map(|k| (KeySecret::new(value(k.id())).unwrap(), k)).collect();
    let config = Config::new(stage, vec![plan.stage(PlanStage::new("petstore", "prod"))], keys).unwrap();
    InMemoryKeyStore::from_config(config.with_customers(customer.into_iter().collect()).unwrap())
}

fn layer(store: &InMemoryKeyStore, backend: &RedisBackend, clock: &ManualClock) -> UsagePlanLayer {
    UsagePlanLayer::builder(store.clone()).clock(clock.clone()).redis(backend.clone()).build().unwrap()
}

/// Two replicas on `server` serving `store`, on one clock.
async fn two_replicas(server: &Server, store: &InMemoryKeyStore, clock: &ManualClock) -> (Vec<RedisBackend>, [Svc; 2]) {
    let (a, b) = (server.backend(2, clock).await, server.backend(2, clock).await);
    let svcs = [service(&layer(store, &a, clock)), service(&layer(store, &b, clock))];
    (vec![a, b], svcs)
}

/// `tasks` tasks per replica, each sending `requests` requests with the keys `keys` in turn;
/// returns (admitted, refused with 429).
async fn hammer(replicas: &[Svc], tasks: usize, requests: usize, keys: &[&str]) -> (u32, u32) {
    let (ok, refused) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut handles = Vec::new();
    for svc in replicas {
        for t in 0..tasks {
            let (svc, ok, refused) = (svc.clone(), Arc::clone(&ok), Arc::clone(&refused));
            let keys: Vec<String> = keys.iter().map(|k| value(k)).collect();
            handles.push(tokio::spawn(async move {
                for i in 0..requests {
                    match get(&svc, "/pets", Some(&keys[(t + i) % keys.len()])).await.status.as_u16() {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
}

fn acme_keys() -> Vec<ApiKey> {
    vec![ApiKey::new("k1").plan("p").with_customer_id("acme"), ApiKey::new("k2").plan("p").with_customer_id("acme")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_quota_is_exact_across_two_replicas_and_its_keys() {
    let Some(server) = Server::spawn("customer_quota") else { return };
    let clock = common::clock();
    // The keys' own quota is far off (and would be leased); the customer's is 4 a day.
    let plan = UsagePlan::new("p").with_quota(Quota::new(100, QuotaPeriod::Day).unwrap());
    let acme = Customer::new("acme").with_quota(Quota::new(4, QuotaPeriod::Day).unwrap());
    let store = store(plan, Some(acme), acme_keys());
    let (backends, svcs) = two_replicas(&server, &store, &clock).await;
    // 8 tasks (4 per replica), 5 requests each, alternating the customer's two keys.
    let (ok, refused) = hammer(&svcs, 4, 5, &["k1", "k2"]).await;
    assert_eq!((ok, refused), (4, 36), "exactly the customer's quota across both replicas and keys");
    assert_eq!(server.counters("customer-quota"), vec![4], "the customer's counter in Redis");
    let keys: i64 = server.counters("quota:").iter().sum();
    assert_eq!(keys, 4, "the keys' quotas count the admitted requests only: no lease was taken");
    // The customer's refusal was not cached on the keys: a new day admits at once.
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(get(&svcs[0], "/pets", Some(&value("k1"))).await.status, 200);
    assert_eq!(get(&svcs[1], "/pets", Some(&value("k2"))).await.status, 200);
    for b in &backends {
        assert_eq!(b.shutdown().await, 0);
        assert_eq!(b.stats().errors, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_quota_refund_gives_the_customers_count_back() {
    let Some(server) = Server::spawn("customer_refund") else { return };
    let clock = common::clock();
    let acme = Customer::new("acme").with_quota(Quota::new(2, QuotaPeriod::Day).unwrap());
    let store = store(UsagePlan::new("p"), Some(acme), acme_keys());
    let backend = server.backend(1, &clock).await;
    let failing = tower::service_fn(|req: http::Request<String>| async move {
        let status = if req.uri().path() == "/fail" { 500 } else { 200 };
        let mut resp = http::Response::new(String::new());
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, std::convert::Infallible>(resp)
    });
    let layer = UsagePlanLayer::builder(store.clone())
        .clock(clock.clone())
        .redis(backend.clone())
        .refund_quota_when(|s| s.is_server_error())
        .build()
        .unwrap();
    let svc: Svc = tower::util::BoxCloneSyncService::new(tower::Layer::layer(&layer, failing));
    for _ in 0..3 {
        assert_eq!(get(&svc, "/fail", Some(&value("k1"))).await.status, 500, "refunded: never spent");
        assert_eq!(backend.flush().await, 0);
    }
    assert_eq!(server.counters("customer-quota"), vec![0], "every 500 was given back");
    let statuses = [get(&svc, "/", Some(&value("k1"))).await.status, get(&svc, "/", Some(&value("k2"))).await.status];
    assert_eq!(statuses, [200, 200]);
    assert_eq!(get(&svc, "/", Some(&value("k2"))).await.status, 429, "the customer's 2, spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_throttle_burst_is_shared_exactly_across_replicas() {
    let Some(server) = Server::spawn("customer_throttle") else { return };
    let clock = common::clock();
    // One token in 1000 s: the burst of 5 is all the customer gets in this test.
    let acme = Customer::new("acme").with_throttle(Throttle::new(0.001, 5).unwrap());
    let plan = UsagePlan::new("p").with_throttle(Throttle::new(1000.0, 100).unwrap());
    let store = store(plan, Some(acme), acme_keys());
    let (_backends, svcs) = two_replicas(&server, &store, &clock).await;
    let (ok, refused) = hammer(&svcs, 4, 5, &["k1", "k2"]).await;
    assert_eq!((ok, refused), (5, 35), "the customer's burst of 5, once, across both replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_override_is_exact_across_replicas() {
    let Some(server) = Server::spawn("key_override") else { return };
    let clock = common::clock();
    let plan = UsagePlan::new("p").with_throttle(Throttle::new(0.001, 10).unwrap());
    let keys =
        vec![ApiKey::new("own").plan("p").with_throttle(Throttle::new(0.001, 2).unwrap()), ApiKey::new("k").plan("p")];
    let store = store(plan, None, keys);
    let (_backends, svcs) = two_replicas(&server, &store, &clock).await;
    assert_eq!(hammer(&svcs, 4, 5, &["own"]).await, (2, 38), "the key's own burst of 2, not the plan's 10");
    assert_eq!(hammer(&svcs, 4, 5, &["k"]).await, (10, 30), "the plan's burst for the other key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anchored_quota_rolls_over_at_its_anchor_on_every_replica() {
    let Some(server) = Server::spawn("anchored_quota") else { return };
    let clock = common::clock(); // 2026-11-23T12:00:00Z
    let anchor = QuotaAnchor::parse("2026-01-05T15:30:00Z").unwrap();
    let plan = UsagePlan::new("p").with_quota(Quota::new(3, QuotaPeriod::Day).unwrap());
    let store = store(plan, None, vec![ApiKey::new("k").plan("p").with_quota_anchor(anchor)]);
    let (_backends, svcs) = two_replicas(&server, &store, &clock).await;
    let k = value("k");
    let round = |n: usize| {
        let (svcs, k) = (svcs.clone(), k.clone());
        async move {
            let mut admitted = 0;
            for i in 0..n {
                admitted += usize::from(get(&svcs[i % 2], "/pets", Some(&k)).await.status == 200);
            }
            admitted
        }
    };
    assert_eq!(round(6).await, 3, "the day's 3 (from 15:30 yesterday)");
    clock.advance(Duration::from_secs(3 * 3600 + 29 * 60 + 59)); // 15:29:59
    assert_eq!(round(4).await, 0, "still the period that started at 15:30 yesterday");
    clock.advance(Duration::from_secs(1)); // 15:30:00
    assert_eq!(round(6).await, 3, "a new period at the anchored instant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrency_cap_is_shared_by_the_replicas() {
    let Some(server) = Server::spawn("concurrency_share") else { return };
    let clock = common::clock();
    let plan = UsagePlan::new("p").with_concurrency(NonZeroU32::new(4).unwrap());
    let store = store(plan, None, vec![ApiKey::new("k").plan("p")]);
    // The inner service holds every request until the gate opens.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let inside = Arc::new(AtomicU32::new(0));
    let mut svcs = Vec::new();
    for _ in 0..2 {
        let backend = server.backend(2, &clock).await;
        let (gate, inside) = (Arc::clone(&gate), Arc::clone(&inside));
        let inner = tower::service_fn(move |_req: http::Request<String>| {
            let (gate, inside) = (Arc::clone(&gate), Arc::clone(&inside));
            async move {
                inside.fetch_add(1, Ordering::AcqRel);
                let _ = gate.acquire().await;
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
            }
        });
        let layer = layer(&store, &backend, &clock);
        svcs.push(tower::util::BoxCloneSyncService::new(tower::Layer::layer(&layer, inner)) as Svc);
    }
    let k = value("k");
    let mut held = Vec::new();
    for (i, svc) in svcs.iter().enumerate() {
        for _ in 0..2 {
            let (svc, k) = (svc.clone(), k.clone());
            held.push(tokio::spawn(async move { get(&svc, "/pets", Some(&k)).await.status.as_u16() }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while inside.load(Ordering::Acquire) < 2 * (i as u32 + 1) {
            assert!(Instant::now() < deadline, "the requests reach the inner service");
            tokio::task::yield_now().await;
        }
        // A guard, not a wait: an admitted third request would be held by the gate.
        let third = tokio::time::timeout(Duration::from_secs(10), get(svc, "/pets", Some(&k))).await;
        assert_eq!(third.map(|r| r.status.as_u16()).ok(), Some(429), "replica {i} admits its 2 of the cap of 4");
    }
    gate.close();
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(get(&svcs[0], "/pets", Some(&k)).await.status, 200, "slots given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_quota_override_is_exact_though_the_replica_held_a_lease() {
    let Some(server) = Server::spawn("lowered_override") else { return };
    let clock = common::clock();
    let store = store(
        UsagePlan::new("p"),
        None,
        vec![ApiKey::new("k").plan("p").with_quota(Quota::new(100, QuotaPeriod::Day).unwrap())],
    );
    let backend = server.backend(1, &clock).await;
    let layer = UsagePlanLayer::builder(store.clone())
        .clock(clock.clone())
        .redis(backend.clone())
        .key_cache_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = service(&layer);
    let k = value("k");
    // The first request leases a batch (a quarter of what is left), the second spends from it.
    for _ in 0..2 {
        assert_eq!(get(&svc, "/pets", Some(&k)).await.status, 200);
    }
    assert_eq!(backend.stats().lease_hits, 1, "the replica holds a lease");
    let used = 2;
    // The key's own quota, lowered to one more request than it used.
    let lowered = Quota::new(used + 1, QuotaPeriod::Day).unwrap();
    let _key = store.update_key("k", |key| Ok::<_, tower_usage_plans::ConfigError>(key.with_quota(lowered))).unwrap();
    let mut admitted = 0;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(2));
        for _ in 0..5 {
            admitted += usize::from(get(&svc, "/pets", Some(&k)).await.status == 200);
        }
        assert_eq!(backend.flush().await, 0);
    }
    assert_eq!(admitted, 1, "the lowered quota, not what the lease held");
    assert_eq!(backend.shutdown().await, 0);
    assert_eq!(server.counters("quota:"), vec![i64::try_from(used).unwrap() + 1], "Redis counts what was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_paused_a_customer_quota_follows_the_failure_policy_and_is_replayed() {
    let Some(server) = Server::spawn("customer_outage") else { return };
    let clock = common::clock();
    let acme = Customer::new("acme").with_quota(Quota::new(10, QuotaPeriod::Day).unwrap());
    let store = store(UsagePlan::new("p"), Some(acme), acme_keys());
    let connect = |policy| {
        RedisBackend::builder(server.url.clone())
            .prefix(server.prefix.clone())
            .replicas(2)
            .timeout(Duration::from_millis(30))
            .quota_policy(policy)
            .clock(clock.clone())
            .connect()
    };
    let (local, closed) =
        (connect(FailurePolicy::LocalFallback).await.unwrap(), connect(FailurePolicy::FailClosed).await.unwrap());
    let (svc, closed_svc) = (service(&layer(&store, &local, &clock)), service(&layer(&store, &closed, &clock)));
    if !server.signal("-STOP") {
        return eprintln!("SKIPPED the outage part: a shared server is not paused");
    }
    // The manual clock stands still: once open, the breakers stay open (no probe).
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(get(&svc, "/pets", Some(&value(["k1", "k2"][i % 2]))).await.status.as_u16());
    }
    let closed_status = get(&closed_svc, "/pets", Some(&value("k1"))).await.status.as_u16();
    server.signal("-CONT");
    assert_eq!(common::count(&statuses, 200), 5, "this replica's half of the customer's 10: {statuses:?}");
    assert_eq!(common::count(&statuses, 429), 7, "{statuses:?}");
    assert_eq!(closed_status, 503, "fail closed");
    // Redis is back: the requests admitted meanwhile are added to the customer's counter.
    let deadline = Instant::now() + Duration::from_secs(10);
    while local.flush().await > 0 {
        assert!(Instant::now() < deadline, "the replay is written once Redis is back");
    }
    assert_eq!(server.counters("customer-quota"), vec![5], "replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchored_customer_quota_rolls_over_at_its_anchor() {
    let Some(server) = Server::spawn("anchored_customer") else { return };
    let clock = common::clock(); // 2026-11-23T12:00:00Z
    let anchor = QuotaAnchor::parse("2026-01-05T15:30:00Z").unwrap();
    let acme = Customer::new("acme").with_quota(Quota::new(2, QuotaPeriod::Day).unwrap()).with_quota_anchor(anchor);
    let store = store(UsagePlan::new("p"), Some(acme), acme_keys());
    let (_backends, svcs) = two_replicas(&server, &store, &clock).await;
    assert_eq!(hammer(&svcs, 1, 3, &["k1", "k2"]).await, (2, 4), "the customer's 2 since 15:30 yesterday");
    clock.advance(Duration::from_secs(3 * 3600 + 29 * 60 + 59)); // 15:29:59
    assert_eq!(hammer(&svcs, 1, 1, &["k1", "k2"]).await, (0, 2), "the same period");
    clock.advance(Duration::from_secs(1)); // 15:30:00
    assert_eq!(hammer(&svcs, 1, 3, &["k1", "k2"]).await, (2, 4), "a new period at the anchored instant");
    assert_eq!(server.counters("customer-quota"), vec![2, 2], "one counter per period");
}

/// A snapshot of the in-process backend restored into Redis (a move to several replicas) keeps
/// the customers' quota counts, and `Usage::customer_quota` reads them back from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_count_moves_from_a_process_into_redis_with_a_snapshot() {
    let Some(server) = Server::spawn("customer_snapshot") else { return };
    let clock = common::clock();
    let acme = Customer::new("acme").with_quota(Quota::new(4, QuotaPeriod::Day).unwrap());
    let store = store(UsagePlan::new("p"), Some(acme.clone()), acme_keys());
    let local = UsagePlanLayer::builder(store.clone()).clock(clock.clone()).build().unwrap();
    let svc = service(&local);
    for k in ["k1", "k1", "k2"] {
        assert_eq!(get(&svc, "/pets", Some(&value(k))).await.status, 200);
    }
    let snapshot = local.usage().snapshot().await.unwrap();
    let backend = server.backend(1, &clock).await;
    let shared = layer(&store, &backend, &clock);
    shared.usage().restore(snapshot).await.unwrap();
    let q = shared.usage().customer_quota(&acme).await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining), (3, 1), "read back from Redis");
    let svc = service(&shared);
    let got: Vec<u16> = [get(&svc, "/pets", Some(&value("k2"))).await, get(&svc, "/pets", Some(&value("k1"))).await]
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(got, [200, 429]);
    assert_eq!(backend.shutdown().await, 0);
}

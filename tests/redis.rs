//! Distributed mode against a real `redis-server`: each test spawns its own on a free loopback
//! port (fault tests kill and pause it), or uses `REDIS_URL` for the tests that do no harm.
#![cfg(feature = "redis")]

mod common;

use common::{get, service, Svc};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_usage_plans::{FailurePolicy, InMemoryKeyStore, RedisBackend, UsagePlanLayer};

/// A redis-server of this test's own.
struct Server {
    child: Option<Child>,
    port: u16,
}

fn require() -> bool {
    std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

impl Server {
    /// Spawns one, or says loudly that the test is skipped (fails when services are required).
    fn spawn(test: &str) -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut server = Server { child: None, port };
        if server.start().is_err() {
            assert!(!require(), "{test}: redis-server is required (USAGE_PLANS_REQUIRE_SERVICES=1) but cannot run");
            eprintln!("SKIPPED {test}: no redis-server binary on PATH");
            return None;
        }
        Some(server)
    }

    fn start(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other("redis-server did not answer"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill").args([sig, &c.id().to_string()]).status().is_ok_and(|s| s.success());
            assert!(ok, "kill {sig}");
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A raw command on a fresh connection (for checks from outside the backend).
    fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con).unwrap()
    }

    /// The sum of every quota counter.
    fn quota_total(&self) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("{tup}:quota*").query(&mut con).unwrap();
        keys.iter().map(|k| redis::cmd("GET").arg(k).query::<Option<i64>>(&mut con).unwrap().unwrap_or(0)).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"
[[plans]]
id = "quota-only"
quota = { limit = 200, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]
[[plans]]
id = "throttled"
throttle = { rate = 50.0, burst = 10 }
stages = [{ api = "petstore", stage = "other" }]
[[keys]]
id = "q"
value = "q-0123456789abcdefghij"
plans = ["quota-only"]
"#;

const Q: &str = "q-0123456789abcdefghij";

fn layer(backend: &RedisBackend) -> Svc {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    service(&UsagePlanLayer::builder(store).redis(backend.clone()).build())
}

async fn hammer(replicas: &[Svc], tasks_each: usize, requests: usize, key: &'static str) -> (u32, u32) {
    let ok = Arc::new(AtomicU32::new(0));
    let refused = Arc::new(AtomicU32::new(0));
    let mut handles = Vec::new();
    for svc in replicas {
        for _ in 0..tasks_each {
            let (svc, ok, refused) = (svc.clone(), Arc::clone(&ok), Arc::clone(&refused));
            handles.push(tokio::spawn(async move {
                for _ in 0..requests {
                    match get(&svc, "/pets", Some(key)).await.status.as_u16() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_admit_exactly_the_quota_with_and_without_leases() {
    let Some(server) = Server::spawn("two_replicas_admit_exactly_the_quota") else { return };
    for leasing in [true, false] {
        server.command(&["FLUSHALL"]);
        let a = RedisBackend::builder(server.url()).leasing(leasing).replicas(2).connect().await.unwrap();
        let b = RedisBackend::builder(server.url()).leasing(leasing).replicas(2).connect().await.unwrap();
        let (ok, refused) = hammer(&[layer(&a), layer(&b)], 4, 100, Q).await;
        assert_eq!(ok, 200, "leasing {leasing}: exactly the quota in total");
        assert_eq!(refused, 600);
        a.shutdown().await;
        b.shutdown().await;
        assert_eq!(server.quota_total(), 200, "leasing {leasing}: Redis holds exactly the counted requests");
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(sa.errors + sb.errors, 0);
        if leasing {
            // Most requests took their quota from a lease; refused ones were answered locally.
            assert!(sa.round_trips + sb.round_trips < 100, "{sa:?} {sb:?}");
            assert!(sa.deny_cache_hits + sb.deny_cache_hits > 500, "{sa:?} {sb:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttles_hold_across_replicas_within_burst_plus_rate_times_t() {
    let Some(server) = Server::spawn("throttles_hold_across_replicas") else { return };
    let config = CONFIG
        .replace("stage = \"other\"", "stage = \"prod\"")
        .replace("plans = [\"quota-only\"]", "plans = [\"throttled\"]");
    let mk = |backend: &RedisBackend| {
        let store = InMemoryKeyStore::from_toml_str(&config).unwrap();
        service(&UsagePlanLayer::builder(store).redis(backend.clone()).build())
    };
    let a = RedisBackend::builder(server.url()).connect().await.unwrap();
    let b = RedisBackend::builder(server.url()).connect().await.unwrap();
    let (sa, sb) = (mk(&a), mk(&b));
    let start = Instant::now();
    let mut ok = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        let (x, _) = hammer(&[sa.clone(), sb.clone()], 2, 5, Q).await;
        ok += x;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bound = 10.0 + 50.0 * elapsed;
    assert!(f64::from(ok) <= bound + 1.0, "{ok} admitted in {elapsed:.3} s, bound {bound:.1}");
    assert!(f64::from(ok) >= 10.0 + 50.0 * 0.8, "{ok} admitted: the bucket refills at its rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_paused_and_restarted_requests_are_answered_in_time_and_usage_is_replayed() {
    let Some(mut server) = Server::spawn("redis_killed_paused_and_restarted") else { return };
    let backend = RedisBackend::builder(server.url())
        .timeout(Duration::from_millis(50))
        .leasing(false)
        .circuit_breaker(3, Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let closed = RedisBackend::builder(server.url())
        .timeout(Duration::from_millis(50))
        .quota_policy(FailurePolicy::FailClosed)
        .leasing(false)
        .connect()
        .await
        .unwrap();
    let (svc, svc_closed) = (layer(&backend), layer(&closed));
    for _ in 0..5 {
        assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    }
    assert_eq!(server.quota_total(), 5);
    let timed = |svc: Svc| async move {
        let t = Instant::now();
        let status = get(&svc, "/pets", Some(Q)).await.status.as_u16();
        (status, t.elapsed())
    };
    // Paused: every request answered within the timeout (plus scheduling), from local shares.
    server.signal("-STOP");
    for _ in 0..10 {
        let (status, took) = timed(svc.clone()).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    let (status, took) = timed(svc_closed.clone()).await;
    assert_eq!((status, took < Duration::from_millis(500)), (503, true), "fail-closed answers 503 in time");
    server.signal("-CONT");
    backend.flush().await;
    // Killed: refused connections are answered at once.
    server.kill();
    for _ in 0..10 {
        let (status, took) = timed(svc.clone()).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    assert_eq!(timed(svc_closed.clone()).await.0, 503);
    let stats = backend.stats();
    assert!(stats.errors >= 3 && stats.fallback_decisions >= 20, "{stats:?}");
    // Restarted (empty: it keeps nothing on disk): the usage admitted while it was down appears.
    server.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        backend.flush().await;
        if server.quota_total() >= 10 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The 10 admitted while it was dead (those admitted while paused reached the old instance).
    assert!(server.quota_total() >= 10, "replayed: {}", server.quota_total());
    // And requests go to Redis again once the breaker closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = backend.stats().round_trips;
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    assert!(backend.stats().round_trips > before);
}

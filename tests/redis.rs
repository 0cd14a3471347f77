//! Distributed mode against a real `redis-server`: each test spawns its own on a free loopback
//! port (fault tests kill and pause it), or uses `REDIS_URL` for the tests that do no harm.
#![cfg(feature = "redis")]

mod common;

use common::{get, service, Svc};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower_usage_plans::{
    FailurePolicy, InMemoryKeyStore, ManualClock, RedisBackend, RedisBackendErrorKind, UsagePlanLayer,
};

/// A redis-server of this test's own, or the one at `REDIS_URL` for tests that do no harm.
struct Server {
    child: Option<Child>,
    port: u16,
    /// Extra arguments (cluster mode).
    extra: Vec<String>,
    /// Set when the server is `REDIS_URL`'s (shared: this test's keys only, under its prefix).
    shared_url: Option<String>,
    /// The key prefix of this test's backends.
    prefix: String,
}

fn require() -> bool {
    std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

impl Server {
    /// Spawns one; without the binary, uses `REDIS_URL` (this test's keys under a prefix of its
    /// own); without either, says loudly that the test is skipped (fails when services are
    /// required).
    fn spawn(test: &str) -> Option<Server> {
        Self::spawn_or(test, true)
    }

    /// Spawns one of this test's own (fault tests kill and pause it: never a shared one).
    fn spawn_own(test: &str) -> Option<Server> {
        Self::spawn_or(test, false)
    }

    fn spawn_or(test: &str, shared_ok: bool) -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let prefix = format!("tup-{test}-{}", std::process::id());
        let mut server = Server { child: None, port, extra: Vec::new(), shared_url: None, prefix };
        if server.start().is_ok() {
            return Some(server);
        }
        if let (true, Ok(url)) = (shared_ok, std::env::var("REDIS_URL")) {
            eprintln!("{test}: no redis-server binary; using REDIS_URL with prefix {}", server.prefix);
            server.shared_url = Some(url);
            return Some(server);
        }
        assert!(!require(), "{test}: redis-server is required (USAGE_PLANS_REQUIRE_SERVICES=1) but cannot run");
        eprintln!("SKIPPED {test}: no redis-server binary on PATH (and no REDIS_URL)");
        None
    }

    /// A backend builder for this server under this test's prefix.
    fn backend(&self) -> tower_usage_plans::RedisBackendBuilder {
        RedisBackend::builder(self.url()).prefix(self.prefix.clone())
    }

    /// Deletes this test's keys.
    fn clear(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{{}}}:*", self.prefix)).query(&mut con).unwrap();
        for k in keys {
            let _: () = redis::cmd("DEL").arg(k).query(&mut con).unwrap();
        }
    }

    fn start(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
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
        self.shared_url.clone().unwrap_or_else(|| format!("redis://127.0.0.1:{}", self.port))
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
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{{}}}:quota*", self.prefix)).query(&mut con).unwrap();
        keys.iter().map(|k| redis::cmd("GET").arg(k).query::<Option<i64>>(&mut con).unwrap().unwrap_or(0)).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.shared_url.is_some() {
            // A shared server: leave nothing of this test behind.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.clear()));
            return;
        }
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
    service(&UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap())
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
        server.clear();
        let a = server.backend().leasing(leasing).replicas(2).connect().await.unwrap();
        let b = server.backend().leasing(leasing).replicas(2).connect().await.unwrap();
        let (ok, refused) = hammer(&[layer(&a), layer(&b)], 4, 100, Q).await;
        assert_eq!(ok, 200, "leasing {leasing}: exactly the quota in total");
        assert_eq!(refused, 600);
        assert_eq!(a.shutdown().await, 0);
        assert_eq!(b.shutdown().await, 0);
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
        service(&UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap())
    };
    let a = server.backend().connect().await.unwrap();
    let b = server.backend().connect().await.unwrap();
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
    let Some(mut server) = Server::spawn_own("redis_killed_paused_and_restarted") else { return };
    let backend = server
        .backend()
        .timeout(Duration::from_millis(50))
        .leasing(false)
        .circuit_breaker(3, Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let closed = server
        .backend()
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
    assert_eq!(backend.flush().await, 0);
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
        let _pending = backend.flush().await;
        if server.quota_total() >= 10 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly the 10 admitted while it was dead (those admitted while paused reached the old
    // instance), each written once.
    assert_eq!(server.quota_total(), 10, "replayed");
    // And requests go to Redis again once the breaker closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = backend.stats().round_trips;
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    assert!(backend.stats().round_trips > before);
}

/// Starts a quickstart with `--redis url` and returns it with its base URL.
fn quickstart(url: &str) -> (common::Killed, String) {
    use std::io::BufRead;
    let mut child = Command::new(common::example_binary("quickstart"))
        .args(["--addr", "127.0.0.1:0", "--redis", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the quickstart example was built");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let process = common::Killed(child);
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "quickstart exited early");
        if let Some(base) = line.trim().strip_prefix("listening on ") {
            return (process, base.to_owned());
        }
    }
}

async fn status(base: &str, key: &str) -> u16 {
    let url = format!("{base}/pets");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("x-api-key: {key}"), &url])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

#[tokio::test]
async fn two_quickstarts_with_the_same_redis_share_limits() {
    let Some(server) = Server::spawn("two_quickstarts_with_the_same_redis_share_limits") else { return };
    if !common::example_binary("quickstart").exists() {
        assert!(!require(), "the quickstart example was not built");
        eprintln!("SKIPPED two_quickstarts_with_the_same_redis_share_limits: quickstart not built");
        return;
    }
    let ((_a, a), (_b, b)) = (quickstart(&server.url()), quickstart(&server.url()));
    // The free plan: 1 request/s, burst 3, per key across both processes.
    let free = "free-0123456789abcdefghij";
    let start = Instant::now();
    let mut admitted = 0;
    for i in 0..8 {
        if status(if i % 2 == 0 { &a } else { &b }, free).await == 200 {
            admitted += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(f64::from(admitted) <= 3.0 + elapsed + 1.0, "{admitted} admitted in {elapsed:.2} s");
    assert!(admitted >= 3, "{admitted}");
    // The trial key's daily quota, spent by the first process at start, is spent for both.
    assert_eq!(status(&b, "trial-0123456789abcdefghij").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_policy_answers_as_documented_while_redis_is_paused() {
    let Some(server) = Server::spawn_own("each_failure_policy_answers_as_documented") else { return };
    // A throttle of burst 4 and a quota of 200.
    let config = CONFIG
        .replace("stage = \"other\"", "stage = \"prod\"")
        .replace("plans = [\"quota-only\"]", "plans = [\"throttled\"]")
        .replace("rate = 50.0, burst = 10", "rate = 0.001, burst = 4");
    let layer_with = |backend: &RedisBackend| {
        let store = InMemoryKeyStore::from_toml_str(&config).unwrap();
        service(&UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap())
    };
    let connect = |throttle: FailurePolicy, quota: FailurePolicy| {
        server
            .backend()
            .timeout(Duration::from_millis(50))
            .throttle_policy(throttle)
            .quota_policy(quota)
            .replicas(2)
            .connect()
    };
    let fallback = connect(FailurePolicy::LocalFallback, FailurePolicy::LocalFallback).await.unwrap();
    let open = connect(FailurePolicy::FailOpen, FailurePolicy::FailOpen).await.unwrap();
    let closed = connect(FailurePolicy::FailClosed, FailurePolicy::FailClosed).await.unwrap();
    let (svc_fallback, svc_open, svc_closed) = (layer_with(&fallback), layer_with(&open), layer_with(&closed));
    server.signal("-STOP");
    let run = |svc: Svc| async move {
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let t = Instant::now();
            statuses.push(get(&svc, "/pets", Some(Q)).await.status.as_u16());
            assert!(t.elapsed() < Duration::from_millis(500), "answered in {:?}", t.elapsed());
        }
        statuses
    };
    // Local fallback: this replica's half of the burst of 4, then 429.
    assert_eq!(run(svc_fallback).await, [200, 200, 429, 429, 429, 429]);
    // Fail-open: no throttle at all.
    assert_eq!(run(svc_open).await, [200; 6]);
    // Fail-closed: 503.
    assert_eq!(run(svc_closed).await, [503; 6]);
    server.signal("-CONT");
    // Nothing was counted against a quota here (the plan has none), and all three recover.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for backend in [&open, &closed] {
        let _pending = backend.flush().await;
    }
    // A new layer on the same backend (its own clock): the breaker has closed, Redis decides.
    let svc = layer_with(&closed);
    let before = closed.stats().round_trips;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = get(&svc, "/pets", Some(Q)).await.status.as_u16();
    // The breaker lets one probe through per cooldown; a connection made during the pause may
    // need a probe or two to recover.
    while status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = get(&svc, "/pets", Some(Q)).await.status.as_u16();
    }
    assert_eq!(status, 200, "recovered");
    assert!(closed.stats().round_trips > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_quota_usage_is_replayed_after_recovery() {
    let Some(mut server) = Server::spawn_own("fail_open_quota_usage_is_replayed") else { return };
    let backend = server
        .backend()
        .timeout(Duration::from_millis(50))
        .quota_policy(FailurePolicy::FailOpen)
        .leasing(false)
        .connect()
        .await
        .unwrap();
    let svc = layer(&backend);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    server.kill();
    for _ in 0..7 {
        assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    }
    server.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.quota_total() < 7 && Instant::now() < deadline {
        let _pending = backend.flush().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.quota_total(), 7, "the 7 requests admitted while Redis was down");
    assert_eq!(backend.stats().replayed, 7);
}

/// Three cluster-mode redis-servers of this test's own, joined into one cluster.
fn spawn_cluster(test: &str) -> Option<Vec<Server>> {
    let mut nodes = Vec::new();
    while nodes.len() < 3 {
        // A port whose cluster bus port (+10000) is free too.
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
            continue;
        }
        let dir = std::env::temp_dir().join(format!("tup-cluster-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([dir.display().to_string()])
            .collect();
        let prefix = String::from("tup");
        let mut server = Server { child: None, port, extra, shared_url: None, prefix };
        if server.start().is_err() {
            assert!(!require(), "{test}: redis-server is required but cannot run in cluster mode");
            eprintln!("SKIPPED {test}: cannot start cluster-mode redis-server");
            return None;
        }
        nodes.push(server);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !created.is_ok_and(|s| s.success()) {
        assert!(!require(), "{test}: redis-cli --cluster create failed");
        eprintln!("SKIPPED {test}: redis-cli --cluster create failed");
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ok = nodes.iter().all(|n| match n.command(&["CLUSTER", "INFO"]) {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).contains("cluster_state:ok"),
            redis::Value::VerbatimString { text, .. } => text.contains("cluster_state:ok"),
            _ => false,
        });
        if ok {
            return Some(nodes);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{test}: the cluster did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_two_replicas_admit_exactly_the_quota_and_one_shard_holds_the_keys() {
    let Some(nodes) = spawn_cluster("on_a_redis_cluster") else { return };
    let urls: Vec<String> = nodes.iter().map(Server::url).collect();
    let a = RedisBackend::cluster_builder(urls.clone())
        .timeout(Duration::from_millis(500))
        .replicas(2)
        .connect()
        .await
        .unwrap();
    let b = RedisBackend::cluster_builder(urls.clone())
        .timeout(Duration::from_millis(500))
        .replicas(2)
        .connect()
        .await
        .unwrap();
    let (ok, refused) = hammer(&[layer(&a), layer(&b)], 4, 100, Q).await;
    assert_eq!((ok, refused), (200, 600));
    // A snapshot on the cluster scans the node owning the deployment's slot for quota counters.
    let snapshot = serde_json::to_value(usage_layer(&a).0.usage().snapshot().await.unwrap()).unwrap();
    assert_eq!(snapshot["quotas"].as_array().map(Vec::len), Some(1), "{snapshot}");
    assert_eq!((snapshot["quotas"][0]["key"].as_str(), snapshot["quotas"][0]["used"].as_i64()), (Some("q"), Some(200)));
    // The throttle script on the cluster too: burst 10 at 50/s across both replicas.
    let config = CONFIG
        .replace("stage = \"other\"", "stage = \"prod\"")
        .replace("plans = [\"quota-only\"]", "plans = [\"throttled\"]");
    let mk = |backend: &RedisBackend| {
        let store = InMemoryKeyStore::from_toml_str(&config).unwrap();
        service(&UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap())
    };
    let start = Instant::now();
    let (ok, _) = hammer(&[mk(&a), mk(&b)], 2, 20, Q).await;
    let bound = 10.0 + 50.0 * start.elapsed().as_secs_f64();
    assert!(f64::from(ok) <= bound + 1.0 && ok >= 10, "{ok} admitted, bound {bound:.1}");
    assert_eq!(a.shutdown().await, 0);
    assert_eq!(b.shutdown().await, 0);
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| match n.command(&["DBSIZE"]) {
            redis::Value::Int(k) => k as usize,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(counts.iter().filter(|c| **c > 0).count(), 1, "one shard holds every key: {counts:?}");
    assert_eq!(a.stats().errors + b.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_quota_fallback_keeps_to_its_share_however_long_the_outage() {
    let Some(server) = Server::spawn_own("the_local_quota_fallback_keeps_to_its_share") else { return };
    let config = CONFIG.replace("limit = 200", "limit = 20");
    let backend =
        server.backend().timeout(Duration::from_millis(30)).leasing(false).replicas(2).connect().await.unwrap();
    let store = InMemoryKeyStore::from_toml_str(&config).unwrap();
    let svc = service(&UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap());
    server.signal("-STOP");
    // 2.5 s of outage, across several maintenance rounds: at most this replica's half of 20.
    let mut admitted = 0;
    for _ in 0..40 {
        if get(&svc, "/pets", Some(Q)).await.status == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    server.signal("-CONT");
    assert_eq!(admitted, 10, "the share of one of 2 replicas");
}

#[test]
fn debug_output_leaves_the_url_and_its_password_out() {
    let builder = RedisBackend::builder("redis://:s3cret-pass@127.0.0.1:6379");
    let debug = format!("{builder:?}");
    assert!(!debug.contains("s3cret-pass"), "{debug}");
    assert!(debug.contains("leasing: true"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lease_goes_back_to_redis() {
    let Some(server) = Server::spawn("an_idle_lease_goes_back_to_redis") else { return };
    let backend = server.backend().idle_lease_return(Duration::from_millis(200)).connect().await.unwrap();
    let svc = layer(&backend);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    let leased = server.quota_total();
    assert!(leased > 1, "a batch was leased: {leased}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.quota_total() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.quota_total(), 1, "only the request served stays counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_reach_redis_with_and_without_leases() {
    let Some(server) = Server::spawn("refunds_reach_redis") else { return };
    for leasing in [false, true] {
        server.clear();
        let backend = server.backend().leasing(leasing).connect().await.unwrap();
        let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
        let layer = UsagePlanLayer::builder(store)
            .redis(backend.clone())
            .refund_quota_when(|s| s.is_server_error())
            .build()
            .unwrap();
        let failing = tower::service_fn(|_r: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::builder().status(500).body(String::from("boom")).unwrap())
        });
        let svc: Svc = tower::util::BoxCloneSyncService::new(tower::Layer::layer(&layer, failing));
        for _ in 0..5 {
            assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 500);
        }
        assert_eq!(backend.shutdown().await, 0);
        assert_eq!(server.quota_total(), 0, "leasing {leasing}: every 500 was given back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_still_serves_requests_covered_by_a_lease() {
    let Some(server) = Server::spawn_own("fail_closed_still_serves_leased") else { return };
    let backend = server
        .backend()
        .timeout(Duration::from_millis(50))
        .quota_policy(FailurePolicy::FailClosed)
        .throttle_policy(FailurePolicy::FailClosed)
        .max_lease(5)
        .connect()
        .await
        .unwrap();
    let svc = layer(&backend);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200); // leases 5, uses 1
    server.signal("-STOP");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&svc, "/pets", Some(Q)).await.status.as_u16());
    }
    server.signal("-CONT");
    // The quota-only plan makes no round trip while the lease lasts; then fail-closed answers 503.
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_keys_no_layer_holds_is_dropped_once_it_holds_nothing() {
    let Some(server) = Server::spawn("state_of_keys_no_layer_holds_is_dropped") else { return };
    let backend = server.backend().idle_lease_return(Duration::from_millis(200)).connect().await.unwrap();
    let svc = layer(&backend);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    assert_eq!(backend.stats().keys, 1);
    drop(svc); // the layer and its key cache are gone
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats().keys > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backend.stats().keys, 0, "the lease went back, then the state");
    assert_eq!(server.quota_total(), 1, "the count lives on in Redis");
    // A layer built later finds the count there.
    let svc = layer(&backend);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    assert_eq!(backend.shutdown().await, 0);
    assert_eq!(server.quota_total(), 2);
}

/// A layer on `backend` reading time from `clock`.
fn layer_at(config: &str, backend: &RedisBackend, clock: &ManualClock) -> Svc {
    let store = InMemoryKeyStore::from_toml_str(config).unwrap();
    service(&UsagePlanLayer::builder(store).clock(clock.clone()).redis(backend.clone()).build().unwrap())
}

fn retry_after(reply: &common::Reply) -> u64 {
    reply.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_clock_drives_the_deny_cache() {
    let Some(server) = Server::spawn("a_manual_clock_drives_the_deny_cache") else { return };
    // Wall time now: quota counters and the server's clock agree. Monotonic time moves only
    // when told to.
    let clock = ManualClock::new(SystemTime::now());
    // One request per 1000 s, burst 1: Redis refuses the second with a retry time of ~1000 s.
    let config = CONFIG
        .replace("stage = \"other\"", "stage = \"prod\"")
        .replace("plans = [\"quota-only\"]", "plans = [\"throttled\"]")
        .replace("rate = 50.0, burst = 10", "rate = 0.001, burst = 1");
    let backend = server.backend().clock(clock.clone()).connect().await.unwrap();
    let svc = layer_at(&config, &backend, &clock);
    let stats = || {
        let s = backend.stats();
        (s.round_trips, s.deny_cache_hits)
    };
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    let refused = get(&svc, "/pets", Some(Q)).await;
    assert_eq!((refused.status.as_u16(), retry_after(&refused)), (429, 1000), "refused by Redis");
    assert_eq!(stats(), (2, 0));
    // Inside the refusal's retry time on the manual clock: refused locally, no round trip, and
    // the retry time counts down with the manual clock.
    for (step, left) in [(0, 1000), (500, 500), (499, 1)] {
        clock.advance(Duration::from_secs(step));
        let r = get(&svc, "/pets", Some(Q)).await;
        assert_eq!((r.status.as_u16(), retry_after(&r)), (429, left), "{step} s later");
    }
    assert_eq!(stats(), (2, 3), "three answers from the deny cache, none from Redis");
    // Past the retry time: Redis is asked again. On its own clock only milliseconds have passed,
    // so it refuses again, and the deny cache holds the new refusal.
    clock.advance(Duration::from_secs(2));
    let again = get(&svc, "/pets", Some(Q)).await;
    assert_eq!(again.status, 429);
    assert_eq!(stats(), (3, 3), "asked Redis again");
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 429);
    assert_eq!(stats(), (3, 4), "the new refusal is cached");
    assert_eq!(backend.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_clock_drives_the_circuit_breaker() {
    let Some(mut server) = Server::spawn_own("a_manual_clock_drives_the_circuit_breaker") else { return };
    let clock = ManualClock::new(SystemTime::now());
    let cooldown = Duration::from_secs(10);
    // No leases: every request of the quota-only plan calls Redis; fail-closed answers 503.
    let backend = server
        .backend()
        .clock(clock.clone())
        .timeout(Duration::from_millis(200))
        .leasing(false)
        .quota_policy(FailurePolicy::FailClosed)
        .circuit_breaker(3, cooldown)
        .connect()
        .await
        .unwrap();
    let svc = layer_at(CONFIG, &backend, &clock);
    let trips = || backend.stats().round_trips;
    let status = || async { get(&svc, "/pets", Some(Q)).await.status.as_u16() };
    assert_eq!(status().await, 200);
    assert_eq!(trips(), 1);
    server.kill();
    // Three failed calls in a row: each one calls Redis; the failure policy answers.
    for n in 1..=3 {
        assert_eq!(status().await, 503);
        assert_eq!(trips(), 1 + n, "call {n} went to Redis");
    }
    let s = backend.stats();
    assert_eq!((s.errors, s.fallback_decisions), (3, 3), "{s:?}");
    // Open: while the manual clock is inside the cooldown, Redis is not called at all.
    for step in [0, 5, 4] {
        clock.advance(Duration::from_secs(step));
        assert_eq!(status().await, 503);
        assert_eq!(trips(), 4, "{step} s later: no call");
    }
    let s = backend.stats();
    assert_eq!((s.errors, s.fallback_decisions), (3, 6), "decided by the failure policy: {s:?}");
    // Past the cooldown: half-open, one probe goes to Redis. Redis is still down, so the probe
    // fails and the breaker opens again at once (no three failures needed).
    clock.advance(Duration::from_secs(2));
    assert_eq!(status().await, 503);
    assert_eq!((trips(), backend.stats().errors), (5, 4), "the probe");
    assert_eq!(status().await, 503);
    assert_eq!(trips(), 5, "open again after the failed probe");
    // Redis is back, but the manual clock is still inside the new cooldown: not called.
    server.start().unwrap();
    clock.advance(Duration::from_secs(9));
    assert_eq!(status().await, 503);
    assert_eq!(trips(), 5, "still open");
    // Each time the clock passes the cooldown, one probe goes to Redis (the client may need one
    // to notice its connection is gone); the first that Redis answers closes the breaker.
    let mut probes = 0;
    let closed = loop {
        clock.advance(cooldown + Duration::from_secs(1));
        let before = trips();
        let answer = status().await;
        assert_eq!(trips(), before + 1, "one probe per cooldown");
        probes += 1;
        if answer == 200 {
            break true;
        }
        assert_eq!(answer, 503);
        assert_eq!(status().await, 503);
        assert_eq!(trips(), before + 1, "a failed probe opens the breaker again");
        if probes == 3 {
            break false;
        }
    };
    assert!(closed, "the breaker closed within {probes} probes");
    // Closed: without the clock moving, every request calls Redis again.
    for _ in 0..3 {
        let before = trips();
        assert_eq!(status().await, 200);
        assert_eq!(trips(), before + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_leases_go_back_when_the_backends_clock_says_they_are_idle() {
    let Some(server) = Server::spawn("idle_leases_go_back_when_the_backends_clock_says") else { return };
    let clock = ManualClock::new(SystemTime::now());
    let backend =
        server.backend().clock(clock.clone()).idle_lease_return(Duration::from_secs(60)).connect().await.unwrap();
    let svc = layer_at(CONFIG, &backend, &clock);
    assert_eq!(get(&svc, "/pets", Some(Q)).await.status, 200);
    let leased = server.quota_total();
    assert!(leased > 1, "a batch was leased: {leased}");
    // The maintenance task ticks every second of real time, but the backend's clock has not
    // moved: nothing is idle. (Real time passes here for the task to tick, not for the lease.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.quota_total(), leased, "still leased");
    // The backend's clock passes the idle time twice (one round marks the lease untouched, the
    // next returns it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.quota_total() != 1 && Instant::now() < deadline {
        clock.advance(Duration::from_secs(61));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.quota_total(), 1, "only the request served stays counted");
}

#[tokio::test]
async fn connect_errors_have_a_kind_and_never_show_the_password() {
    let invalid = RedisBackend::builder("redis://:s3cret-pass@").connect().await.unwrap_err();
    assert_eq!(invalid.kind(), RedisBackendErrorKind::InvalidUrl, "{invalid}");
    // A cluster node nobody listens on: the client tries to connect and cannot.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = RedisBackend::cluster_builder([format!("redis://:s3cret-pass@127.0.0.1:{port}")])
        .timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(unreachable.kind(), RedisBackendErrorKind::Connect, "{unreachable:?}");
    for e in [&invalid, &unreachable] {
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(shown.starts_with("redis: "), "{shown}");
        assert!(!shown.contains("s3cret-pass") && !debug.contains("s3cret-pass"), "{shown} / {debug}");
        assert!(std::error::Error::source(e).is_some());
    }
}

// ---- The usage ledger in Redis (GetUsage, UpdateUsage, sinks) ----

fn usage_layer(backend: &RedisBackend) -> (UsagePlanLayer, tower_usage_plans::UsagePlan) {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let plan = (*store.config().plans()[0]).clone();
    (UsagePlanLayer::builder(store).redis(backend.clone()).build().unwrap(), plan)
}

async fn admitted(svc: &Svc, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if get(svc, "/pets", Some(Q)).await.status == 200 {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reads_for_the_whole_deployment_and_a_sink_gets_each_count_once_across_replicas() {
    let Some(server) = Server::spawn("usage_whole_deployment") else { return };
    server.clear();
    let a = server.backend().replicas(2).connect().await.unwrap();
    let b = server.backend().replicas(2).connect().await.unwrap();
    let ((la, plan), (lb, _)) = (usage_layer(&a), usage_layer(&b));
    let (sa, sb) = (service(&la), service(&lb));
    assert_eq!(admitted(&sa, 7).await, 7);
    assert_eq!(admitted(&sb, 5).await, 5);
    // B's counts reach Redis at its next round (every second) or at flush.
    assert_eq!(b.flush().await, 0);
    let usage = la.usage();
    let today = usage.today();
    let report = usage.report(&plan, &[], today, today).await.unwrap();
    let day = report.keys["q"][0];
    assert_eq!((day.used, day.remaining), (12, Some(188)), "used, not leased (both replicas hold leases)");
    let q = usage.quota(&plan, "q").await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining), (12, 188));
    assert_eq!(usage.keys_with_usage(&plan).await.unwrap(), ["q"]);
    // The sink's bookkeeping is shared: what one replica's reporter acknowledged, no other offers.
    let batch = lb.usage().pending().await.unwrap();
    let got: Vec<_> = batch.records().iter().map(|r| (r.key_id.as_str(), r.requests, r.total)).collect();
    assert_eq!(got, [("q", 12, 12)]);
    lb.usage().acknowledge(&batch).await.unwrap();
    assert!(usage.pending().await.unwrap().is_empty(), "acknowledged once for the deployment");
    assert_eq!(admitted(&sb, 3).await, 3);
    let again = usage.pending().await;
    assert!(again.as_ref().unwrap().is_empty() || again.as_ref().unwrap().records()[0].requests == 3);
    assert_eq!(b.flush().await, 0);
    let again = usage.pending().await.unwrap();
    assert_eq!((again.records()[0].requests, again.records()[0].total), (3, 15));
    // A snapshot holds the deployment's counts: both replicas' requests in the day, what the sink
    // acknowledged, and the quota counter (B's unspent lease counts as used; A gave its back).
    let snapshot = serde_json::to_value(usage.snapshot().await.unwrap()).unwrap();
    let day = &snapshot["days"][0];
    assert_eq!(snapshot["days"].as_array().map(Vec::len), Some(1), "{snapshot}");
    assert_eq!((day["key"].as_str(), day["used"].as_u64(), day["reported"].as_u64()), (Some("q"), Some(15), Some(12)));
    let counted = snapshot["quotas"][0]["used"].as_i64().unwrap();
    assert!((15..=200).contains(&counted), "{snapshot}");
    assert_eq!(a.shutdown().await, 0);
    assert_eq!(b.shutdown().await, 0);
}

/// UpdateUsage through one replica sets the remaining quota of the whole deployment exactly,
/// with and without leases: the other replicas give their leases back before the counter is set
/// (the update waits for them), and forget the refusals they had cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_usage_sets_the_remaining_quota_of_the_deployment() {
    let Some(server) = Server::spawn("update_usage_deployment") else { return };
    for leasing in [false, true] {
        server.clear();
        let backends: Vec<RedisBackend> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(server.backend().leasing(leasing).replicas(3).max_lease(10).connect().await.unwrap());
            }
            v
        };
        let layers: Vec<_> = backends.iter().map(usage_layer).collect();
        let svcs: Vec<Svc> = layers.iter().map(|(l, _)| service(l)).collect();
        for svc in &svcs {
            assert_eq!(admitted(svc, 4).await, 4, "every replica holds a lease now (leasing {leasing})");
        }
        let (layer, plan) = &layers[0];
        let q = layer.usage().set_remaining(plan, "q", 5).await.unwrap();
        assert_eq!((q.used, q.remaining), (195, 5));
        let mut ok = 0;
        for _ in 0..10 {
            for svc in &svcs {
                ok += admitted(svc, 1).await;
            }
        }
        eprintln!("update_usage: leasing {leasing}: {ok} admitted after remaining = 5");
        assert_eq!(ok, 5, "exactly the remaining quota across the deployment (leasing {leasing})");
        for b in &backends {
            assert_eq!(b.shutdown().await, 0);
        }
        let today = layer.usage().today();
        let report = layer.usage().report(plan, &["q"], today, today).await.unwrap();
        assert_eq!(report.keys["q"][0].used, 12 + ok as u64, "leasing {leasing}");
    }
}

/// Replicas that cached a quota refusal serve the remaining quota an UpdateUsage made through
/// another replica sets from the next request on: the update clears their refusals before it
/// returns. The clock stands still, so no refusal would run out by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_usage_clears_the_refusals_other_replicas_cached() {
    let Some(server) = Server::spawn("update_usage_clears_refusals") else { return };
    server.clear();
    let clock = ManualClock::new(SystemTime::now());
    let config = CONFIG.replace("limit = 200", "limit = 6");
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(server.backend().replicas(3).clock(clock.clone()).connect().await.unwrap());
    }
    let layers: Vec<UsagePlanLayer> = backends
        .iter()
        .map(|b| {
            let store = InMemoryKeyStore::from_toml_str(&config).unwrap();
            UsagePlanLayer::builder(store).clock(clock.clone()).redis(b.clone()).build().unwrap()
        })
        .collect();
    let svcs: Vec<Svc> = layers.iter().map(service).collect();
    let plan = (*InMemoryKeyStore::from_toml_str(&config).unwrap().config().plans()[0]).clone();
    let mut before = 0;
    for svc in &svcs {
        before += admitted(svc, 4).await;
    }
    assert_eq!(before, 6, "the quota of 6 across three replicas");
    for svc in &svcs {
        assert_eq!(admitted(svc, 1).await, 0, "spent, and the refusal is cached");
    }
    let cached = backends.iter().map(|b| b.stats().deny_cache_hits).sum::<u64>();
    assert_eq!(admitted(&svcs[1], 1).await + admitted(&svcs[2], 1).await, 0);
    let hits = backends.iter().map(|b| b.stats().deny_cache_hits).sum::<u64>();
    assert!(hits > cached, "refused from the deny cache ({cached} -> {hits})");
    let q = layers[0].usage().set_remaining(&plan, "q", 4).await.unwrap();
    assert_eq!((q.used, q.remaining), (2, 4));
    // Replicas 2 and 3 first: their cached refusals are gone at once.
    let mut by_replica = [0usize; 3];
    for _ in 0..4 {
        for i in [1, 2, 0] {
            by_replica[i] += admitted(&svcs[i], 1).await;
        }
    }
    eprintln!("update_usage_clears_refusals: admitted by replica {by_replica:?}");
    assert_eq!(by_replica.iter().sum::<usize>(), 4, "exactly the remaining quota");
    assert!(by_replica[1] >= 1 && by_replica[2] >= 1, "replicas 2 and 3 admit at once: {by_replica:?}");
    for b in &backends {
        assert_eq!(b.shutdown().await, 0);
    }
}

/// UpdateUsage while every replica is under load and holds a lease: from the moment it returns,
/// the deployment admits the remaining quota, give or take the requests in flight around that
/// moment (traffic is paced at about one request per task and millisecond), never the leases the
/// replicas held (batches of up to 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_usage_under_load_admits_the_remaining_quota_give_or_take_the_requests_in_flight() {
    let Some(server) = Server::spawn("update_usage_under_load") else { return };
    server.clear();
    let config = CONFIG.replace("limit = 200", "limit = 1000000");
    let store = || InMemoryKeyStore::from_toml_str(&config).unwrap();
    let plan = (*store().config().plans()[0]).clone();
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(server.backend().max_lease(500).connect().await.unwrap());
    }
    let layers: Vec<UsagePlanLayer> =
        backends.iter().map(|b| UsagePlanLayer::builder(store()).redis(b.clone()).build().unwrap()).collect();
    let svcs: Vec<Svc> = layers.iter().map(service).collect();
    let ok = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    const TASKS: usize = 6;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (svc, ok, stop) = (svcs[t % 3].clone(), Arc::clone(&ok), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut refused_in_a_row = 0;
            while !stop.load(Ordering::Relaxed) && refused_in_a_row < 50 {
                if get(&svc, "/pets", Some(Q)).await.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    refused_in_a_row = 0;
                } else {
                    refused_in_a_row += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    // Traffic until every replica leases (batches of 500).
    while ok.load(Ordering::Relaxed) < 1000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let q = layers[0].usage().set_remaining(&plan, "q", 100).await.unwrap();
    assert_eq!(q.remaining, 100);
    let at_update = ok.load(Ordering::Relaxed);
    let held: u64 = backends.iter().map(|b| b.stats().lease_hits).sum();
    assert!(held > 500, "the replicas served from leases ({held} lease hits)");
    for t in tasks {
        t.await.unwrap();
    }
    let after = ok.load(Ordering::Relaxed) - at_update;
    eprintln!("update_usage_under_load: {at_update} admitted before the update returned, {after} after");
    let slack = 2 * TASKS as u32;
    assert!((100 - slack..=100 + slack).contains(&after), "{after} admitted after remaining = 100");
    stop.store(true, Ordering::Relaxed);
    for b in &backends {
        assert_eq!(b.shutdown().await, 0);
    }
}

/// UpdateUsage may grant more than the limit (API Gateway's temporary extension): the counter
/// goes below 0, and a lease given back later keeps it there instead of resetting it to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_given_back_after_an_extension_beyond_the_limit_is_not_lost() {
    let Some(server) = Server::spawn("extension_beyond_the_limit") else { return };
    server.clear();
    let config = CONFIG.replace("limit = 200", "limit = 30");
    let store = || InMemoryKeyStore::from_toml_str(&config).unwrap();
    let plan = (*store().config().plans()[0]).clone();
    let a = server.backend().connect().await.unwrap();
    let b = server.backend().connect().await.unwrap();
    let la = UsagePlanLayer::builder(store()).redis(a.clone()).build().unwrap();
    let lb = UsagePlanLayer::builder(store()).redis(b.clone()).build().unwrap();
    let (sa, sb) = (service(&la), service(&lb));
    assert_eq!(admitted(&sa, 40).await, 30);
    let q = la.usage().set_remaining(&plan, "q", 60).await.unwrap();
    assert_eq!((q.used, q.remaining), (-30, 60));
    // B leases a batch, spends 2 and gives the rest back at shutdown.
    assert_eq!(admitted(&sb, 2).await, 2);
    assert_eq!(b.shutdown().await, 0);
    assert_eq!(server.quota_total(), -28, "the counter stays below 0");
    assert_eq!(admitted(&sa, 70).await, 58, "exactly the remaining 58");
    assert_eq!(a.shutdown().await, 0);
}

/// A replica that stopped answering (its heartbeat still fresh) holds an update up for one second
/// at most; the update is then made, and the deployment's live replicas admit exactly the
/// remaining quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_usage_waits_a_second_at_most_for_a_replica_that_does_not_answer() {
    let Some(server) = Server::spawn("update_usage_silent_replica") else { return };
    server.clear();
    let a = server.backend().replicas(2).connect().await.unwrap();
    let b = server.backend().replicas(2).connect().await.unwrap();
    let ((la, plan), (lb, _)) = (usage_layer(&a), usage_layer(&b));
    let (sa, sb) = (service(&la), service(&lb));
    assert_eq!(admitted(&sa, 3).await + admitted(&sb, 3).await, 6);
    // A replica alive by its heartbeat that never answers an update.
    let now_ms = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
    let replicas = format!("{{{}}}:replicas", server.prefix);
    server.command(&["ZADD", &replicas, &now_ms.to_string(), "silent"]);
    let started = Instant::now();
    let q = la.usage().set_remaining(&plan, "q", 3).await.unwrap();
    let took = started.elapsed();
    assert_eq!((q.used, q.remaining), (197, 3));
    assert!(took >= Duration::from_millis(900), "waited for the silent replica: {took:?}");
    assert!(took < Duration::from_secs(5), "but not for long: {took:?}");
    let mut ok = 0;
    for _ in 0..5 {
        ok += admitted(&sa, 1).await + admitted(&sb, 1).await;
    }
    assert_eq!(ok, 3, "the live replicas gave their leases back: exactly 3 more");
    assert_eq!(a.shutdown().await + b.shutdown().await, 0);
}

/// Redis killed (SIGKILL) mid-traffic and restarted on the same port with its append-only file
/// (`appendfsync always`): the ledger written before survives, usage not yet written is written
/// when Redis is back. At least once: a write whose reply the kill cut off can count twice,
/// at most the counts of that one write (here at most the 10 requests made before the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_not_written_when_redis_was_killed_is_written_when_it_is_back() {
    let Some(mut server) = Server::spawn_own("usage_redis_killed") else { return };
    if server.shared_url.is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tup-aof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    server.kill();
    server.extra =
        ["--appendonly", "yes", "--appendfsync", "always", "--dir", dir.to_str().unwrap()].map(String::from).to_vec();
    server.start().unwrap();
    let backend = server.backend().connect().await.unwrap();
    let (layer, plan) = usage_layer(&backend);
    let svc = service(&layer);
    assert_eq!(admitted(&svc, 30).await, 30);
    assert_eq!(backend.flush().await, 0, "30 written");
    assert_eq!(admitted(&svc, 10).await, 10, "10 more, not written yet");
    server.kill();
    // During the outage: the lease first, then the local fallback (1/R of what is left).
    let during = admitted(&svc, 10).await;
    assert_eq!(during, 10);
    assert!(layer.usage().report(&plan, &[], layer.usage().today(), layer.usage().today()).await.is_err());
    server.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.flush().await > 0 {
        assert!(Instant::now() < deadline, "usage still not written 10 s after Redis came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let today = layer.usage().today();
    let used = layer.usage().report(&plan, &["q"], today, today).await.unwrap().keys["q"][0].used;
    assert!((50..=60).contains(&used), "50 admitted, {used} in the ledger (at most one write twice)");
    eprintln!("usage_redis_killed: 50 admitted, ledger {used}");
    assert_eq!(backend.shutdown().await, 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

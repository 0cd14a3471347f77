//! The usage ledger in Redis mode on a Redis Cluster of the test's own (three masters, no
//! replicas), reached through two backends ("replicas" of an app), each under its own layer:
//! quotas exact across replicas, GetUsage and UpdateUsage answered alike by either replica, and
//! a usage sink's acknowledgements shared. The deployment's hash slot is on a node other than
//! the first seed, so the client has to follow a MOVED redirection to reach it.
//!
//! Without `redis-server` and `redis-cli` on PATH the test says SKIPPED (a failure with
//! `USAGE_PLANS_REQUIRE_SERVICES=1`).

mod common;

use common::{one_key, send, store, Svc};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tower_usage_plans::usage::{UsageRecord, UsageReporter, UsageSink};
use tower_usage_plans::{FailurePolicy, InMemoryKeyStore, ManualClock, RedisBackend, UsagePlan, UsagePlanLayer};

const K: &str = "k-0123456789abcdefghij";
const J: &str = "j-0123456789abcdefghij";

fn require() -> bool {
    std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips the test loudly, or fails it when services are required.
fn skip(test: &str, why: &str) -> Option<Cluster> {
    assert!(!require(), "{test}: a Redis Cluster is required (USAGE_PLANS_REQUIRE_SERVICES=1) but {why}");
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// Three cluster-mode redis-servers joined into one cluster; every server is killed and the
/// directory removed on drop.
struct Cluster {
    children: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port() -> Option<u16> {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        if port <= 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// `args` on a plain (not cluster-aware) connection to the node on `port`.
fn node_command(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con)
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The port a MOVED (or ASK) answer points to.
fn moved_to(e: &redis::RedisError) -> Option<u16> {
    let (addr, _slot) = e.redirect_node()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

impl Cluster {
    fn spawn(test: &str) -> Option<Cluster> {
        let has = |bin: &str| Command::new(bin).arg("--version").stdout(Stdio::null()).status().is_ok();
        if !has("redis-server") || !has("redis-cli") {
            return skip(test, "no redis-server and redis-cli on PATH");
        }
        let dir = std::env::temp_dir().join(format!("tup-redis-cluster-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mut cluster = Cluster { children: Vec::new(), ports: Vec::new(), dir };
        for _ in 0..3 {
            let Some(port) = free_port() else { return skip(test, "no free loopback port pair") };
            let p = port.to_string();
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &p, "--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .arg("--dir")
                .arg(&cluster.dir)
                .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match child {
                Ok(c) => cluster.children.push(c),
                Err(e) => return skip(test, &format!("redis-server does not start: {e}")),
            }
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while node_command(port, &["PING"]).is_err() {
                assert!(Instant::now() < deadline, "{test}: redis-server on {port} did not answer");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !created.is_ok_and(|s| s.success()) {
            return skip(test, "redis-cli --cluster create failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = cluster
                .ports
                .iter()
                .all(|&p| node_command(p, &["CLUSTER", "INFO"]).is_ok_and(|v| text(&v).contains("cluster_state:ok")));
            if ok {
                return Some(cluster);
            }
            assert!(Instant::now() < deadline, "{test}: the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    }

    /// A prefix whose hash slot the first seed node does not serve (it answers MOVED).
    fn prefix_off_the_first_node(&self) -> String {
        (0..1000)
            .map(|i| format!("tup-cluster-{i}"))
            .find(|prefix| {
                let err = node_command(self.ports[0], &["GET", &format!("{{{prefix}}}:probe")]).err();
                err.is_some_and(|e| moved_to(&e).is_some_and(|port| port != self.ports[0]))
            })
            .expect("a prefix hashing off the first node")
    }

    /// The index of the node serving `prefix`'s hash slot, and the slot.
    fn owner(&self, prefix: &str) -> (usize, i64) {
        let key = format!("{{{prefix}}}:probe");
        let slot = match node_command(self.ports[0], &["CLUSTER", "KEYSLOT", &key]) {
            Ok(redis::Value::Int(n)) => n,
            other => panic!("CLUSTER KEYSLOT: {other:?}"),
        };
        let port = match node_command(self.ports[0], &["GET", &key]) {
            Err(e) => moved_to(&e).expect("a MOVED redirection"),
            Ok(_) => self.ports[0],
        };
        (self.ports.iter().position(|p| *p == port).expect("a node of the cluster"), slot)
    }

    /// Moves hash slot `slot` and its keys from node `from` to node `to`, as a resharding does
    /// (IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE): clients that knew the old owner are
    /// answered MOVED.
    fn move_slot(&self, slot: i64, from: usize, to: usize) {
        let id = |i: usize| text(&node_command(self.ports[i], &["CLUSTER", "MYID"]).unwrap());
        let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
        node_command(self.ports[to], &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]).unwrap();
        node_command(self.ports[from], &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]).unwrap();
        loop {
            let keys: Vec<String> = match node_command(self.ports[from], &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]) {
                Ok(redis::Value::Array(keys)) => keys.iter().map(text).collect(),
                other => panic!("CLUSTER GETKEYSINSLOT: {other:?}"),
            };
            if keys.is_empty() {
                break;
            }
            let port = self.ports[to].to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            node_command(self.ports[from], &args).unwrap();
        }
        for i in [to, from].into_iter().chain((0..self.ports.len()).filter(|i| *i != to && *i != from)) {
            node_command(self.ports[i], &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).unwrap();
        }
    }

    /// Keys held by each node.
    fn dbsizes(&self) -> Vec<i64> {
        self.ports
            .iter()
            .map(|&p| match node_command(p, &["DBSIZE"]) {
                Ok(redis::Value::Int(n)) => n,
                other => panic!("DBSIZE on {p}: {other:?}"),
            })
            .collect()
    }
}

/// A sink that keeps every record it is given.
#[derive(Default)]
struct Recorder {
    records: Mutex<Vec<UsageRecord>>,
}

impl UsageSink for Recorder {
    type Error = String;
    async fn deliver(&self, batch: &[UsageRecord]) -> Result<(), String> {
        self.records.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

/// Two backends over the cluster under `prefix`, at `clock`.
async fn backends(cluster: &Cluster, prefix: &str, clock: &ManualClock, leasing: bool) -> [RedisBackend; 2] {
    let connect = || async {
        RedisBackend::cluster_builder(cluster.urls())
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .quota_policy(FailurePolicy::FailClosed)
            .throttle_policy(FailurePolicy::FailClosed)
            .leasing(leasing)
            .replicas(2)
            .clock(clock.clone())
            .connect()
            .await
            .unwrap()
    };
    [connect().await, connect().await]
}

fn layers(store: &InMemoryKeyStore, clock: &ManualClock, backends: &[RedisBackend; 2]) -> [UsagePlanLayer; 2] {
    backends.clone().map(|b| UsagePlanLayer::builder(store.clone()).clock(clock.clone()).redis(b).build().unwrap())
}

/// `waves` waves of `each` concurrent requests with `key`, spread over `svcs` in turn; the
/// statuses per service (200, 429), panicking on any other answer.
async fn waves(svcs: &[Svc; 2], waves: usize, each: usize, key: &'static str) -> [(u32, u32); 2] {
    let mut out = [(0, 0); 2];
    for _ in 0..waves {
        let tasks: Vec<_> = (0..each)
            .map(|i| {
                let svc = svcs[i % 2].clone();
                tokio::spawn(async move { (i % 2, send(&svc, "GET", "/pets", Some(key)).await) })
            })
            .collect();
        for t in tasks {
            let (replica, reply) = t.await.unwrap();
            match reply.status.as_u16() {
                200 => out[replica].0 += 1,
                429 => {
                    assert_eq!(reply.headers["x-amzn-errortype"], "LimitExceededException", "{}", reply.body);
                    out[replica].1 += 1;
                }
                other => panic!("unexpected status {other}: {}", reply.body),
            }
        }
    }
    out
}

fn total(per_replica: [(u32, u32); 2]) -> (u32, u32) {
    (per_replica[0].0 + per_replica[1].0, per_replica[0].1 + per_replica[1].1)
}

fn today_pairs(report: &tower_usage_plans::usage::UsageReport, key: &str) -> Vec<(u64, Option<u64>)> {
    report.keys[key].iter().map(|d| (d.used, d.remaining)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_usage_ledger_works_the_same_on_a_redis_cluster() {
    let test = "the_usage_ledger_works_the_same_on_a_redis_cluster";
    let Some(cluster) = Cluster::spawn(test) else { return };
    let prefix = cluster.prefix_off_the_first_node();
    // Noon of the real day: the counters expire by the layer's clock and Redis deletes a key
    // whose expiry is past by its own, so the two must agree to the day.
    let today = time::OffsetDateTime::now_utc().date();
    let noon = today.midnight().assume_utc().unix_timestamp() + 43_200;
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(noon.unsigned_abs()));
    let config = format!(
        "{}[[keys]]\nid = \"j\"\nvalue = \"{J}\"\nplans = [\"p\"]\n",
        one_key("", r#"quota = { limit = 30, period = "DAY" }"#)
    );
    let store = store(&config);
    let plan: UsagePlan = (*store.config().plans()[0]).clone();

    // (a) Quota exactness: 3 waves of 20 concurrent requests over both replicas (leases on).
    let [a, b] = backends(&cluster, &prefix, &clock, true).await;
    let [la, lb] = layers(&store, &clock, &[a.clone(), b.clone()]);
    let svcs = [common::service(&la), common::service(&lb)];
    let per_replica = waves(&svcs, 3, 20, K).await;
    eprintln!("{test}: leases on, 60 requests of k: per replica (admitted, refused) {per_replica:?}");
    assert_eq!(total(per_replica), (30, 30), "exactly the quota admitted: {per_replica:?}");
    let j = waves(&svcs, 1, 3, J).await;
    assert_eq!(total(j), (3, 0));

    // (b) GetUsage on the other replica, after the first flushed its ledger counts.
    assert_eq!(a.flush().await, 0, "replica a wrote everything");
    let (ua, ub) = (la.usage(), lb.usage());
    let report = ub.report(&plan, &["k"], today, today).await.unwrap();
    assert_eq!(today_pairs(&report, "k"), [(30, Some(0))], "replica b sees the deployment's 30");
    let quota = ub.quota(&plan, "k").await.unwrap().unwrap();
    assert_eq!((quota.limit, quota.used, quota.remaining), (30, 30, 0));
    let report = ua.report(&plan, &["k"], today, today).await.unwrap();
    assert_eq!(today_pairs(&report, "k"), [(30, Some(0))], "replica a (after b's flush) too");

    // (c) report and keys_with_usage agree, on both replicas.
    for usage in [&ua, &ub] {
        let mut with_usage = usage.keys_with_usage(&plan).await.unwrap();
        with_usage.sort();
        assert_eq!(with_usage, ["j", "k"]);
        let report = usage.report(&plan, &[], today, today).await.unwrap();
        assert_eq!(report.keys.keys().cloned().collect::<Vec<_>>(), with_usage);
        assert_eq!(today_pairs(&report, "j"), [(3, Some(27))]);
        assert_eq!(today_pairs(&report, "k"), [(30, Some(0))]);
    }

    // (d) A sink on replica a gets every increment; the acknowledgement is the deployment's.
    let recorder = Arc::new(Recorder::default());
    let reporter =
        UsageReporter::builder(ua.clone(), Arc::clone(&recorder)).interval(Duration::from_secs(3600)).spawn();
    assert_eq!(reporter.flush().await.unwrap(), 2);
    {
        let records = recorder.records.lock().unwrap();
        let mut got: Vec<_> =
            records.iter().map(|r| (r.key_id.as_str(), r.plan_id.as_str(), r.date, r.requests, r.total)).collect();
        got.sort();
        assert_eq!(got, [("j", "p", today, 3, 3), ("k", "p", today, 30, 30)]);
    }
    assert!(ub.pending().await.unwrap().is_empty(), "replica b has nothing left to deliver");
    assert!(ua.pending().await.unwrap().is_empty());
    assert_eq!(a.shutdown().await, 0);
    assert_eq!(b.shutdown().await, 0);
    assert_eq!(a.stats().errors + b.stats().errors, 0, "{:?} {:?}", a.stats(), b.stats());
    drop((la, lb, svcs));

    // (e) UpdateUsage with leasing on: both replicas refuse k (and cache the refusal), replica
    // d sets remaining to 5 after the slot moved: the update reaches replica c through the update
    // feed on the cluster, which clears its cached refusal at once (the clock does not move), and
    // exactly 5 more are admitted over both.
    let [c, d] = backends(&cluster, &prefix, &clock, true).await;
    let [lc, ld] = layers(&store, &clock, &[c.clone(), d.clone()]);
    let svcs = [common::service(&lc), common::service(&ld)];
    assert_eq!(total(waves(&svcs, 1, 4, K).await), (0, 4), "the quota is spent for both");
    // A resharding moves the deployment's slot to another node under the running replicas:
    // their next calls are answered MOVED and follow it.
    let (owner, slot) = cluster.owner(&prefix);
    let to = (1..3).map(|i| (owner + i) % 3).find(|i| *i != 0).unwrap();
    cluster.move_slot(slot, owner, to);
    let moved = cluster.dbsizes();
    eprintln!("{test}: slot {slot} moved from node {owner} to node {to}: keys per node {moved:?}");
    assert!(moved[to] > 0 && moved[owner] == 0, "{moved:?}");
    let set = ld.usage().set_remaining(&plan, "k", 5).await.unwrap();
    assert_eq!((set.used, set.remaining), (25, 5));
    let per_replica = waves(&svcs, 3, 20, K).await;
    eprintln!("{test}: leases on, after UpdateUsage remaining 5, 60 requests: {per_replica:?}");
    assert_eq!(total(per_replica), (5, 55), "exactly 5 more: {per_replica:?}");
    assert_eq!(d.flush().await, 0, "replica d wrote its ledger counts");
    let quota = lc.usage().quota(&plan, "k").await.unwrap().unwrap();
    assert_eq!((quota.used, quota.remaining), (30, 0));
    let report = lc.usage().report(&plan, &[], today, today).await.unwrap();
    assert_eq!(today_pairs(&report, "k"), [(35, Some(0))], "35 forwarded, none left");
    assert_eq!(today_pairs(&report, "j"), [(3, Some(27))]);
    // The sink gets the 5 as well, through either replica's handle.
    let reporter_d = UsageReporter::builder(ld.usage(), Arc::clone(&recorder)).spawn();
    assert_eq!(reporter_d.flush().await.unwrap(), 1);
    {
        let records = recorder.records.lock().unwrap();
        let last = records.last().unwrap();
        assert_eq!((last.key_id.as_str(), last.requests, last.total), ("k", 5, 35));
    }
    assert!(lc.usage().pending().await.unwrap().is_empty());
    assert_eq!(reporter.shutdown().await.unwrap(), 0);
    assert_eq!(reporter_d.shutdown().await.unwrap(), 0);
    assert_eq!(c.shutdown().await, 0);
    assert_eq!(d.shutdown().await, 0);
    assert_eq!(c.stats().errors + d.stats().errors, 0, "{:?} {:?}", c.stats(), d.stats());

    // Every key of the deployment is on the slot's new node, and not the first seed's.
    let sizes = cluster.dbsizes();
    eprintln!("{test}: prefix {prefix}, keys per node {sizes:?}");
    assert_eq!(sizes.iter().filter(|n| **n > 0).count(), 1, "one shard holds every key: {sizes:?}");
    assert!(sizes[to] > 0 && sizes[0] == 0, "{sizes:?}");
}

//! The usage ledger through the layer: GetUsage figures per day, UpdateUsage, snapshots across a
//! restart, and usage sinks. Every scenario runs in process and against a redis-server of its own
//! (the `..._in_redis` tests), with the same figures.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::macros::date;
#[cfg(feature = "tokio")]
use tower_usage_plans::usage::UsageReporter;
use tower_usage_plans::usage::{DayUsage, UsageRecord, UsageSink};
use tower_usage_plans::{UsagePlan, UsagePlanLayer};

const DAY: Duration = Duration::from_secs(86_400);
const K: &str = "k-0123456789abcdefghij";

fn plan_of(layer_store: &tower_usage_plans::InMemoryKeyStore) -> UsagePlan {
    (*layer_store.config().plans()[0]).clone()
}

fn pairs(days: &[DayUsage]) -> Vec<(u64, Option<u64>)> {
    days.iter().map(|d| (d.used, d.remaining)).collect()
}

/// Where a scenario's counters live: in process, or in a redis-server of the test's own (falls
/// back to `REDIS_URL`; skipped loudly without either, a failure with
/// `USAGE_PLANS_REQUIRE_SERVICES=1`).
enum Mode {
    InProcess,
    #[cfg(feature = "redis")]
    Redis(String, String),
}

impl Mode {
    async fn on(
        &self,
        builder: tower_usage_plans::UsagePlanLayerBuilder,
        _clock: &tower_usage_plans::ManualClock,
    ) -> tower_usage_plans::UsagePlanLayerBuilder {
        match self {
            Mode::InProcess => builder,
            #[cfg(feature = "redis")]
            Mode::Redis(url, prefix) => {
                let backend = tower_usage_plans::RedisBackend::builder(url.clone())
                    .prefix(prefix.clone())
                    .clock(_clock.clone())
                    .connect()
                    .await
                    .unwrap();
                builder.redis(backend)
            }
        }
    }
}

#[cfg(feature = "redis")]
mod redis_mode {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A redis-server of the test's own (killed on drop), or `REDIS_URL`'s.
    pub(crate) struct Redis {
        child: Option<Child>,
        url: String,
        prefix: String,
    }

    impl Redis {
        pub(crate) async fn start(test: &str) -> Option<Redis> {
            let prefix = format!("tup-usage-{test}-{}", std::process::id());
            let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(child) = spawned {
                let redis = Redis { child: Some(child), url: format!("redis://127.0.0.1:{port}"), prefix };
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Some(redis);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("{test}: redis-server did not start");
            }
            if let Ok(url) = std::env::var("REDIS_URL") {
                eprintln!("{test}: no redis-server binary; using REDIS_URL with prefix {prefix}");
                return Some(Redis { child: None, url, prefix });
            }
            let required = std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(!required, "{test}: redis-server is required (USAGE_PLANS_REQUIRE_SERVICES=1) but cannot run");
            eprintln!("SKIPPED {test} (Redis variant): no redis-server binary on PATH (and no REDIS_URL)");
            None
        }

        pub(crate) fn mode(&self) -> super::Mode {
            super::Mode::Redis(self.url.clone(), self.prefix.clone())
        }

        /// A deployment of its own on this server (prefix numbered `n`), for one case of many.
        pub(crate) fn mode_for(&self, n: usize) -> super::Mode {
            super::Mode::Redis(self.url.clone(), format!("{}-{n}", self.prefix))
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn send_n(svc: &Svc, n: usize) -> Vec<u16> {
    statuses(svc, "GET", "/pets", Some(K), n).await
}

#[tokio::test]
async fn each_day_reads_as_used_and_remaining_at_its_end() {
    each_day_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_day_reads_as_used_and_remaining_at_its_end_in_redis() {
    let Some(redis) = redis_mode::Redis::start("each_day").await else { return };
    each_day_scenario(&redis.mode()).await;
}

async fn each_day_scenario(mode: &Mode) {
    let clock = clock(); // Monday 2026-11-23, noon
    let store = store(&one_key("", r#"quota = { limit = 100, period = "MONTH" }"#));
    let layer = mode.on(UsagePlanLayer::builder(store.clone()).clock(clock.clone()), &clock).await.build().unwrap();
    let (svc, usage, plan) = (service(&layer), layer.usage(), plan_of(&store));
    for (advance, n) in [(0, 5), (1, 3), (2, 10)] {
        clock.advance(DAY * advance);
        assert_eq!(count(&send_n(&svc, n).await, 200), n);
    }
    // Now 2026-11-26.
    let report = usage.report(&plan, &["k"], date!(2026 - 11 - 22), date!(2026 - 11 - 27)).await.unwrap();
    assert_eq!(report.plan_id, "p");
    assert_eq!(
        pairs(&report.keys["k"]),
        [(0, Some(100)), (5, Some(95)), (3, Some(92)), (0, Some(92)), (10, Some(82)), (0, Some(82))]
    );
    let q = usage.quota(&plan, "k").await.unwrap().unwrap();
    assert_eq!((q.limit, q.used, q.remaining, q.period_start), (100, 18, 82, date!(2026 - 11 - 01)));

    // UpdateUsage: 50 left from now on; earlier days keep their figures.
    usage.set_remaining(&plan, "k", 50).await.unwrap();
    let report = usage.report(&plan, &["k"], date!(2026 - 11 - 22), date!(2026 - 11 - 26)).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(0, Some(100)), (5, Some(95)), (3, Some(92)), (0, Some(92)), (10, Some(50))]);
    let after = send_n(&svc, 51).await;
    assert_eq!((count(&after, 200), count(&after, 429)), (50, 1));

    // December: November is a past period, read from the ledger alone.
    clock.advance(DAY * 5);
    let report = usage.report(&plan, &["k"], date!(2026 - 11 - 25), date!(2026 - 12 - 01)).await.unwrap();
    let days = pairs(&report.keys["k"]);
    assert_eq!(days[0], (0, Some(92)));
    assert_eq!(days[1], (60, Some(0)), "26th: 10 + 50 requests, nothing left");
    assert_eq!(days[6], (0, Some(100)), "December starts over");
    assert_eq!(count(&send_n(&svc, 1).await, 200), 1);

    // A temporary extension (API Gateway's UpdateUsage may grant more than the limit): 150 more
    // this month, then December's limit again.
    usage.set_remaining(&plan, "k", 150).await.unwrap();
    let q = usage.quota(&plan, "k").await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining), (-50, 150));
    let report = usage.report(&plan, &["k"], date!(2026 - 12 - 01), date!(2026 - 12 - 01)).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(1, Some(150))]);
    let extended = send_n(&svc, 151).await;
    assert_eq!((count(&extended, 200), count(&extended, 429)), (150, 1));
    assert!(usage.set_remaining(&plan, "k", u64::MAX).await.is_err(), "more than a counter holds");
    clock.advance(DAY * 31);
    assert_eq!(usage.quota(&plan, "k").await.unwrap().unwrap().remaining, 100, "January: the plan's limit");
}

#[tokio::test]
async fn keys_without_usage_read_as_zero_and_plans_without_quota_have_no_remaining() {
    keys_without_usage_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_usage_read_as_zero_and_plans_without_quota_have_no_remaining_in_redis() {
    let Some(redis) = redis_mode::Redis::start("keys_without_usage").await else { return };
    keys_without_usage_scenario(&redis.mode()).await;
}

async fn keys_without_usage_scenario(mode: &Mode) {
    let clock = clock();
    let store = store(&one_key("", "throttle = { rate = 100.0, burst = 100 }"));
    let layer = mode.on(UsagePlanLayer::builder(store.clone()).clock(clock.clone()), &clock).await.build().unwrap();
    let (svc, usage, plan) = (service(&layer), layer.usage(), plan_of(&store));
    let today = date!(2026 - 11 - 23);
    let report = usage.report(&plan, &["k", "other"], today, today).await.unwrap();
    assert_eq!(pairs(&report.keys["other"]), [(0, None)]);
    assert!(usage.keys_with_usage(&plan).await.unwrap().is_empty());
    send_n(&svc, 4).await;
    let report = usage.report(&plan, &[], today, today).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(4, None)], "keys with usage are reported unasked");
    assert_eq!(usage.keys_with_usage(&plan).await.unwrap(), ["k"]);
    assert!(usage.quota(&plan, "k").await.unwrap().is_none());
    assert!(usage.set_remaining(&plan, "k", 1).await.is_err());
    assert!(usage.report(&plan, &["k"], today, date!(2026 - 11 - 22)).await.is_err(), "end before start");
}

#[tokio::test]
async fn refunded_requests_leave_the_ledger_too() {
    refunded_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunded_requests_leave_the_ledger_too_in_redis() {
    let Some(redis) = redis_mode::Redis::start("refunded_requests").await else { return };
    refunded_scenario(&redis.mode()).await;
}

async fn refunded_scenario(mode: &Mode) {
    let clock = clock();
    let store = store(&one_key("", r#"quota = { limit = 10, period = "DAY" }"#));
    let builder =
        UsagePlanLayer::builder(store.clone()).clock(clock.clone()).refund_quota_when(|s| s.is_server_error());
    let layer = mode.on(builder, &clock).await.build().unwrap();
    let inner = tower::service_fn(|req: http::Request<String>| async move {
        let status = if req.uri().path() == "/fail" { 500 } else { 200 };
        Ok::<_, std::convert::Infallible>(http::Response::builder().status(status).body(String::new()).unwrap())
    });
    let svc: Svc = tower::util::BoxCloneSyncService::new(tower::Layer::layer(&layer, inner));
    assert_eq!(count(&statuses(&svc, "GET", "/fail", Some(K), 3).await, 500), 3);
    assert_eq!(count(&statuses(&svc, "GET", "/ok", Some(K), 2).await, 200), 2);
    let today = date!(2026 - 11 - 23);
    let report = layer.usage().report(&store.config().plans()[0], &["k"], today, today).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(2, Some(8))]);
}

#[tokio::test]
async fn a_snapshot_carries_every_count_across_a_restart() {
    snapshot_file_scenario("in-process", &Mode::InProcess, &Mode::InProcess).await;
}

/// Saved from one Redis, loaded into a fresh one: the figures of the whole deployment carry over.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_carries_every_count_across_a_restart_in_redis() {
    let Some(first) = redis_mode::Redis::start("snapshot_file_a").await else { return };
    let Some(second) = redis_mode::Redis::start("snapshot_file_b").await else { return };
    snapshot_file_scenario("redis", &first.mode(), &second.mode()).await;
}

/// Counts saved under `first` and loaded under `second` (a new process, or a fresh Redis).
async fn snapshot_file_scenario(name: &str, first: &Mode, second: &Mode) {
    let dir = std::env::temp_dir().join(format!("tup-usage-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let _ = std::fs::remove_file(&file);
    let clock = clock();
    let text = one_key("", r#"quota = { limit = 10, period = "DAY" }"#);
    {
        let layer = first.on(builder(&text, &clock), &clock).await.build().unwrap();
        assert!(!layer.usage().load(&file).await.unwrap(), "no file yet");
        assert_eq!(count(&send_n(&service(&layer), 7).await, 200), 7);
        layer.usage().save(&file).await.unwrap();
    }
    let body = std::fs::read_to_string(&file).unwrap();
    assert!(!body.contains(K), "key values never go into a snapshot");
    // A new process: same config, the snapshot restored before serving.
    let store = store(&text);
    let layer = second.on(UsagePlanLayer::builder(store.clone()).clock(clock.clone()), &clock).await.build().unwrap();
    assert!(layer.usage().load(&file).await.unwrap());
    let after = send_n(&service(&layer), 4).await;
    assert_eq!(after, [200, 200, 200, 429]);
    let today = date!(2026 - 11 - 23);
    let report = layer.usage().report(&store.config().plans()[0], &["k"], today, today).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(10, Some(0))]);

    std::fs::write(&file, "{\"version\": 9, \"quotas\": [], \"days\": []}").unwrap();
    let err = layer.usage().load(&file).await.unwrap_err().to_string();
    assert!(err.contains("state.json") && err.contains("version 9"), "{err}");
    std::fs::write(&file, "not json").unwrap();
    assert!(layer.usage().load(&file).await.unwrap_err().to_string().contains("state.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_snapshot_keeps_update_usage_changes_and_extensions() {
    snapshot_update_scenario(&Mode::InProcess, &Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_update_usage_changes_and_extensions_in_redis() {
    let Some(first) = redis_mode::Redis::start("snapshot_update_a").await else { return };
    let Some(second) = redis_mode::Redis::start("snapshot_update_b").await else { return };
    snapshot_update_scenario(&first.mode(), &second.mode()).await;
}

/// An UpdateUsage beyond the limit (the quota count below zero, the change in the ledger) carried
/// by a snapshot from `first` to `second`.
async fn snapshot_update_scenario(first: &Mode, second: &Mode) {
    let clock = clock();
    let text = one_key("", r#"quota = { limit = 10, period = "DAY" }"#);
    let store = store(&text);
    let plan = plan_of(&store);
    let layer = first.on(UsagePlanLayer::builder(store).clock(clock.clone()), &clock).await.build().unwrap();
    assert_eq!(count(&send_n(&service(&layer), 3).await, 200), 3);
    layer.usage().set_remaining(&plan, "k", 12).await.unwrap(); // 2 more than the limit
    let snapshot = layer.usage().snapshot().await.unwrap();
    assert_eq!(snapshot.len(), 2, "the quota count and the day");
    let again = second.on(builder(&text, &clock), &clock).await.build().unwrap();
    again.usage().restore(snapshot).await.unwrap();
    let q = again.usage().quota(&plan, "k").await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining), (-2, 12));
    let today = date!(2026 - 11 - 23);
    let report = again.usage().report(&plan, &["k"], today, today).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), [(3, Some(12))]);
    let after = send_n(&service(&again), 13).await;
    assert_eq!((count(&after, 200), count(&after, 429)), (12, 1));
}

/// A sink that stores what it is given, and fails while told to.
#[derive(Default)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
struct Billing {
    records: Mutex<Vec<UsageRecord>>,
    down: std::sync::atomic::AtomicBool,
}

impl UsageSink for Billing {
    type Error = String;
    async fn deliver(&self, batch: &[UsageRecord]) -> Result<(), String> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(String::from("billing is down"));
        }
        self.records.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_sink_gets_every_increment_at_least_once_and_the_rest_on_shutdown() {
    sink_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_gets_every_increment_at_least_once_and_the_rest_on_shutdown_in_redis() {
    let Some(redis) = redis_mode::Redis::start("sink").await else { return };
    sink_scenario(&redis.mode()).await;
}

#[cfg(feature = "tokio")]
async fn sink_scenario(mode: &Mode) {
    let clock = clock();
    let layer = mode.on(builder(&one_key("", ""), &clock), &clock).await.build().unwrap();
    let svc = service(&layer);
    let billing = Arc::new(Billing::default());
    let reporter =
        UsageReporter::builder(layer.usage(), Arc::clone(&billing)).interval(Duration::from_secs(3600)).spawn();
    send_n(&svc, 5).await;
    billing.down.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reporter.flush().await.unwrap_err().to_string().contains("billing is down"));
    send_n(&svc, 3).await;
    billing.down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reporter.flush().await.unwrap(), 1);
    {
        let records = billing.records.lock().unwrap();
        assert_eq!((records[0].key_id.as_str(), records[0].plan_id.as_str()), ("k", "p"));
        assert_eq!((records[0].requests, records[0].total, records[0].date), (8, 8, date!(2026 - 11 - 23)));
    }
    // Across midnight, then a graceful shutdown delivers what is left.
    send_n(&svc, 2).await;
    clock.advance(DAY);
    send_n(&svc, 4).await;
    assert_eq!(reporter.shutdown().await.unwrap(), 2);
    {
        let records = billing.records.lock().unwrap();
        let got: Vec<_> = records.iter().map(|r| (r.date, r.requests, r.total)).collect();
        assert_eq!(got, [(date!(2026 - 11 - 23), 8, 8), (date!(2026 - 11 - 23), 2, 10), (date!(2026 - 11 - 24), 4, 4)]);
    }
    assert!(layer.usage().pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn unacknowledged_usage_survives_a_restart_through_the_snapshot() {
    unacknowledged_scenario(&Mode::InProcess, &Mode::InProcess).await;
}

/// Snapshot of one Redis, restored into a fresh one.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_usage_survives_a_restart_through_the_snapshot_in_redis() {
    let Some(first) = redis_mode::Redis::start("unacknowledged_a").await else { return };
    let Some(second) = redis_mode::Redis::start("unacknowledged_b").await else { return };
    unacknowledged_scenario(&first.mode(), &second.mode()).await;
}

async fn unacknowledged_scenario(first: &Mode, second: &Mode) {
    let clock = clock();
    let text = one_key("", "");
    let layer = first.on(builder(&text, &clock), &clock).await.build().unwrap();
    send_n(&service(&layer), 6).await;
    let usage = layer.usage();
    let first_batch = usage.pending().await.unwrap();
    usage.acknowledge(&first_batch).await.unwrap();
    send_n(&service(&layer), 2).await;
    let lost = usage.pending().await.unwrap(); // delivered, but the process dies before acknowledging
    assert_eq!(lost.records()[0].requests, 2);
    let snapshot = usage.snapshot().await.unwrap();
    assert_eq!(snapshot.len(), 1, "one ledger day, no quota");
    let again = second.on(builder(&text, &clock), &clock).await.build().unwrap();
    again.usage().restore(snapshot).await.unwrap();
    let offered = again.usage().pending().await.unwrap();
    assert_eq!(offered.records().len(), 1);
    assert_eq!((offered.records()[0].requests, offered.records()[0].total), (2, 8));
}

#[tokio::test]
async fn an_acknowledgement_after_the_retention_dropped_the_day_brings_nothing_back() {
    retention_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_after_the_retention_dropped_the_day_brings_nothing_back_in_redis() {
    let Some(redis) = redis_mode::Redis::start("retention").await else { return };
    retention_scenario(&redis.mode()).await;
}

async fn retention_scenario(mode: &Mode) {
    let clock = clock();
    let layer = mode.on(builder(&one_key("", ""), &clock).usage_retention_days(2), &clock).await.build().unwrap();
    let svc = service(&layer);
    send_n(&svc, 3).await;
    let usage = layer.usage();
    let batch = usage.pending().await.unwrap();
    clock.advance(DAY * 5);
    send_n(&svc, 1).await; // the day's first roll drops the old day
    usage.acknowledge(&batch).await.unwrap();
    let pending = usage.pending().await.unwrap();
    let got: Vec<_> = pending.records().iter().map(|r| (r.date, r.requests)).collect();
    assert_eq!(got, [(date!(2026 - 11 - 28), 1)], "no negative record for the dropped day");
}

/// Many tasks across a day change: the ledger's days add up to exactly the admitted requests,
/// and a reader never sees a total go down (a day counted twice at a roll would show as a spike).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_across_midnight_are_counted_exactly_once() {
    midnight_scenario(&Mode::InProcess).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_across_midnight_are_counted_exactly_once_in_redis() {
    let Some(redis) = redis_mode::Redis::start("midnight").await else { return };
    midnight_scenario(&redis.mode()).await;
}

async fn midnight_scenario(mode: &Mode) {
    let clock = clock();
    clock.advance(Duration::from_secs(12 * 3600 - 1)); // 23:59:59
    let store = store(&one_key("", r#"quota = { limit = 100000, period = "MONTH" }"#));
    let layer = mode.on(UsagePlanLayer::builder(store.clone()).clock(clock.clone()), &clock).await.build().unwrap();
    let (svc, usage, plan) = (service(&layer), layer.usage(), plan_of(&store));
    let admitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (usage, plan, done) = (usage.clone(), plan.clone(), Arc::clone(&done));
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let (mut last, mut reads) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let r = rt.block_on(usage.report(&plan, &["k"], date!(2026 - 11 - 23), date!(2026 - 11 - 24))).unwrap();
                let total: u64 = r.keys["k"].iter().map(|d| d.used).sum();
                assert!(total >= last, "the total went from {last} down to {total}");
                (last, reads) = (total, reads + 1);
            }
            reads
        })
    };
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (svc, admitted, clock) = (svc.clone(), Arc::clone(&admitted), clock.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..400 {
                if t == 0 && i == 200 {
                    clock.advance(Duration::from_secs(2)); // midnight, mid-flight
                }
                if send(&svc, "GET", "/pets", Some(K)).await.status == 200 {
                    admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0, "the reader read while requests ran");
    let admitted = admitted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(admitted, 3200);
    let report = usage.report(&plan, &["k"], date!(2026 - 11 - 23), date!(2026 - 11 - 24)).await.unwrap();
    let days: Vec<u64> = report.keys["k"].iter().map(|d| d.used).collect();
    assert_eq!(days.iter().sum::<u64>(), admitted);
    assert!(days[0] > 0 && days[1] > 0, "both days have requests: {days:?}");
    assert_eq!(usage.quota(&plan, "k").await.unwrap().unwrap().used, admitted as i64);
}

/// GetUsage against a model: per day of a month, what was sent that day and the limit less
/// everything sent up to that day's end (with an UpdateUsage on one day).
async fn month_model_scenario(mode: &Mode, sent: &[u64], update: Option<(usize, u64)>) {
    let clock = tower_usage_plans::ManualClock::new(
        std::time::UNIX_EPOCH + Duration::from_secs(1_793_534_400), // 2026-11-01 12:00 UTC
    );
    let store = store(&one_key("", r#"quota = { limit = 40, period = "MONTH" }"#));
    let layer = mode.on(UsagePlanLayer::builder(store.clone()).clock(clock.clone()), &clock).await.build().unwrap();
    let (svc, usage, plan) = (service(&layer), layer.usage(), plan_of(&store));
    let (mut left, mut want) = (40u64, Vec::new());
    for (day, n) in sent.iter().enumerate() {
        if day > 0 {
            clock.advance(DAY);
        }
        let got = send_n(&svc, *n as usize).await;
        let admitted = got.iter().filter(|s| **s == 200).count() as u64;
        assert_eq!(admitted, (*n).min(left), "day {day}");
        left -= admitted;
        if let Some((d, r)) = update {
            if d == day {
                usage.set_remaining(&plan, "k", r).await.unwrap();
                left = r;
            }
        }
        want.push((admitted, Some(left)));
    }
    let last = date!(2026 - 11 - 01) + time::Duration::days(sent.len() as i64 - 1);
    let report = usage.report(&plan, &["k"], date!(2026 - 11 - 01), last).await.unwrap();
    assert_eq!(pairs(&report.keys["k"]), want);
}

fn month_model_cases() -> impl proptest::strategy::Strategy<Value = (Vec<u64>, Option<(usize, u64)>)> {
    (proptest::collection::vec(0u64..6, 1..12), proptest::option::of((0usize..12, 0u64..40)))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    #[test]
    fn each_day_of_a_month_reads_as_the_model_says((sent, update) in month_model_cases()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(month_model_scenario(&Mode::InProcess, &sent, update));
    }
}

/// The same model against one redis-server, each case a deployment (prefix) of its own.
#[cfg(feature = "redis")]
#[test]
fn each_day_of_a_month_reads_as_the_model_says_in_redis() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(redis) = rt.block_on(redis_mode::Redis::start("month_model")) else { return };
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 24, ..Config::default() });
    let result = runner.run(&month_model_cases(), |(sent, update)| {
        let mode = redis.mode_for(case.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        rt.block_on(month_model_scenario(&mode, &sent, update));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

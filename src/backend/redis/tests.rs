//! Unit tests against a `redis-server` of their own (skipped, loudly, without the binary).

use super::RedisBackend;
use crate::engine::QuotaRule;
use crate::{ApiKey, Config, Customer, InMemoryKeyStore, KeySecret, ManualClock, PlanStage, Quota, QuotaPeriod};
use crate::{Stage, UsagePlan, UsagePlanLayer};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tower::{Layer, ServiceExt};

/// Kills the server when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A redis-server on a free port, and its URL.
fn redis_server() -> Option<(Killed, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (server, url) = (Killed(child), format!("redis://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).is_ok() {
            return Some((server, url));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The usage seam reads a customer's count of the period in Redis: its keys' requests, on every
/// replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_seam_reads_a_customers_quota_count_in_redis() {
    let Some((_server, url)) = redis_server() else {
        let required = std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(!required, "redis-server is required (USAGE_PLANS_REQUIRE_SERVICES=1)");
        return eprintln!("SKIPPED the_usage_seam_reads_a_customers_quota_count_in_redis: no redis-server");
    };
    let stage = Stage::new("a", "b");
    let quota = Quota::new(5, QuotaPeriod::Day).unwrap();
    let value = |i: usize| format!("key-{i:06}-0123456789abcdef");
    let keys = (1..3)
        .map(|i| (KeySecret::new(value(i)).unwrap(), ApiKey::new(format!("k{i}")).plan("p").with_customer_id("acme")))
        .collect();
    let config = Config::new(stage, vec![UsagePlan::new("p").stage(PlanStage::new("a", "b"))], keys)
        .and_then(|c| c.with_customers(vec![Customer::new("acme").with_quota(quota)]))
        .unwrap();
    let store = InMemoryKeyStore::from_config(config);
    let noon = 1_795_435_200;
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(noon as u64));
    let mut backends = Vec::new();
    for i in [1, 2, 1] {
        let backend = RedisBackend::builder(url.clone()).clock(clock.clone()).connect().await.unwrap();
        let layer = UsagePlanLayer::builder(store.clone()).clock(clock.clone()).redis(backend.clone()).build().unwrap();
        let svc = layer.layer(tower::service_fn(|_r: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
        let req = http::Request::get("/").header("x-api-key", value(i)).body(()).unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
        backends.push(backend);
    }
    let usage = backends[0].usage(90);
    let rule = QuotaRule::new(quota, None, None);
    assert_eq!(usage.customer_used("acme", &rule, noon).await.unwrap(), 3, "both keys, three replicas");
    assert_eq!(usage.customer_used("acme", &rule, noon + 86_400).await.unwrap(), 0, "the next day");
    assert_eq!(usage.customer_used("other", &rule, noon).await.unwrap(), 0, "a customer never counted");
}

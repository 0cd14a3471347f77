//! Key stores seen from the layer: caching, concurrent first lookups, store failures.

mod common;
#[path = "store/persist.rs"]
mod persist;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower_usage_plans::{
    ApiKey, InMemoryKeyStore, KeyRecord, KeyStore, PlanStage, RejectionKind, Stage, StoreError, Throttle, UsagePlan,
    UsagePlanLayer,
};

/// Wraps the in-memory store: counts lookups, yields before answering, can be made to fail.
#[derive(Debug)]
struct TestStore {
    inner: InMemoryKeyStore,
    lookups: AtomicUsize,
    failing: AtomicBool,
}

impl KeyStore for TestStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new("connection refused"));
        }
        self.inner.lookup(presented).await
    }

    fn stage(&self) -> Option<Stage> {
        self.inner.stage()
    }
}

const TEXT: &str = r#"
[[plans]]
id = "p"
throttle = { rate = 0.001, burst = 20 }
stages = [{ api = "petstore", stage = "prod" }]
[[keys]]
id = "a"
value = "a-0123456789abcdefghij"
plans = ["p"]
[[keys]]
id = "b"
value = "b-0123456789abcdefghij"
plans = ["p"]
"#;

fn test_store() -> Arc<TestStore> {
    Arc::new(TestStore { inner: store(TEXT), lookups: AtomicUsize::new(0), failing: AtomicBool::new(false) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_lookups_share_one_set_of_counters() {
    let clock = clock();
    let store = test_store();
    let svc = service(&UsagePlanLayer::builder(Arc::clone(&store)).clock(clock.clone()).build().unwrap());
    let ok = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (svc, ok) = (svc.clone(), ok.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..10 {
                if get(&svc, "/", Some(&key("a"))).await.status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn answers_are_cached_for_the_ttl() {
    let clock = clock();
    let store = test_store();
    let svc = service(
        &UsagePlanLayer::builder(Arc::clone(&store))
            .clock(clock.clone())
            .key_cache_ttl(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    for _ in 0..5 {
        assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 200);
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(30));
    assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 200);
    assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
    // Revalidation keeps the counts: 6 of 20 used.
    assert_eq!(statuses(&svc, "GET", "/", Some(&key("a")), 15).await.iter().filter(|&&s| s == 200).count(), 14);
}

#[tokio::test]
async fn stale_if_error_then_503_then_recovery() {
    let clock = clock();
    let store = test_store();
    let svc = service(
        &UsagePlanLayer::builder(Arc::clone(&store))
            .clock(clock.clone())
            .key_cache_ttl(Duration::from_secs(10))
            .stale_if_error(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 200);
    store.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    // Past the TTL, within the stale window: still served, still counted.
    assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 200);
    // Never validated: 503 with a JSON body.
    let r = get(&svc, "/", Some(&key("b"))).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, r#"{"message":"Service Unavailable"}"#);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.extensions.get::<tower_usage_plans::Rejection>().unwrap().kind(), RejectionKind::StoreUnavailable);
    clock.advance(Duration::from_secs(41));
    assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 503, "stale window over");
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(get(&svc, "/", Some(&key("a"))).await.status, 200);
    assert_eq!(get(&svc, "/", Some(&key("b"))).await.status, 200);
    // a: 3 forwarded of 20 so far (the 503 took nothing).
    let got = statuses(&svc, "GET", "/", Some(&key("a")), 20).await;
    assert_eq!(count(&got, 200), 17);
}

#[tokio::test]
async fn fail_open_is_explicit() {
    let clock = clock();
    let store = test_store();
    store.failing.store(true, Ordering::SeqCst);
    let closed = service(&UsagePlanLayer::builder(Arc::clone(&store)).clock(clock.clone()).build().unwrap());
    assert_eq!(get(&closed, "/", Some(&key("a"))).await.status, 503);
    let open = service(
        &UsagePlanLayer::builder(Arc::clone(&store))
            .clock(clock.clone())
            .fail_open_on_store_error(true)
            .build()
            .unwrap(),
    );
    assert_eq!(get(&open, "/", Some(&key("a"))).await.status, 200);
    // Fail-open still refuses requests without any key: the store is not asked for those.
    assert_eq!(get(&open, "/", None).await.status, 403);
}

/// A store of the user's own, with no stage of its own.
#[derive(Debug)]
struct OwnStore;

impl KeyStore for OwnStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok((presented == "own-0123456789abcdefghij").then(|| {
            let plan = UsagePlan::new("basic").with_throttle(Throttle::new(0.001, 2).unwrap()).stage(
                PlanStage::new("any", "any").method_throttle("/slow/GET", Throttle::new(0.001, 1).unwrap()).unwrap(),
            );
            KeyRecord::new(ApiKey::new("own").plan("basic"), vec![Arc::new(plan)])
        }))
    }
}

#[tokio::test]
async fn a_store_without_stage_is_refused_at_build_and_works_once_the_builder_names_one() {
    // Never silently open: a layer that knows no stage is not built.
    let err = UsagePlanLayer::builder(OwnStore).build().unwrap_err();
    assert_eq!((err.kind(), err.field()), (tower_usage_plans::ConfigErrorKind::Missing, "stage"));
    let err = UsagePlanLayer::new(OwnStore).unwrap_err();
    assert_eq!(err.kind(), tower_usage_plans::ConfigErrorKind::Missing);
    let clock = clock();
    let svc = service(
        &UsagePlanLayer::builder(OwnStore).stage(Stage::new("any", "any")).clock(clock.clone()).build().unwrap(),
    );
    let k = "own-0123456789abcdefghij";
    assert_eq!(statuses(&svc, "GET", "/slow", Some(k), 2).await, [200, 429]);
    assert_eq!(statuses(&svc, "GET", "/fast", Some(k), 2).await, [200, 429]);
    forbidden(&get(&svc, "/fast", Some("other-0123456789abcdefghij")).await);
}

#[tokio::test]
async fn the_builder_stage_replaces_the_stores() {
    let clock = clock();
    let svc = service(
        &UsagePlanLayer::builder(store(TEXT)).stage(Stage::new("petstore", "beta")).clock(clock).build().unwrap(),
    );
    let r = get(&svc, "/", Some(&key("a"))).await;
    forbidden(&r);
    assert_eq!(r.extensions.get::<tower_usage_plans::Rejection>().unwrap().kind(), RejectionKind::WrongStage);
}

#[tokio::test]
async fn fail_open_still_applies_stage_and_account_throttles() {
    let clock = clock();
    let store = test_store();
    store.failing.store(true, Ordering::SeqCst);
    let stage = Stage::new("petstore", "prod").account_throttle(Throttle::new(0.001, 2).unwrap());
    let svc = service(
        &UsagePlanLayer::builder(Arc::clone(&store))
            .stage(stage)
            .clock(clock)
            .fail_open_on_store_error(true)
            .build()
            .unwrap(),
    );
    assert_eq!(statuses(&svc, "GET", "/", Some(&key("a")), 4).await, [200, 200, 429, 429]);
}

/// A store whose single key can be moved to another plan.
#[derive(Debug)]
struct SwitchStore {
    plan: parking_lot::Mutex<Arc<UsagePlan>>,
}

impl KeyStore for SwitchStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let plan = Arc::clone(&self.plan.lock());
        Ok((presented == "sw-0123456789abcdefghij")
            .then(|| KeyRecord::new(ApiKey::new("sw").plan(plan.id().to_owned()), vec![plan])))
    }
}

fn plan(id: &str, limit: u64, period: tower_usage_plans::QuotaPeriod) -> Arc<UsagePlan> {
    Arc::new(
        UsagePlan::new(id)
            .with_quota(tower_usage_plans::Quota::new(limit, period).unwrap())
            .stage(PlanStage::new("petstore", "prod")),
    )
}

#[tokio::test]
async fn moving_a_key_to_another_plan_starts_its_quota_under_that_plan() {
    use tower_usage_plans::QuotaPeriod::{Day, Month};
    let clock = clock();
    let store = Arc::new(SwitchStore { plan: parking_lot::Mutex::new(plan("free", 2, Day)) });
    let svc = service(
        &UsagePlanLayer::builder(Arc::clone(&store))
            .stage(Stage::new("petstore", "prod"))
            .clock(clock.clone())
            .key_cache_ttl(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let k = "sw-0123456789abcdefghij";
    assert_eq!(statuses(&svc, "GET", "/", Some(k), 3).await, [200, 200, 429]);
    // Upgrade to a monthly plan: its own count, reset at the end of the month.
    *store.plan.lock() = plan("gold", 3, Month);
    clock.advance(Duration::from_secs(1));
    assert_eq!(statuses(&svc, "GET", "/", Some(k), 4).await, [200, 200, 200, 429]);
    let r = get(&svc, "/", Some(k)).await;
    // 2026-11-23 12:00:01 to 2026-12-01 00:00.
    assert_eq!(r.headers["retry-after"], (7 * 86_400 + 12 * 3600 - 1).to_string());
    // Next month the gold quota is whole again.
    clock.advance(Duration::from_secs(8 * 86_400));
    assert_eq!(statuses(&svc, "GET", "/", Some(k), 4).await, [200, 200, 200, 429]);
}

#[tokio::test]
async fn a_rotated_key_in_a_config_file_accepts_its_old_value_until_the_overlap_ends() {
    let clock = common::clock(); // 2026-11-23T12:00:00Z
    let config = r#"
[[plans]]
id = "p"
quota = { limit = 4, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]
[[keys]]
id = "k"
value = "new-0123456789abcdefghij"
plans = ["p"]
previous_values = [{ value = "old-0123456789abcdefghij", until = "2026-11-23T13:00:00Z" }]
"#;
    let svc =
        common::service(&common::builder(config, &clock).key_cache_ttl(std::time::Duration::ZERO).build().unwrap());
    let (old, new) = (Some("old-0123456789abcdefghij"), Some("new-0123456789abcdefghij"));
    // Both values work during the overlap and draw on one quota of 4.
    assert_eq!(common::get(&svc, "/pets", old).await.status, 200);
    assert_eq!(common::get(&svc, "/pets", new).await.status, 200);
    assert_eq!(common::get(&svc, "/pets", old).await.status, 200);
    // After the overlap the old value is refused; the new one still has its last request.
    clock.advance(std::time::Duration::from_secs(3600));
    common::forbidden(&common::get(&svc, "/pets", old).await);
    assert_eq!(common::get(&svc, "/pets", new).await.status, 200);
    common::limit_exceeded(&common::get(&svc, "/pets", new).await);
}

#[test]
fn previous_values_are_checked_like_values() {
    let base = |extra: &str| {
        format!(
            "{}[[keys]]\nid = \"k\"\nvalue = \"new-0123456789abcdefghij\"\nprevious_values = [{extra}]\n",
            common::HEAD
        )
    };
    let err = |extra: &str| {
        let e = tower_usage_plans::Config::from_toml_str(&base(extra)).unwrap_err();
        assert!(e.line().is_some(), "{e}: not placed");
        format!("{}: {}", e.field(), e.reason())
    };
    assert_eq!(
        err(r#"{ value = "new-0123456789abcdefghij", until = "2027-01-01T00:00:00Z" }"#),
        "keys[0].previous_values[0].value: the same value as keys[0]"
    );
    assert!(err(r#"{ value = "short", until = "2027-01-01T00:00:00Z" }"#)
        .starts_with("keys[0].previous_values[0].value: must be 20 to 128 characters"));
    assert!(err(r#"{ value = "old-0123456789abcdefghij", until = "soon" }"#)
        .starts_with("keys[0].previous_values[0].until:"));
    let debug = format!(
        "{:?}",
        tower_usage_plans::Config::from_toml_str(&base(
            r#"{ value = "old-0123456789abcdefghij", until = "2027-01-01T00:00:00Z" }"#
        ))
        .unwrap()
    );
    assert!(!debug.contains("old-0123456789abcdefghij"), "{debug}");
}

#[tokio::test]
async fn live_changes_take_effect_on_the_next_request_and_keep_counts() {
    let clock = common::clock();
    let store = common::store(&common::one_key("", "quota = { limit = 5, period = \"DAY\" }"));
    let svc = common::service(&UsagePlanLayer::builder(store.clone()).clock(clock.clone()).build().unwrap());
    let k = common::key("k");
    for _ in 0..3 {
        assert_eq!(common::get(&svc, "/pets", Some(&k)).await.status, 200);
    }
    // A smaller quota: the 3 counted stay counted, so one more request, then 429.
    let plan = |limit| {
        tower_usage_plans::UsagePlan::new("p")
            .with_quota(tower_usage_plans::Quota::new(limit, tower_usage_plans::QuotaPeriod::Day).unwrap())
            .stage(tower_usage_plans::PlanStage::new("petstore", "prod"))
    };
    store.put_plan(plan(4)).unwrap();
    assert_eq!(common::get(&svc, "/pets", Some(&k)).await.status, 200);
    common::limit_exceeded(&common::get(&svc, "/pets", Some(&k)).await);
    store.put_plan(plan(10)).unwrap();
    assert_eq!(common::get(&svc, "/pets", Some(&k)).await.status, 200);
    // Disabled: refused at once (no TTL to wait), enabled again: served.
    store.set_key_enabled("k", false).unwrap();
    common::forbidden(&common::get(&svc, "/pets", Some(&k)).await);
    store.set_key_enabled("k", true).unwrap();
    assert_eq!(common::get(&svc, "/pets", Some(&k)).await.status, 200);
    // Out of the plan, back in it: the period's count is still there (6 of 10 used).
    store.remove_key_from_plan("k", "p").unwrap();
    common::forbidden(&common::get(&svc, "/pets", Some(&k)).await);
    store.add_key_to_plan("k", "p").unwrap();
    let mut served = 0;
    while common::get(&svc, "/pets", Some(&k)).await.status == 200 {
        served += 1;
    }
    assert_eq!(served, 4);
    // A new key works on its next request; a deleted one is refused.
    let n = common::key("n");
    store
        .create_key(
            tower_usage_plans::ApiKey::new("n").plan("p"),
            tower_usage_plans::KeySecret::new(n.clone()).unwrap(),
        )
        .unwrap();
    assert_eq!(common::get(&svc, "/pets", Some(&n)).await.status, 200);
    store.delete_key("n").unwrap();
    common::forbidden(&common::get(&svc, "/pets", Some(&n)).await);
}

#[test]
fn a_change_that_breaks_the_rules_is_refused_and_changes_nothing() {
    let store = common::store(&common::one_key("", ""));
    let before = format!("{:?}", store.config());
    let e = store.add_key_to_plan("k", "nope").unwrap_err();
    assert_eq!(e.to_string(), r#"keys[0].plans[1]: no plan has the id "nope""#);
    assert_eq!(
        store.set_key_enabled("nobody", false).unwrap_err().to_string(),
        r#"key_id: no key has the id "nobody""#
    );
    let dup = tower_usage_plans::KeySecret::new(common::key("k")).unwrap();
    let e = store.create_key(tower_usage_plans::ApiKey::new("other"), dup).unwrap_err();
    assert!(e.to_string().contains("the same value as keys[0]"), "{e}");
    assert!(!e.to_string().contains(&common::key("k")), "the error never shows the value");
    assert_eq!(format!("{:?}", store.config()), before);
    assert!(store.get(&common::key("k")).is_some_and(|r| r.key().is_enabled()));
}

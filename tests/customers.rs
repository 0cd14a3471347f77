//! Per-key overrides, customers, billing anchors and the `Caller`, through the real layer with a
//! manual clock (issue 16).

mod common;

use common::*;
use http::{Request, Response};
use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};
use tower::{service_fn, Layer};
use tower_usage_plans::{Caller, Config, ManualClock, Rejection, ThrottleScope, UsagePlanLayer};

const PLANS: &str = r#"
[[plans]]
id = "burst10"
name = "Burst ten"
throttle = { rate = 0.001, burst = 10 }
quota = { limit = 1000, period = "MONTH" }
stages = [{ api = "petstore", stage = "prod" }]

[[plans]]
id = "open"
throttle = { rate = 1000.0, burst = 1000 }
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k-override"
value = "override-0123456789abcdefghij"
plans = ["burst10"]
throttle = { rate = 0.001, burst = 2 }

[[keys]]
id = "k-plain"
value = "plain-0123456789abcdefghij"
plans = ["burst10"]

[[keys]]
id = "k-acme-1"
name = "Acme CI"
value = "acme1-0123456789abcdefghij"
customer_id = "acme"
plans = ["open"]
tags = { team = "billing" }

[[keys]]
id = "k-acme-2"
value = "acme2-0123456789abcdefghij"
customer_id = "acme"
plans = ["burst10"]

[[keys]]
id = "k-globex"
value = "globex-0123456789abcdefghij"
customer_id = "globex"
plans = ["open"]

[[keys]]
id = "k-anchored"
value = "anchored-0123456789abcdefghij"
plans = ["open"]
quota = { limit = 2, period = "MONTH" }
quota_anchor = "2026-01-31T00:00:00Z"

[[customers]]
id = "acme"
quota = { limit = 4, period = "DAY" }

[[customers]]
id = "globex"
throttle = { rate = 0.001, burst = 3 }
"#;

fn svc(clock: &ManualClock) -> Svc {
    service(&builder(PLANS, clock).build().unwrap())
}

#[tokio::test]
async fn an_override_of_burst_2_on_a_plan_of_burst_10_admits_exactly_2() {
    let clock = clock();
    let svc = svc(&clock);
    let got = statuses(&svc, "GET", "/pets", Some(&key("override")), 12).await;
    assert_eq!(got, [200, 200, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429]);
    // The plan's other keys keep the plan's burst.
    let plain = statuses(&svc, "GET", "/pets", Some(&key("plain")), 12).await;
    assert_eq!(count(&plain, 200), 10);
    let r = get(&svc, "/pets", Some(&key("override"))).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::Key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_keys_of_one_customer_share_its_quota_of_4_under_8_way_concurrency() {
    let clock = clock();
    let store = store(PLANS);
    let layer = UsagePlanLayer::builder(store.clone()).clock(clock.clone()).build().unwrap();
    let svc = service(&layer);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let svc = svc.clone();
            let k = key(if i % 2 == 0 { "acme1" } else { "acme2" });
            tokio::spawn(async move { statuses(&svc, "GET", "/pets", Some(&k), 5).await })
        })
        .collect();
    let (mut all, mut acme2) = (Vec::new(), 0);
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap();
        if i % 2 == 1 {
            acme2 += count(&got, 200);
        }
        all.extend(got);
    }
    assert_eq!(count(&all, 200), 4, "{all:?}");
    assert_eq!(count(&all, 429), 36);
    let r = get(&svc, "/pets", Some(&key("acme1"))).await;
    limit_exceeded(&r);
    // The customer's day ends at midnight: 12 hours.
    assert_eq!(r.headers["retry-after"], "43200");
    // Every refusal by the customer's quota gave the key's own count back: k-acme-2's plan quota
    // counted only its forwarded requests.
    let plan = store.plan_by_id("burst10").unwrap();
    let own = layer.usage().quota(&plan, "k-acme-2").await.unwrap().unwrap();
    assert_eq!(own.used, acme2 as i64, "k-acme-2 forwarded {acme2}");
    clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(get(&svc, "/pets", Some(&key("acme2"))).await.status, 200, "a new day for the customer");
}

#[tokio::test]
async fn a_customer_throttle_is_shared_by_its_keys_and_refusing_it_takes_nothing_from_the_key() {
    let clock = clock();
    let svc = svc(&clock);
    let got = statuses(&svc, "GET", "/pets", Some(&key("globex")), 5).await;
    assert_eq!(got, [200, 200, 200, 429, 429]);
    let r = get(&svc, "/pets", Some(&key("globex"))).await;
    too_many(&r);
    assert_eq!(r.extensions.get::<Rejection>().unwrap().throttle_scope(), Some(ThrottleScope::Customer));
    assert_eq!(r.headers["retry-after"], "1000");
}

#[tokio::test]
async fn a_customer_quota_counts_across_plans_and_a_key_of_another_customer_is_apart() {
    let clock = clock();
    let svc = svc(&clock);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme1")), 3).await, [200, 200, 200]);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme2")), 2).await, [200, 429]);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("globex")), 1).await, [200]);
}

/// 2026-02-27T12:00:00Z.
const FEB_27_NOON: u64 = 1_772_193_600;

#[tokio::test]
async fn a_monthly_quota_anchored_on_the_31st_rolls_over_on_28_february_through_the_layer() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(FEB_27_NOON));
    let svc = svc(&clock);
    let k = key("anchored");
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&k), 2).await, [200, 200]);
    let r = get(&svc, "/pets", Some(&k)).await;
    limit_exceeded(&r);
    // The period anchored on the 31st ends on Feb 28 at 00:00, 12 hours away (not on Mar 1).
    assert_eq!(r.headers["retry-after"], "43200");
    clock.advance(Duration::from_secs(12 * 3600 - 1));
    limit_exceeded(&get(&svc, "/pets", Some(&k)).await);
    clock.advance(Duration::from_secs(1));
    let r = get(&svc, "/pets", Some(&k)).await;
    assert_eq!(r.status, 200);
    // RateLimit follows the anchored period: 1 left, resets in 31 days (Feb 28 to Mar 31).
    let ratelimit = r.headers["ratelimit"].to_str().unwrap().to_owned();
    assert!(ratelimit.contains("r=1") && ratelimit.contains(&format!("t={}", 31 * 86_400)), "{ratelimit}");
}

#[tokio::test]
async fn the_caller_is_in_the_extensions_of_admitted_keyed_requests_and_never_shows_the_value() {
    let clock = clock();
    let layer = builder(PLANS, &clock).build().unwrap();
    let inner = service_fn(|req: Request<String>| async move {
        let c = req.extensions().get::<Caller>().cloned();
        let text = match c {
            Some(c) => {
                format!(
                    "{}|{}|{}|{}|{:?}|{}/{}|{:?}|{:?}|{:?}",
                    c.key_id(),
                    c.key_name(),
                    c.plan_id(),
                    c.plan_name(),
                    c.customer_id(),
                    c.api(),
                    c.stage(),
                    c.tags().get("team"),
                    c.quota_remaining(),
                    c.bucket_remaining()
                ) + &format!("|{c:?}")
            }
            None => "none".to_owned(),
        };
        Ok::<_, Infallible>(Response::new(text))
    });
    let svc: Svc = tower::util::BoxCloneSyncService::new(layer.layer(inner));
    let r = get(&svc, "/pets", Some(&key("acme1"))).await;
    let (fields, debug) = r.body.split_once("|Caller").unwrap();
    assert_eq!(fields, r#"k-acme-1|Acme CI|open|open|Some("acme")|petstore/prod|Some("billing")|None|Some(999)"#);
    assert!(!debug.contains("acme1-0123456789abcdefghij"), "{debug}");
    let r = get(&svc, "/pets", Some(&key("plain"))).await;
    assert!(
        r.body.starts_with("k-plain|k-plain|burst10|Burst ten|None|petstore/prod|None|Some(999)|Some(9)"),
        "{}",
        r.body
    );
    // Off: no Caller.
    let layer = builder(PLANS, &clock).caller(false).build().unwrap();
    let inner = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.extensions().get::<Caller>().is_some().to_string()))
    });
    let svc: Svc = tower::util::BoxCloneSyncService::new(layer.layer(inner));
    assert_eq!(get(&svc, "/pets", Some(&key("plain"))).await.body, "false");
}

#[test]
fn customers_and_overrides_read_back_from_what_is_written_and_errors_name_the_field() {
    let config = Config::from_toml_str(&format!("{HEAD}{PLANS}")).unwrap();
    assert_eq!(config.customers().len(), 2);
    let again = Config::from_toml_str(&config.to_toml_string()).unwrap();
    assert_eq!(again, config);
    assert_eq!(Config::from_json_str(&config.to_json_string()).unwrap(), config);
    let key = &config.keys().iter().find(|(_, k)| k.id() == "k-anchored").unwrap().1;
    assert_eq!(key.quota_anchor().unwrap().to_string(), "2026-01-31T00:00:00Z");
    assert_eq!(key.quota().unwrap().limit(), 2);
    for (bad, message) in [
        (
            "[[keys]]\nid = \"x\"\nvalue = \"x-0123456789abcdefghij\"\nconcurrency = 0\n",
            "keys[0].concurrency: must be at least 1",
        ),
        (
            "[[keys]]\nid = \"x\"\nvalue = \"x-0123456789abcdefghij\"\nthrottle = { rate = 1.0, burst = 0 }\n",
            "keys[0].throttle.burst: must be at least 1",
        ),
        ("[[keys]]\nid = \"x\"\nvalue = \"x-0123456789abcdefghij\"\nquota_anchor = \"soon\"\n", "keys[0].quota_anchor"),
        (
            "[[customers]]\nid = \"a\"\n[[customers]]\nid = \"a\"\n",
            "customers[1].id: \"a\" is already the id of customers[0]",
        ),
        ("[[customers]]\nid = \"a\"\nquota = { limit = 0, period = \"DAY\" }\n", "customers[0].quota.limit"),
        ("[[customers]]\nid = \"\"\n", "customers[0].id"),
        ("[[plans]]\nid = \"p\"\nconcurrency = -1\n", "plans[0].concurrency: must be at least 1"),
    ] {
        let err = Config::from_toml_str(&format!("{HEAD}{bad}")).unwrap_err();
        let (field, reason) = message.split_once(": ").unwrap_or((message, ""));
        assert_eq!(err.field(), field, "{bad}: {err}");
        assert!(err.to_string().contains(reason), "{bad}: {err}");
    }
}

#[tokio::test]
async fn a_public_method_carries_no_caller() {
    let clock = clock();
    let config = format!("[stage]\napi = \"petstore\"\nname = \"prod\"\npublic_methods = [\"/health/GET\"]\n{PLANS}");
    let store = tower_usage_plans::InMemoryKeyStore::from_toml_str(&config).unwrap();
    let layer = UsagePlanLayer::builder(store).clock(clock.clone()).build().unwrap();
    let inner = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.extensions().get::<Caller>().is_some().to_string()))
    });
    let svc: Svc = tower::util::BoxCloneSyncService::new(layer.layer(inner));
    assert_eq!(get(&svc, "/health", None).await.body, "false");
    assert_eq!(get(&svc, "/pets", Some(&key("plain"))).await.body, "true");
}

#[tokio::test]
async fn the_customer_usage_query_counts_all_its_keys() {
    let clock = clock();
    let store = store(PLANS);
    let layer = UsagePlanLayer::builder(store.clone()).clock(clock.clone()).build().unwrap();
    let svc = service(&layer);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme1")), 2).await, [200, 200]);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme2")), 1).await, [200]);
    let acme = store.customer_by_id("acme").unwrap();
    let q = layer.usage().customer_quota(&acme).await.unwrap().unwrap();
    assert_eq!((q.limit, q.used, q.remaining), (4, 3, 1));
    assert_eq!(q.resets_at, UNIX_EPOCH + Duration::from_secs(NOON + 12 * 3600));
    let globex = store.customer_by_id("globex").unwrap();
    assert!(layer.usage().customer_quota(&globex).await.unwrap().is_none(), "globex has no quota");
}

#[tokio::test]
async fn a_customers_quota_count_survives_a_snapshot_and_restore() {
    let clock = clock();
    let before = UsagePlanLayer::builder(store(PLANS)).clock(clock.clone()).build().unwrap();
    let svc = service(&before);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme1")), 3).await, [200, 200, 200]);
    let snapshot = before.usage().snapshot().await.unwrap();
    let json = serde_json::to_string(&snapshot).unwrap();
    assert!(json.contains(r#""customers":[{"customer":"acme","period":"DAY""#), "{json}");
    // The next process: the customer has 1 left of 4, whichever of its keys asks.
    let after = UsagePlanLayer::builder(store(PLANS)).clock(clock.clone()).build().unwrap();
    after.usage().restore(serde_json::from_str(&json).unwrap()).await.unwrap();
    let svc = service(&after);
    assert_eq!(statuses(&svc, "GET", "/pets", Some(&key("acme2")), 2).await, [200, 429]);
    assert_eq!(after.usage().snapshot().await.unwrap().len(), snapshot.len() + 2, "acme2's own count and day");
}

/// Of concurrent creations of one customer id through the management trait, exactly one wins
/// (the check and the insert happen under the store's write lock; found by review).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_of_one_customer_id_let_exactly_one_win() {
    use tower_usage_plans::{Customer, ManagedKeyStore};
    for round in 0..100 {
        let store = store(PLANS);
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let c = Customer::new(format!("new-{round}")).with_name(format!("creator {i}"));
                    ManagedKeyStore::create_customer(&store, c).await.is_ok()
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1, "round {round}");
        let deletes: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                let id = format!("new-{round}");
                tokio::spawn(
                    async move { ManagedKeyStore::delete_customer(&store, &id).await.map_err(|e| e.to_string()) },
                )
            })
            .collect();
        let mut results = Vec::new();
        for t in deletes {
            results.push(t.await.unwrap());
        }
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: {results:?}");
    }
}

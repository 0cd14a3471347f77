//! The caching wrapper in front of a database-like store, end to end through the layer:
//! coalescing, negative caching and the lookup budget, stale-if-error, invalidation, and counters
//! shared by the values of a rotated key.

mod common;

use common::{clock, get, service, Svc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_usage_plans::{
    ApiKey, CachedKeyStore, KeyRecord, KeyStore, ManualClock, PlanStage, Quota, QuotaPeriod, Stage, StoreError,
    Throttle, UsagePlan, UsagePlanLayer,
};

/// A store standing in for a database: counts its lookups, can be slow, can fail.
#[derive(Debug, Default)]
struct Db {
    keys: Mutex<HashMap<String, KeyRecord>>,
    lookups: AtomicU64,
    failing: AtomicBool,
    delay: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("database down")]
struct Down;

impl KeyStore for Db {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new(Down));
        }
        Ok(self.keys.lock().unwrap().get(presented).cloned())
    }
}

fn plan() -> Arc<UsagePlan> {
    Arc::new(
        UsagePlan::new("p")
            .with_quota(Quota::new(1000, QuotaPeriod::Day).unwrap())
            .with_throttle(Throttle::new(1000.0, 1000).unwrap())
            .stage(PlanStage::new("petstore", "prod")),
    )
}

fn record(id: &str, enabled: bool) -> KeyRecord {
    KeyRecord::new(ApiKey::new(id).plan("p").enabled(enabled), vec![plan()])
}

fn db(delay: Duration) -> Arc<Db> {
    let db = Db { delay, ..Db::default() };
    db.keys.lock().unwrap().insert(common::key("a"), record("ka", true));
    db.keys.lock().unwrap().insert(common::key("b"), record("kb", true));
    Arc::new(db)
}

/// A layer for petstore/prod on `store`, on the test's clock, to configure further.
fn builder(store: impl KeyStore, clock: &ManualClock) -> tower_usage_plans::UsagePlanLayerBuilder {
    UsagePlanLayer::builder(store).stage(Stage::new("petstore", "prod")).clock(clock.clone())
}

fn layer(store: impl KeyStore, clock: &ManualClock) -> Svc {
    service(&builder(store, clock).build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_uncached_key_make_one_store_call() {
    let db = db(Duration::from_millis(50));
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    let svc = layer(cached.clone(), &clock);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await.status.as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(cached.stats().store_lookups, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_layer_alone_coalesces_concurrent_misses_too() {
    // No wrapper: the layer's own single flight makes one store call for 100 first requests,
    // and a request whose store call is dropped midway hands the call to a waiting one.
    let db = db(Duration::from_millis(50));
    let clock = clock();
    let svc = layer(Arc::clone(&db), &clock);
    let first = {
        let svc = svc.clone();
        tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("b"))).await })
    };
    until(|| db.lookups.load(Ordering::SeqCst) == 1).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await.status.as_u16() })
        })
        .collect();
    first.abort(); // its lookup of "b" is dropped; nobody waits for it
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 2, "one for a, one for the aborted b");
    // Abandoned: a waiting request asks again.
    let db2 = self::db(Duration::from_millis(50));
    let svc2 = layer(Arc::clone(&db2), &clock);
    let leader = {
        let svc = svc2.clone();
        tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await })
    };
    until(|| db2.lookups.load(Ordering::SeqCst) == 1).await;
    let follower = {
        let svc = svc2.clone();
        tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await.status.as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert_eq!(follower.await.unwrap(), 200);
    assert_eq!(db2.lookups.load(Ordering::SeqCst), 2);
}

/// Yields until `done` holds (orders concurrent steps; no timing is asserted).
async fn until(done: impl Fn() -> bool) {
    while !done() {
        tokio::task::yield_now().await;
    }
}

/// 40 base62-ish characters from a small xorshift (the values only need to be distinct).
fn random_value(state: &mut u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..40)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            char::from(ALPHABET[(*state % 62) as usize])
        })
        .collect()
}

#[tokio::test]
async fn a_flood_of_random_keys_costs_a_bounded_number_of_lookups_and_bounded_memory() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db))
        .clock(clock.clone())
        .max_unknown_keys(1000)
        .lookup_budget(Some(Throttle::new(100.0, 500).unwrap()))
        .build();
    let svc = layer(cached.clone(), &clock);
    // A known key validated before the flood keeps working through it.
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut statuses = HashMap::<u16, u32>::new();
    for i in 0..10_000 {
        let status = get(&svc, "/pets", Some(&random_value(&mut seed))).await.status.as_u16();
        *statuses.entry(status).or_default() += 1;
        if i % 100 == 0 {
            clock.advance(Duration::from_millis(100)); // 10 s of flood in all
            assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
        }
    }
    // Budget: burst 500 + 100/s over ~10 s = at most ~1,500 of the 1 + 10,000 lookups.
    let lookups = db.lookups.load(Ordering::SeqCst);
    assert!((1000..=1502).contains(&lookups), "{lookups} store lookups");
    // Looked-up random values are unknown (403); the rest are refused without asking (503).
    assert_eq!(u64::from(statuses[&403]) + 1, lookups, "{statuses:?}");
    assert_eq!(statuses[&403] + statuses[&503], 10_000, "{statuses:?}");
    cached.run_pending_tasks().await;
    let stats = cached.stats();
    assert!(stats.unknown_entries <= 1000, "{stats:?}");
    assert_eq!(stats.known_entries, 1);
    assert_eq!(stats.budget_refused, u64::from(statuses[&503]));
}

#[tokio::test]
async fn an_unknown_key_is_remembered_for_the_negative_ttl() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached =
        CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).negative_ttl(Duration::from_secs(5)).build();
    let svc = layer(cached, &clock);
    let nobody = common::key("nobody");
    for _ in 0..50 {
        assert_eq!(get(&svc, "/pets", Some(&nobody)).await.status, 403);
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 1);
    // The key is created; within the negative TTL it is still unknown, after it, it works.
    db.keys.lock().unwrap().insert(nobody.clone(), record("kn", true));
    clock.advance(Duration::from_secs(4));
    assert_eq!(get(&svc, "/pets", Some(&nobody)).await.status, 403);
    clock.advance(Duration::from_secs(2));
    assert_eq!(get(&svc, "/pets", Some(&nobody)).await.status, 200);
    assert_eq!(db.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_store_keeps_recent_keys_working_refuses_others_with_503_and_recovers() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    // The layer's key cache owns the TTL and the stale window; the guard counts store calls.
    let layer = builder(cached.clone(), &clock)
        .key_cache_ttl(Duration::from_secs(60))
        .stale_if_error(Duration::from_secs(300))
        .build()
        .unwrap();
    let svc = service(&layer);
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    db.failing.store(true, Ordering::SeqCst);
    // Past both TTLs, inside the wrapper's stale window: the validated key keeps working.
    clock.advance(Duration::from_secs(120));
    for _ in 0..3 {
        assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    }
    // A key never validated gets 503 with the JSON body; nothing panics.
    let b = get(&svc, "/pets", Some(&common::key("b"))).await;
    assert_eq!(b.status, 503);
    assert!(b.body.contains("message"), "{}", b.body);
    // Past the stale window the validated key gets 503 too.
    clock.advance(Duration::from_secs(300));
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 503);
    let (stats, guard) = (layer.key_cache_stats(), cached.stats());
    assert!(stats.stale_served >= 1 && stats.store_errors >= 3, "{stats:?}");
    assert!(guard.store_errors >= 3, "{guard:?}");
    // The store recovers: both keys work again.
    db.failing.store(false, Ordering::SeqCst);
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    assert_eq!(get(&svc, "/pets", Some(&common::key("b"))).await.status, 200);
}

#[tokio::test]
async fn invalidating_a_key_id_refuses_a_disabled_key_on_its_next_request() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    let svc = layer(cached.clone(), &clock);
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    assert_eq!(get(&svc, "/pets", Some(&common::key("b"))).await.status, 200);
    db.keys.lock().unwrap().insert(common::key("a"), record("ka", false));
    // Cached: without invalidation the change is not seen yet.
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    cached.invalidate_key_id("ka").await;
    let r = get(&svc, "/pets", Some(&common::key("a"))).await;
    common::forbidden(&r);
    // The other key was revalidated from the wrapper's cache, not from the store.
    let before = db.lookups.load(Ordering::SeqCst);
    assert_eq!(get(&svc, "/pets", Some(&common::key("b"))).await.status, 200);
    assert_eq!(db.lookups.load(Ordering::SeqCst), before);
    // Enabled again: invalidate_all works as well.
    db.keys.lock().unwrap().insert(common::key("a"), record("ka", true));
    cached.invalidate_all();
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
}

#[tokio::test]
async fn the_values_of_a_rotated_key_share_its_quota_and_counts_survive_a_disable() {
    let db = Arc::new(Db::default());
    let small = Arc::new(
        UsagePlan::new("p")
            .with_quota(Quota::new(10, QuotaPeriod::Day).unwrap())
            .stage(PlanStage::new("petstore", "prod")),
    );
    let rec = |enabled| KeyRecord::new(ApiKey::new("k").plan("p").enabled(enabled), vec![Arc::clone(&small)]);
    db.keys.lock().unwrap().insert(common::key("old"), rec(true));
    db.keys.lock().unwrap().insert(common::key("new"), rec(true));
    let clock = clock();
    let svc = service(&builder(Arc::clone(&db), &clock).key_cache_ttl(Duration::ZERO).build().unwrap());
    let mut ok = 0;
    for i in 0..12 {
        let value = if i % 2 == 0 { common::key("old") } else { common::key("new") };
        if get(&svc, "/pets", Some(&value)).await.status == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "both values draw on one quota of 10");
    // Disabled and enabled again: the count is still there.
    db.keys.lock().unwrap().insert(common::key("old"), rec(false));
    assert_eq!(get(&svc, "/pets", Some(&common::key("old"))).await.status, 403);
    db.keys.lock().unwrap().insert(common::key("old"), rec(true));
    assert_eq!(get(&svc, "/pets", Some(&common::key("old"))).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wrapper_coalesces_concurrent_lookups_even_when_the_store_fails() {
    let db = db(Duration::from_millis(50));
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    let lookups = |value: String| {
        (0..20)
            .map(|_| {
                let cached = cached.clone();
                let value = value.clone();
                tokio::spawn(async move { cached.lookup(&value).await.map(|r| r.is_some()) })
            })
            .collect::<Vec<_>>()
    };
    for t in lookups(common::key("a")) {
        assert!(t.await.unwrap().unwrap());
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 1);
    db.failing.store(true, Ordering::SeqCst);
    for t in lookups(common::key("b")) {
        assert!(t.await.unwrap().is_err());
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 2, "one store call for 20 failing lookups");
    // A later lookup, not waiting for that call, asks again.
    assert!(cached.lookup(&common::key("b")).await.is_err());
    assert_eq!(db.lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_disabled_while_its_lookup_is_in_flight_is_refused_after_the_invalidation() {
    let db = db(Duration::from_millis(100));
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    let svc = layer(cached.clone(), &clock);
    let first = {
        let svc = svc.clone();
        tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await.status.as_u16() })
    };
    until(|| db.lookups.load(Ordering::SeqCst) == 1).await;
    // Disabled while the store is answering the first request with the old record.
    db.keys.lock().unwrap().insert(common::key("a"), record("ka", false));
    cached.invalidate(&common::key("a")).await;
    // Every request from now on is refused, whatever the first one got.
    for _ in 0..3 {
        common::forbidden(&get(&svc, "/pets", Some(&common::key("a"))).await);
    }
    assert!([200, 403].contains(&first.await.unwrap()));
}

#[tokio::test]
async fn fail_open_never_forwards_a_value_refused_by_the_lookup_budget() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db))
        .clock(clock.clone())
        .lookup_budget(Some(Throttle::new(1.0, 2).unwrap()))
        .build();
    let svc = service(&builder(cached, &clock).fail_open_on_store_error(true).build().unwrap());
    let mut seed = 42;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(get(&svc, "/pets", Some(&random_value(&mut seed))).await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [403, 403, 503, 503, 503, 503, 503, 503, 503, 503]);
    // A real store failure still fails open, as configured.
    db.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    assert_eq!(get(&svc, "/pets", Some(&common::key("b"))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_of_a_layer_never_shows_key_values_even_mid_lookup() {
    let db = db(Duration::from_millis(100));
    let clock = clock();
    let layer = builder(Arc::clone(&db), &clock).build().unwrap();
    let svc = service(&layer);
    let pending = {
        let svc = svc.clone();
        tokio::spawn(async move { get(&svc, "/pets", Some(&common::key("a"))).await.status.as_u16() })
    };
    until(|| db.lookups.load(Ordering::SeqCst) == 1).await;
    let debug = format!("{layer:?}");
    assert!(debug.contains("in_flight: 1"), "{debug}");
    assert!(!debug.contains(&common::key("a")), "{debug}");
    assert_eq!(pending.await.unwrap(), 200);
}

#[tokio::test]
async fn known_keys_revalidate_through_a_flood_longer_than_their_stale_window() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db))
        .clock(clock.clone())
        .lookup_budget(Some(Throttle::new(1.0, 10).unwrap()))
        .build();
    let svc = service(
        &builder(cached, &clock).key_cache_ttl(Duration::from_secs(1)).stale_if_error(Duration::ZERO).build().unwrap(),
    );
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    let mut seed = 7;
    for _ in 0..60 {
        // The flood spends the whole budget every second...
        for _ in 0..20 {
            get(&svc, "/pets", Some(&random_value(&mut seed))).await;
        }
        // ...and the known key, revalidated every few seconds, keeps working.
        assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
        clock.advance(Duration::from_secs(1));
    }
    assert!(db.lookups.load(Ordering::SeqCst) >= 60 / 5, "the known key was revalidated");
}

#[tokio::test]
async fn the_stale_window_ends_ttl_plus_stale_if_error_after_the_last_answer() {
    // One owner of the windows (the layer's key cache): behind the guard they do not add up.
    let db = db(Duration::ZERO);
    let clock = clock();
    let cached = CachedKeyStore::builder(Arc::clone(&db)).clock(clock.clone()).build();
    let svc = service(
        &builder(cached, &clock)
            .key_cache_ttl(Duration::from_secs(60))
            .stale_if_error(Duration::from_secs(300))
            .build()
            .unwrap(),
    );
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    db.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(355));
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200, "within the stale window");
    clock.advance(Duration::from_secs(6)); // 361 s: the 60 + 300 are over
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 503);
}

/// A store that learns of changes itself and says so through its own handle.
#[derive(Debug)]
struct Notifying {
    db: Arc<Db>,
    handle: tower_usage_plans::Invalidation,
}

impl KeyStore for Notifying {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.db.lookup(presented).await
    }

    fn invalidation(&self) -> Option<tower_usage_plans::Invalidation> {
        Some(self.handle.clone())
    }
}

#[tokio::test]
async fn the_wrapper_follows_the_wrapped_stores_own_invalidations() {
    let db = db(Duration::ZERO);
    let clock = clock();
    let handle = tower_usage_plans::Invalidation::new();
    let inner = Notifying { db: Arc::clone(&db), handle: handle.clone() };
    let svc = layer(CachedKeyStore::builder(inner).clock(clock.clone()).build(), &clock);
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200);
    db.keys.lock().unwrap().insert(common::key("a"), record("ka", false));
    assert_eq!(get(&svc, "/pets", Some(&common::key("a"))).await.status, 200, "cached");
    handle.invalidate();
    common::forbidden(&get(&svc, "/pets", Some(&common::key("a"))).await);
}

/// Polls a future that needs no runtime to completion (the in-memory store answers at once).
fn poll_once<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1000 {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the lookup did not finish without a runtime");
}

#[cfg(feature = "tokio")]
#[test]
fn a_lookup_timeout_outside_a_tokio_runtime_waits_instead_of_panicking() {
    // No tokio runtime here: the deadline cannot be set, the lookup still answers.
    let db = db(Duration::ZERO);
    let cached = CachedKeyStore::builder(Arc::clone(&db)).lookup_timeout(Some(Duration::from_secs(1))).build();
    assert!(poll_once(cached.lookup(&common::key("a"))).unwrap().is_some());
    assert!(poll_once(cached.lookup(&common::key("nobody"))).unwrap().is_none());
    assert_eq!(db.lookups.load(Ordering::SeqCst), 2);
}

#[test]
fn the_wrapper_sets_no_lookup_timeout_unless_asked() {
    // The default needs no runtime at all.
    let db = db(Duration::ZERO);
    let cached = CachedKeyStore::new(Arc::clone(&db));
    assert!(poll_once(cached.lookup(&common::key("a"))).unwrap().is_some());
}

//! The change feed across replicas (PostgreSQL `LISTEN/NOTIFY`): two stores connected
//! separately to one database, as two replicas of an app.

use crate::common::{clock, forbidden, get, service};
use crate::sql_support::{databases, Db};
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};
use tower_usage_plans::{
    ApiKey, CachedKeyStore, Customer, Invalidation, KeyStore, ManagedKeyStore, PlanStage, Quota, QuotaPeriod,
    SqlKeyStore, Stage, UsagePlan, UsagePlanLayer,
};

/// Waits (polling, at most `within`) until `done` holds; panics saying `what` otherwise.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The PostgreSQL database of a test (`None`, said loudly, without `DATABASE_URL`) and a second
/// replica on it, whose connections carry `application_name` `name`.
async fn replicas(test: &str) -> Option<(Db, SqlKeyStore, String)> {
    let db = databases(test).await.into_iter().find(|d| d.name == "PostgreSQL")?;
    let name = format!("tup_{}", &tower_usage_plans::keys::generate_id()[..8]);
    let b = SqlKeyStore::connect(&format!("{}&application_name={name}", db.url)).await.unwrap();
    Some((db, b, name))
}

fn plan(id: &str) -> UsagePlan {
    UsagePlan::new(id).with_quota(Quota::new(100, QuotaPeriod::Day).unwrap()).stage(PlanStage::new("petstore", "prod"))
}

fn handle(store: &SqlKeyStore) -> Invalidation {
    store.invalidation().expect("the SQL store has an invalidation handle")
}

/// Waits until B has heard every notice A sent so far: notices arrive in commit order, so once
/// a change of the marker key `sync` (made here) has arrived, every earlier one has.
async fn caught_up(a: &SqlKeyStore, inv: &Invalidation) {
    if a.get_key("sync").await.unwrap().is_none() {
        a.create_key(ApiKey::new("sync")).await.unwrap();
    }
    let g = inv.generation();
    a.set_key_enabled("sync", true).await.unwrap();
    eventually(Duration::from_secs(1), "the marker's notice reaches B", || inv.outdates(g, "sync")).await;
}

/// Connections of this database whose `application_name` is `name`.
async fn backends(url: &str, name: &str) -> i64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_change_at_one_replica_reaches_the_other_within_a_second() {
    let Some((db, b, _)) = replicas("a_change_at_one_replica_reaches_the_other_within_a_second").await else { return };
    let a = &db.store;
    a.put_plan(&plan("p")).await.unwrap();
    a.put_plan(&UsagePlan::new("q")).await.unwrap();
    a.create_key(ApiKey::new("k").plan("p")).await.unwrap();
    a.create_key(ApiKey::new("other").plan("p")).await.unwrap();
    let inv = handle(&b);
    let second = Duration::from_secs(1);
    caught_up(a, &inv).await;

    // A change of one key outdates that key only.
    let g = inv.generation();
    a.set_key_enabled("k", false).await.unwrap();
    eventually(second, "disabling k reaches B", || inv.outdates(g, "k")).await;
    assert!(!inv.outdates(g, "other"), "only k changed");

    let g = inv.generation();
    a.create_usage_plan_key("q", "k").await.unwrap();
    eventually(second, "adding k to q reaches B", || inv.outdates(g, "k")).await;
    assert!(!inv.outdates(g, "other"));

    // A refused change is rolled back and announces nothing: the next change's notice arrives
    // (notices come in commit order) and the refused one's did not come before it.
    let g = inv.generation();
    assert!(a.add_key_to_plan("other", "nope").await.is_err());
    a.set_key_enabled("k", true).await.unwrap();
    eventually(second, "enabling k reaches B", || inv.outdates(g, "k")).await;
    assert!(!inv.outdates(g, "other"), "the rolled-back change was not announced");

    // A plan change outdates every key.
    let g = inv.generation();
    a.delete_plan("q").await.unwrap();
    eventually(second, "deleting q reaches B", || inv.outdates(g, "other")).await;
    assert!(inv.outdates(g, "never-seen"));
}

#[tokio::test]
async fn a_customer_change_at_one_replica_revalidates_its_keys_at_the_other() {
    let Some((db, b, _)) = replicas("a_customer_change_at_one_replica_revalidates_its_keys").await else { return };
    let a = &db.store;
    a.put_plan(&plan("p")).await.unwrap();
    a.create_key(ApiKey::new("k").with_customer_id("acme").plan("p")).await.unwrap();
    let inv = handle(&b);
    caught_up(a, &inv).await;
    let acme = Customer::new("acme").with_quota(Quota::new(4, QuotaPeriod::Day).unwrap());
    let g = inv.generation();
    a.put_customer(&acme).await.unwrap();
    eventually(Duration::from_secs(1), "putting acme reaches B", || inv.outdates(g, "k")).await;
    let g = inv.generation();
    a.delete_customer("acme").await.unwrap();
    eventually(Duration::from_secs(1), "deleting acme reaches B", || inv.outdates(g, "k")).await;
}

#[tokio::test]
async fn a_layer_on_another_replica_refuses_a_disabled_key_within_a_second() {
    let Some((db, b, _)) = replicas("a_layer_on_another_replica_refuses_a_disabled_key").await else { return };
    let a = &db.store;
    a.put_plan(&plan("p")).await.unwrap();
    let value = a.create_key(ApiKey::new("k").plan("p")).await.unwrap();
    // A cached answer lives a minute (and the manual clock never moves): only the feed can
    // tell B's layer.
    let layer = UsagePlanLayer::builder(CachedKeyStore::new(b.clone()))
        .stage(Stage::new("petstore", "prod"))
        .clock(clock())
        .key_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = service(&layer);
    assert_eq!(get(&svc, "/pets", Some(value.expose())).await.status, 200);
    assert_eq!(get(&svc, "/pets", Some(value.expose())).await.status, 200);
    a.set_key_enabled("k", false).await.unwrap();
    let start = Instant::now();
    loop {
        let reply = get(&svc, "/pets", Some(value.expose())).await;
        if reply.status == 403 {
            forbidden(&reply);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "B's layer still admits the disabled key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_feed_reconnects_after_losing_its_connection_and_ends_with_the_store() {
    let Some((db, b, name)) = replicas("the_feed_reconnects_after_losing_its_connection").await else { return };
    let a = &db.store;
    a.put_plan(&plan("p")).await.unwrap();
    a.create_key(ApiKey::new("k").plan("p")).await.unwrap();
    let listener = format!("{name}/usage_plans_changes");
    b.watch_changes().await.unwrap();
    b.clone().watch_changes().await.unwrap();
    assert_eq!(backends(&db.url, &listener).await, 1, "one listener per store, however often started");

    let inv = handle(&b);
    caught_up(a, &inv).await;
    let before = inv.generation();
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&listener)
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(killed, [true]);
    // Notices may have been missed meanwhile: on reconnecting, every key is outdated.
    let five = Duration::from_secs(5);
    eventually(five, "B reconnects and outdates every key", || inv.outdates(before, "never-seen")).await;
    assert!(inv.generation() > before);
    // And later changes arrive again.
    let g = inv.generation();
    a.set_key_enabled("k", false).await.unwrap();
    eventually(five, "a change after the reconnection reaches B", || inv.outdates(g, "k")).await;
    assert!(!inv.outdates(g, "never-seen"));

    // The listener ends with the last clone of the store.
    let clone = b.clone();
    drop(b);
    assert_eq!(backends(&db.url, &listener).await, 1, "a clone still holds the feed");
    drop(clone);
    let start = Instant::now();
    while backends(&db.url, &listener).await != 0 {
        assert!(start.elapsed() < five, "the listener outlives the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

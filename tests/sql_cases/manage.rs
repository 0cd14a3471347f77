//! `ManagedKeyStore` for the SQL store (SQLite and PostgreSQL): the operations, their errors as
//! `InMemoryKeyStore` gives them, paging in SQL, precise invalidation; and schema upgrades from version 1.

use crate::sql_support::{databases, fresh_databases};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_usage_plans::import::parse_api_keys_csv;
use tower_usage_plans::{
    ApiKey, KeyQuery, KeyStore, ManageError, ManageErrorKind, ManagedKeyStore, PlanQuery, PlanStage, SqlKeyStore,
    Throttle, UsagePlan,
};

fn bound(id: &str, api: &str) -> UsagePlan {
    UsagePlan::new(id).stage(PlanStage::new(api, "prod"))
}

fn err<T: std::fmt::Debug>(r: Result<T, ManageError>) -> (ManageErrorKind, String, String) {
    let e = r.expect_err("an error");
    (e.kind(), e.field().to_owned(), e.reason().to_owned())
}

fn ids(keys: &[tower_usage_plans::StoredKey]) -> Vec<&str> {
    keys.iter().map(|k| k.key().id()).collect()
}

#[tokio::test]
async fn managed_operations_keep_the_in_memory_stores_semantics() {
    for db in databases("managed_operations_keep_the_in_memory_stores_semantics").await {
        let s = &db.store;
        let n = db.name;
        let plan = bound("p", "a").with_product_code("code").tag("t", "v");
        let stored = s.create_usage_plan(plan.clone()).await.unwrap();
        assert_eq!((stored.product_code(), stored.tags()["t"].as_str()), (Some("code"), "v"), "{n}");
        assert!(stored.created().is_some());
        assert_eq!(err(s.create_usage_plan(UsagePlan::new("p")).await).0, ManageErrorKind::Conflict, "{n}");
        let _stored = s.create_usage_plan(bound("q", "a")).await.unwrap();
        let _stored = s.create_usage_plan(bound("r", "b")).await.unwrap();

        // Keys: the value is never given back (the store keeps hashes).
        let value = tower_usage_plans::keys::generate();
        let key = ApiKey::new("k1").with_name("50%_off").with_customer_id("c1").tag("team", "x").plan("p");
        let created = s.create_api_key(key, value.clone()).await.unwrap();
        assert_eq!((created.tags()["team"].as_str(), created.plan_ids().len()), ("x", 1), "{n}");
        assert!(created.created().is_some() && created.last_updated().is_none());
        let got = s.get_api_key("k1").await.unwrap().unwrap();
        assert_eq!((got.key(), got.value()), (&created, None), "{n}");
        assert_eq!(s.lookup(value.expose()).await.unwrap().unwrap().key(), &created, "{n}");
        assert_eq!(
            err(s.create_api_key(ApiKey::new("k1"), tower_usage_plans::keys::generate()).await).0,
            ManageErrorKind::Conflict
        );
        let e = err(s.create_api_key(ApiKey::new("k9"), value.clone()).await);
        assert_eq!((e.0, e.1.as_str()), (ManageErrorKind::Conflict, "value"), "{n}");
        let e = err(s.create_api_key(ApiKey::new("k9").plan("nope"), tower_usage_plans::keys::generate()).await);
        assert_eq!(e.0, ManageErrorKind::NotFound, "{n}");
        assert!(s.get_api_key("k9").await.unwrap().is_none(), "{n}: refused creations leave nothing");
        for (id, name, customer) in [("k2", "50% off", None), ("k3", "50%_offer", Some("c1")), ("k4", "5", Some("c2"))]
        {
            let key = ApiKey::new(id).with_name(name);
            let key = match customer {
                Some(c) => key.with_customer_id(c),
                None => key,
            };
            let _stored = s.create_api_key(key, tower_usage_plans::keys::generate()).await.unwrap();
        }

        // Lists: id order, pages by position, filters in SQL (`%` and `_` are plain characters).
        let page = s.get_api_keys(KeyQuery::new().with_limit(3)).await.unwrap();
        assert_eq!((ids(page.items()), page.position()), (vec!["k1", "k2", "k3"], Some("k4")), "{n}");
        let page = s.get_api_keys(KeyQuery::new().with_position("k4")).await.unwrap();
        assert_eq!((ids(page.items()), page.position()), (vec!["k4"], None), "{n}");
        let page = s.get_api_keys(KeyQuery::new().with_name_prefix("50%_")).await.unwrap();
        assert_eq!(ids(page.items()), ["k1", "k3"], "{n}");
        let page = s.get_api_keys(KeyQuery::new().with_customer_id("c1").with_name_prefix("50%_off")).await.unwrap();
        assert_eq!(ids(page.items()), ["k1", "k3"], "{n}");
        let page = s.get_api_keys(KeyQuery::new().with_plan_id("p")).await.unwrap();
        assert_eq!(ids(page.items()), ["k1"], "{n}");
        assert_eq!(page.items()[0].key(), &created, "{n}: listed as got");
        assert!(page.items().iter().all(|k| k.value().is_none()));
        let e = err(s.get_api_keys(KeyQuery::new().with_plan_id("nope")).await);
        assert_eq!((e.0, e.1.as_str()), (ManageErrorKind::NotFound, "usagePlanId"), "{n}");
        let plans = s.get_usage_plans(PlanQuery::new().with_limit(2)).await.unwrap();
        let plan_ids: Vec<&str> = plans.items().iter().map(UsagePlan::id).collect();
        assert_eq!((plan_ids, plans.position()), (vec!["p", "q"], Some("r")), "{n}");
        let plans = s.get_usage_plans(PlanQuery::new().with_key_id("k1")).await.unwrap();
        assert_eq!(plans.items(), std::slice::from_ref(&stored), "{n}");
        let e = err(s.get_usage_plans(PlanQuery::new().with_key_id("nope")).await);
        assert_eq!((e.0, e.1.as_str()), (ManageErrorKind::NotFound, "keyId"), "{n}");

        // Membership: one plan per stage; precise invalidation (one key) for key changes.
        let inv = s.invalidation().unwrap();
        let g = inv.generation();
        assert_eq!(err(s.create_usage_plan_key("q", "k1").await).0, ManageErrorKind::Conflict, "{n}");
        let e = err(s.create_usage_plan_key("p", "k1").await);
        assert_eq!(e, (ManageErrorKind::Conflict, "keyId".into(), "the API key is already in the usage plan".into()));
        s.create_usage_plan_key("r", "k1").await.unwrap();
        assert!(inv.outdates(g, "k1") && !inv.outdates(g, "k2"), "{n}: a key change outdates that key only");
        let e = err(s.delete_usage_plan_key("q", "k1").await);
        assert_eq!(e, (ManageErrorKind::NotFound, "keyId".into(), "the API key is not in the usage plan".into()));
        assert_eq!(err(s.delete_usage_plan_key("nope", "k1").await).1, "usagePlanId");
        assert_eq!(err(s.delete_usage_plan_key("q", "nope").await).1, "keyId");
        s.delete_usage_plan_key("r", "k1").await.unwrap();

        // Updates: read, change, write in one transaction; the id stays; last_updated is set.
        let g = inv.generation();
        let updated = s.update_api_key("k1", Box::new(|k| Ok(k.with_name("renamed").tag("new", "1")))).await.unwrap();
        assert!(updated.last_updated().is_some(), "{n}");
        assert_eq!(s.get_api_key("k1").await.unwrap().unwrap().key(), &updated, "{n}");
        assert!(inv.outdates(g, "k1") && !inv.outdates(g, "k2"), "{n}");
        let e = err(s.update_api_key("k1", Box::new(|_| Ok(ApiKey::new("other")))).await);
        assert_eq!(e, (ManageErrorKind::Invalid, "key_id".into(), "a key's id cannot be changed".into()));
        // A change that breaks a rule is rolled back whole.
        let e = err(s.update_api_key("k1", Box::new(|k| Ok(k.with_name("x").plan("p").plan("q")))).await);
        assert_eq!(e.0, ManageErrorKind::Conflict, "{n}: {e:?}");
        assert_eq!(s.get_api_key("k1").await.unwrap().unwrap().key(), &updated, "{n}");
        assert_eq!(err(s.update_api_key("nope", Box::new(Ok)).await).1, "keyId");

        let g = inv.generation();
        let throttle = Throttle::new(2.0, 3).unwrap();
        let plan = s.update_usage_plan("p", Box::new(move |p| Ok(p.with_throttle(throttle)))).await.unwrap();
        assert_eq!((plan.throttle(), plan.created()), (Some(throttle), stored.created()), "{n}");
        assert!(inv.outdates(g, "k2"), "{n}: a plan change outdates every key");
        let e = err(s.update_usage_plan("p", Box::new(|_| Ok(UsagePlan::new("x")))).await);
        assert_eq!(e, (ManageErrorKind::Invalid, "plan_id".into(), "a plan's id cannot be changed".into()));
        // Binding q to stage b would put k3 (in q and r) in two plans of b.
        s.create_usage_plan_key("q", "k3").await.unwrap();
        s.create_usage_plan_key("r", "k3").await.unwrap();
        let e = err(s.update_usage_plan("q", Box::new(|p| Ok(p.stage(PlanStage::new("b", "prod"))))).await);
        assert_eq!(e.0, ManageErrorKind::Conflict, "{n}");
        assert_eq!(s.get_usage_plan("q").await.unwrap().unwrap().stages().len(), 1, "{n}: rolled back");
        let e = err(s.update_usage_plan("nope", Box::new(Ok)).await);
        assert_eq!(e, (ManageErrorKind::NotFound, "usagePlanId".into(), "no usage plan has the id \"nope\"".into()));

        // Deletes.
        assert_eq!(
            err(s.delete_api_key("nope").await),
            (ManageErrorKind::NotFound, "keyId".into(), "no API key has the id \"nope\"".into())
        );
        assert_eq!(err(s.delete_usage_plan("nope").await).1, "usagePlanId");
        s.delete_usage_plan("q").await.unwrap();
        assert!(s.get_usage_plan("q").await.unwrap().is_none());
        assert_eq!(s.get_api_key("k3").await.unwrap().unwrap().key().plan_ids().len(), 1, "{n}: k3 stays, in r");
        s.delete_api_key("k3").await.unwrap();
        assert!(s.get_api_key("k3").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn imports_are_all_or_nothing_and_name_the_csv_line() {
    for db in databases("imports_are_all_or_nothing_and_name_the_csv_line").await {
        let (s, n) = (&db.store, db.name);
        let _stored = s.create_usage_plan(bound("q", "a")).await.unwrap();
        let _stored = s
            .create_api_key(ApiKey::new("old"), tower_usage_plans::KeySecret::new("old-0123456789abcdefghij").unwrap())
            .await
            .unwrap();
        let count = |s: &SqlKeyStore| {
            let s = s.clone();
            async move { s.get_api_keys(KeyQuery::new().with_limit(100)).await.unwrap().items().len() }
        };
        let csv = "Name,Key,UsagePlanIds\na,a-0123456789abcdefghij,q\nb,b-0123456789abcdefghij,gold\n";
        let e = s.import_api_keys(parse_api_keys_csv(csv).unwrap()).await.unwrap_err();
        assert_eq!(e.to_string(), r#"line 3, column UsagePlanIds: no plan has the id "gold""#, "{n}");
        assert_eq!(e.kind(), ManageErrorKind::NotFound);
        assert_eq!(count(s).await, 1, "{n}: nothing of a refused import is kept");
        let csv = "Name,Key\na,a-0123456789abcdefghij\nb,old-0123456789abcdefghij\n";
        let e = s.import_api_keys(parse_api_keys_csv(csv).unwrap()).await.unwrap_err();
        assert_eq!((e.kind(), e.field()), (ManageErrorKind::Conflict, "line 3, column Key"), "{n}");
        assert!(!e.to_string().contains("old-0123456789"), "{e}");
        assert_eq!(count(s).await, 1, "{n}");

        let before = SystemTime::now() - Duration::from_secs(1);
        let csv = "Name,Key,UsagePlanIds,CustomerId\na,a-0123456789abcdefghij,q,c\n,b-0123456789abcdefghij,,\n";
        let new = s.import_api_keys(parse_api_keys_csv(csv).unwrap()).await.unwrap();
        assert_eq!(new.len(), 2);
        let a = s.lookup("a-0123456789abcdefghij").await.unwrap().unwrap();
        assert_eq!((a.key().id(), a.key().name(), a.key().customer_id()), (new[0].as_str(), "a", Some("c")), "{n}");
        assert_eq!(a.plans()[0].id(), "q");
        assert!(a.key().created().is_some_and(|t| t >= before) && a.key().last_updated() == a.key().created());
        let b = s.get_api_key(&new[1]).await.unwrap().unwrap();
        assert_eq!(b.key().name(), new[1], "{n}: a key without a name is named by its id");
        assert_eq!(count(s).await, 3);
    }
}

#[tokio::test]
async fn a_version_1_database_migrates_to_the_latest_keeping_its_rows() {
    const V1: &str = include_str!("../../src/store/sql/migrations/0001_initial.sql");
    for db in fresh_databases("a_version_1_database_migrates_to_the_latest_keeping_its_rows").await {
        let pool = db.store.pool();
        sqlx::raw_sql(V1).execute(pool).await.unwrap();
        for sql in [
            "CREATE TABLE usage_plans_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            "INSERT INTO usage_plans_schema VALUES (1, 'initial', 0)",
            "INSERT INTO usage_plans_plans (id, name, quota_limit, quota_period, created_at) VALUES ('p', 'P', 10, 'DAY', 1000)",
            "INSERT INTO usage_plans_plan_stages (plan_id, api, stage, position) VALUES ('p', 'petstore', 'prod', 0)",
            "INSERT INTO usage_plans_keys (id, name, enabled, customer_id, created_at) VALUES ('k', 'K', TRUE, 'c', 2000)",
            "INSERT INTO usage_plans_plan_keys (plan_id, key_id) VALUES ('p', 'k')",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{}: {sql}: {e}", db.name));
        }
        let versions = db.add_value_and_migrate("v1-value-0123456789abcdef").await;
        assert_eq!(versions, [1, 2, 3], "{}", db.name);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let key = ApiKey::new("k").with_name("K").with_customer_id("c").with_created(at(2000)).plan("p");
        assert_eq!(db.store.get_key("k").await.unwrap(), Some(key.clone()), "{}: no tags, no last-updated", db.name);
        let record = db.store.lookup("v1-value-0123456789abcdef").await.unwrap().unwrap();
        assert_eq!(record.key(), &key);
        let plan = record.plans()[0].clone();
        assert_eq!((plan.product_code(), plan.tags().len(), plan.created()), (None, 0, Some(at(1000))), "{}", db.name);
        assert_eq!(plan.stages().len(), 1);
        // The new columns take writes.
        db.store.put_plan(&(*plan).clone().with_product_code("x").tag("a", "b")).await.unwrap();
        assert_eq!(db.store.get_plan("p").await.unwrap().unwrap().product_code(), Some("x"));
    }
}

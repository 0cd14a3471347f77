//! Schema version 3: a key's own limits, a plan's concurrency cap and customers round-trip
//! through the SQL store, a customer change revalidates its keys, and a version 2 database
//! migrates keeping its rows.

use crate::sql_support::{databases, fresh_databases};
use std::num::NonZeroU32;
use std::time::{Duration, UNIX_EPOCH};
use tower_usage_plans::{
    ApiKey, Customer, CustomerQuery, KeySecret, KeyStore, ManagedKeyStore, PlanStage, Quota, QuotaAnchor, QuotaPeriod,
    SqlStoreErrorKind, Throttle, UsagePlan,
};

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

fn anchor(secs: u64) -> QuotaAnchor {
    QuotaAnchor::from_system_time(UNIX_EPOCH + Duration::from_secs(secs)).unwrap()
}

fn acme() -> Customer {
    Customer::new("acme")
        .with_name("Acme Corp")
        .with_throttle(Throttle::new(100.0, 200).unwrap())
        .with_quota(Quota::new(4, QuotaPeriod::Month).unwrap().with_offset(1).unwrap())
        .with_concurrency(n(20))
        .with_quota_anchor(anchor(1_769_851_800))
}

/// A key with every limit of its own, of customer acme.
fn custom_key() -> ApiKey {
    ApiKey::new("k1")
        .with_name("custom")
        .with_customer_id("acme")
        .plan("p")
        .with_throttle(Throttle::new(5.0, 2).unwrap())
        .with_quota(Quota::new(100, QuotaPeriod::Week).unwrap())
        .method_throttle("/pets/GET", Throttle::new(1.5, 3).unwrap())
        .unwrap()
        .method_throttle("/pets/{petId}/DELETE", Throttle::new(0.5, 1).unwrap())
        .unwrap()
        .with_concurrency(n(3))
        .with_quota_anchor(anchor(1_770_000_000))
}

fn plan() -> UsagePlan {
    UsagePlan::new("p")
        .with_quota(Quota::new(10, QuotaPeriod::Day).unwrap())
        .with_concurrency(n(8))
        .with_created(UNIX_EPOCH + Duration::from_secs(1_000))
        .stage(PlanStage::new("petstore", "prod"))
}

#[tokio::test]
async fn a_keys_own_limits_and_its_customer_round_trip_through_lookup() {
    for db in databases("a_keys_own_limits_and_its_customer_round_trip_through_lookup").await {
        let s = &db.store;
        let name = db.name;
        s.put_plan(&plan()).await.unwrap();
        s.put_customer(&acme()).await.unwrap();
        let value = KeySecret::new("custom-0123456789abcdefghij").unwrap();
        s.insert_key(custom_key(), &value).await.unwrap();
        let bare = KeySecret::new("bare-0123456789abcdefghij").unwrap();
        s.insert_key(ApiKey::new("k2").with_customer_id("nobody").plan("p"), &bare).await.unwrap();

        let record = s.lookup(value.expose()).await.unwrap().unwrap();
        let key = record.key();
        let want = custom_key();
        assert_eq!(key.throttle(), want.throttle(), "{name}");
        assert_eq!(key.quota(), want.quota(), "{name}");
        assert_eq!(key.method_throttles(), want.method_throttles(), "{name}: in order");
        assert_eq!(key.concurrency(), Some(n(3)), "{name}");
        assert_eq!(key.quota_anchor(), Some(anchor(1_770_000_000)), "{name}");
        assert_eq!(record.customer().map(|c| (**c).clone()), Some(acme()), "{name}: the customer it names");
        assert_eq!(record.plans()[0].concurrency(), Some(n(8)), "{name}: the plan's cap");
        assert_eq!(s.get_plan("p").await.unwrap().unwrap().concurrency(), Some(n(8)));
        let stored = s.get_key("k1").await.unwrap().unwrap();
        assert_eq!(stored.method_throttles(), want.method_throttles(), "{name}");
        assert_eq!(stored.quota_anchor(), want.quota_anchor(), "{name}");
        assert_eq!(s.customer_by_id("acme").await.unwrap(), Some(acme()), "{name}");
        assert_eq!(s.customer_by_id("nobody").await.unwrap(), None);

        // A key naming no stored customer has none; one without limits of its own has none.
        let record = s.lookup(bare.expose()).await.unwrap().unwrap();
        assert!(record.customer().is_none(), "{name}");
        let k = record.key();
        assert_eq!((k.throttle(), k.quota(), k.concurrency(), k.quota_anchor()), (None, None, None, None), "{name}");
        assert!(k.method_throttles().is_none(), "{name}");

        // An update keeps what the change returns: an empty own list of method throttles is
        // kept apart from none; the other limits go.
        let change = Box::new(|k: ApiKey| {
            let mut fresh = ApiKey::new(k.id()).with_name(k.name()).with_customer_id("acme").plan("p");
            fresh = fresh.without_method_throttles();
            Ok(fresh)
        });
        let updated = ManagedKeyStore::update_api_key(s, "k1", change).await.unwrap();
        assert_eq!(updated.method_throttles(), Some(&[][..]), "{name}: answered as stored");
        let k = s.lookup(value.expose()).await.unwrap().unwrap().key().clone();
        assert_eq!(k.method_throttles(), Some(&[][..]), "{name}");
        assert_eq!((k.throttle(), k.concurrency()), (None, None), "{name}");

        // Customers through the management interface: create (conflict on a taken id), list in
        // id order with pages, replace, delete.
        let beta = Customer::new("beta");
        assert_eq!(ManagedKeyStore::create_customer(s, beta.clone()).await.unwrap(), beta);
        let e = ManagedKeyStore::create_customer(s, beta.clone()).await.unwrap_err();
        assert_eq!((e.field(), e.reason()), ("id", "a customer already has the id \"beta\""), "{name}");
        let page = ManagedKeyStore::get_customers(s, CustomerQuery::new().with_limit(1)).await.unwrap();
        assert_eq!((page.items(), page.position()), (&[acme()][..], Some("beta")), "{name}");
        let page = ManagedKeyStore::get_customers(s, CustomerQuery::new().with_position("beta")).await.unwrap();
        assert_eq!((page.items(), page.position()), (&[beta][..], None), "{name}");
        let smaller = Customer::new("acme").with_quota(Quota::new(2, QuotaPeriod::Day).unwrap());
        assert_eq!(ManagedKeyStore::put_customer(s, smaller.clone()).await.unwrap(), smaller);
        assert_eq!(ManagedKeyStore::get_customer(s, "acme").await.unwrap(), Some(smaller.clone()), "{name}");
        let record = s.lookup(value.expose()).await.unwrap().unwrap();
        assert_eq!(record.customer().map(|c| (**c).clone()), Some(smaller), "{name}");
        ManagedKeyStore::delete_customer(s, "acme").await.unwrap();
        let e = ManagedKeyStore::delete_customer(s, "acme").await.unwrap_err();
        assert_eq!(e.field(), "customerId", "{name}");
        assert!(s.lookup(value.expose()).await.unwrap().unwrap().customer().is_none(), "{name}");
        assert_eq!(s.delete_customer("acme").await.unwrap_err().kind(), SqlStoreErrorKind::NotFound);
        assert_eq!(s.put_customer(&Customer::new(" ")).await.unwrap_err().kind(), SqlStoreErrorKind::Invalid);
    }
}

#[tokio::test]
async fn a_customer_change_revalidates_its_keys() {
    for db in databases("a_customer_change_revalidates_its_keys").await {
        let s = &db.store;
        s.put_plan(&plan()).await.unwrap();
        s.create_key(ApiKey::new("k1").with_customer_id("acme").plan("p")).await.unwrap();
        let inv = s.invalidation().unwrap();
        for step in ["put", "replace", "delete"] {
            let g = inv.generation();
            match step {
                "delete" => s.delete_customer("acme").await.unwrap(),
                _ => s.put_customer(&acme()).await.unwrap(),
            }
            assert!(inv.outdates(g, "k1"), "{}: {step} revalidates the customer's key", db.name);
        }
        // A refused change still costs only a revalidation, and changes nothing.
        assert!(s.put_customer(&Customer::new("")).await.is_err());
        assert_eq!(s.customer_by_id("acme").await.unwrap(), None);
    }
}

#[tokio::test]
async fn bad_stored_limits_are_errors_naming_the_column() {
    for db in databases("bad_stored_limits_are_errors_naming_the_column").await {
        let s = &db.store;
        let value = s.create_key(ApiKey::new("k1")).await.unwrap();
        sqlx::query("UPDATE usage_plans_keys SET limits = '{\"concurrency\":0}' WHERE id = 'k1'")
            .execute(s.pool())
            .await
            .unwrap();
        let e = s.get_key("k1").await.unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().contains("usage_plans_keys[\"k1\"].limits")),
            (SqlStoreErrorKind::Invalid, true),
            "{e}"
        );
        assert!(s.lookup(value.expose()).await.is_err(), "{}", db.name);
        // Method throttles of a key's own are checked as a plan's are.
        let clash = ApiKey::new("k2")
            .method_throttle("/x/{a}/GET", Throttle::new(1.0, 1).unwrap())
            .unwrap()
            .method_throttle("/x/{b+}/GET", Throttle::new(1.0, 1).unwrap())
            .unwrap();
        let e = s.create_key(clash).await.unwrap_err();
        assert_eq!(e.kind(), SqlStoreErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains("methods") && e.to_string().contains("conflicts"), "{e}");
        assert_eq!(s.get_key("k2").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_version_2_database_migrates_to_version_3_keeping_its_rows() {
    const V1: &str = include_str!("../../src/store/sql/migrations/0001_initial.sql");
    const V2: &str = include_str!("../../src/store/sql/migrations/0002_tags_and_dates.sql");
    for db in fresh_databases("a_version_2_database_migrates_to_version_3_keeping_its_rows").await {
        let pool = db.store.pool();
        sqlx::raw_sql(V1).execute(pool).await.unwrap();
        sqlx::raw_sql(V2).execute(pool).await.unwrap();
        for sql in [
            "CREATE TABLE usage_plans_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            "INSERT INTO usage_plans_schema VALUES (1, 'initial', 0)",
            "INSERT INTO usage_plans_schema VALUES (2, 'tags_and_dates', 0)",
            "INSERT INTO usage_plans_plans (id, name, quota_limit, quota_period, created_at, tags) \
             VALUES ('p', 'P', 10, 'DAY', 1000, '{\"tier\":\"x\"}')",
            "INSERT INTO usage_plans_plan_stages (plan_id, api, stage, position) VALUES ('p', 'petstore', 'prod', 0)",
            "INSERT INTO usage_plans_keys (id, name, enabled, customer_id, created_at, last_updated_at) \
             VALUES ('k', 'K', TRUE, 'c', 2000, 3000)",
            "INSERT INTO usage_plans_plan_keys (plan_id, key_id) VALUES ('p', 'k')",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{}: {sql}: {e}", db.name));
        }
        let versions = db.add_value_and_migrate("v2-value-0123456789abcdef").await;
        assert_eq!(versions, [1, 2, 3], "{}", db.name);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let key = ApiKey::new("k")
            .with_name("K")
            .with_customer_id("c")
            .with_created(at(2000))
            .with_last_updated(at(3000))
            .plan("p");
        assert_eq!(db.store.get_key("k").await.unwrap(), Some(key.clone()), "{}: no limits of its own", db.name);
        let record = db.store.lookup("v2-value-0123456789abcdef").await.unwrap().unwrap();
        assert_eq!(record.key(), &key);
        assert!(record.customer().is_none(), "{}: no customers yet", db.name);
        let plan = record.plans()[0].clone();
        assert_eq!((plan.concurrency(), plan.tags().len(), plan.quota().map(|q| q.limit())), (None, 1, Some(10)));
        // The new columns and table take writes, and the old key gets its customer.
        db.store.put_customer(&Customer::new("c").with_concurrency(n(2))).await.unwrap();
        db.store.put_plan(&(*plan).clone().with_concurrency(n(5))).await.unwrap();
        let record = db.store.lookup("v2-value-0123456789abcdef").await.unwrap().unwrap();
        assert_eq!(record.customer().and_then(|c| c.concurrency()), Some(n(2)), "{}", db.name);
        assert_eq!(record.plans()[0].concurrency(), Some(n(5)), "{}", db.name);
    }
}

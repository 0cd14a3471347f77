//! The SQL key store on SQLite and PostgreSQL: round trips, expiry, rotation, hashes only,
//! migrations, typed errors, the layer over it, and the `postgres` example.
//!
//! PostgreSQL runs when `DATABASE_URL` is set (each test in a schema of its own), e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --all-features --test sql`.
#![cfg(feature = "sqlx")]

mod common;
#[path = "sql_cases/customers.rs"]
mod customers;
#[path = "sql_cases/feed.rs"]
mod feed;
#[path = "sql_cases/manage.rs"]
mod manage;
mod sql_support;

use common::{clock, forbidden, get, limit_exceeded, service, NOON};
use sql_support::{databases, example, fresh_databases};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_usage_plans::keys::KeyHash;
use tower_usage_plans::{
    ApiKey, CachedKeyStore, KeySecret, KeyStore, ManualClock, PlanStage, Quota, QuotaPeriod, Rejection, RejectionKind,
    SqlKeyStore, SqlStoreErrorKind, Stage, Throttle, UsagePlan, UsagePlanLayer,
};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Two stages, method throttles, a throttle and a quota with an offset.
fn gold() -> UsagePlan {
    let prod = PlanStage::new("petstore", "prod")
        .method_throttle("/pets/{petId}/DELETE", Throttle::new(0.5, 1).unwrap())
        .unwrap()
        .method_throttle("/pets/GET", Throttle::new(10.25, 20).unwrap())
        .unwrap();
    UsagePlan::new("gold")
        .with_name("Gold tier")
        .with_description("for paying customers")
        .with_throttle(Throttle::new(50.0, 100).unwrap())
        .with_quota(Quota::new(5000, QuotaPeriod::Month).unwrap().with_offset(100).unwrap())
        .with_created(at(NOON - 10 * 86_400))
        .with_product_code("prod-code-1")
        .tag("tier", "gold")
        .tag("owner", "sales \"EU\" & co")
        .stage(PlanStage::new("petstore", "beta"))
        .stage(prod)
}

/// No limits, no stages.
fn free() -> UsagePlan {
    UsagePlan::new("free").with_created(at(NOON))
}

/// A plan bound to petstore/prod with a daily quota.
fn daily(id: &str, limit: u64) -> UsagePlan {
    UsagePlan::new(id)
        .with_quota(Quota::new(limit, QuotaPeriod::Day).unwrap())
        .stage(PlanStage::new("petstore", "prod"))
}

fn layer(store: &SqlKeyStore, clock: &ManualClock) -> common::Svc {
    service(
        &UsagePlanLayer::builder(store.clone())
            .stage(Stage::new("petstore", "prod"))
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

async fn lookup(store: &SqlKeyStore, secret: &KeySecret) -> tower_usage_plans::KeyRecord {
    store.lookup(secret.expose()).await.unwrap().expect("the value is stored")
}

fn rejection(r: &common::Reply) -> RejectionKind {
    r.extensions.get::<Rejection>().expect("a rejection").kind()
}

#[tokio::test]
async fn keys_and_plans_round_trip_exactly() {
    for db in databases("keys_and_plans_round_trip_exactly").await {
        let s = &db.store;
        s.put_plan(&gold()).await.unwrap();
        s.put_plan(&free()).await.unwrap();
        assert_eq!(s.get_plan("gold").await.unwrap(), Some(gold()), "{}", db.name);
        assert_eq!(s.get_plan("free").await.unwrap(), Some(free()), "{}", db.name);
        assert_eq!(s.get_plan("none").await.unwrap(), None);

        let key = ApiKey::new("acme")
            .with_name("Acme Inc")
            .with_description("d")
            .with_customer_id("c-1")
            .with_expires(at(NOON + 86_400))
            .with_created(at(NOON - 60))
            .with_last_updated(at(NOON - 30))
            .tag("team", "billing");
        let secret = s.create_key(key.clone().plan("gold").plan("free")).await.unwrap();
        let record = lookup(s, &secret).await;
        // Plans (and plan ids) come from the membership table, ordered by id.
        let expected = key.plan("free").plan("gold");
        assert_eq!(record.key(), &expected, "{}", db.name);
        assert_eq!(record.plans(), [Arc::new(free()), Arc::new(gold())], "{}", db.name);
        assert_eq!(s.get_key("acme").await.unwrap(), Some(expected), "{}", db.name);
        assert_eq!(lookup(s, &secret).await.plans()[1].quota().unwrap().offset(), 100);

        // Replacing a plan replaces its stages; without a created time it keeps the stored one.
        // Tags and the product code are replaced too.
        let smaller =
            UsagePlan::new("gold").with_throttle(Throttle::new(1.0, 2).unwrap()).stage(PlanStage::new("a", "b"));
        s.put_plan(&smaller).await.unwrap();
        let record = lookup(s, &secret).await;
        assert_eq!(*record.plans()[1], smaller.with_created(at(NOON - 10 * 86_400)), "{}", db.name);
        assert!(s.lookup("no-such-key-0123456789").await.unwrap().is_none());
        assert_eq!(s.get_key("nobody").await.unwrap(), None);
    }
}

#[tokio::test]
async fn disabled_and_expired_keys_are_returned_as_they_are_and_refused() {
    for db in databases("disabled_and_expired_keys_are_returned_as_they_are_and_refused").await {
        let s = &db.store;
        s.put_plan(&daily("p", 100)).await.unwrap();
        let off = s.create_key(ApiKey::new("off").plan("p")).await.unwrap();
        let old = s.create_key(ApiKey::new("old").plan("p")).await.unwrap();
        s.set_key_enabled("off", false).await.unwrap();
        s.set_key_expiry("old", Some(at(NOON - 1))).await.unwrap();
        assert!(!lookup(s, &off).await.key().is_enabled());
        assert_eq!(lookup(s, &old).await.key().expires(), Some(at(NOON - 1)), "{}", db.name);

        let clock = clock();
        let svc = layer(s, &clock);
        let r = get(&svc, "/pets", Some(off.expose())).await;
        forbidden(&r);
        assert_eq!(rejection(&r), RejectionKind::DisabledKey);
        let r = get(&svc, "/pets", Some(old.expose())).await;
        forbidden(&r);
        assert_eq!(rejection(&r), RejectionKind::ExpiredKey);
        assert_eq!(rejection(&get(&svc, "/pets", Some("unknown-0123456789abcdef")).await), RejectionKind::UnknownKey);

        s.set_key_enabled("off", true).await.unwrap();
        s.set_key_expiry("old", None).await.unwrap();
        assert!(lookup(s, &off).await.key().is_enabled());
        assert_eq!(lookup(s, &old).await.key().expires(), None);
    }
}

#[tokio::test]
async fn rotation_keeps_old_values_for_the_overlap_only() {
    for db in databases("rotation_keeps_old_values_for_the_overlap_only").await {
        let s = &db.store;
        s.put_plan(&daily("p", 100)).await.unwrap();
        let old = s.create_key(ApiKey::new("k").plan("p")).await.unwrap();
        let new = s.rotate_key_at("k", Duration::from_secs(3600), at(NOON)).await.unwrap();
        assert_ne!(old, new);
        assert_eq!(lookup(s, &old).await.key().expires(), Some(at(NOON + 3600)), "{}", db.name);
        assert_eq!(lookup(s, &new).await.key().expires(), None);
        assert_eq!(lookup(s, &new).await.key().id(), "k");

        let clock = clock();
        let svc = layer(s, &clock);
        assert_eq!(get(&svc, "/pets", Some(old.expose())).await.status, 200);
        assert_eq!(get(&svc, "/pets", Some(new.expose())).await.status, 200);
        clock.advance(Duration::from_secs(3599));
        assert_eq!(get(&svc, "/pets", Some(old.expose())).await.status, 200);
        clock.advance(Duration::from_secs(1));
        assert_eq!(rejection(&get(&svc, "/pets", Some(old.expose())).await), RejectionKind::ExpiredKey);
        assert_eq!(get(&svc, "/pets", Some(new.expose())).await.status, 200);

        // A second rotation with a longer overlap keeps the first value's earlier expiry.
        let newer = s.rotate_key_at("k", Duration::from_secs(7200), at(NOON + 60)).await.unwrap();
        assert_eq!(lookup(s, &old).await.key().expires(), Some(at(NOON + 3600)));
        assert_eq!(lookup(s, &new).await.key().expires(), Some(at(NOON + 7260)));
        assert_eq!(lookup(s, &newer).await.key().expires(), None);
        // The key's own expiry, when earlier, wins over a value's.
        s.set_key_expiry("k", Some(at(NOON + 1800))).await.unwrap();
        assert_eq!(lookup(s, &new).await.key().expires(), Some(at(NOON + 1800)));
        assert_eq!(lookup(s, &newer).await.key().expires(), Some(at(NOON + 1800)));
        assert_eq!(s.rotate_key("k", Duration::ZERO).await.unwrap().expose().len(), 40);
    }
}

/// Both values of a rotated key draw on one quota.
#[tokio::test]
async fn values_of_a_rotated_key_share_one_quota() {
    for db in databases("values_of_a_rotated_key_share_one_quota").await {
        let s = &db.store;
        s.put_plan(&daily("p", 3)).await.unwrap();
        let old = s.create_key(ApiKey::new("k").plan("p")).await.unwrap();
        let new = s.rotate_key_at("k", Duration::from_secs(3600), at(NOON)).await.unwrap();
        let clock = clock();
        let svc = layer(s, &clock);
        assert_eq!(get(&svc, "/pets", Some(old.expose())).await.status, 200);
        assert_eq!(get(&svc, "/pets", Some(old.expose())).await.status, 200);
        assert_eq!(get(&svc, "/pets", Some(new.expose())).await.status, 200);
        limit_exceeded(&get(&svc, "/pets", Some(new.expose())).await);
        limit_exceeded(&get(&svc, "/pets", Some(old.expose())).await);
    }
}

#[tokio::test]
async fn only_hashes_of_key_values_are_stored() {
    for db in databases("only_hashes_of_key_values_are_stored").await {
        let s = &db.store;
        s.put_plan(&gold()).await.unwrap();
        let mut secrets = vec![s.create_key(ApiKey::new("a").plan("gold")).await.unwrap()];
        let imported = KeySecret::new("imported-0123456789abcdefghij").unwrap();
        s.insert_key(ApiKey::new("b").with_name("Imported"), &imported).await.unwrap();
        secrets.push(imported);
        secrets.push(s.rotate_key("a", Duration::from_secs(60)).await.unwrap());
        let values = db.text_values().await;
        assert!(values.iter().any(|(c, _)| c == "usage_plans_key_values.hash"), "{}: {values:?}", db.name);
        for secret in &secrets {
            for (column, v) in &values {
                assert!(!v.contains(secret.expose()), "{}: {column} holds a key value", db.name);
            }
            let hash = KeyHash::of(secret.expose()).to_hex();
            assert!(values.contains(&("usage_plans_key_values.hash".to_owned(), hash)), "{}", db.name);
        }
    }
}

#[tokio::test]
async fn migrate_is_idempotent_and_safe_to_run_concurrently() {
    for db in fresh_databases("migrate_is_idempotent_and_safe_to_run_concurrently").await {
        // Four pools, as four processes starting at once.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = SqlKeyStore::connect(&db.url).await.unwrap();
            tasks.push(tokio::spawn(async move { store.migrate().await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", db.name));
        }
        db.store.migrate().await.unwrap();
        db.store.migrate().await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM usage_plans_schema ORDER BY version")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
        assert_eq!(versions, (1..=SqlKeyStore::SCHEMA_VERSION).collect::<Vec<_>>(), "{}", db.name);
        db.store.put_plan(&free()).await.unwrap();
        // A database migrated by a newer release is refused, not half-understood.
        sqlx::query("INSERT INTO usage_plans_schema (version, name, applied_at) VALUES (99, 'future', 0)")
            .execute(db.store.pool())
            .await
            .unwrap();
        let e = db.store.migrate().await.expect_err("a newer schema is refused");
        assert_eq!(e.kind(), SqlStoreErrorKind::Invalid, "{}: {e}", db.name);
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }
}

#[tokio::test]
async fn errors_name_the_id_and_never_the_value() {
    for db in databases("errors_name_the_id_and_never_the_value").await {
        let s = &db.store;
        let kind = |r: Result<(), tower_usage_plans::SqlStoreError>| {
            let e = r.expect_err("an error");
            (e.kind(), e.field().to_owned(), e.to_string())
        };
        let missing_key =
            (SqlStoreErrorKind::NotFound, "key_id".to_owned(), "key_id: no key with id \"nope\"".to_owned());
        assert_eq!(kind(s.set_key_enabled("nope", true).await), missing_key);
        assert_eq!(kind(s.set_key_expiry("nope", None).await), missing_key);
        assert_eq!(kind(s.delete_key("nope").await), missing_key);
        assert_eq!(kind(s.rotate_key("nope", Duration::ZERO).await.map(drop)), missing_key);
        assert_eq!(kind(s.add_key_to_plan("nope", "p").await), missing_key);
        let e = kind(s.delete_plan("nope").await);
        assert_eq!((e.0, e.1.as_str()), (SqlStoreErrorKind::NotFound, "plan_id"));

        s.put_plan(&daily("p", 10)).await.unwrap();
        s.put_plan(&daily("q", 10)).await.unwrap();
        let secret = s.create_key(ApiKey::new("k").plan("p")).await.unwrap();
        assert_eq!(kind(s.add_key_to_plan("k", "nope").await).1, "plan_id");
        let e = kind(s.remove_key_from_plan("k", "q").await);
        assert_eq!((e.0, e.2.as_str()), (SqlStoreErrorKind::NotFound, "plan_id: key \"k\" is not in plan \"q\""));
        // A key has at most one plan per stage.
        assert_eq!(kind(s.add_key_to_plan("k", "q").await).0, SqlStoreErrorKind::Conflict);
        s.put_plan(&UsagePlan::new("r")).await.unwrap();
        s.add_key_to_plan("k", "r").await.unwrap();
        s.add_key_to_plan("k", "r").await.unwrap();
        let e = kind(s.put_plan(&daily("r", 5)).await);
        assert_eq!((e.0, e.1.as_str()), (SqlStoreErrorKind::Conflict, "stages"));
        assert!(s.get_plan("r").await.unwrap().unwrap().stages().is_empty(), "the refused change was rolled back");
        let twice = UsagePlan::new("t").stage(PlanStage::new("a", "b")).stage(PlanStage::new("a", "b"));
        assert_eq!(kind(s.put_plan(&twice).await).1, "stages[1]");

        assert_eq!(kind(s.insert_key(ApiKey::new("k"), &tower_usage_plans::keys::generate()).await).1, "id");
        let e = s.insert_key(ApiKey::new("k2"), &secret).await.unwrap_err();
        assert_eq!((e.kind(), e.field()), (SqlStoreErrorKind::Conflict, "value"));
        assert!(!format!("{e} {e:?}").contains(secret.expose()));
        assert_eq!(s.get_key("k2").await.unwrap(), None, "the failed insert was rolled back");
        assert_eq!(kind(s.create_key(ApiKey::new("k3").plan("p").plan("nope")).await.map(drop)).1, "plans[1]");
        assert_eq!(s.get_key("k3").await.unwrap(), None);
        assert!(!format!("{s:?}").contains("postgres://"), "{s:?}");

        s.remove_key_from_plan("k", "r").await.unwrap();
        s.delete_plan("p").await.unwrap();
        assert_eq!(lookup(s, &secret).await.plans().len(), 0);
        s.delete_key("k").await.unwrap();
        assert!(s.lookup(secret.expose()).await.unwrap().is_none());
    }
}

/// Every management call can run in a spawned task (e.g. an axum handler).
#[tokio::test]
async fn management_futures_are_send() {
    fn send<T: Send>(_: T) {}
    sqlx::any::install_default_drivers();
    let s = SqlKeyStore::new(sqlx::AnyPool::connect_lazy("sqlite::memory:").unwrap());
    let (plan, secret) = (free(), tower_usage_plans::keys::generate());
    send(s.migrate());
    send(s.put_plan(&plan));
    send(s.delete_plan("p"));
    send(s.get_plan("p"));
    send(s.create_key(ApiKey::new("k")));
    send(s.insert_key(ApiKey::new("k"), &secret));
    send(s.get_key("k"));
    send(s.set_key_enabled("k", true));
    send(s.set_key_expiry("k", None));
    send(s.delete_key("k"));
    send(s.add_key_to_plan("k", "p"));
    send(s.remove_key_from_plan("k", "p"));
    send(s.rotate_key("k", Duration::ZERO));
    send(s.lookup("k"));
}

#[tokio::test]
async fn lookup_failures_are_store_errors_without_the_value() {
    for db in fresh_databases("lookup_failures_are_store_errors_without_the_value").await {
        let value = "secret-0123456789abcdefghij";
        let e = db.store.lookup(value).await.expect_err("no tables yet");
        let text = format!("{e} {e:?}");
        assert!(!text.contains(value), "{}: {text}", db.name);
        assert!(text.contains("look up a key value"), "{}: {text}", db.name);
    }
}

#[tokio::test]
async fn axum_router_over_the_sql_store() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    for db in databases("axum_router_over_the_sql_store").await {
        let s = &db.store;
        s.put_plan(&daily("trial", 2)).await.unwrap();
        let good = s.create_key(ApiKey::new("good").plan("trial")).await.unwrap();
        let off = s.create_key(ApiKey::new("off").plan("trial").enabled(false)).await.unwrap();
        let layer =
            UsagePlanLayer::builder(s.clone()).stage(Stage::new("petstore", "prod")).clock(clock()).build().unwrap();
        let app = axum::Router::new().route("/pets", axum::routing::get(|| async { "[]" })).layer(layer);
        let call = |key: &str| {
            let req = http::Request::get("/pets").header("x-api-key", key).body(Body::empty()).unwrap();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
            }
        };
        assert_eq!(call(good.expose()).await, (200, "[]".to_owned()), "{}", db.name);
        assert_eq!(call("unknown-0123456789abcdefghij").await, (403, r#"{"message":"Forbidden"}"#.to_owned()));
        assert_eq!(call(off.expose()).await.0, 403);
        assert_eq!(call(good.expose()).await.0, 200);
        assert_eq!(call(good.expose()).await, (429, r#"{"message":"Limit Exceeded"}"#.to_owned()), "{}", db.name);
    }
}

#[tokio::test]
async fn postgres_example_answers_as_its_curl_lines_say() {
    use std::io::BufRead;
    let Some(url) = sql_support::postgres_url("postgres_example_answers_as_its_curl_lines_say") else { return };
    let bin = tokio::task::spawn_blocking(example::build_postgres_example).await.unwrap();
    let child = std::process::Command::new(&bin)
        .args(["--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::Killed(child);
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("listening on http://");
            let _ = tx.send(line.trim().to_owned());
            if done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no 'listening on'; {lines:?}"));
        if line.starts_with("listening on http://") {
            break;
        }
        lines.push(line);
    }
    // Each "# <status> ..." comment is followed by the command that answers it.
    let mut checked = Vec::new();
    for pair in lines.windows(2) {
        let Some(expect) = pair[0].strip_prefix("# ").and_then(|c| c.get(..3)).filter(|s| s.parse::<u16>().is_ok())
        else {
            continue;
        };
        let got = example::run_printed(&pair[1]).await;
        if pair[1].starts_with("for ") {
            assert_eq!(got, ["200", "200", "200", "429", "429"], "{}", pair[1]);
        } else {
            assert_eq!(got, [expect], "{}", pair[1]);
        }
        checked.push(expect.to_owned());
    }
    assert_eq!(checked, ["200", "403", "403", "429"], "{lines:?}");

    // The table holds the key's hash, not the key.
    let acme = lines.iter().find(|l| l.starts_with("acme")).and_then(|l| l.split("x-api-key: ").nth(1)).unwrap();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let row: (String, String) =
        sqlx::query_as("SELECT api_key_sha256, name FROM tup_example.customers WHERE id = 'acme'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(row.0, KeyHash::of(acme).to_hex());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_memberships_cannot_put_a_key_in_two_plans_of_one_stage() {
    for db in databases("concurrent_memberships_cannot_put_a_key_in_two_plans_of_one_stage").await {
        let s = &db.store;
        for round in 0..10 {
            let (a, b, key) = (format!("a{round}"), format!("b{round}"), format!("k{round}"));
            for p in [&a, &b] {
                s.put_plan(&UsagePlan::new(p.as_str()).stage(PlanStage::new("api", "prod"))).await.unwrap();
            }
            s.create_key(ApiKey::new(key.as_str())).await.unwrap();
            let (s1, s2) = (s.clone(), s.clone());
            let (k1, k2, a2, b2) = (key.clone(), key.clone(), a.clone(), b.clone());
            let one = tokio::spawn(async move { s1.add_key_to_plan(&k1, &a2).await });
            let two = tokio::spawn(async move { s2.add_key_to_plan(&k2, &b2).await });
            let results = [one.await.unwrap(), two.await.unwrap()];
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "{}: round {round}: {results:?}", db.name);
            let plans = s.get_key(&key).await.unwrap().unwrap().plan_ids().len();
            assert_eq!(plans, 1, "{}", db.name);
        }
    }
}

#[tokio::test]
async fn changes_made_through_the_store_reach_the_layer_on_the_next_request() {
    for db in databases("changes_made_through_the_store_reach_the_layer").await {
        let s = &db.store;
        s.put_plan(&daily("trial", 100)).await.unwrap();
        let value = s.create_key(ApiKey::new("k").plan("trial")).await.unwrap();
        // The layer caches answers for a minute; changes through the store do not wait for it.
        let layer = UsagePlanLayer::builder(CachedKeyStore::new(s.clone()))
            .stage(Stage::new("petstore", "prod"))
            .clock(clock())
            .key_cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        let svc = service(&layer);
        assert_eq!(get(&svc, "/pets", Some(value.expose())).await.status, 200, "{}", db.name);
        s.set_key_enabled("k", false).await.unwrap();
        forbidden(&get(&svc, "/pets", Some(value.expose())).await);
        s.set_key_enabled("k", true).await.unwrap();
        assert_eq!(get(&svc, "/pets", Some(value.expose())).await.status, 200, "{}", db.name);
        s.remove_key_from_plan("k", "trial").await.unwrap();
        forbidden(&get(&svc, "/pets", Some(value.expose())).await);
    }
}

//! A store changed while serving can be persisted: its configuration, written as JSON or TOML,
//! reads back into an equal configuration, and a store loaded from it answers as the old one.

use std::time::{Duration, UNIX_EPOCH};
use tower_usage_plans::{
    import, ApiKey, Config, InMemoryKeyStore, KeySecret, PlanStage, Quota, QuotaPeriod, Throttle, UsagePlan,
};

const FILE: &str = r#"
[stage]
api = "petstore"
name = "prod"
throttle = { rate = 100.0, burst = 50 }
methods = { "/pets/{petId}/GET" = { rate = 10.0, burst = 5 } }
public_methods = ["/health/GET"]

[account]
throttle = { rate = 1000.0, burst = 500 }

[[plans]]
id = "free"
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "old"
value = "old-0123456789abcdefghij"
plans = ["free"]
previous_values = [{ value = "older-0123456789abcdefghij", until = "2099-01-01T00:00:00Z" }]

[[keys]]
id = "gone"
value = "gone-0123456789abcdefghij"
"#;

fn secret(s: &str) -> KeySecret {
    KeySecret::new(s).unwrap()
}

/// A store after one of each live change.
fn changed_store() -> InMemoryKeyStore {
    let store = InMemoryKeyStore::from_toml_str(FILE).unwrap();
    let gold = UsagePlan::new("gold")
        .with_name("Gold")
        .with_description("for \"big\" customers")
        .with_throttle(Throttle::new(0.5, 2).unwrap())
        .with_quota(Quota::new(1000, QuotaPeriod::Month).unwrap().with_offset(10).unwrap())
        .with_created(UNIX_EPOCH + Duration::new(1_793_491_200, 250_000_000))
        .with_product_code("prod-9")
        .tag("tier", "gold")
        .stage(
            PlanStage::new("petstore", "prod")
                .method_throttle("/orders/{orderId}/items/{item}/DELETE", Throttle::new(1.0, 1).unwrap())
                .unwrap(),
        );
    store.put_plan(gold).unwrap();
    store.create_plan(UsagePlan::new("staging").stage(PlanStage::new("petstore", "staging"))).unwrap();
    let free = store.update_plan("free", |p| Ok::<_, tower_usage_plans::ConfigError>(p.tag("tier", "free"))).unwrap();
    assert_eq!(free.tags()["tier"], "free");
    let key = ApiKey::new("new")
        .with_name("New key")
        .with_customer_id("acme")
        .with_expires(UNIX_EPOCH + Duration::from_secs(4_070_908_800))
        .tag("team", "billing")
        .plan("gold");
    store.create_key(key, secret("new-0123456789abcdefghij")).unwrap();
    let new = store.update_key("new", |k| Ok::<_, tower_usage_plans::ConfigError>(k.with_description("soon"))).unwrap();
    assert!(new.last_updated().is_some());
    store.set_key_enabled("old", false).unwrap();
    store.add_key_to_plan("new", "staging").unwrap();
    store.remove_key_from_plan("old", "free").unwrap();
    store.delete_key("gone").unwrap();
    let csv = "Name,Key,UsagePlanIds\nalice,alice-0123456789abcdefghij,free\n";
    store.import_keys(import::parse_api_keys_csv(csv).unwrap()).unwrap();
    store
}

#[test]
fn a_changed_store_round_trips_through_json_and_toml() {
    let config = changed_store().config();
    // The changes are all there (last_updated and created were set to now, with nanoseconds).
    assert_eq!(config.plans().len(), 3);
    assert_eq!(config.keys().len(), 3);
    assert_eq!(config.previous_values().len(), 1);
    assert!(config.keys().iter().all(|(_, k)| k.id() == "old" || k.last_updated().is_some()));

    let json = config.to_json_string();
    assert_eq!(Config::from_json_str(&json).unwrap(), config, "{json}");
    let toml = config.to_toml_string();
    assert_eq!(Config::from_toml_str(&toml).unwrap(), config, "{toml}");
    let back = Config::from_toml_str(&toml).unwrap();
    assert_eq!(
        (back.stage(), back.plans(), back.keys(), back.previous_values()),
        (config.stage(), config.plans(), config.keys(), config.previous_values())
    );
}

#[test]
fn a_reloaded_store_answers_as_the_changed_one() {
    let store = changed_store();
    let dir = std::env::temp_dir().join(format!("usage-plans-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in
        [("plans.json", store.config().to_json_string()), ("plans.toml", store.config().to_toml_string())]
    {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let reloaded = InMemoryKeyStore::from_path(&path).unwrap();
        assert_eq!(reloaded.config(), store.config());
        assert_eq!(reloaded.len(), store.len());
        for value in ["old-0123456789abcdefghij", "older-0123456789abcdefghij", "new-0123456789abcdefghij"] {
            assert_eq!(reloaded.get(value).map(|r| r.key().clone()), store.get(value).map(|r| r.key().clone()));
        }
        assert!(reloaded.get("gone-0123456789abcdefghij").is_none());
        assert!(reloaded.get("alice-0123456789abcdefghij").is_some_and(|r| r.plans()[0].id() == "free"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

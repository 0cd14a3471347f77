use super::*;
use crate::{import, ConfigErrorKind, PlanStage, Throttle};

fn store() -> InMemoryKeyStore {
    let store = InMemoryKeyStore::from_toml_str(
        "[stage]\napi = \"a\"\nname = \"b\"\n[[plans]]\nid = \"p\"\nstages = [{ api = \"a\", stage = \"b\" }]\n\
         [[plans]]\nid = \"q\"\nstages = [{ api = \"a\", stage = \"b\" }]\n\
         [[keys]]\nid = \"k\"\nvalue = \"k-0123456789abcdefghij\"\nplans = [\"p\"]",
    )
    .unwrap();
    assert_eq!(store.len(), 1);
    store
}

fn generation(store: &InMemoryKeyStore) -> u64 {
    store.invalidation().unwrap().generation()
}

#[test]
fn update_plan_is_atomic_and_keeps_the_id() {
    let store = store();
    let g = generation(&store);
    let plan = store.update_plan("p", |p| Ok::<_, ConfigError>(p.with_throttle(Throttle::new(2.0, 3)?))).unwrap();
    assert_eq!(plan.throttle(), Some(Throttle::new(2.0, 3).unwrap()));
    assert_eq!(store.get("k-0123456789abcdefghij").unwrap().plans()[0].throttle(), plan.throttle());
    assert_eq!(generation(&store), g + 1);

    let before = store.config().plans().to_vec();
    let e = store.update_plan("p", |_| Ok::<_, ConfigError>(UsagePlan::new("other"))).unwrap_err();
    assert_eq!(e.to_string(), "plan_id: a plan's id cannot be changed");
    let e = store.update_plan("nope", Ok::<_, ConfigError>).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::UnknownReference);
    // A result that fails the file checks (a bad method key) changes nothing.
    let e = store
        .update_plan("p", |p| {
            let mut stage = PlanStage::new("a", "b");
            stage.methods_mut().push(("/x/{a}/GET".parse()?, Throttle::new(1.0, 1)?));
            stage.methods_mut().push(("/x/{b+}/GET".parse()?, Throttle::new(1.0, 1)?));
            Ok::<_, ConfigError>(p.stage(stage))
        })
        .unwrap_err();
    assert!(e.field().starts_with("plans[0].stages"), "{e}");
    assert_eq!(store.config().plans(), &before[..]);
    assert_eq!(generation(&store), g + 1);
}

#[test]
fn update_key_stamps_last_updated() {
    let store = store();
    let key = store.update_key("k", |k| Ok::<_, ConfigError>(k.with_name("renamed"))).unwrap();
    assert_eq!(key.name(), "renamed");
    assert!(key.last_updated().is_some());
    assert_eq!(store.get("k-0123456789abcdefghij").unwrap().key(), &key);
    assert!(store.update_key("k", |k| Ok::<_, ConfigError>(ApiKey::new("x").with_name(k.name()))).is_err());
    store.set_key_enabled("k", false).unwrap();
    assert!(store.config().keys()[0].1.last_updated() >= key.last_updated());
}

#[test]
fn create_plan_refuses_an_existing_id() {
    let store = store();
    assert_eq!(store.create_plan(UsagePlan::new("p")).unwrap_err().kind(), ConfigErrorKind::Duplicate);
    store.create_plan(UsagePlan::new("r")).unwrap();
    assert_eq!(store.config().plans().len(), 3);
}

#[test]
fn import_keys_is_all_or_nothing() {
    let store = store();
    let g = generation(&store);
    let csv = "Name,Key,UsagePlanIds\na,a-0123456789abcdefghij,q\nb,b-0123456789abcdefghij,gold\n";
    let e = store.import_keys(import::parse_api_keys_csv(csv).unwrap()).unwrap_err();
    assert_eq!(e.to_string(), r#"line 3, column UsagePlanIds: no plan has the id "gold""#);
    assert_eq!((store.len(), generation(&store)), (1, g));
    // A value an existing key has.
    let csv = "Name,Key\na,k-0123456789abcdefghij\n";
    let e = store.import_keys(import::parse_api_keys_csv(csv).unwrap()).unwrap_err();
    assert_eq!(e.to_string(), "line 2, column Key: the same value as keys[0]");

    let csv = "Name,Key,UsagePlanIds\na,a-0123456789abcdefghij,q\nb,b-0123456789abcdefghij,\n";
    let ids = store.import_keys(import::parse_api_keys_csv(csv).unwrap()).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(generation(&store), g + 1);
    let a = store.get("a-0123456789abcdefghij").unwrap();
    assert_eq!((a.key().id(), a.key().name()), (ids[0].as_str(), "a"));
    assert_eq!(a.plans()[0].id(), "q");
    assert!(a.key().created().is_some());
}

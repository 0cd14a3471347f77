//! Keys with a prefix and a checksum, through the layer: a mistyped prefixed key is refused
//! before the key cache and the store; valid prefixed keys and keys without a prefix are looked up.

mod common;

use common::{clock, get, service};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tower_usage_plans::keys;
use tower_usage_plans::{
    ApiKey, ConfigErrorKind, KeyRecord, KeyStore, PlanStage, Rejection, RejectionKind, Stage, StoreError, UsagePlan,
    UsagePlanLayer,
};

/// A store standing in for a database: counts its lookups.
#[derive(Debug, Default)]
struct Db {
    keys: Mutex<HashMap<String, KeyRecord>>,
    lookups: AtomicU64,
}

impl KeyStore for Db {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.keys.lock().unwrap().get(presented).cloned())
    }
}

fn record(id: &str) -> KeyRecord {
    let plan = Arc::new(UsagePlan::new("p").stage(PlanStage::new("petstore", "prod")));
    KeyRecord::new(ApiKey::new(id).plan("p"), vec![plan])
}

/// `value` with the character at `at` replaced by another base62 character.
fn mistyped(value: &str, at: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_mistyped_prefixed_key_is_refused_without_a_lookup_and_valid_keys_are_looked_up() {
    let live = keys::generate_with_prefix("sk_live_").unwrap();
    let test = keys::generate_with_prefix("sk_test_").unwrap();
    let imported = common::key("imported");
    let db = Arc::new(Db::default());
    for (value, id) in [(live.expose(), "live"), (test.expose(), "test"), (imported.as_str(), "imported")] {
        db.keys.lock().unwrap().insert(value.to_owned(), record(id));
    }
    let layer = UsagePlanLayer::builder(Arc::clone(&db))
        .stage(Stage::new("petstore", "prod"))
        .clock(clock())
        .key_prefixes(["sk_live_", "sk_test_"])
        .build()
        .unwrap();
    let svc = service(&layer);

    // Mistyped in the random part, in the checksum, truncated, and a made-up value: 403, no lookup.
    let v = live.expose();
    let bad = [mistyped(v, 10), mistyped(v, v.len() - 1), v[..v.len() - 1].to_owned(), "sk_test_guess".repeat(4)];
    for value in &bad {
        let r = get(&svc, "/pets", Some(value)).await;
        common::forbidden(&r);
        assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::MalformedKey);
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 0);
    let stats = layer.key_cache_stats();
    assert_eq!((stats.store_lookups, stats.cached_keys), (0, 0), "{stats:?}");

    // A correct prefixed key in the store, for either prefix: 200, one lookup each.
    assert_eq!(get(&svc, "/pets", Some(live.expose())).await.status, 200);
    assert_eq!(get(&svc, "/pets", Some(test.expose())).await.status, 200);
    assert_eq!(db.lookups.load(Ordering::SeqCst), 2);
    // A key without any of the prefixes (imported): looked up as before.
    assert_eq!(get(&svc, "/pets", Some(&imported)).await.status, 200);
    assert_eq!(db.lookups.load(Ordering::SeqCst), 3);
    // An unknown value without a prefix, and a well-formed prefixed key not in the store: asked.
    let unknown = keys::generate_with_prefix("sk_live_").unwrap();
    for value in [common::key("nobody").as_str(), unknown.expose()] {
        let r = get(&svc, "/pets", Some(value)).await;
        assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::UnknownKey);
    }
    assert_eq!(db.lookups.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn without_prefixes_a_mistyped_prefixed_key_is_looked_up_as_any_other() {
    let live = keys::generate_with_prefix("sk_live_").unwrap();
    let db = Arc::new(Db::default());
    db.keys.lock().unwrap().insert(live.expose().to_owned(), record("live"));
    let layer =
        UsagePlanLayer::builder(Arc::clone(&db)).stage(Stage::new("petstore", "prod")).clock(clock()).build().unwrap();
    let svc = service(&layer);
    let r = get(&svc, "/pets", Some(&mistyped(live.expose(), 10))).await;
    assert_eq!(r.extensions.get::<Rejection>().unwrap().kind(), RejectionKind::UnknownKey);
    assert_eq!(db.lookups.load(Ordering::SeqCst), 1);
}

#[test]
fn a_bad_prefix_is_refused_at_build_naming_it() {
    let e = UsagePlanLayer::builder(Db::default())
        .stage(Stage::new("petstore", "prod"))
        .key_prefixes(["sk_live_", "sk live"])
        .build()
        .unwrap_err();
    assert_eq!((e.kind(), e.field()), (ConfigErrorKind::Invalid, "key_prefixes[1]"));
}

//! Members and routes beyond API Gateway's: a key's own limits on the `ApiKey` shape, a plan's
//! `concurrency`, and `/customers`, over every store.

use crate::{take_recent, Backend, Harness};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

const BAD: &str = "BadRequestException";
const NOT_FOUND: &str = "NotFoundException";
const CONFLICT: &str = "ConflictException";

per_store!(keys_carry_their_own_limits, plans_carry_concurrency, customers_crud, bad_members_name_the_field);

/// `v` without its dates (checked recent).
fn undated(mut v: Value) -> Value {
    take_recent(&mut v, "createdDate");
    take_recent(&mut v, "lastUpdatedDate");
    v
}

async fn keys_carry_their_own_limits(b: Backend) {
    let h = Harness::new(b).await;
    let body = r#"{"name": "Dora", "enabled": true, "value": "dora-0123456789abcdefghij",
        "throttle": {"rateLimit": 5.0, "burstLimit": 2},
        "quota": {"limit": 100, "period": "MONTH", "offset": 1},
        "methodThrottles": {"/pets/GET": {"rateLimit": 1.5, "burstLimit": 3}},
        "concurrency": 3, "quotaAnchor": "2026-01-31T09:30:00Z"}"#;
    let mut created = undated(h.call("POST", "/apikeys", body).await.expect(201));
    let id = created["id"].as_str().unwrap().to_owned();
    created.as_object_mut().unwrap().remove("value");
    let limits = json!({
        "throttle": {"rateLimit": 5.0, "burstLimit": 2},
        "quota": {"limit": 100, "period": "MONTH", "offset": 1},
        "methodThrottles": {"/pets/GET": {"rateLimit": 1.5, "burstLimit": 3}},
        "concurrency": 3, "quotaAnchor": "2026-01-31T09:30:00Z"});
    let mut want = json!({"id": id, "name": "Dora", "enabled": true});
    want.as_object_mut().unwrap().extend(limits.as_object().unwrap().clone());
    assert_eq!(created, want);
    assert_eq!(undated(h.get(&format!("/apikeys/{id}")).await), want, "GetApiKey shows them");
    let listed = h.get("/apikeys?name=Dora").await;
    assert_eq!(undated(listed["item"][0].clone()), want, "GetApiKeys shows them");

    // The layer's lookup gets them.
    let record = h.store.lookup("dora-0123456789abcdefghij").await.unwrap();
    let key = record.key();
    assert_eq!(key.throttle().map(|t| (t.rate(), t.burst())), Some((5.0, 2)));
    assert_eq!(key.quota().map(|q| (q.limit(), q.offset())), Some((100, 1)));
    let methods = key.method_throttles().unwrap();
    assert_eq!((methods[0].0.to_string(), methods[0].1.burst()), ("/pets/GET".to_owned(), 3));
    assert_eq!(key.concurrency().map(|n| n.get()), Some(3));
    let anchor = key.quota_anchor().unwrap().to_system_time();
    assert_eq!(anchor, UNIX_EPOCH + Duration::from_secs(1_769_851_800));

    // UpdateApiKey patches them, all checked once applied.
    let patch = r#"{"patchOperations": [
        {"op": "replace", "path": "/throttle/burstLimit", "value": "4"},
        {"op": "remove", "path": "/quota"},
        {"op": "replace", "path": "/concurrency", "value": "7"},
        {"op": "replace", "path": "/quotaAnchor", "value": "2026-02-28T00:00:00Z"},
        {"op": "remove", "path": "/methodThrottles/~1pets/GET"},
        {"op": "replace", "path": "/methodThrottles/~1pets~1{petId}/DELETE/rateLimit", "value": "0.5"},
        {"op": "replace", "path": "/methodThrottles/~1pets~1{petId}/DELETE/burstLimit", "value": "1"}]}"#;
    let updated = undated(h.call("PATCH", &format!("/apikeys/{id}"), patch).await.expect(200));
    let want = json!({"id": id, "name": "Dora", "enabled": true,
        "throttle": {"rateLimit": 5.0, "burstLimit": 4},
        "methodThrottles": {"/pets/{petId}/DELETE": {"rateLimit": 0.5, "burstLimit": 1}},
        "concurrency": 7, "quotaAnchor": "2026-02-28T00:00:00Z"});
    assert_eq!(updated, want);
    assert_eq!(undated(h.get(&format!("/apikeys/{id}")).await), want);

    // Removing the last own method throttle leaves none (`{}`); removing the list, the plan's.
    let patch = r#"{"patchOperations": [{"op": "remove", "path": "/methodThrottles/~1pets~1{petId}/DELETE"}]}"#;
    let updated = h.call("PATCH", &format!("/apikeys/{id}"), patch).await.expect(200);
    assert_eq!(updated["methodThrottles"], json!({}));
    assert_eq!(h.store.key(&id).await.unwrap().method_throttles().map(<[_]>::len), Some(0));
    let patch = r#"{"patchOperations": [{"op": "remove", "path": "/methodThrottles"},
        {"op": "remove", "path": "/throttle"}, {"op": "remove", "path": "/concurrency"},
        {"op": "remove", "path": "/quotaAnchor"}]}"#;
    let updated = undated(h.call("PATCH", &format!("/apikeys/{id}"), patch).await.expect(200));
    assert_eq!(updated, json!({"id": id, "name": "Dora", "enabled": true}), "unset members are omitted");
    let key = h.store.lookup("dora-0123456789abcdefghij").await.unwrap().key().clone();
    assert_eq!((key.throttle(), key.quota(), key.concurrency(), key.quota_anchor()), (None, None, None, None));
    assert!(key.method_throttles().is_none());
}

async fn plans_carry_concurrency(b: Backend) {
    let h = Harness::new(b).await;
    let created = h
        .call(
            "POST",
            "/usageplans",
            r#"{"name": "Capped", "concurrency": 4, "apiStages": [{"apiId": "a", "stage": "b"}]}"#,
        )
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["concurrency"], 4);
    assert_eq!(h.get(&format!("/usageplans/{id}")).await["concurrency"], 4);
    assert_eq!(h.store.plan(&id).await.unwrap().concurrency().map(|n| n.get()), Some(4));
    let patch = r#"{"patchOperations": [{"op": "replace", "path": "/concurrency", "value": "2"}]}"#;
    assert_eq!(h.call("PATCH", &format!("/usageplans/{id}"), patch).await.expect(200)["concurrency"], 2);
    let patch = r#"{"patchOperations": [{"op": "remove", "path": "/concurrency"}]}"#;
    let plan = h.call("PATCH", &format!("/usageplans/{id}"), patch).await.expect(200);
    assert!(plan.get("concurrency").is_none(), "{plan}");
    assert_eq!(h.store.plan(&id).await.unwrap().concurrency(), None);
    // A plan without one shows none.
    assert!(h.get("/usageplans/gold").await.get("concurrency").is_none());
}

async fn customers_crud(b: Backend) {
    let h = Harness::new(b).await;
    assert_eq!(h.get("/customers").await, json!({"item": []}));
    let body = r#"{"id": "acme", "name": "Acme Corp", "throttle": {"rateLimit": 10, "burstLimit": 20},
        "quota": {"limit": 4, "period": "DAY"}, "concurrency": 2, "quotaAnchor": "2026-01-31T09:30:00Z"}"#;
    let acme = json!({"id": "acme", "name": "Acme Corp", "throttle": {"rateLimit": 10.0, "burstLimit": 20},
        "quota": {"limit": 4, "offset": 0, "period": "DAY"}, "concurrency": 2, "quotaAnchor": "2026-01-31T09:30:00Z"});
    assert_eq!(h.call("POST", "/customers", body).await.expect(201), acme);
    assert_eq!(h.get("/customers/acme").await, acme);
    assert_eq!(h.call("POST", "/customers", r#"{"id": "beta"}"#).await.expect(201), json!({"id": "beta"}));
    assert_eq!(h.get("/customers").await, json!({"item": [acme, {"id": "beta"}]}));
    assert_eq!(h.get("/customers?limit=1").await, json!({"item": [acme], "position": "beta"}));
    assert_eq!(h.get("/customers?limit=1&position=beta").await, json!({"item": [{"id": "beta"}]}));

    // Key k1 (customerId acme) gets its customer from the store.
    let record = h.store.lookup(crate::K1).await.unwrap();
    let customer = record.customer().expect("k1's customer");
    assert_eq!((customer.id(), customer.quota().map(|q| q.limit())), ("acme", Some(4)));
    assert!(h.store.lookup(crate::K2).await.unwrap().customer().is_none(), "k2 names no customer");

    // PUT replaces it whole (members left out are unset), or creates one.
    let put = h.call("PUT", "/customers/acme", r#"{"quota": {"limit": 9, "period": "WEEK"}}"#).await.expect(200);
    assert_eq!(put, json!({"id": "acme", "quota": {"limit": 9, "offset": 0, "period": "WEEK"}}));
    assert_eq!(h.get("/customers/acme").await, put);
    let record = h.store.lookup(crate::K1).await.unwrap();
    assert_eq!(record.customer().and_then(|c| c.quota()).map(|q| q.limit()), Some(9));
    assert_eq!(h.call("PUT", "/customers/gamma", r#"{"id": "gamma"}"#).await.expect(200), json!({"id": "gamma"}));

    assert_eq!(h.call("DELETE", "/customers/acme", "").await.status.as_u16(), 202);
    h.refused("GET", "/customers/acme", "", 404, NOT_FOUND, "Invalid Customer identifier specified").await;
    h.refused("DELETE", "/customers/acme", "", 404, NOT_FOUND, "Invalid Customer identifier specified").await;
    let record = h.store.lookup(crate::K1).await.unwrap();
    assert!(record.customer().is_none(), "a deleted customer's keys lose its limits");
    assert_eq!(record.key().customer_id(), Some("acme"), "and keep their customerId");
    h.refused("POST", "/customers", r#"{"id": "beta"}"#, 409, CONFLICT, "id: a customer already has the id \"beta\"")
        .await;
}

async fn bad_members_name_the_field(b: Backend) {
    let h = Harness::new(b).await;
    h.call("POST", "/customers", r#"{"id": "acme"}"#).await.expect(201);
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "POST",
            "/apikeys",
            r#"{"throttle": {"rateLimit": 1, "burstLimit": 0}}"#,
            "throttle.burstLimit: must be at least 1",
        ),
        ("POST", "/apikeys", r#"{"throttle": {"rateLimit": 1}}"#, "throttle.burstLimit: is required in a throttle"),
        (
            "POST",
            "/apikeys",
            r#"{"quota": {"limit": 5, "period": "YEAR"}}"#,
            "quota.period: must be DAY, WEEK or MONTH",
        ),
        (
            "POST",
            "/apikeys",
            r#"{"quota": {"limit": 5, "period": "DAY", "offset": 5}}"#,
            "quota.offset: must be less than the limit",
        ),
        ("POST", "/apikeys", r#"{"concurrency": 0}"#, "concurrency: must be at least 1, got 0"),
        ("POST", "/apikeys", r#"{"concurrency": 4294967296}"#, "concurrency: must be at most 4294967295"),
        ("POST", "/apikeys", r#"{"concurrency": "3"}"#, "concurrency: must be a whole number"),
        ("POST", "/apikeys", r#"{"quotaAnchor": "tomorrow"}"#, "quotaAnchor: must be an RFC 3339 time"),
        ("POST", "/apikeys", r#"{"quotaAnchor": 1769851800}"#, "quotaAnchor: must be a string"),
        (
            "POST",
            "/apikeys",
            r#"{"methodThrottles": {"/pets/GET": {"rateLimit": 1}}}"#,
            "methodThrottles.\"/pets/GET\".burstLimit: is required in a throttle",
        ),
        (
            "POST",
            "/apikeys",
            r#"{"methodThrottles": {"pets": {"rateLimit": 1, "burstLimit": 1}}}"#,
            "methodThrottles.\"pets\"",
        ),
        ("POST", "/apikeys", r#"{"methodThrottles": []}"#, "methodThrottles: must be an object"),
        ("POST", "/usageplans", r#"{"name": "P", "concurrency": -1}"#, "concurrency: must be at least 1, got -1"),
        (
            "PATCH",
            "/usageplans/gold",
            r#"{"patchOperations": [{"op": "replace", "path": "/concurrency", "value": "0"}]}"#,
            "concurrency: must be at least 1, got 0",
        ),
        (
            "PATCH",
            "/apikeys/k1",
            r#"{"patchOperations": [{"op": "replace", "path": "/concurrency", "value": "0"}]}"#,
            "concurrency: must be at least 1, got 0",
        ),
        (
            "PATCH",
            "/apikeys/k1",
            r#"{"patchOperations": [{"op": "replace", "path": "/throttle/rateLimit", "value": "2"}]}"#,
            "throttle.burstLimit: is required in a throttle",
        ),
        (
            "PATCH",
            "/apikeys/k1",
            r#"{"patchOperations": [{"op": "replace", "path": "/quotaAnchor", "value": "soon"}]}"#,
            "quotaAnchor: must be an RFC 3339 time",
        ),
        (
            "PATCH",
            "/apikeys/k1",
            r#"{"patchOperations": [{"op": "replace", "path": "/concurrency", "value": "many"}]}"#,
            "patchOperations[0].value: must be a whole number for '/concurrency'",
        ),
        ("POST", "/customers", r#"{"name": "No id"}"#, "id: is required"),
        (
            "POST",
            "/customers",
            r#"{"id": "c", "quota": {"limit": 0, "period": "DAY"}}"#,
            "quota.limit: must be at least 1",
        ),
        ("POST", "/customers", r#"{"id": "c", "concurrency": 0}"#, "concurrency: must be at least 1, got 0"),
        ("POST", "/customers", r#"{"id": "c", "throttle": {"rateLimit": -1, "burstLimit": 1}}"#, "throttle.rateLimit"),
        ("PUT", "/customers/acme", r#"{"id": "other"}"#, "id: must be the id of the path, or absent"),
        (
            "PUT",
            "/customers/acme",
            r#"{"quotaAnchor": "2026-13-01T00:00:00Z"}"#,
            "quotaAnchor: must be an RFC 3339 time",
        ),
    ];
    for (method, path, body, message) in cases {
        h.refused(method, path, body, 400, BAD, message).await;
    }
    h.refused(
        "PATCH",
        "/apikeys/k1",
        r#"{"patchOperations": [{"op": "remove", "path": "/methodThrottles/~1pets/GET"}]}"#,
        404,
        NOT_FOUND,
        "The API key has no method throttle of its own for /pets/GET",
    )
    .await;
}

//! Usage plans and usage plan keys; GetUsage and UpdateUsage (not implemented yet); a change made
//! here reaches a layer on its next request.

use crate::{Backend, Harness, K1, K2};
use http::{Request, StatusCode};
use serde_json::json;
use std::convert::Infallible;
use std::time::{Duration, SystemTime};
use tower::{service_fn, Layer, ServiceExt};
use tower_usage_plans::{QuotaPeriod, Throttle};

per_store!(create_get_list_delete, patch_operations, usage_plan_keys, changes_reach_the_layer_on_its_next_request);

const GOLD: &str = r#"{"id": "gold", "name": "Gold", "apiStages": [{"apiId": "petstore", "stage": "prod",
    "throttle": {"/pets/GET": {"burstLimit": 10, "rateLimit": 5.0}}}],
    "throttle": {"burstLimit": 200, "rateLimit": 100.0}, "quota": {"limit": 1000, "offset": 0, "period": "DAY"}}"#;

async fn create_get_list_delete(b: Backend) {
    let h = Harness::new(b).await;
    let body = r#"{"name": "Platinum", "description": "For partners", "tags": {"tier": "platinum"},
        "throttle": {"rateLimit": 50.5, "burstLimit": 100},
        "quota": {"limit": 5000, "offset": 100, "period": "MONTH"},
        "apiStages": [{"apiId": "petstore", "stage": "prod",
                       "throttle": {"/pets/{petId}/DELETE": {"rateLimit": 1, "burstLimit": 2}}},
                      {"apiId": "other", "stage": "beta"}]}"#;
    let created = h.call("POST", "/usageplans", body).await.expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    let want = json!({"id": id, "name": "Platinum", "description": "For partners", "tags": {"tier": "platinum"},
        "throttle": {"rateLimit": 50.5, "burstLimit": 100},
        "quota": {"limit": 5000, "offset": 100, "period": "MONTH"},
        "apiStages": [{"apiId": "petstore", "stage": "prod",
                       "throttle": {"/pets/{petId}/DELETE": {"rateLimit": 1.0, "burstLimit": 2}}},
                      {"apiId": "other", "stage": "beta"}]});
    assert_eq!(created, want);
    let plan = h.store.plan(&id).await.unwrap();
    let age = SystemTime::now().duration_since(plan.created().unwrap()).unwrap();
    assert!(age < Duration::from_secs(60), "the plan's creation time is now");
    assert_eq!(plan.quota().unwrap().period(), QuotaPeriod::Month);
    assert_eq!(plan.stages()[0].methods()[0].1, Throttle::new(1.0, 2).unwrap());

    assert_eq!(h.get(&format!("/usageplans/{id}")).await, want);
    let gold: serde_json::Value = serde_json::from_str(GOLD).unwrap();
    assert_eq!(h.get("/usageplans/gold").await, gold);
    let all = h.get("/usageplans").await;
    let ids: Vec<&str> = all["item"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    let mut want_ids = vec!["gold", "silver", id.as_str()];
    want_ids.sort();
    assert_eq!(ids, want_ids);
    assert_eq!(h.get("/usageplans?keyId=k1").await, json!({"item": [gold]}));
    assert_eq!(h.get("/usageplans?keyId=k2").await, json!({"item": []}));
    assert_eq!(h.get("/usageplans?limit=1").await["position"], want_ids[1]);

    let reply = h.call("DELETE", "/usageplans/gold", "").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(h.store.plan("gold").await.is_none());
    assert!(h.store.lookup(K1).await.unwrap().plans().is_empty(), "its keys left it");
    assert!(h.store.key("k1").await.unwrap().plan_ids().is_empty());
}

async fn patch_operations(b: Backend) {
    let h = Harness::new(b).await;
    let ops = r#"{"patchOperations": [
        {"op": "replace", "path": "/name", "value": "Gold 2"},
        {"op": "replace", "path": "/description", "value": "Second edition"},
        {"op": "replace", "path": "/productCode", "value": "prod-123"},
        {"op": "replace", "path": "/throttle/rateLimit", "value": "50"},
        {"op": "replace", "path": "/throttle/burstLimit", "value": "60"},
        {"op": "replace", "path": "/quota/limit", "value": "5000"},
        {"op": "replace", "path": "/quota/period", "value": "WEEK"},
        {"op": "replace", "path": "/quota/offset", "value": "10"},
        {"op": "replace", "path": "/apiStages/petstore:prod/throttle/~1pets/GET/rateLimit", "value": "7"},
        {"op": "add", "path": "/apiStages/petstore:prod/throttle/~1pets~1{petId}/DELETE/rateLimit", "value": "1"},
        {"op": "add", "path": "/apiStages/petstore:prod/throttle/~1pets~1{petId}/DELETE/burstLimit", "value": "1"},
        {"op": "add", "path": "/apiStages", "value": "other:beta"}]}"#;
    let updated = h.call("PATCH", "/usageplans/gold", ops).await.expect(200);
    assert_eq!(
        updated,
        json!({"id": "gold", "name": "Gold 2", "description": "Second edition", "productCode": "prod-123",
            "apiStages": [{"apiId": "petstore", "stage": "prod", "throttle": {
                "/pets/GET": {"burstLimit": 10, "rateLimit": 7.0},
                "/pets/{petId}/DELETE": {"burstLimit": 1, "rateLimit": 1.0}}},
                {"apiId": "other", "stage": "beta"}],
            "throttle": {"burstLimit": 60, "rateLimit": 50.0},
            "quota": {"limit": 5000, "offset": 10, "period": "WEEK"}})
    );
    let plan = h.store.lookup(K1).await.unwrap().plans()[0].clone();
    assert_eq!((plan.name(), plan.throttle()), ("Gold 2", Some(Throttle::new(50.0, 60).unwrap())));

    let ops = r#"{"patchOperations": [
        {"op": "remove", "path": "/apiStages/petstore:prod/throttle/~1pets/GET"},
        {"op": "remove", "path": "/apiStages", "value": "other:beta"},
        {"op": "remove", "path": "/throttle"},
        {"op": "remove", "path": "/quota"}]}"#;
    let updated = h.call("PATCH", "/usageplans/gold", ops).await.expect(200);
    assert_eq!(
        updated["apiStages"],
        json!([{"apiId": "petstore", "stage": "prod", "throttle": {"/pets/{petId}/DELETE": {"burstLimit": 1, "rateLimit": 1.0}}}])
    );
    assert!(updated.get("throttle").is_none() && updated.get("quota").is_none(), "{updated}");
    let ops = r#"{"patchOperations": [{"op": "remove", "path": "/apiStages/petstore:prod/throttle"}]}"#;
    let updated = h.call("PATCH", "/usageplans/gold", ops).await.expect(200);
    assert_eq!(updated["apiStages"], json!([{"apiId": "petstore", "stage": "prod"}]));
    // No operations: the plan as it is.
    assert_eq!(h.call("PATCH", "/usageplans/gold", "{}").await.expect(200), updated);
}

async fn usage_plan_keys(b: Backend) {
    let h = Harness::new(b).await;
    let mut created =
        h.call("POST", "/usageplans/silver/keys", r#"{"keyId": "k2", "keyType": "API_KEY"}"#).await.expect(201);
    h.take_value(&mut created, K2);
    let want = json!({"id": "k2", "type": "API_KEY", "name": "Beta"});
    assert_eq!(created, want);
    assert_eq!(h.store.lookup(K2).await.unwrap().plans()[0].id(), "silver");
    let mut got = h.get("/usageplans/silver/keys/k2").await;
    h.take_value(&mut got, K2);
    assert_eq!(got, want);
    for path in ["/usageplans/silver/keys", "/usageplans/silver/keys?name=Be"] {
        let mut page = h.get(path).await;
        h.take_value(&mut page["item"][0], K2);
        assert_eq!(page, json!({"item": [want]}), "{path}");
    }
    assert_eq!(h.get("/usageplans/silver/keys?name=Zed").await, json!({"item": []}));

    let body = r#"{"keyId": "k2", "keyType": "API_KEY"}"#;
    h.refused(
        "POST",
        "/usageplans/silver/keys",
        body,
        409,
        "ConflictException",
        "The API key is already in the usage plan",
    )
    .await;
    // One plan per stage: k1 is in gold, on the same stage as silver.
    let body = r#"{"keyId": "k1", "keyType": "API_KEY"}"#;
    h.refused(
        "POST",
        "/usageplans/silver/keys",
        body,
        409,
        "ConflictException",
        "keyId: key \"k1\" is in plan \"gold\", bound to stage petstore/prod as plan \"silver\" is",
    )
    .await;
    h.refused(
        "POST",
        "/usageplans/silver/keys",
        r#"{"keyId": "k9", "keyType": "API_KEY"}"#,
        404,
        "NotFoundException",
        "Invalid API Key identifier specified",
    )
    .await;
    h.refused(
        "POST",
        "/usageplans/nope/keys",
        r#"{"keyId": "k2", "keyType": "API_KEY"}"#,
        404,
        "NotFoundException",
        "Invalid Usage Plan ID specified",
    )
    .await;
    h.refused(
        "POST",
        "/usageplans/silver/keys",
        r#"{"keyId": "k2", "keyType": "JWT"}"#,
        400,
        "BadRequestException",
        "keyType: must be API_KEY",
    )
    .await;
    h.refused(
        "POST",
        "/usageplans/silver/keys",
        r#"{"keyType": "API_KEY"}"#,
        400,
        "BadRequestException",
        "keyId: is required",
    )
    .await;
    h.refused(
        "GET",
        "/usageplans/gold/keys/k2",
        "",
        404,
        "NotFoundException",
        "Invalid Usage Plan Key identifier specified",
    )
    .await;
    h.refused("GET", "/usageplans/nope/keys", "", 404, "NotFoundException", "Invalid Usage Plan ID specified").await;

    let reply = h.call("DELETE", "/usageplans/silver/keys/k2", "").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(h.store.lookup(K2).await.unwrap().plans().is_empty());
    assert!(h.store.key("k2").await.is_some(), "the key itself stays");
    h.refused(
        "DELETE",
        "/usageplans/silver/keys/k2",
        "",
        404,
        "NotFoundException",
        "Invalid Usage Plan Key identifier specified",
    )
    .await;
}

async fn changes_reach_the_layer_on_its_next_request(b: Backend) {
    let h = Harness::new(b).await;
    let layer = h.store.layer();
    let svc = layer
        .layer(service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(http::Response::new(String::new())) }));
    let call = |key: &'static str| {
        let svc = svc.clone();
        async move {
            let req = Request::get("/pets").header("x-api-key", key).body(String::new()).unwrap();
            svc.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(call(K2).await, 403, "k2 is in no plan");
    h.call("POST", "/usageplans/silver/keys", r#"{"keyId": "k2", "keyType": "API_KEY"}"#).await.expect(201);
    assert_eq!(call(K2).await, 200);
    h.call("PATCH", "/apikeys/k2", r#"{"patchOperations": [{"op": "replace", "path": "/enabled", "value": "false"}]}"#)
        .await
        .expect(200);
    assert_eq!(call(K2).await, 403, "disabled");
}

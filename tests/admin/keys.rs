//! API keys: CreateApiKey, GetApiKey, GetApiKeys, UpdateApiKey, DeleteApiKey, ImportApiKeys.

use crate::{take_recent, Backend, Harness, K1, K2};
use serde_json::json;

per_store!(create_get_update_delete, list_filters_and_values, pages_walk_every_key_once, import_csv_all_or_nothing);

async fn create_get_update_delete(b: Backend) {
    let h = Harness::new(b).await;
    let body = r#"{"name": "Carol", "description": "Carol's CI", "enabled": true, "customerId": "carol",
                   "value": "carol-0123456789abcdefghij", "tags": {"team": "billing"}, "generateDistinctId": true}"#;
    let mut created = h.call("POST", "/apikeys", body).await.expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 10);
    take_recent(&mut created, "createdDate");
    take_recent(&mut created, "lastUpdatedDate");
    assert_eq!(
        created,
        json!({"id": id, "value": "carol-0123456789abcdefghij", "name": "Carol", "customerId": "carol",
               "description": "Carol's CI", "enabled": true, "tags": {"team": "billing"}})
    );
    let record = h.store.lookup("carol-0123456789abcdefghij").await.unwrap();
    assert_eq!((record.key().id(), record.key().is_enabled()), (id.as_str(), true));
    assert!(record.plans().is_empty());

    // Without a value: one is generated; without `enabled`: disabled, as API Gateway does.
    let mut bare = h.call("POST", "/apikeys", "{}").await.expect(201);
    let bare_id = bare["id"].as_str().unwrap().to_owned();
    let value = bare.as_object_mut().unwrap().remove("value").unwrap();
    assert_eq!(value.as_str().unwrap().len(), 40);
    take_recent(&mut bare, "createdDate");
    take_recent(&mut bare, "lastUpdatedDate");
    assert_eq!(bare, json!({"id": bare_id, "name": bare_id, "enabled": false}));
    assert!(!h.store.lookup(value.as_str().unwrap()).await.unwrap().key().is_enabled());

    // GetApiKey shows the value only with includeValue=true.
    let mut got = h.get(&format!("/apikeys/{id}")).await;
    assert!(got.get("value").is_none(), "{got}");
    take_recent(&mut got, "createdDate");
    take_recent(&mut got, "lastUpdatedDate");
    assert_eq!(got["name"], "Carol");
    let mut got = h.get(&format!("/apikeys/{id}?includeValue=true")).await;
    h.take_value(&mut got, "carol-0123456789abcdefghij");
    assert_eq!(got["name"], "Carol");
    // Keys from a file have no dates in memory: the members are left out.
    let want = json!({"id": "k1", "name": "Acme", "customerId": "acme", "enabled": true});
    let mut k1 = h.get("/apikeys/k1").await;
    h.take_load_date(&mut k1);
    assert_eq!(k1, want);
    let mut k1 = h.get("/apikeys/k1?includeValue=true").await;
    h.take_value(&mut k1, K1);
    h.take_load_date(&mut k1);
    assert_eq!(k1, want);

    let patch = r#"{"patchOperations": [
        {"op": "replace", "path": "/name", "value": "Carol Ltd"},
        {"op": "replace", "path": "/description", "value": ""},
        {"op": "replace", "path": "/enabled", "value": "false"},
        {"op": "replace", "path": "/customerId", "value": "carol-2"}]}"#;
    let mut updated = h.call("PATCH", &format!("/apikeys/{id}"), patch).await.expect(200);
    take_recent(&mut updated, "createdDate");
    take_recent(&mut updated, "lastUpdatedDate");
    assert_eq!(
        updated,
        json!({"id": id, "name": "Carol Ltd", "customerId": "carol-2", "enabled": false, "tags": {"team": "billing"}})
    );
    let key = h.store.lookup("carol-0123456789abcdefghij").await.unwrap().key().clone();
    assert!(!key.is_enabled());
    assert_eq!((key.name(), key.description(), key.customer_id()), ("Carol Ltd", None, Some("carol-2")));

    let reply = h.call("DELETE", &format!("/apikeys/{id}"), "").await;
    assert_eq!((reply.status.as_u16(), reply.body), (202, serde_json::Value::Null));
    assert!(h.store.lookup("carol-0123456789abcdefghij").await.is_none());
    assert!(h.store.key(&id).await.is_none());
    h.refused("GET", &format!("/apikeys/{id}"), "", 404, "NotFoundException", "Invalid API Key identifier specified")
        .await;
}

async fn list_filters_and_values(b: Backend) {
    let h = Harness::new(b).await;
    let mut page = h.get("/apikeys").await;
    for item in page["item"].as_array_mut().unwrap() {
        h.take_load_date(item);
    }
    assert_eq!(
        page,
        json!({"item": [
            {"id": "k1", "name": "Acme", "customerId": "acme", "enabled": true},
            {"id": "k2", "name": "Beta", "enabled": true}]})
    );
    let mut page = h.get("/apikeys?includeValues=true&name=Ac").await;
    assert_eq!(page["item"].as_array().unwrap().len(), 1);
    h.take_value(&mut page["item"][0], K1);
    assert_eq!(page["item"][0]["id"], "k1");
    let mut page = h.get("/apikeys?includeValues=true&name=Be").await;
    h.take_value(&mut page["item"][0], K2);
    assert_eq!(page["item"][0]["id"], "k2");
    let page = h.get("/apikeys?customerId=acme").await;
    assert_eq!(page["item"][0]["id"], "k1");
    assert_eq!(h.get("/apikeys?customerId=nobody").await, json!({"item": []}));
}

async fn pages_walk_every_key_once(b: Backend) {
    let h = Harness::new(b).await;
    for i in 0..7 {
        h.call("POST", "/apikeys", &format!(r#"{{"name": "page-{i}"}}"#)).await.expect(201);
    }
    let (mut seen, mut position, mut sizes) = (Vec::new(), None::<String>, Vec::new());
    loop {
        let path = match &position {
            Some(p) => format!("/apikeys?limit=4&position={p}"),
            None => "/apikeys?limit=4".to_owned(),
        };
        let page = h.get(&path).await;
        let items = page["item"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page.get("position") {
            Some(p) => position = Some(p.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [4, 4, 1]);
    let mut all: Vec<String> = h.store.keys().await.iter().map(|k| k.key().id().to_owned()).collect();
    all.sort();
    assert_eq!((seen, all.len()), (all, 9), "every key once, in id order");
    h.refused(
        "GET",
        "/apikeys?limit=501",
        "",
        400,
        "BadRequestException",
        "limit: must be a whole number from 1 to 500",
    )
    .await;
    h.refused("GET", "/apikeys?limit=0", "", 400, "BadRequestException", "limit:").await;
}

async fn import_csv_all_or_nothing(b: Backend) {
    let h = Harness::new(b).await;
    let csv = "Name,Key,Description,Enabled,UsagePlanIds\n\
               Dora,dora-0123456789abcdefghij,Imported,true,silver\n\
               Eve,eve-0123456789abcdefghijk,,false,\n";
    let reply = h.call("POST", "/apikeys?mode=import&format=csv&failonwarnings=true", csv).await.expect(201);
    let ids: Vec<&str> = reply["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!((ids.len(), &reply["warnings"]), (2, &json!([])));
    let dora = h.store.lookup("dora-0123456789abcdefghij").await.unwrap();
    assert_eq!((dora.key().id(), dora.key().name()), (ids[0], "Dora"));
    assert_eq!(dora.plans()[0].id(), "silver");
    assert!(dora.key().created().is_some());
    assert!(!h.store.lookup("eve-0123456789abcdefghijk").await.unwrap().key().is_enabled());

    let path = "/apikeys?mode=import&format=csv";
    let bad = "Name,Key,UsagePlanIds\nf,fred-0123456789abcdefghij,silver\ng,short,silver\n";
    h.refused("POST", path, bad, 400, "BadRequestException", "line 3, column Key: must be 20 to 128 characters long")
        .await;
    let unknown = "Name,Key,UsagePlanIds\nf,fred-0123456789abcdefghij,platinum\n";
    h.refused(
        "POST",
        path,
        unknown,
        404,
        "NotFoundException",
        r#"line 2, column UsagePlanIds: no plan has the id "platinum""#,
    )
    .await;
    let taken = format!("Name,Key\nf,fred-0123456789abcdefghij\ng,{K1}\n");
    h.refused("POST", path, &taken, 409, "ConflictException", r#"line 3, column Key: the same value as key "k1""#)
        .await;
    let two_plans = "Name,Key,UsagePlanIds\nf,fred-0123456789abcdefghij,\"gold,silver\"\n";
    h.refused("POST", path, two_plans, 409, "ConflictException", "line 2, column UsagePlanIds: plans").await;
    h.refused("POST", "/apikeys?mode=import", csv, 400, "BadRequestException", "format: must be csv").await;
    h.refused("POST", "/apikeys?mode=export&format=csv", csv, 400, "BadRequestException", "mode: must be import").await;
    h.refused("POST", &format!("{path}&failonwarnings=maybe"), csv, 400, "BadRequestException", "failonwarnings:")
        .await;
}

//! GetUsage and UpdateUsage over a layer's usage ledger.

use crate::{Backend, Harness, Store};
use http::Request;
use serde_json::json;
use tower::ServiceExt;
use tower_usage_plans::UsagePlanLayer;

per_store!(
    get_usage_answers_the_service_model_shape,
    update_usage_sets_what_the_next_requests_get,
    bad_usage_requests_change_nothing,
    usage_without_a_layer_is_a_clear_400,
    get_and_update_usage_follow_a_keys_own_quota,
);

struct Metered {
    h: Harness,
    layer: UsagePlanLayer,
}

/// The admin router over a fresh store of `backend`, with the usage of a layer (in-process
/// counters) over the same store.
async fn metered(backend: Backend) -> Metered {
    let store = Store::new(backend).await;
    let layer = store.layer();
    let usage = layer.usage();
    Metered { h: Harness::over(store, |r| r.usage(usage)), layer }
}

impl Metered {
    /// Data-plane requests with key value `value`; their statuses.
    async fn call(&self, value: &str, n: usize) -> Vec<u16> {
        let svc = tower::Layer::layer(
            &self.layer,
            tower::service_fn(|_r: Request<String>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }),
        );
        let mut out = Vec::new();
        for _ in 0..n {
            let req = Request::get("/pets").header("x-api-key", value).body(String::new()).unwrap();
            out.push(svc.clone().oneshot(req).await.unwrap().status().as_u16());
        }
        out
    }

    async fn remaining(&self) -> u64 {
        let plan = self.h.store.plan("gold").await.unwrap();
        self.layer.usage().quota(&plan, "k1").await.unwrap().unwrap().remaining
    }
}

fn day(offset_days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(offset_days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

async fn get_usage_answers_the_service_model_shape(b: Backend) {
    let m = metered(b).await;
    assert_eq!(m.call(crate::K1, 3).await, [200, 200, 200]);
    let (today, yesterday) = (day(0), day(-1));
    let body = m.h.get(&format!("/usageplans/gold/usage?startDate={yesterday}&endDate={today}")).await;
    assert_eq!(
        body,
        json!({"usagePlanId": "gold", "startDate": yesterday, "endDate": today, "values": {"k1": [[0, 1000], [3, 997]]}})
    );
    let body = m.h.get(&format!("/usageplans/gold/usage?keyId=k1&startDate={today}&endDate={today}")).await;
    assert_eq!(body["values"], json!({"k1": [[3, 997]]}));
    // A plan without quota: [used, -1]; a plan without keys: no values.
    m.h.store.add_key_to_plan("k2", "silver").await;
    assert_eq!(m.call(crate::K2, 2).await, [200, 200]);
    let body = m.h.get(&format!("/usageplans/silver/usage?startDate={today}&endDate={today}")).await;
    assert_eq!(body["values"], json!({"k2": [[2, -1]]}));
    // Pages of keys: `limit` keys a page, `position` the next key.
    m.h.store.remove_key_from_plan("k2", "silver").await;
    m.h.store.add_key_to_plan("k2", "gold").await;
    let url = format!("/usageplans/gold/usage?startDate={today}&endDate={today}&limit=1");
    let first = m.h.get(&url).await;
    assert_eq!((&first["values"], &first["position"]), (&json!({"k1": [[3, 997]]}), &json!("k2")));
    let second = m.h.get(&format!("{url}&position=k2")).await;
    assert_eq!(second["values"], json!({"k2": [[0, 1000]]}), "its silver usage is not gold's");
    assert!(second.get("position").is_none());
}

async fn update_usage_sets_what_the_next_requests_get(b: Backend) {
    let m = metered(b).await;
    assert_eq!(m.call(crate::K1, 3).await, [200, 200, 200]);
    let today = day(0);
    let body =
        m.h.call(
            "PATCH",
            "/usageplans/gold/keys/k1/usage",
            r#"{"patchOperations":[{"op":"replace","path":"/remaining","value":"2"}]}"#,
        )
        .await
        .expect(200);
    assert_eq!(body, json!({"usagePlanId": "gold", "startDate": today, "endDate": today, "values": {"k1": [[3, 2]]}}));
    assert_eq!(m.call(crate::K1, 3).await, [200, 200, 429]);
    let body = m.h.get(&format!("/usageplans/gold/usage?startDate={today}&endDate={today}")).await;
    assert_eq!(body["values"], json!({"k1": [[5, 0]]}));
    // A temporary extension beyond the limit (1000 a day), as API Gateway grants it.
    let body =
        m.h.call(
            "PATCH",
            "/usageplans/gold/keys/k1/usage",
            r#"{"patchOperations":[{"op":"replace","path":"/remaining","value":"1200"}]}"#,
        )
        .await
        .expect(200);
    assert_eq!(body["values"], json!({"k1": [[5, 1200]]}));
    assert_eq!(m.remaining().await, 1200);
}

async fn bad_usage_requests_change_nothing(b: Backend) {
    let m = metered(b).await;
    m.call(crate::K1, 3).await;
    let today = day(0);
    let h = &m.h;
    let bad = "BadRequestException";
    for (path, message) in [
        (format!("/usageplans/gold/usage?endDate={today}"), "startDate: is required"),
        (format!("/usageplans/gold/usage?startDate=2026-13-01&endDate={today}"), "startDate: must be a date"),
        (format!("/usageplans/gold/usage?startDate={today}&endDate={}", day(-1)), "endDate: is before startDate"),
        (format!("/usageplans/gold/usage?startDate={today}&endDate={today}&limit=0"), "limit:"),
    ] {
        h.refused("GET", &path, "", 400, bad, message).await;
    }
    // Dates outside 1970..=9999 (the date parser takes a sign) are refused, not a panic.
    h.refused(
        "GET",
        &format!("/usageplans/gold/usage?keyId=k1&startDate=-0001-01-01&endDate={today}"),
        "",
        400,
        bad,
        "startDate: dates go from 1970-01-01",
    )
    .await;
    let nf = "NotFoundException";
    h.refused(
        "GET",
        &format!("/usageplans/nope/usage?startDate={today}&endDate={today}"),
        "",
        404,
        nf,
        "Invalid Usage Plan ID specified",
    )
    .await;
    h.refused(
        "GET",
        &format!("/usageplans/gold/usage?keyId=nope&startDate={today}&endDate={today}"),
        "",
        404,
        nf,
        "Invalid API Key identifier specified",
    )
    .await;

    let op = |op: &str, path: &str, value: &str| {
        format!(r#"{{"patchOperations":[{{"op":"{op}","path":"{path}","value":"{value}"}}]}}"#)
    };
    let url = "/usageplans/gold/keys/k1/usage";
    h.refused("PATCH", url, "{not json", 400, bad, "").await;
    h.refused("PATCH", url, &op("replace", "/used", "1"), 400, bad, "Invalid patch path '/used'").await;
    h.refused(
        "PATCH",
        url,
        &op("add", "/remaining", "1"),
        400,
        bad,
        "Invalid patch path '/remaining' specified for op 'add'",
    )
    .await;
    h.refused(
        "PATCH",
        url,
        &op("replace", "/remaining", "-1"),
        400,
        bad,
        "patchOperations[0].value: must be a whole number",
    )
    .await;
    h.refused("PATCH", url, &op("replace", "/remaining", "lots"), 400, bad, "patchOperations[0].value").await;
    h.refused(
        "PATCH",
        url,
        &op("replace", "/remaining", "9999999999999"),
        400,
        bad,
        "remaining: 9999999999999 is more than",
    )
    .await;
    h.refused("PATCH", url, r#"{"patchOperations":[]}"#, 400, bad, "patchOperations: must hold exactly one").await;
    h.refused(
        "PATCH",
        "/usageplans/nope/keys/k1/usage",
        &op("replace", "/remaining", "1"),
        404,
        nf,
        "Invalid Usage Plan ID",
    )
    .await;
    h.refused(
        "PATCH",
        "/usageplans/gold/keys/nope/usage",
        &op("replace", "/remaining", "1"),
        404,
        nf,
        "Invalid API Key",
    )
    .await;
    h.refused(
        "PATCH",
        "/usageplans/gold/keys/k2/usage",
        &op("replace", "/remaining", "1"),
        404,
        nf,
        "Invalid Usage Plan Key",
    )
    .await;
    h.store.add_key_to_plan("k2", "silver").await;
    h.refused(
        "PATCH",
        "/usageplans/silver/keys/k2/usage",
        &op("replace", "/remaining", "1"),
        400,
        bad,
        "usage plan \"silver\" has no quota",
    )
    .await;
    assert_eq!(m.remaining().await, 997, "no refused call changed the quota");
}

async fn usage_without_a_layer_is_a_clear_400(b: Backend) {
    let h = Harness::new(b).await;
    let today = day(0);
    h.refused(
        "GET",
        &format!("/usageplans/gold/usage?startDate={today}&endDate={today}"),
        "",
        400,
        "BadRequestException",
        "Usage is not available here",
    )
    .await;
}

/// A key with its own quota (issue 16): GetUsage's `remaining` and UpdateUsage follow it, not
/// the plan's 1000 a day.
async fn get_and_update_usage_follow_a_keys_own_quota(b: Backend) {
    let m = metered(b).await;
    let body = r#"{"name": "Own", "enabled": true, "value": "own-0123456789abcdefghij",
        "quota": {"limit": 10, "period": "DAY"}}"#;
    let created = m.h.call("POST", "/apikeys", body).await.expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    m.h.call("POST", "/usageplans/gold/keys", &format!(r#"{{"keyId": "{id}", "keyType": "API_KEY"}}"#))
        .await
        .expect(201);
    assert_eq!(m.call("own-0123456789abcdefghij", 3).await, [200, 200, 200]);
    let today = day(0);
    let body = m.h.get(&format!("/usageplans/gold/usage?keyId={id}&startDate={today}&endDate={today}")).await;
    assert_eq!(body["values"][&id], json!([[3, 7]]), "{body}");
    let all = m.h.get(&format!("/usageplans/gold/usage?startDate={today}&endDate={today}")).await;
    assert_eq!(all["values"][&id], json!([[3, 7]]), "{all}");
    let patch = r#"{"patchOperations": [{"op": "replace", "path": "/remaining", "value": "2"}]}"#;
    let body = m.h.call("PATCH", &format!("/usageplans/gold/keys/{id}/usage"), patch).await.expect(200);
    assert_eq!(body["values"][&id], json!([[3, 2]]), "{body}");
    assert_eq!(m.call("own-0123456789abcdefghij", 3).await, [200, 200, 429]);
}

//! Bad input is refused in API Gateway's error shape and changes nothing; so is a caller without
//! credentials, before routing.

use crate::{Backend, Harness, K1, TOKEN};
use axum::body::Body;
use http::{Method, Request};
use std::time::SystemTime;
use tower_usage_plans::admin::AdminAuth;

const BAD: &str = "BadRequestException";
const NOT_FOUND: &str = "NotFoundException";
const CONFLICT: &str = "ConflictException";

per_store!(
    bad_api_key_requests,
    bad_usage_plan_requests,
    unknown_operations_get_aws_errors,
    oversized_bodies_are_bad_requests,
    callers_without_credentials_get_403_before_routing,
);

async fn bad_api_key_requests(b: Backend) {
    let h = Harness::new(b).await;
    let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
        ("POST", "/apikeys", "{\"name\": ", 400, BAD, "Invalid request body: not valid JSON (line 1, column 9)"),
        ("POST", "/apikeys", "[]", 400, BAD, "Invalid request body: expected a JSON object"),
        ("POST", "/apikeys", r#"{"enabled": "yes"}"#, 400, BAD, "enabled: must be true or false"),
        ("POST", "/apikeys", r#"{"name": 5}"#, 400, BAD, "name: must be a string"),
        ("POST", "/apikeys", r#"{"value": "short"}"#, 400, BAD, "value: must be 20 to 128 characters long, got 5"),
        ("POST", "/apikeys", &format!(r#"{{"value": "{K1}"}}"#), 409, CONFLICT, "value: this key value is already in use"),
        ("POST", "/apikeys", r#"{"stageKeys": [{"restApiId": "a", "stageName": "b"}]}"#, 400, BAD, "stageKeys: is not supported"),
        ("POST", "/apikeys", r#"{"tags": {"aws:owner": "x"}}"#, 400, BAD, "tags.\"aws:owner\": tag names starting with \"aws:\" are reserved"),
        ("POST", "/apikeys", r#"{"tags": {"team": 1}}"#, 400, BAD, "tags.\"team\": must be a string"),
        ("GET", "/apikeys/k9", "", 404, NOT_FOUND, "Invalid API Key identifier specified"),
        ("GET", "/apikeys/k1?includeValue=yes", "", 400, BAD, "includeValue: must be true or false"),
        ("DELETE", "/apikeys/k9", "", 404, NOT_FOUND, "Invalid API Key identifier specified"),
        ("PATCH", "/apikeys/k9", r#"{"patchOperations": []}"#, 404, NOT_FOUND, "Invalid API Key identifier specified"),
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "replace", "path": "/value", "value": "x"}]}"#, 400, BAD,
            "Invalid patch path '/value' specified for op 'replace'. Supported: replace /name, /description, /enabled, /customerId"),
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "add", "path": "/stages", "value": "a/b"}]}"#, 400, BAD,
            "Invalid patch path '/stages' specified for op 'add'"),
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "replace", "path": "/enabled", "value": "maybe"}]}"#, 400, BAD,
            "patchOperations[0].value: must be true or false for '/enabled'"),
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "replace", "path": "/name"}]}"#, 400, BAD,
            "patchOperations[0].value: is required for op 'replace' on '/name'"),
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "frob", "path": "/name"}]}"#, 400, BAD,
            "patchOperations[0].op: must be one of add, remove, replace, move, copy, test"),
        // The first operation is fine, the second is not: neither applies.
        ("PATCH", "/apikeys/k1", r#"{"patchOperations": [{"op": "replace", "path": "/name", "value": "New"},
            {"op": "copy", "from": "/name", "path": "/description"}]}"#, 400, BAD, "Invalid patch path '/description' specified for op 'copy'"),
    ];
    for (method, path, body, status, aws_type, message) in cases {
        h.refused(method, path, body, *status, aws_type, message).await;
    }
}

async fn bad_usage_plan_requests(b: Backend) {
    let h = Harness::new(b).await;
    let patch = |op: &str, path: &str, value: &str| {
        format!(r#"{{"patchOperations": [{{"op": "{op}", "path": "{path}", "value": "{value}"}}]}}"#)
    };
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        ("POST", "/usageplans", "{}".into(), 400, BAD, "name: is required"),
        ("POST", "/usageplans", r#"{"name": "x", "throttle": {"rateLimit": 10, "burstLimit": -1}}"#.into(), 400, BAD, "throttle.burstLimit: must be at least 1, got -1"),
        ("POST", "/usageplans", r#"{"name": "x", "throttle": {"rateLimit": -5, "burstLimit": 1}}"#.into(), 400, BAD, "throttle.rateLimit: must be a number greater than 0, got -5"),
        ("POST", "/usageplans", r#"{"name": "x", "throttle": {"rateLimit": "fast", "burstLimit": 1}}"#.into(), 400, BAD, "throttle.rateLimit: must be a number"),
        ("POST", "/usageplans", r#"{"name": "x", "throttle": {"rateLimit": 1, "burstLimit": 1.5}}"#.into(), 400, BAD, "throttle.burstLimit: must be a whole number"),
        ("POST", "/usageplans", r#"{"name": "x", "throttle": {"rateLimit": 1}}"#.into(), 400, BAD, "throttle.burstLimit: is required in a throttle"),
        ("POST", "/usageplans", r#"{"name": "x", "quota": {"limit": -10, "period": "DAY"}}"#.into(), 400, BAD, "quota.limit: must be at least 1, got -10"),
        ("POST", "/usageplans", r#"{"name": "x", "quota": {"limit": 10, "period": "DAY", "offset": -1}}"#.into(), 400, BAD, "quota.offset: must not be negative, got -1"),
        ("POST", "/usageplans", r#"{"name": "x", "quota": {"limit": 10, "period": "DAY", "offset": 10}}"#.into(), 400, BAD, "quota.offset: must be less than the limit (10), got 10"),
        ("POST", "/usageplans", r#"{"name": "x", "quota": {"limit": 10, "period": "YEAR"}}"#.into(), 400, BAD, "quota.period: must be DAY, WEEK or MONTH"),
        ("POST", "/usageplans", r#"{"name": "x", "apiStages": [{"apiId": "a"}]}"#.into(), 400, BAD, "apiStages[0].stage: is required"),
        ("POST", "/usageplans", r#"{"name": "x", "apiStages": [{"apiId": "a", "stage": "b"}, {"apiId": "a", "stage": "b"}]}"#.into(), 400, BAD, "apiStages[1].stage: a:b is listed twice"),
        ("POST", "/usageplans", r#"{"name": "x", "apiStages": [{"apiId": "a", "stage": "b", "throttle": {"/pets/FETCH": {"rateLimit": 1, "burstLimit": 1}}}]}"#.into(), 400, BAD, "apiStages[a:b].throttle.\"/pets/FETCH\": \"/pets/FETCH\" is not a method key"),
        ("GET", "/usageplans/nope", String::new(), 404, NOT_FOUND, "Invalid Usage Plan ID specified"),
        ("GET", "/usageplans?keyId=k9", String::new(), 404, NOT_FOUND, "Invalid API Key identifier specified"),
        ("DELETE", "/usageplans/nope", String::new(), 404, NOT_FOUND, "Invalid Usage Plan ID specified"),
        ("PATCH", "/usageplans/nope", patch("replace", "/name", "x"), 404, NOT_FOUND, "Invalid Usage Plan ID specified"),
        ("PATCH", "/usageplans/gold", patch("replace", "/bogus", "x"), 400, BAD, "Invalid patch path '/bogus' specified for op 'replace'. Supported: replace /name,"),
        ("PATCH", "/usageplans/gold", patch("remove", "/name", ""), 400, BAD, "Invalid patch path '/name' specified for op 'remove'"),
        ("PATCH", "/usageplans/gold", patch("replace", "/throttle/rateLimit", "abc"), 400, BAD, "patchOperations[0].value: must be a number for '/throttle/rateLimit'"),
        ("PATCH", "/usageplans/gold", patch("replace", "/throttle/burstLimit", "-3"), 400, BAD, "throttle.burstLimit: must be at least 1, got -3"),
        ("PATCH", "/usageplans/gold", patch("replace", "/throttle/rateLimit", "-3"), 400, BAD, "throttle.rateLimit: must be a number greater than 0, got -3"),
        ("PATCH", "/usageplans/gold", patch("replace", "/quota/limit", "-3"), 400, BAD, "quota.limit: must be at least 1, got -3"),
        ("PATCH", "/usageplans/gold", patch("replace", "/quota/offset", "-3"), 400, BAD, "quota.offset: must not be negative, got -3"),
        ("PATCH", "/usageplans/silver", patch("replace", "/quota/limit", "10"), 400, BAD, "quota.period: is required in a quota"),
        ("PATCH", "/usageplans/silver", patch("replace", "/throttle/rateLimit", "10"), 400, BAD, "throttle.burstLimit: is required in a throttle"),
        ("PATCH", "/usageplans/gold", patch("add", "/apiStages", "petstore:prod"), 409, CONFLICT, "API stage petstore:prod is already in the usage plan"),
        ("PATCH", "/usageplans/gold", patch("remove", "/apiStages", "petstore:beta"), 404, NOT_FOUND, "API stage petstore:beta is not in the usage plan"),
        ("PATCH", "/usageplans/gold", patch("add", "/apiStages", "petstore"), 400, BAD, "Invalid API stage in patch operation 0"),
        ("PATCH", "/usageplans/gold", patch("replace", "/apiStages/petstore:prod/throttle/~1pets/POST/rateLimit", "1"), 400, BAD,
            "apiStages[petstore:prod].throttle.\"/pets/POST\".burstLimit: is required in a throttle"),
        ("PATCH", "/usageplans/gold", patch("remove", "/apiStages/petstore:prod/throttle/~1pets/POST", ""), 404, NOT_FOUND,
            "API stage petstore:prod has no method throttle for /pets/POST"),
    ];
    for (method, path, body, status, aws_type, message) in cases {
        h.refused(method, path, &body, status, aws_type, message).await;
    }
    // More method throttles on one stage than `MAX_METHODS_PER_STAGE` (issue 14, item 6).
    let many: Vec<String> = (0..=tower_usage_plans::MAX_METHODS_PER_STAGE)
        .map(|i| format!(r#""/m{i}/GET": {{"rateLimit": 1, "burstLimit": 1}}"#))
        .collect();
    let body = format!(
        r#"{{"name": "x", "apiStages": [{{"apiId": "a", "stage": "b", "throttle": {{{}}}}}]}}"#,
        many.join(", ")
    );
    let message = "apiStages[a:b].throttle: 1001 method throttles are too many: at most 1000 per stage";
    h.refused("POST", "/usageplans", &body, 400, BAD, message).await;
    // Two plans of one key on one stage after a patch: refused by the store's checks.
    h.call("POST", "/usageplans/silver/keys", r#"{"keyId": "k2", "keyType": "API_KEY"}"#).await.expect(201);
    h.call("POST", "/apikeys", "{}").await.expect(201);
    let both = r#"{"patchOperations": [{"op": "remove", "path": "/apiStages", "value": "petstore:prod"}]}"#;
    h.call("PATCH", "/usageplans/silver", both).await.expect(200);
    h.call("POST", "/usageplans/silver/keys", r#"{"keyId": "k1", "keyType": "API_KEY"}"#).await.expect(201);
    let back = r#"{"patchOperations": [{"op": "add", "path": "/apiStages", "value": "petstore:prod"}]}"#;
    h.refused(
        "PATCH",
        "/usageplans/silver",
        back,
        409,
        CONFLICT,
        "stages: key \"k1\" is in plans \"silver\" and \"gold\", which would both be bound to stage petstore/prod",
    )
    .await;
}

async fn unknown_operations_get_aws_errors(b: Backend) {
    let h = Harness::new(b).await;
    h.refused("GET", "/restapis", "", 404, NOT_FOUND, "Unsupported operation: GET /restapis...").await;
    h.refused("GET", "/apikeys/k1/extra", "", 404, NOT_FOUND, "Unsupported operation: GET /apikeys...").await;
    h.refused("GET", &format!("/{K1}"), "", 404, NOT_FOUND, "Unsupported operation: GET on this path is not").await;
    h.refused(
        "PUT",
        "/usageplans/gold",
        "{}",
        400,
        BAD,
        "Unsupported operation: PUT is not an operation on this resource",
    )
    .await;
}

async fn oversized_bodies_are_bad_requests(b: Backend) {
    let h = Harness::with(b, |r| r.max_body_bytes(64)).await;
    let body = format!(r#"{{"name": "{}"}}"#, "x".repeat(100));
    h.refused("POST", "/usageplans", &body, 400, BAD, "The request body is larger than the 64 bytes accepted").await;
    // An oversized ImportApiKeys CSV too.
    let csv = format!("Name,Key,Enabled\nbig,{},true\n", "k".repeat(100));
    h.refused("POST", "/apikeys?mode=import&format=csv", &csv, 400, BAD, "The request body is larger").await;
    // A wrong token is refused from the head, before the body's size matters.
    let reply = h
        .send(
            Request::post("/admin/usageplans")
                .header("authorization", "Bearer not-the-admin-token")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 403);
    // Without credentials it is still 403.
    let before = h.store.snapshot().await;
    let reply = h.send(Request::post("/admin/usageplans").body(Body::from(body)).unwrap()).await;
    assert_eq!(reply.status.as_u16(), 403);
    assert_eq!(h.store.snapshot().await, before);
    // The default limit (1 MiB) takes a 500 KiB body.
    let h = Harness::new(b).await;
    let big = format!(r#"{{"name": "x", "description": "{}"}}"#, "d".repeat(500 << 10));
    h.call("POST", "/usageplans", &big).await.expect(201);
}

async fn callers_without_credentials_get_403_before_routing(b: Backend) {
    let h = Harness::new(b).await;
    let auth = AdminAuth::new().bearer(TOKEN);
    let cases: [(&str, Option<&str>); 4] = [
        ("/admin/usageplans", None),
        ("/admin/usageplans", Some("Bearer wrong-token")),
        ("/admin/apikeys/k1?includeValue=true", Some("Basic YWRtaW46YWRtaW4=")),
        ("/admin/restapis", None),
    ];
    for (path, authorization) in cases {
        let before = h.store.snapshot().await;
        let mut request = Request::get(path);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let request = request.body(Body::empty()).unwrap();
        // What the authenticator says about this request is what the caller gets.
        let refusal =
            auth.verify(&Method::GET, request.uri(), request.headers(), b"", SystemTime::now()).expect_err("refused");
        let reply = h.send(request).await;
        assert_eq!(reply.status.as_u16(), 403, "{path} {authorization:?}");
        assert_eq!(reply.error_type.as_deref(), Some(refusal.aws_type()));
        assert_eq!(reply.body, serde_json::json!({"message": refusal.message()}));
        assert_eq!(h.store.snapshot().await, before);
    }
    let reply = h
        .send(Request::delete("/admin/apikeys/k1").header("authorization", "Bearer nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status.as_u16(), 403);
    assert!(h.store.key("k1").await.is_some());
}

/// More method throttles in all than `MAX_METHOD_THROTTLES`, through CreateUsagePlan on the
/// in-memory store, whose every change is checked as a configuration file is (issue 14, item 6).
/// The SQL store checks the limit per stage only.
#[tokio::test]
async fn too_many_method_throttles_in_all_memory() {
    let h = Harness::new(Backend::Memory).await;
    let plan = |p: usize| {
        let many: Vec<String> =
            (0..1000).map(|i| format!(r#""/p{p}x{i}/GET": {{"rateLimit": 1, "burstLimit": 1}}"#)).collect();
        format!(
            r#"{{"name": "p{p}", "apiStages": [{{"apiId": "a", "stage": "b", "throttle": {{{}}}}}]}}"#,
            many.join(", ")
        )
    };
    // CONFIG has one; nine plans of 1,000 make 9,001.
    for p in 0..9 {
        h.call("POST", "/usageplans", &plan(p)).await.expect(201);
    }
    let message = "plans[11].stages[0].methods: brings the method throttles of the stage and all plans to 10001: \
                   at most 10000 in all";
    h.refused("POST", "/usageplans", &plan(9), 400, BAD, message).await;
}

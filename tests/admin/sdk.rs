//! boto3 and the AWS CLI against a real server: the admin router nested under `/admin`, SigV4
//! credentials, `endpoint_url = http://127.0.0.1:PORT/admin`. Skipped (with a `SKIPPED:` line)
//! when python3 with boto3, or `aws`, is missing, unless `USAGE_PLANS_REQUIRE_SERVICES=1`.

use serde_json::{json, Value};
use std::process::Output;
use tokio::process::Command;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::{InMemoryKeyStore, QuotaPeriod, Throttle};

const AKID: &str = "AKIDADMINTEST0000001";
const SECRET: &str = "admin/test/secret/0123456789abcdefghijklm";

fn required() -> bool {
    std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `Some(output)` if the command ran and succeeded; `None` (after a SKIPPED line) if it cannot
/// run here and is not required.
async fn run(what: &str, command: &mut Command) -> Option<Output> {
    match command.output().await {
        Ok(out) if out.status.success() => Some(out),
        // The boto3 script's code for "boto3 is not installed".
        Ok(out) if out.status.code() == Some(97) => {
            assert!(!required(), "{what} is required (USAGE_PLANS_REQUIRE_SERVICES=1) but missing");
            eprintln!("SKIPPED: {what} is not installed ({})", String::from_utf8_lossy(&out.stderr).trim());
            None
        }
        Ok(out) => panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(!required(), "{what} is required (USAGE_PLANS_REQUIRE_SERVICES=1) but cannot run: {e}");
            eprintln!("SKIPPED: {what} cannot run: {e}");
            None
        }
    }
}

/// Runs `tests/<script>` with boto3 against the admin API at `endpoint` (SigV4 credentials in
/// the environment, plus `env`); its JSON output, or `None` when skipped.
async fn boto3(script: &str, endpoint: &str, env: &[(&str, &str)]) -> Option<Value> {
    let mut python = Command::new("python3");
    python
        .arg(format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("ADMIN_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env.iter().copied());
    let out = run("python3 with boto3", &mut python).await?;
    Some(
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
    )
}

async fn serve(store: InMemoryKeyStore) -> String {
    let admin = AdminRouter::new(store, AdminAuth::new().sigv4(AKID, SECRET)).into_router();
    let app = axum::Router::new().nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}/admin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_manage_the_store() {
    let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"petstore\"\nname = \"prod\"").unwrap();
    let endpoint = serve(store.clone()).await;
    let Some(out) = boto3("admin_boto3.py", &endpoint, &[]).await else { return };
    let plan_id = out["ids"]["plan"].as_str().unwrap();
    let key_id = out["ids"]["key"].as_str().unwrap();

    let plan = json!({"id": plan_id, "name": "Gold", "description": "Gold tier", "tags": {"tier": "gold"},
        "apiStages": [{"apiId": "petstore", "stage": "prod", "throttle": {"/pets/GET": {"rateLimit": 5.0, "burstLimit": 10}}}],
        "throttle": {"rateLimit": 100.0, "burstLimit": 200}, "quota": {"limit": 10000, "offset": 0, "period": "MONTH"}});
    assert_eq!(out["plan"], plan);
    assert_eq!(out["get_plan"], plan);
    assert_eq!(out["plans_of_key"], json!({"items": [plan]}));
    let key = &out["key"];
    assert_eq!((&key["name"], &key["enabled"], &key["customerId"]), (&json!("acme"), &json!(true), &json!("acme")));
    assert_eq!(key["value"].as_str().unwrap().len(), 40);
    assert!(key["createdDate"].as_i64().unwrap() > 1_700_000_000, "boto3 parsed createdDate: {key}");
    assert_eq!(out["get_key"], *key);
    let plan_key = json!({"id": key_id, "type": "API_KEY", "value": key["value"], "name": "acme"});
    assert_eq!((&out["plan_key"], &out["get_plan_key"]), (&plan_key, &plan_key));
    assert_eq!(out["plan_keys"], json!({"items": [plan_key]}));
    assert_eq!(out["page_sizes"], json!([3, 3, 1]));
    let mut names: Vec<&str> = out["paged_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["acme", "page-0", "page-1", "page-2", "page-3", "page-4", "page-5"]);
    assert_eq!(out["updated_plan"]["name"], "Gold 2");
    assert_eq!(
        out["updated_plan"]["apiStages"],
        json!([{"apiId": "petstore", "stage": "prod", "throttle": {"/pets/{petId}/DELETE": {"rateLimit": 1.0, "burstLimit": 2}}}])
    );
    assert_eq!(out["disabled_key"]["enabled"], false);
    assert_eq!(out["import"]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        out["not_found"],
        json!({"code": "NotFoundException", "message": "Invalid Usage Plan ID specified", "status": 404})
    );

    // The store holds what boto3 did.
    let stored = store.plan_by_id(plan_id).unwrap();
    assert_eq!(stored.name(), "Gold 2");
    assert_eq!(stored.throttle(), Some(Throttle::new(50.0, 200).unwrap()));
    let quota = stored.quota().unwrap();
    assert_eq!((quota.limit(), quota.period()), (5000, QuotaPeriod::Month));
    let methods: Vec<String> = stored.stages()[0].methods().iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(methods, ["/pets/{petId}/DELETE"]);
    let (_, acme) = store.key_by_id(key_id).unwrap();
    assert!(!acme.is_enabled());
    assert!(acme.plan_ids().is_empty(), "delete_usage_plan_key took it out of the plan");
    let imported = store.get("imported1-0123456789abcdef").unwrap();
    assert_eq!((imported.key().name(), imported.plans()[0].id()), ("imported-1", plan_id));
    assert!(!store.get("imported2-0123456789abcdef").unwrap().key().is_enabled());
    assert!(store.key_by_id(out["deleted"]["key"].as_str().unwrap()).is_none());
    assert!(store.plan_by_id(out["deleted"]["plan"].as_str().unwrap()).is_none());
    assert_eq!(store.config().keys().len(), 1 + 5 + 2);

    // The AWS CLI, for one call.
    let mut aws = Command::new("aws");
    aws.args([
        "apigateway",
        "get-usage-plans",
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--output",
        "json",
    ])
    .env("AWS_ACCESS_KEY_ID", AKID)
    .env("AWS_SECRET_ACCESS_KEY", SECRET)
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .env("AWS_PAGER", "");
    let Some(out) = run("the aws CLI", &mut aws).await else { return };
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Gold 2"]);
}

/// The acceptance scenario: the numbers boto3 reads with GetUsage are the data plane's, and
/// UpdateUsage and disabling the key change what the next requests get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_and_changes_the_usage_the_data_plane_counts() {
    let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"petstore\"\nname = \"prod\"").unwrap();
    let layer = tower_usage_plans::UsagePlanLayer::new(store.clone()).unwrap();
    let admin = AdminRouter::new(store.clone(), AdminAuth::new().sigv4(AKID, SECRET)).usage(layer.usage());
    let app = axum::Router::new()
        .route("/pets", axum::routing::get(|| async { "[]" }))
        .layer(layer)
        .nest("/admin", admin.into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let Some(out) = boto3("admin_usage_boto3.py", &format!("{base}/admin"), &[("DATA_ENDPOINT", &base)]).await else {
        return;
    };
    let (plan, key, today) = (&out["ids"]["plan"], out["ids"]["key"].as_str().unwrap(), &out["today"]);
    assert_eq!(out["first"], json!([200, 200, 200, 200]));
    // GetUsage in the service model's shape (boto3 calls `values` `items`).
    assert_eq!(
        out["usage_after_4"],
        json!({"usagePlanId": plan, "startDate": today, "endDate": today, "items": {key: [[4, 6]]}})
    );
    assert_eq!(out["plan_usage"], json!({key: [[4, 6]]}));
    assert_eq!(out["after_update"], json!([200, 429]), "UpdateUsage left exactly one request");
    assert_eq!(out["usage_after_update"]["items"], json!({key: [[5, 0]]}));
    assert_eq!(out["after_disable"], json!([403]));
}

use super::*;
use crate::{InMemoryKeyStore, QuotaPeriod, Throttle, UsagePlanLayer};
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};
use tower::{service_fn, ServiceBuilder, ServiceExt};

const GOLD_KEY: &str = "GoldKeyValue0123456789abcdefghij";
const FREE_KEY: &str = "FreeKeyValue0123456789abcdefghij";
const OLD_KEY: &str = "OldKeyValue0123456789abcdefghijk";

/// `aws apigateway get-usage-plans` (CLI v2), in two pages as `--max-items 1` prints them.
const PLANS_PAGE_1: &str = r#"{
    "items": [
        {
            "id": "t5gq2x",
            "name": "Gold",
            "description": "Paying customers",
            "apiStages": [
                {
                    "apiId": "a1b2c3d4e5",
                    "stage": "prod",
                    "throttle": {
                        "/pets/GET": { "burstLimit": 20, "rateLimit": 10.0 },
                        "/pets/{petId}/DELETE": { "burstLimit": 1, "rateLimit": 0.5 }
                    }
                },
                { "apiId": "a1b2c3d4e5", "stage": "beta" }
            ],
            "throttle": { "burstLimit": 200, "rateLimit": 100.0 },
            "quota": { "limit": 100000, "offset": 500, "period": "MONTH" },
            "tags": { "team": "billing" }
        }
    ],
    "position": "eyJpZCI6InQ1Z3EyeCJ9"
}"#;
const PLANS_PAGE_2: &str = r#"{
    "items": [
        {
            "id": "9kz0ba",
            "name": "Free",
            "apiStages": [ { "apiId": "a1b2c3d4e5", "stage": "prod" } ],
            "throttle": { "burstLimit": 5, "rateLimit": 1.0 },
            "quota": { "limit": 1000, "offset": 10, "period": "DAY" },
            "productCode": "prod-abc",
            "someMemberAwsAddsLater": { "x": [1, 2] }
        }
    ]
}"#;

/// `aws apigateway get-api-keys --include-values`: dates as CLI v2 prints them, and as epoch
/// seconds (CLI v1, raw output).
const KEYS: &str = r#"{
    "items": [
        {
            "id": "kq1a2b3c4d", "value": "GoldKeyValue0123456789abcdefghij", "name": "acme-prod",
            "customerId": "acme", "description": "Acme production", "enabled": true,
            "createdDate": "2024-03-01T09:15:22+01:00", "lastUpdatedDate": "2025-01-12T17:02:03+01:00",
            "stageKeys": [], "tags": { "env": "prod" }
        },
        {
            "id": "kf9z8y7x6w", "value": "FreeKeyValue0123456789abcdefghij", "name": "hobbyist",
            "enabled": true, "createdDate": 1709280922, "lastUpdatedDate": 1709280922.5,
            "stageKeys": ["a1b2c3d4e5/prod"]
        },
        {
            "id": "kd5e6f7g8h", "value": "OldKeyValue0123456789abcdefghijk", "name": "churned",
            "enabled": false, "createdDate": "2023-07-19T08:00:00+00:00", "stageKeys": []
        }
    ]
}"#;

const GOLD_KEYS: &str = r#"{"items": [{"id": "kq1a2b3c4d", "type": "API_KEY", "value": "GoldKeyValue0123456789abcdefghij", "name": "acme-prod"}]}"#;
const FREE_KEYS: &str = r#"{"items": [
    {"id": "kf9z8y7x6w", "type": "API_KEY", "value": "FreeKeyValue0123456789abcdefghij", "name": "hobbyist"},
    {"id": "kd5e6f7g8h", "type": "API_KEY", "value": "OldKeyValue0123456789abcdefghijk", "name": "churned"}
]}"#;

fn prod() -> Stage {
    Stage::new("a1b2c3d4e5", "prod")
}

fn full() -> AwsImport {
    AwsImport::new()
        .usage_plans(PLANS_PAGE_1)
        .and_then(|i| i.usage_plans(PLANS_PAGE_2))
        .and_then(|i| i.api_keys(KEYS))
        .and_then(|i| i.usage_plan_keys("t5gq2x", GOLD_KEYS))
        .and_then(|i| i.usage_plan_keys("9kz0ba", FREE_KEYS))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_realistic_export_becomes_a_store() {
    let store = InMemoryKeyStore::from_config(full().into_config(prod()).unwrap());
    assert_eq!(store.len(), 3);

    let gold = store.get(GOLD_KEY).unwrap();
    assert_eq!((gold.key().id(), gold.key().name()), ("kq1a2b3c4d", "acme-prod"));
    assert_eq!((gold.key().customer_id(), gold.key().description()), (Some("acme"), Some("Acme production")));
    assert!(gold.key().is_enabled());
    let plan = &gold.plans()[0];
    assert_eq!((gold.plans().len(), plan.id(), plan.name()), (1, "t5gq2x", "Gold"));
    assert_eq!(plan.description(), Some("Paying customers"));
    assert_eq!(plan.throttle(), Some(Throttle::new(100.0, 200).unwrap()));
    let quota = plan.quota().unwrap();
    assert_eq!((quota.limit(), quota.period(), quota.offset()), (100_000, QuotaPeriod::Month, 0), "offset dropped");
    assert_eq!(plan.created(), None);
    let binding = plan.stage_binding("a1b2c3d4e5", "prod").unwrap();
    let methods: Vec<(String, f64, u32)> =
        binding.methods().iter().map(|(k, t)| (format!("{}/{}", k.path(), k.method()), t.rate(), t.burst())).collect();
    assert_eq!(methods, [("/pets/GET".to_owned(), 10.0, 20), ("/pets/{petId}/DELETE".to_owned(), 0.5, 1)]);
    assert!(plan.stage_binding("a1b2c3d4e5", "beta").is_some());

    // Dates and tags come along: ISO 8601 text and epoch seconds alike.
    let secs = |t: Option<std::time::SystemTime>| t.map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
    assert_eq!(secs(gold.key().created()), Some(1_709_280_922));
    assert_eq!(secs(gold.key().last_updated()), Some(1_736_697_723));
    assert_eq!(gold.key().tags().get("env").map(String::as_str), Some("prod"));
    assert_eq!(plan.tags().get("team").map(String::as_str), Some("billing"));

    let free = store.get(FREE_KEY).unwrap();
    assert_eq!(secs(free.key().created()), Some(1_709_280_922));
    assert_eq!(free.plans()[0].product_code(), Some("prod-abc"));
    assert_eq!(free.plans()[0].id(), "9kz0ba");
    assert_eq!(free.plans()[0].quota().unwrap().period(), QuotaPeriod::Day);
    let old = store.get(OLD_KEY).unwrap();
    assert!(!old.key().is_enabled(), "disabled keys stay disabled");
    assert_eq!(old.plans()[0].id(), "9kz0ba");
}

#[tokio::test]
async fn the_imported_store_guards_the_stage() {
    let store = InMemoryKeyStore::from_config(full().into_config(prod()).unwrap());
    let svc = ServiceBuilder::new()
        .layer(UsagePlanLayer::new(store).unwrap())
        .service(service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }));
    for (key, want) in [(GOLD_KEY, StatusCode::OK), (FREE_KEY, StatusCode::OK), (OLD_KEY, StatusCode::FORBIDDEN)] {
        let req = Request::get("/pets").header("x-api-key", key).body(String::new()).unwrap();
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), want);
    }
}

#[test]
fn offsets_are_kept_with_a_creation_time() {
    let at = UNIX_EPOCH + Duration::from_secs(1_795_696_496);
    let config = full().plans_created(at).into_config(prod()).unwrap();
    let gold = config.plans().iter().find(|p| p.id() == "t5gq2x").unwrap();
    assert_eq!((gold.quota().unwrap().offset(), gold.created()), (500, Some(at)));

    let bad = PLANS_PAGE_2.replace(r#""offset": 10"#, r#""offset": 1000"#);
    let e = AwsImport::new().usage_plans(&bad).unwrap().plans_created(at).into_config(prod()).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"get-usage-plans, plan "9kz0ba", field quota.offset: must be less than the limit (1000), got 1000"#
    );
    // Without a creation time the offset is dropped, so it cannot be wrong.
    assert!(AwsImport::new().usage_plans(&bad).unwrap().into_config(prod()).is_ok());
}

/// Every error names where, never a key value.
fn refused(result: Result<impl std::fmt::Debug, ImportError>, kind: ImportErrorKind, want: &str) -> ImportError {
    let e = result.expect_err("must be refused");
    let text = format!("{e} {e:?}");
    for value in [GOLD_KEY, FREE_KEY, OLD_KEY] {
        assert!(!text.contains(value), "{text}");
    }
    assert_eq!((e.kind(), e.to_string().as_str()), (kind, want));
    e
}

#[test]
fn keys_without_values_ask_for_include_values() {
    let keys = KEYS.replace(r#""value": "FreeKeyValue0123456789abcdefghij", "#, "");
    let e = refused(
        AwsImport::new().api_keys(&keys),
        ImportErrorKind::MissingValue,
        r#"get-api-keys, key "kf9z8y7x6w", field value: no value: export the keys with `aws apigateway get-api-keys --include-values`"#,
    );
    assert_eq!((e.document(), e.item(), e.field()), (Some("get-api-keys"), Some(r#"key "kf9z8y7x6w""#), Some("value")));
}

#[test]
fn plan_keys_must_name_known_plans_and_keys() {
    let base = || AwsImport::new().usage_plans(PLANS_PAGE_2).unwrap().api_keys(KEYS).unwrap();
    let unknown_key = FREE_KEYS.replace("kd5e6f7g8h", "kzzzzzzzzz");
    refused(
        base().usage_plan_keys("9kz0ba", &unknown_key).unwrap().into_config(prod()),
        ImportErrorKind::UnknownReference,
        r#"get-usage-plan-keys --usage-plan-id 9kz0ba, key "kzzzzzzzzz", field id: get-api-keys has no key with this id (pass every page of get-api-keys)"#,
    );
    refused(
        base().usage_plan_keys("nope00", FREE_KEYS).unwrap().into_config(prod()),
        ImportErrorKind::UnknownReference,
        r#"get-usage-plan-keys --usage-plan-id nope00: get-usage-plans has no plan with the id "nope00""#,
    );
    let other_value = FREE_KEYS.replace(FREE_KEY, "FreeKeyValue0123456789abcdefghiX");
    refused(
        base().usage_plan_keys("9kz0ba", &other_value).unwrap().into_config(prod()),
        ImportErrorKind::Invalid,
        r#"get-usage-plan-keys --usage-plan-id 9kz0ba, key "kf9z8y7x6w", field value: not the value get-api-keys has for this key (were the documents exported at different times?)"#,
    );
    refused(
        base().usage_plan_keys("9kz0ba", r#"{"items": [{"id": "kf9z8y7x6w", "type": "OTHER"}]}"#),
        ImportErrorKind::Invalid,
        r#"get-usage-plan-keys --usage-plan-id 9kz0ba, key "kf9z8y7x6w", field type: must be API_KEY"#,
    );
}

#[test]
fn one_plan_per_stage_per_key() {
    let import = full().usage_plan_keys("t5gq2x", FREE_KEYS).unwrap();
    refused(
        import.into_config(prod()),
        ImportErrorKind::Duplicate,
        r#"get-usage-plan-keys --usage-plan-id t5gq2x, key "kf9z8y7x6w": plans "9kz0ba" and "t5gq2x" both apply to stage a1b2c3d4e5/prod; a key may belong to at most one plan per stage (API Gateway refuses this too: were the documents exported at different times?)"#,
    );
}

#[test]
fn repeated_pages_and_values_are_refused() {
    refused(
        AwsImport::new().usage_plans(PLANS_PAGE_1).unwrap().usage_plans(PLANS_PAGE_1),
        ImportErrorKind::Duplicate,
        r#"get-usage-plans, plan "t5gq2x", field id: a plan with this id was already imported (was a page passed twice?)"#,
    );
    let twice = KEYS.replace(
        r#""id": "kd5e6f7g8h", "value": "OldKeyValue0123456789abcdefghijk""#,
        &format!(r#""id": "kd5e6f7g8h", "value": "{GOLD_KEY}""#),
    );
    refused(
        AwsImport::new().api_keys(&twice),
        ImportErrorKind::Duplicate,
        r#"get-api-keys, key "kd5e6f7g8h", field value: the same value as key "kq1a2b3c4d""#,
    );
    // The same plan key listed on two pages counts once.
    assert!(full().usage_plan_keys("t5gq2x", GOLD_KEYS).unwrap().into_config(prod()).is_ok());
}

#[test]
fn bad_members_are_named() {
    let plans = |text: String| AwsImport::new().usage_plans(&text);
    refused(
        plans(PLANS_PAGE_1.replace(r#""burstLimit": 20,"#, r#""burstLimit": 0,"#)),
        ImportErrorKind::Invalid,
        r#"get-usage-plans, plan "t5gq2x", field apiStages[0].throttle."/pets/GET".burstLimit: must be at least 1"#,
    );
    refused(
        plans(PLANS_PAGE_2.replace(r#""period": "DAY""#, r#""period": "YEAR""#)),
        ImportErrorKind::Invalid,
        r#"get-usage-plans, plan "9kz0ba", field quota.period: must be DAY, WEEK or MONTH"#,
    );
    refused(
        plans(PLANS_PAGE_2.replace(r#""limit": 1000"#, r#""limit": "1000""#)),
        ImportErrorKind::Invalid,
        r#"get-usage-plans, plan "9kz0ba", field quota.limit: must be a whole number, got a string"#,
    );
    refused(
        plans(PLANS_PAGE_1.replace("/pets/GET", "*/*")),
        ImportErrorKind::Invalid,
        r#"get-usage-plans, plan "t5gq2x", field apiStages[0].throttle."*/*": "*/*" is not a method key of the form "/path/METHOD": the resource path must start with '/'"#,
    );
    refused(
        plans(r#"{"items": [{"name": "no id"}]}"#.to_owned()),
        ImportErrorKind::Invalid,
        "get-usage-plans, items[0], field id: missing or empty",
    );
    let e = refused(
        plans("{\"items\": [\n{\"id\": ".to_owned()),
        ImportErrorKind::Syntax,
        "get-usage-plans, line 2: ends early (column 7)",
    );
    assert_eq!(e.line(), Some(2));
    refused(
        AwsImport::new()
            .api_keys(&KEYS.replace(r#""enabled": false"#, r#""enabled": "OldKeyValue0123456789abcdefghijk""#)),
        ImportErrorKind::Invalid,
        r#"get-api-keys, key "kd5e6f7g8h", field enabled: must be true or false, got a string"#,
    );
}

#[test]
fn conflicting_method_routes_are_named_after_the_plan() {
    let text = PLANS_PAGE_1.replace("/pets/GET", "/pets/{id}/GET").replace("/pets/{petId}/DELETE", "/pets/{rest+}/GET");
    refused(
        AwsImport::new().usage_plans(&text).unwrap().into_config(prod()),
        ImportErrorKind::Invalid,
        &format!(
            r#"get-usage-plans, plan "t5gq2x", field apiStages[0].throttle: {}"#,
            Config::new(
                prod(),
                vec![UsagePlan::new("p").stage(
                    crate::PlanStage::new("a1b2c3d4e5", "prod")
                        .method_throttle("/pets/{id}/GET", Throttle::new(1.0, 1).unwrap())
                        .unwrap()
                        .method_throttle("/pets/{rest+}/GET", Throttle::new(1.0, 1).unwrap())
                        .unwrap()
                )],
                vec![]
            )
            .unwrap_err()
            .reason()
        ),
    );
}

#[test]
fn the_stage_must_be_one_the_plans_apply_to() {
    refused(
        full().into_config(Stage::new("petstore", "prod")),
        ImportErrorKind::UnknownReference,
        "get-usage-plans: no usage plan applies to stage petstore/prod (the plans apply to: a1b2c3d4e5/beta, a1b2c3d4e5/prod); name the stage's API by its API Gateway id",
    );
    assert!(full().into_config(Stage::new("a1b2c3d4e5", "beta")).is_ok());
}

#[test]
fn debug_shows_no_key_value() {
    let debug = format!("{:?}", full());
    assert!(debug.contains("kq1a2b3c4d"), "{debug}");
    for value in [GOLD_KEY, FREE_KEY, OLD_KEY] {
        assert!(!debug.contains(value), "{debug}");
    }
}

#[test]
fn empty_and_raw_wire_documents() {
    let import = AwsImport::new().usage_plans(r#"{"items": []}"#).unwrap().api_keys("{}").unwrap();
    assert!(import.into_config(prod()).is_err(), "no plan applies");
    // The REST wire format names the list `item`.
    let wire = PLANS_PAGE_2.replacen(r#""items""#, r#""item""#, 1);
    assert!(AwsImport::new().usage_plans(&wire).unwrap().into_config(prod()).is_ok());
    refused(
        AwsImport::new().usage_plans("[]"),
        ImportErrorKind::Invalid,
        "get-usage-plans: must be a JSON object, got an array",
    );
}

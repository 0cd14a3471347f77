//! Both sources read the same shapes; each words its errors as it always has.

use super::plan::Limits;
use super::*;
use crate::model::QuotaPeriod;
use serde_json::{Map, Value};

fn map(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json).unwrap() {
        Value::Object(m) => m,
        _ => panic!("not an object: {json}"),
    }
}

/// The limits of `json` read and built from `source`, or the error as `path: reason`.
fn limits(json: &str, source: Source) -> Result<Limits, String> {
    let members = map(json);
    let o = Object::new(&members, source);
    PlanLimits::read(&o).and_then(|l| l.build(source)).map_err(|e| e.to_string())
}

fn refused(json: &str, source: Source) -> String {
    limits(json, source).expect_err(json)
}

#[test]
fn a_plan_reads_the_same_from_both_sources() {
    let json = r#"{"throttle": {"rateLimit": 10, "burstLimit": 20},
        "quota": {"limit": 5000, "period": "MONTH", "offset": 5},
        "apiStages": [{"apiId": "a1", "stage": "prod", "throttle": {"/pets/GET": {"rateLimit": 1, "burstLimit": 2}}},
                      {"apiId": "a1", "stage": "beta"}]}"#;
    let request = limits(json, Source::Request).unwrap();
    assert_eq!(request, limits(json, Source::Document).unwrap());
    assert_eq!(request.throttle.map(|t| (t.rate(), t.burst())), Some((10.0, 20)));
    let quota = request.quota.unwrap();
    assert_eq!((quota.limit(), quota.period(), quota.offset(), request.offset), (5000, QuotaPeriod::Month, 0, 5));
    assert_eq!(request.stages.len(), 2);
    assert_eq!(request.stages[0].methods()[0].0.to_string(), "/pets/GET");
    assert_eq!(
        with_offset(quota, 5000, "quota").unwrap_err().to_string(),
        "quota.offset: must be less than the limit (5000), got 5000"
    );
}

#[test]
fn requests_say_what_a_member_must_be() {
    let r = |json| refused(json, Source::Request);
    assert_eq!(r(r#"{"throttle": {"rateLimit": "fast", "burstLimit": 1}}"#), "throttle.rateLimit: must be a number");
    assert_eq!(
        r(r#"{"throttle": {"rateLimit": 1, "burstLimit": 1.5}}"#),
        "throttle.burstLimit: must be a whole number"
    );
    assert_eq!(
        r(r#"{"throttle": {"rateLimit": 1, "burstLimit": -1}}"#),
        "throttle.burstLimit: must be at least 1, got -1"
    );
    assert_eq!(r(r#"{"throttle": {"rateLimit": 1, "burstLimit": 0}}"#), "throttle.burstLimit: must be at least 1");
    assert_eq!(r(r#"{"throttle": {}}"#), "throttle.rateLimit: is required in a throttle");
    assert_eq!(r(r#"{"quota": {"limit": 10}}"#), "quota.period: is required in a quota");
    assert_eq!(r(r#"{"quota": {"limit": 10, "period": ""}}"#), "quota.period: must be DAY, WEEK or MONTH");
    assert_eq!(r(r#"{"quota": {"limit": -10, "period": "DAY"}}"#), "quota.limit: must be at least 1, got -10");
    assert_eq!(
        r(r#"{"quota": {"limit": 10, "period": "DAY", "offset": -1}}"#),
        "quota.offset: must not be negative, got -1"
    );
    assert_eq!(r(r#"{"apiStages": {}}"#), "apiStages: must be a list");
    assert_eq!(r(r#"{"apiStages": [5]}"#), "apiStages[0]: must be an object");
    assert_eq!(r(r#"{"apiStages": [{"apiId": "a"}]}"#), "apiStages[0].stage: is required");
    let null_method = r#"{"apiStages": [{"apiId": "a", "stage": "b", "throttle": {"GET": null}}]}"#;
    assert_eq!(r(null_method), "apiStages[0].throttle.\"GET\": must be an object");
    // Built stages are named by label, as patch paths name them.
    let bad_method = r#"{"apiStages": [{"apiId": "a", "stage": "b", "throttle": {"/pets/POST": {"rateLimit": 1}}}]}"#;
    assert_eq!(r(bad_method), "apiStages[a:b].throttle.\"/pets/POST\".burstLimit: is required in a throttle");
    let members = map(r#"{"tags": {"team": 1}}"#);
    let e = Object::new(&members, Source::Request).tags("tags").unwrap_err();
    assert_eq!(e.to_string(), "tags.\"team\": must be a string");
}

#[test]
fn documents_also_say_what_they_found() {
    let d = |json| refused(json, Source::Document);
    assert_eq!(
        d(r#"{"quota": {"limit": "1000", "period": "DAY"}}"#),
        "quota.limit: must be a whole number, got a string"
    );
    assert_eq!(
        d(r#"{"throttle": {"rateLimit": 1, "burstLimit": -1}}"#),
        "throttle.burstLimit: must be a whole number, not negative, got a number"
    );
    assert_eq!(d(r#"{"throttle": {"rateLimit": 1}}"#), "throttle.burstLimit: missing");
    assert_eq!(d(r#"{"quota": {"period": "DAY"}}"#), "quota.limit: missing");
    assert_eq!(d(r#"{"quota": {"limit": 10, "period": " "}}"#), "quota.period: missing or empty");
    assert_eq!(d(r#"{"quota": {"limit": 10, "period": "YEAR"}}"#), "quota.period: must be DAY, WEEK or MONTH");
    assert_eq!(d(r#"{"apiStages": {}}"#), "apiStages: must be an array, got an object");
    assert_eq!(d(r#"{"apiStages": [{"apiId": " ", "stage": "b"}]}"#), "apiStages[0].apiId: missing or empty");
    let bad_burst = r#"{"apiStages": [{"apiId": "a", "stage": "b", "throttle": {"/pets/GET": {"rateLimit": 1, "burstLimit": 0}}}]}"#;
    assert_eq!(d(bad_burst), "apiStages[0].throttle.\"/pets/GET\".burstLimit: must be at least 1");
    // `{}` and `null` are absent in a document.
    let empty = limits(
        r#"{"throttle": {}, "apiStages": [{"apiId": "a", "stage": "b", "throttle": {"/a/GET": {}, "/b/GET": null}}]}"#,
        Source::Document,
    )
    .unwrap();
    assert_eq!((empty.throttle, empty.stages[0].methods().len()), (None, 0));
    let members = map(r#"{"tags": {"team": 1, "a:b": "x"}, "t": {"a:b": 2}}"#);
    let o = Object::new(&members, Source::Document);
    assert_eq!(o.tags("tags").unwrap_err().to_string(), "tags.team: must be a string, got a number");
    assert_eq!(o.tags("t").unwrap_err().to_string(), "t.\"a:b\": must be a string, got a number");
}

#[test]
fn a_method_listed_twice_is_a_duplicate() {
    let json = r#"{"apiStages": [{"apiId": "a", "stage": "b", "throttle": {
        "/pets/{id}/GET": {"rateLimit": 1, "burstLimit": 1}, "/pets/{petId}/GET": {"rateLimit": 1, "burstLimit": 1}}}]}"#;
    let members = map(json);
    let e = PlanLimits::read(&Object::new(&members, Source::Request)).unwrap().build(Source::Request).unwrap_err();
    assert_eq!((e.kind(), e.path()), (ShapeErrorKind::Duplicate, "apiStages[a:b].throttle.\"/pets/{petId}/GET\""));
}

#[test]
fn repeated_stages_are_found() {
    let members = map(
        r#"{"apiStages": [{"apiId": "a", "stage": "b"}, {"apiId": "a", "stage": "c"}, {"apiId": "a", "stage": "b"}]}"#,
    );
    let limits = PlanLimits::read(&Object::new(&members, Source::Document)).unwrap();
    assert_eq!(limits.repeated_stage(), Some(2));
    assert_eq!(limits.api_stages[2].label(), "a:b");
}

#[test]
fn keys_and_dates() {
    const VALUE: &str = "acme-0123456789abcdefghij";
    let members = map(&format!(
        r#"{{"value": "{VALUE}", "name": "Acme", "enabled": true, "customerId": "c1", "tags": {{"env": "prod"}},
            "createdDate": "2024-03-01T09:15:22+01:00", "lastUpdatedDate": 1709280922.5, "when": "{VALUE}", "type": "OTHER"}}"#
    ));
    let o = Object::new(&members, Source::Document);
    let key = ApiKeyShape::read(&o).unwrap();
    assert_eq!(key.value.as_ref().map(|v| v.expose()), Some(VALUE));
    assert_eq!((key.name, key.enabled, key.customer_id, key.description), (Some("Acme"), Some(true), Some("c1"), None));
    assert!(!format!("{key:?} {o:?}").contains(VALUE));
    let secs = |t: Option<std::time::SystemTime>| t.map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    assert_eq!(secs(o.time("createdDate").unwrap()), Some(1_709_280_922));
    assert_eq!(secs(o.time("lastUpdatedDate").unwrap()), Some(1_709_280_922));
    let e = o.time("when").unwrap_err().to_string();
    assert_eq!(e, "when: must be an ISO 8601 time or epoch seconds, got a string");
    assert_eq!(check_key_type(&o, "type").unwrap_err().to_string(), "type: must be API_KEY");
    let short = map(r#"{"value": "short"}"#);
    let e = ApiKeyShape::read(&Object::new(&short, Source::Request)).unwrap_err().to_string();
    assert_eq!(e, "value: must be 20 to 128 characters long, got 5");
}

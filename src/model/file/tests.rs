//! Reading: the demo file, the JSON form, errors naming the field.

use super::*;
use crate::error::ConfigErrorKind;
use std::time::{Duration, UNIX_EPOCH};

mod limits;
mod places;
mod roundtrip;

const BASE: &str = "[stage]\napi = \"petstore\"\nname = \"prod\"\n";

/// `field: reason` of the error reading `BASE` and `extra` (its place is checked in `places`).
fn err(extra: &str) -> String {
    let e = Config::from_toml_str(&format!("{BASE}{extra}")).unwrap_err();
    assert!(e.line().is_some(), "{e}: not placed");
    format!("{}: {}", e.field(), e.reason())
}

#[test]
fn full_example_from_the_issue_parses() {
    let c = Config::from_toml_str(include_str!("../../../examples/plans.toml")).unwrap();
    assert_eq!(c.stage().api(), "petstore");
    assert!(!c.plans().is_empty());
    assert!(!c.keys().is_empty());
}

#[test]
fn json_form_has_the_same_structure() {
    let c = Config::from_json_str(
        r#"{"stage":{"api":"a","name":"b","throttle":{"rate":10,"burst":5}},
           "account":{"throttle":{"rate":100,"burst":50}},
           "plans":[{"id":"p","quota":{"limit":10,"period":"DAY"},"created":"2026-11-01T00:00:00Z",
                     "stages":[{"api":"a","stage":"b","methods":{"/pets/GET":{"rate":1,"burst":1}}}]}],
           "keys":[{"id":"k","value":"0123456789abcdefghijk","plans":["p"],"expires":"2027-01-01T00:00:00+01:00"}]}"#,
    )
    .unwrap();
    assert_eq!(c.stage().account().unwrap().burst(), 50);
    assert_eq!(c.plans()[0].stages()[0].methods().len(), 1);
    assert!(c.keys()[0].1.expires().is_some());
}

#[test]
fn errors_name_the_field_and_reason() {
    let cases = [
        ("[[plans]]\nid = \"p\"\nthrottle = { rate = 1.0, burst = 0 }", "plans[0].throttle.burst: must be at least 1"),
        ("[[plans]]\nid = \"p\"\nquota = { limit = 0, period = \"DAY\" }", "plans[0].quota.limit: must be at least 1"),
        ("[[plans]]\nid = \"p\"\nquota = { limit = 5, period = \"DAY\", offset = 5 }", "plans[0].quota.offset: must be less than the limit (5), got 5"),
        ("[[keys]]\nid = \"k\"\nvalue = \"0123456789abcdefghij\"\nplans = [\"nope\"]", "keys[0].plans[0]: no plan has the id \"nope\""),
        ("[[keys]]\nid = \"k\"\nvalue = \"short\"", "keys[0].value: must be 20 to 128 characters long, got 5"),
        ("[[plans]]\nid = \"p\"\n[[plans.stages]]\napi = \"a\"\nstage = \"b\"\nmethods = { \"/pets/FETCH\" = { rate = 1.0, burst = 1 } }", "plans[0].stages[0].methods.\"/pets/FETCH\""),
        ("[[plans]]\nid = \"p\"\ncreated = \"yesterday\"", "plans[0].created: \"yesterday\" is not an RFC 3339"),
    ];
    for (extra, want) in cases {
        let got = err(extra);
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
}

#[test]
fn conflicting_routes_are_refused_at_load() {
    let e = err("[[plans]]\nid = \"p\"\n[[plans.stages]]\napi = \"petstore\"\nstage = \"prod\"\nmethods = { \"/x/{a}/GET\" = { rate = 1.0, burst = 1 }, \"/x/{b+}/GET\" = { rate = 1.0, burst = 1 } }");
    assert!(e.starts_with("plans[0].stages[0].methods: conflicts"), "{e}");
}

#[test]
fn one_plan_per_stage_per_key() {
    let text = "[[plans]]\nid = \"a\"\nstages = [{ api = \"petstore\", stage = \"prod\" }]\n[[plans]]\nid = \"b\"\nstages = [{ api = \"petstore\", stage = \"prod\" }]\n[[keys]]\nid = \"k\"\nvalue = \"0123456789abcdefghij\"\nplans = [\"a\", \"b\"]";
    let e = Config::from_toml_str(&format!("{BASE}{text}")).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Duplicate);
    assert_eq!(e.field(), "keys[0].plans");
}

#[test]
fn duplicate_values_do_not_leak_the_secret() {
    let text = "[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\n[[keys]]\nid = \"b\"\nvalue = \"0123456789abcdefghij\"";
    let e = err(text);
    assert_eq!(e, "keys[1].value: the same value as keys[0]");
}

#[test]
fn key_descriptions_are_kept() {
    let c = Config::from_toml_str(&format!(
        "{BASE}[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ndescription = \"Acme's CI\"\n[[keys]]\nid = \"b\"\nvalue = \"0123456789abcdefghijk\""
    ))
    .unwrap();
    assert_eq!(c.keys()[0].1.description(), Some("Acme's CI"));
    assert_eq!(c.keys()[1].1.description(), None);
}

#[test]
fn management_metadata_is_kept() {
    let c = Config::from_toml_str(&format!(
        "{BASE}[[plans]]\nid = \"p\"\ndescription = \"Gold tier\"\nproduct_code = \"prod-1\"\ntags = {{ tier = \"gold\" }}\n\
         [[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ncreated = \"2026-11-01T00:00:00Z\"\n\
         last_updated = \"2026-11-02T00:00:00Z\"\ntags = {{ team = \"billing\" }}"
    ))
    .unwrap();
    let plan = &c.plans()[0];
    assert_eq!((plan.description(), plan.product_code()), (Some("Gold tier"), Some("prod-1")));
    assert_eq!(plan.tags()["tier"], "gold");
    let key = &c.keys()[0].1;
    assert_eq!(key.created(), Some(UNIX_EPOCH + Duration::from_secs(1_793_491_200)));
    assert_eq!(key.last_updated(), Some(UNIX_EPOCH + Duration::from_secs(1_793_577_600)));
    assert_eq!(key.tags()["team"], "billing");
    let e = err("[[keys]]\nid = \"a\"\nvalue = \"0123456789abcdefghij\"\ntags = { \"aws:x\" = \"1\" }");
    assert_eq!(e, "keys[0].tags.\"aws:x\": tag names starting with \"aws:\" are reserved");
}

#[test]
fn unknown_fields_and_missing_stage_are_refused() {
    assert!(Config::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"\nthrotle = { rate = 1.0, burst = 1 }").is_err());
    assert_eq!(Config::from_toml_str("[[plans]]\nid = \"p\"").unwrap_err().kind(), ConfigErrorKind::Syntax);
    let missing = Config::from_path("/nonexistent/plans.toml").unwrap_err();
    assert_eq!(missing.kind(), ConfigErrorKind::Io);
    assert_eq!(missing.file(), Some("/nonexistent/plans.toml"));
    assert!(missing.to_string().starts_with("/nonexistent/plans.toml: No such file"), "{missing}");
}

#[test]
fn far_dates_are_exact_or_refused() {
    let c =
        Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = \"9999-12-31T23:59:59.5Z\"")).unwrap();
    let at = c.plans()[0].created().unwrap().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(at, Duration::new(253_402_300_799, 500_000_000));
    let c = Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = \"1200-01-01T00:00:00Z\"")).unwrap();
    assert!(c.plans()[0].created().unwrap() < UNIX_EPOCH);
}

#[test]
fn bare_toml_datetimes_are_accepted() {
    let c = Config::from_toml_str(&format!("{BASE}[[plans]]\nid = \"p\"\ncreated = 2026-11-01T00:00:00Z")).unwrap();
    assert_eq!(c.plans()[0].created(), Some(UNIX_EPOCH + Duration::from_secs(1_793_491_200)));
}

#[test]
fn an_error_in_a_file_names_the_file_then_the_field_and_its_line() {
    let path = std::env::temp_dir().join(format!("tup-from-path-{}.toml", std::process::id()));
    let text = format!("{BASE}[[plans]]\nid = \"p\"\nquota = {{ limit = 5, period = \"YEAR\" }}\n");
    std::fs::write(&path, &text).unwrap();
    let e = Config::from_path(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    let line = text.lines().position(|l| l.starts_with("quota")).unwrap() + 1;
    assert_eq!((e.file(), e.field(), e.line()), (path.to_str(), "plans[0].quota.period", u32::try_from(line).ok()));
    assert!(
        e.to_string().starts_with(&format!("{}: plans[0].quota.period (line {line}, column ", path.display())),
        "{e}"
    );
}

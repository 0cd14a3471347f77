//! Issue 14, item 6: counts of method throttles past the documented limits are refused, naming the
//! field, before a route slot (`u16`) could overflow; files at the limits load.

use super::*;
use crate::model::{MAX_METHODS_PER_STAGE, MAX_METHOD_THROTTLES};
use crate::{PlanStage, Throttle, UsagePlan};

/// `n` method throttles as a TOML inline table, paths `/{prefix}{i}/GET`.
fn methods(prefix: &str, n: usize) -> String {
    let body: Vec<String> = (0..n).map(|i| format!("\"/{prefix}{i}/GET\" = {{ rate = 1.0, burst = 1 }}")).collect();
    format!("{{ {} }}", body.join(", "))
}

fn stage_with(n: usize) -> String {
    format!("[stage]\napi = \"a\"\nname = \"b\"\nmethods = {}\n", methods("s", n))
}

/// `plans` plans, each on stage a/b with `n` method throttles of its own.
fn plans_with(plans: usize, n: usize) -> String {
    (0..plans)
        .map(|p| {
            format!(
                "[[plans]]\nid = \"p{p}\"\nstages = [{{ api = \"a\", stage = \"b\", methods = {} }}]\n",
                methods(&format!("p{p}x"), n)
            )
        })
        .collect()
}

#[test]
fn stage_method_throttles_past_the_limit_are_refused_naming_the_field() {
    for n in [MAX_METHODS_PER_STAGE + 1, 65_537] {
        let e = Config::from_toml_str(&stage_with(n)).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Invalid);
        assert_eq!(e.field(), "stage.methods", "{e}");
        assert_eq!(e.reason(), format!("{n} method throttles are too many: at most 1000 per stage"));
    }
    let public: Vec<String> = (0..=MAX_METHODS_PER_STAGE).map(|i| format!("\"/h{i}/GET\"")).collect();
    let text = format!("[stage]\napi = \"a\"\nname = \"b\"\npublic_methods = [{}]\n", public.join(", "));
    assert_eq!(Config::from_toml_str(&text).unwrap_err().field(), "stage.public_methods");
}

#[test]
fn plan_method_throttles_past_the_limit_are_refused_naming_the_field() {
    let e =
        Config::from_toml_str(&format!("{}{}", stage_with(0), plans_with(1, MAX_METHODS_PER_STAGE + 1))).unwrap_err();
    assert_eq!((e.kind(), e.field()), (ConfigErrorKind::Invalid, "plans[0].stages[0].methods"), "{e}");
    // The same in JSON.
    let m: Vec<String> =
        (0..=MAX_METHODS_PER_STAGE).map(|i| format!(r#""/x{i}/GET": {{"rate": 1.0, "burst": 1}}"#)).collect();
    let json = format!(
        r#"{{"stage": {{"api": "a", "name": "b"}}, "plans": [{{"id": "p", "stages": [{{"api": "a", "stage": "b", "methods": {{{}}}}}]}}]}}"#,
        m.join(", ")
    );
    assert_eq!(Config::from_json_str(&json).unwrap_err().field(), "plans[0].stages[0].methods");
}

#[test]
fn method_throttles_past_the_total_are_refused_naming_the_binding() {
    // The stage's 1000 and nine plans' 1000 each make 10,000: the tenth plan goes over.
    let text = format!("{}{}", stage_with(MAX_METHODS_PER_STAGE), plans_with(10, MAX_METHODS_PER_STAGE));
    let e = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(e.field(), "plans[9].stages[0].methods", "{e}");
    assert_eq!(e.reason(), "brings the method throttles of the stage and all plans to 11000: at most 10000 in all");
}

#[test]
fn ten_thousand_method_throttles_load() {
    let text = format!("{}{}", stage_with(MAX_METHODS_PER_STAGE), plans_with(9, MAX_METHODS_PER_STAGE));
    let c = Config::from_toml_str(&text).unwrap();
    let total: usize =
        c.stage().methods().len() + c.plans().iter().map(|p| p.stages()[0].methods().len()).sum::<usize>();
    assert_eq!(total, MAX_METHOD_THROTTLES);
}

#[test]
fn builders_refuse_past_the_limit() {
    let t = Throttle::new(1.0, 1).unwrap();
    let mut ps = PlanStage::new("a", "b");
    let mut stage = Stage::new("a", "b");
    for i in 0..MAX_METHODS_PER_STAGE {
        ps = ps.method_throttle(&format!("/x{i}/GET"), t).unwrap();
        stage.methods_mut().push((format!("/x{i}/GET").parse().unwrap(), t));
    }
    let e = ps.method_throttle("/one-more/GET", t).unwrap_err();
    assert_eq!((e.field(), e.reason()), ("methods", "1001 method throttles are too many: at most 1000 per stage"));
    assert_eq!(stage.method_throttle("/one-more/GET", t).unwrap_err().field(), "methods");

    // A change to an in-memory store that goes over the total is refused as a file is.
    let mut plans = Vec::new();
    for p in 0..10 {
        let mut ps = PlanStage::new("a", "b");
        for i in 0..MAX_METHODS_PER_STAGE {
            ps = ps.method_throttle(&format!("/p{p}x{i}/GET"), t).unwrap();
        }
        plans.push(UsagePlan::new(format!("p{p}")).stage(ps));
    }
    let store = crate::InMemoryKeyStore::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"").unwrap();
    for p in plans {
        store.create_plan(p).unwrap();
    }
    let one_more = UsagePlan::new("small").stage(PlanStage::new("a", "b").method_throttle("/s/GET", t).unwrap());
    let e = store.create_plan(one_more).unwrap_err();
    assert_eq!(e.field(), "plans[10].stages[0].methods", "{e}");
    assert_eq!(store.config().plans().len(), 10);
}

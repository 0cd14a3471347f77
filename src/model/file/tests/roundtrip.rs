//! Writing: what `to_json_string` and `to_toml_string` write reads back into an equal config.

use super::*;
use crate::model::{PlanStage, Quota, QuotaPeriod, Stage, Throttle, UsagePlan, MAX_QUOTA_LIMIT};
use proptest::prelude::*;
use proptest::sample::subsequence;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Both forms read back into `config`, and `Debug` shows no key value.
fn assert_round_trips(config: &Config) {
    let json = config.to_json_string();
    assert_eq!(&Config::from_json_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}")), config, "{json}");
    let toml = config.to_toml_string();
    assert_eq!(&Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}")), config, "{toml}");
    let debug = format!("{config:?}");
    let values = config.keys().iter().map(|(s, _)| s).chain(config.previous_values().iter().map(|p| p.value()));
    for value in values {
        assert!(!debug.contains(value.expose()), "Debug shows a key value");
    }
}

fn at(secs: i64, nanos: u32) -> SystemTime {
    let d = Duration::new(secs.unsigned_abs(), 0);
    let t = if secs >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d };
    t + Duration::from_nanos(u64::from(nanos))
}

fn t(rate: f64, burst: u32) -> Throttle {
    Throttle::new(rate, burst).unwrap()
}

fn secret(s: &str) -> KeySecret {
    KeySecret::new(s).unwrap()
}

/// Every field the model holds, set.
fn everything() -> Config {
    let stage = Stage::new("petstore", "prod")
        .with_throttle(t(1000.0, 500))
        .method_throttle("/pets/{petId}/DELETE", t(2.5, 3))
        .unwrap()
        .method_throttle("/pets/GET", t(200.0, 100))
        .unwrap()
        .public_method("/health/GET")
        .unwrap()
        .public_method("/files/{proxy+}/GET")
        .unwrap()
        .account_throttle(t(10_000.0, 5000));
    let gold = UsagePlan::new("gold")
        .with_name("Gold \"tier\"")
        .with_description("multi\nline, with \u{7f} and é")
        .with_throttle(t(0.1, 1))
        .with_quota(Quota::new(5000, QuotaPeriod::Month).unwrap().with_offset(120).unwrap())
        .with_created(at(1_793_491_200, 500_000_000))
        .with_product_code("prod-1")
        .tag("tier", "gold")
        .tag("with space", "")
        .stage(PlanStage::new("petstore", "prod").method_throttle("/orders/{id}/items/{item}/PUT", t(1.0, 1)).unwrap())
        .stage(PlanStage::new("petstore", "staging"));
    let free = UsagePlan::new("free").with_quota(Quota::new(100, QuotaPeriod::Week).unwrap());
    let keys = vec![
        (
            secret("acme-0123456789abcdefghij"),
            ApiKey::new("k-acme")
                .with_name("Acme CI")
                .with_description("rotated")
                .with_customer_id("acme")
                .with_expires(at(4_070_908_800, 0))
                .with_created(at(1_790_000_000, 1))
                .with_last_updated(at(1_790_000_001, 999_999_999))
                .tag("team", "billing")
                .plan("gold"),
        ),
        (secret("off-0123456789abcdefghij"), ApiKey::new("k-off").enabled(false).plan("free")),
    ];
    Config::new(stage, vec![gold, free], keys)
        .unwrap()
        .with_previous_value("k-acme", secret("acme-old-0123456789abcdefghij"), at(1_800_000_000, 0))
        .unwrap()
        .with_previous_value("k-acme", secret("acme-older-0123456789abcdefghij"), at(-1, 5))
        .unwrap()
}

#[test]
fn every_field_round_trips() {
    let config = everything();
    assert_round_trips(&config);
    let toml = config.to_toml_string();
    for line in [
        "[stage]\napi = \"petstore\"\nname = \"prod\"\nthrottle = { rate = 1000.0, burst = 500 }\n",
        "methods = { \"/pets/{petId}/DELETE\" = { rate = 2.5, burst = 3 }, \"/pets/GET\" = { rate = 200.0, burst = 100 } }\n",
        "public_methods = [\"/health/GET\", \"/files/{proxy+}/GET\"]\n",
        "[account]\nthrottle = { rate = 10000.0, burst = 5000 }\n",
        "quota = { limit = 5000, period = \"MONTH\", offset = 120 }\ncreated = \"2026-11-01T00:00:00.5Z\"\n",
        "[[plans.stages]]\napi = \"petstore\"\nstage = \"staging\"\n",
        "previous_values = [{ value = \"acme-old-0123456789abcdefghij\", until = \"2027-01-15T08:00:00Z\" }, \
         { value = \"acme-older-0123456789abcdefghij\", until = \"1969-12-31T23:59:59.000000005Z\" }]\n",
        "enabled = false\n",
    ] {
        assert!(toml.contains(line), "{line:?} not in\n{toml}");
    }
}

#[test]
fn the_demo_file_round_trips() {
    let config = Config::from_toml_str(include_str!("../../../../examples/plans.toml")).unwrap();
    assert_round_trips(&config);
}

#[test]
fn method_throttles_keep_file_order() {
    let text = r#"{"stage":{"api":"a","name":"b","methods":{"/z/GET":{"rate":1,"burst":1},"/a/GET":{"rate":2,"burst":2},"/z/GET":{"rate":3,"burst":3}}}}"#;
    let c = Config::from_json_str(text).unwrap();
    let methods: Vec<_> = c.stage().methods().iter().map(|(k, t)| (k.to_string(), t.burst())).collect();
    // A repeated JSON key replaces the earlier value, as in a map.
    assert_eq!(methods, [("/z/GET".to_owned(), 3), ("/a/GET".to_owned(), 2)]);
    let c = Config::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"\nmethods = { \"/z/GET\" = { rate = 1.0, burst = 1 }, \"/a/GET\" = { rate = 1.0, burst = 1 } }").unwrap();
    assert_eq!(c.stage().methods()[0].0.to_string(), "/z/GET");
}

#[test]
fn previous_values_are_kept_grouped_by_key() {
    let (a, b) = (secret("a-0123456789abcdefghij"), secret("b-0123456789abcdefghij"));
    let config = Config::new(Stage::new("a", "b"), Vec::new(), vec![(a, ApiKey::new("a")), (b, ApiKey::new("b"))])
        .unwrap()
        .with_previous_value("b", secret("b1-0123456789abcdefghij"), at(10, 0))
        .unwrap()
        .with_previous_value("a", secret("a1-0123456789abcdefghij"), at(20, 0))
        .unwrap()
        .with_previous_value("b", secret("b2-0123456789abcdefghij"), at(30, 0))
        .unwrap();
    let order: Vec<_> = config.previous_values().iter().map(|p| p.value().expose()).collect();
    assert_eq!(order, ["a1-0123456789abcdefghij", "b1-0123456789abcdefghij", "b2-0123456789abcdefghij"]);
    assert_round_trips(&config);
}

#[test]
fn times_outside_rfc_3339_are_written_as_the_nearest_one_inside() {
    let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
    let key = ApiKey::new("k").with_expires(far).with_created(UNIX_EPOCH - Duration::from_secs(70_000_000_000));
    let config = Config::new(Stage::new("a", "b"), Vec::new(), vec![(secret("k-0123456789abcdefghij"), key)]).unwrap();
    let back = Config::from_json_str(&config.to_json_string()).unwrap();
    let key = &back.keys()[0].1;
    assert_eq!(key.expires(), Some(at(253_402_300_799, 999_999_999)));
    assert_eq!(key.created(), Some(at(-62_167_219_200, 0)));
}

#[test]
fn parts_are_checked_as_a_file_is() {
    let plan = |s: PlanStage| UsagePlan::new("p").stage(s);
    let e = Config::new(Stage::new(" ", "b"), Vec::new(), Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "stage.api: must not be empty");
    let twice = plan(PlanStage::new("a", "b")).stage(PlanStage::new("a", "b"));
    let e = Config::new(Stage::new("a", "b"), vec![twice], Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "plans[0].stages[1]: stage a/b is listed twice");
    let e = Config::new(Stage::new("a", "b"), vec![plan(PlanStage::new("", "b"))], Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "plans[0].stages[0].api: must not be empty");
    let e = Config::new(Stage::new("a", "b"), Vec::new(), vec![(secret("k-0123456789abcdefghij"), ApiKey::new(""))]);
    assert_eq!(e.unwrap_err().to_string(), "keys[0].id: must not be empty");
}

// Property: any configuration the model accepts round-trips.

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,6}"
}

fn instant() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        (-62_167_219_200i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| at(s, n)),
        (0i64..4_000_000_000).prop_map(|s| at(s, 0)),
    ]
}

fn throttle() -> impl Strategy<Value = Throttle> {
    let rate =
        prop_oneof![0.001f64..1e9, (1u32..10_000).prop_map(f64::from), (1u32..1000).prop_map(|n| 1.0 / f64::from(n))];
    let burst = prop_oneof![1u32..1000, Just(u32::MAX)];
    (rate, burst).prop_filter_map("refills too slowly", |(r, b)| Throttle::new(r, b).ok())
}

fn quota() -> impl Strategy<Value = Quota> {
    let period = prop_oneof![Just(QuotaPeriod::Day), Just(QuotaPeriod::Week), Just(QuotaPeriod::Month)];
    (1..=MAX_QUOTA_LIMIT, period, any::<u64>())
        .prop_map(|(limit, period, o)| Quota::new(limit, period).unwrap().with_offset(o % limit).unwrap())
}

fn tags() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop::collection::vec(any::<char>(), 1..10)
        .prop_map(String::from_iter)
        .prop_filter("reserved", |n| !n.to_ascii_lowercase().starts_with("aws:"));
    prop::collection::vec((name, text()), 0..3)
}

/// Method keys (with path parameters) of `pool`, some of them in any order, each with a throttle.
fn methods(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<(&'static str, Throttle)>> {
    subsequence(pool, 0..=pool.len()).prop_shuffle().prop_flat_map(|keys| {
        prop::collection::vec(throttle(), keys.len()).prop_map(move |t| keys.iter().copied().zip(t).collect())
    })
}

fn stage() -> impl Strategy<Value = Stage> {
    let public = subsequence(&["/health/GET", "/status/{code}/HEAD", "//GET"][..], 0..=3).prop_shuffle();
    let stage_methods = methods(&["/pets/GET", "/pets/{petId}/DELETE", "/store/*", "/files/{proxy+}/POST"]);
    (prop::option::of(throttle()), stage_methods, public, prop::option::of(throttle())).prop_map(
        |(default, methods, public, account)| {
            let mut s = Stage::new("petstore", "prod");
            s = if let Some(t) = default { s.with_throttle(t) } else { s };
            for (m, t) in methods {
                s = s.method_throttle(m, t).unwrap();
            }
            for m in public {
                s = s.public_method(m).unwrap();
            }
            if let Some(t) = account {
                s.account_throttle(t)
            } else {
                s
            }
        },
    )
}

fn plan() -> impl Strategy<Value = UsagePlan> {
    let bindings =
        subsequence(&[("petstore", "prod"), ("petstore", "staging"), ("other", "prod")][..], 0..=3).prop_shuffle();
    let stages = bindings.prop_flat_map(|b| {
        let n = b.len();
        prop::collection::vec(methods(&["/orders/{id}/items/{item}/PUT", "/pets/{id}/PATCH", "/a/{x+}/GET"]), n)
            .prop_map(move |m| b.iter().copied().zip(m).collect::<Vec<_>>())
    });
    let meta = (text(), prop::option::of(text()), prop::option::of(text()), tags(), prop::option::of(instant()));
    (ident(), meta, prop::option::of(throttle()), prop::option::of(quota()), stages).prop_map(
        |(id, (name, description, code, tags, created), throttle, quota, stages)| {
            let mut p = UsagePlan::new(id).with_name(name);
            p = if let Some(d) = description { p.with_description(d) } else { p };
            p = if let Some(c) = code { p.with_product_code(c) } else { p };
            p = if let Some(c) = created { p.with_created(c) } else { p };
            p = if let Some(t) = throttle { p.with_throttle(t) } else { p };
            p = if let Some(q) = quota { p.with_quota(q) } else { p };
            for (n, v) in tags {
                p = p.tag(n, v);
            }
            for ((api, stage), methods) in stages {
                let mut ps = PlanStage::new(api, stage);
                for (m, t) in methods {
                    ps = ps.method_throttle(m, t).unwrap();
                }
                p = p.stage(ps);
            }
            p
        },
    )
}

fn key() -> impl Strategy<Value = (String, ApiKey, Vec<(String, SystemTime)>)> {
    let times = (prop::option::of(instant()), prop::option::of(instant()), prop::option::of(instant()));
    let meta = (text(), prop::option::of(text()), prop::option::of(text()), tags(), any::<bool>());
    let previous = prop::collection::vec(("[!-~]{20,40}", instant()), 0..3);
    ("[!-~]{20,100}", ident(), meta, times, prop::collection::vec(0usize..4, 0..3), previous).prop_map(
        |(value, id, (name, description, customer, tags, enabled), (expires, created, updated), plans, previous)| {
            let mut k = ApiKey::new(id).with_name(name).enabled(enabled);
            k = if let Some(d) = description { k.with_description(d) } else { k };
            k = if let Some(c) = customer { k.with_customer_id(c) } else { k };
            k = if let Some(t) = expires { k.with_expires(t) } else { k };
            k = if let Some(t) = created { k.with_created(t) } else { k };
            k = if let Some(t) = updated { k.with_last_updated(t) } else { k };
            for (n, v) in tags {
                k = k.tag(n, v);
            }
            for p in plans {
                k = k.plan(format!("#{p}"));
            }
            (value, k, previous)
        },
    )
}

/// Plans and keys with unique ids and values; each key in plans that exist and share no stage;
/// old values added in shuffled order.
fn config() -> impl Strategy<Value = Config> {
    let parts = (stage(), prop::collection::vec(plan(), 0..4), prop::collection::vec(key(), 0..4));
    (parts, any::<u64>()).prop_filter_map("route conflict", |((stage, plans, keys), seed)| {
        let plans: Vec<UsagePlan> = plans.into_iter().enumerate().map(|(i, p)| rename(p, &format!("p{i}-"))).collect();
        let mut rotated = Vec::new();
        let mut list = Vec::new();
        for (i, (value, key, previous)) in keys.into_iter().enumerate() {
            let id = format!("k{i}-{}", key.id());
            let mut k = ApiKey::new(id.as_str()).with_name(key.name()).enabled(key.is_enabled());
            k = copy_key_fields(&key, k);
            let mut bound: Vec<(&str, &str)> = Vec::new();
            for p in key.plan_ids() {
                let Some(plan) = p[1..].parse::<usize>().ok().and_then(|n| plans.get(n)) else { continue };
                let stages: Vec<_> = plan.stages().iter().map(|s| (s.api(), s.stage_name())).collect();
                if stages.iter().all(|s| !bound.contains(s)) {
                    bound.extend(stages);
                    k = k.plan(plan.id());
                }
            }
            for (j, (old, until)) in previous.into_iter().enumerate() {
                rotated.push((id.clone(), format!("{i}.{j}-{old}"), until));
            }
            list.push((KeySecret::new(format!("{i}-{value}")).ok()?, k));
        }
        let n = rotated.len().max(1);
        rotated.rotate_left(usize::try_from(seed % n as u64).ok()?);
        let mut config = Config::new(stage, plans, list).ok()?;
        for (id, value, until) in rotated {
            config = config.with_previous_value(&id, KeySecret::new(value).ok()?, until).ok()?;
        }
        Some(config)
    })
}

/// `plan` under the id `prefix` + its id (for unique ids), everything else the same.
fn rename(plan: UsagePlan, prefix: &str) -> UsagePlan {
    let mut p = UsagePlan::new(format!("{prefix}{}", plan.id())).with_name(plan.name());
    p = if let Some(d) = plan.description() { p.with_description(d) } else { p };
    p = if let Some(c) = plan.product_code() { p.with_product_code(c) } else { p };
    p = if let Some(c) = plan.created() { p.with_created(c) } else { p };
    p = if let Some(t) = plan.throttle() { p.with_throttle(t) } else { p };
    p = if let Some(q) = plan.quota() { p.with_quota(q) } else { p };
    for (n, v) in plan.tags() {
        p = p.tag(n, v);
    }
    plan.stages().iter().fold(p, |p, s| p.stage(s.clone()))
}

/// `to` with `from`'s fields other than id, name, enabled and plans.
fn copy_key_fields(from: &ApiKey, mut to: ApiKey) -> ApiKey {
    to = if let Some(d) = from.description() { to.with_description(d) } else { to };
    to = if let Some(c) = from.customer_id() { to.with_customer_id(c) } else { to };
    to = if let Some(t) = from.expires() { to.with_expires(t) } else { to };
    to = if let Some(t) = from.created() { to.with_created(t) } else { to };
    to = if let Some(t) = from.last_updated() { to.with_last_updated(t) } else { to };
    from.tags().iter().fold(to, |k, (n, v)| k.tag(n, v))
}

proptest! {
    #[test]
    fn any_config_round_trips(config in config()) {
        assert_round_trips(&config);
    }
}

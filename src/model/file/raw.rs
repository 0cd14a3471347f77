//! The file's structure as serde sees it, field names as in the file: what is read (then checked
//! in `read.rs`) and what is written (built in `write.rs`). Numbers are wide (`i64`) so that a
//! negative or oversized value gets a checked error naming its field rather than a serde error.

use crate::model::tags::Tags;
use crate::model::QuotaPeriod;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) stage: RawStage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) account: Option<RawAccount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) plans: Vec<RawPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) keys: Vec<RawKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) customers: Vec<RawCustomer>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCustomer {
    pub(super) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throttle: Option<RawThrottle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota: Option<RawQuota>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "wide_opt")]
    pub(super) concurrency: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota_anchor: Option<RawTime>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) api: String,
    pub(super) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throttle: Option<RawThrottle>,
    #[serde(default, skip_serializing_if = "Methods::is_empty")]
    pub(super) methods: Methods,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) public_methods: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throttle: Option<RawThrottle>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottle {
    pub(super) rate: f64,
    #[serde(deserialize_with = "wide")]
    pub(super) burst: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    #[serde(deserialize_with = "wide")]
    pub(super) limit: i64,
    #[serde(deserialize_with = "period")]
    pub(super) period: QuotaPeriod,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "wide")]
    pub(super) offset: i64,
}

/// An integer: one past `i64` (which TOML and JSON may hold) is out of range, a fraction is not
/// a whole number; each says so rather than serde's `invalid type: integer ... expected i64`.
fn wide<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Wide;
    impl Visitor<'_> for Wide {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            self.visit_u128(u128::from(v))
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| match v < 0 {
                true => E::custom(format_args!("{v} is out of range: at least {}", i64::MIN)),
                false => E::custom(format_args!("{v} is out of range: at most {}", i64::MAX)),
            })
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format_args!("{v} is out of range: at most {}", i64::MAX)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            // JSON reads an integer past `u64` as a float.
            Err(if v.fract() != 0.0 || !v.is_finite() {
                E::custom(format_args!("must be a whole number, got {v}"))
            } else if v >= i64::MAX as f64 {
                E::custom(format_args!("{v} is out of range: at most {}", i64::MAX))
            } else if v < i64::MIN as f64 {
                E::custom(format_args!("{v} is out of range: at least {}", i64::MIN))
            } else {
                E::custom(format_args!("must be an integer, got {v:?}"))
            })
        }
    }
    deserializer.deserialize_any(Wide)
}

/// An optional [`wide`] integer.
fn wide_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    wide(deserializer).map(Some)
}

/// `DAY`, `WEEK` or `MONTH`; any other name is refused naming the three.
fn period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<QuotaPeriod, D::Error> {
    struct Period;
    impl Visitor<'_> for Period {
        type Value = QuotaPeriod;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("DAY, WEEK or MONTH")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<QuotaPeriod, E> {
            match v {
                "DAY" => Ok(QuotaPeriod::Day),
                "WEEK" => Ok(QuotaPeriod::Week),
                "MONTH" => Ok(QuotaPeriod::Month),
                other => Err(E::custom(format_args!("unknown period {other:?}: expected DAY, WEEK or MONTH"))),
            }
        }
    }
    deserializer.deserialize_str(Period)
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub(super) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throttle: Option<RawThrottle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota: Option<RawQuota>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) created: Option<RawTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub(super) tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "wide_opt")]
    pub(super) concurrency: Option<i64>,
    /// Last: the TOML writer puts these in `[[plans.stages]]` tables after the plan's own lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) stages: Vec<RawPlanStage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlanStage {
    pub(super) api: String,
    pub(super) stage: String,
    #[serde(default, skip_serializing_if = "Methods::is_empty")]
    pub(super) methods: Methods,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    pub(super) value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) plans: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) expires: Option<RawTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) created: Option<RawTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_updated: Option<RawTime>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub(super) tags: Tags,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) previous_values: Vec<RawPreviousValue>,
    /// The key's own limits, replacing its plan's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throttle: Option<RawThrottle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota: Option<RawQuota>,
    /// `Some` (even empty) replaces the plan's method throttles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) methods: Option<Methods>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "wide_opt")]
    pub(super) concurrency: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quota_anchor: Option<RawTime>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPreviousValue {
    pub(super) value: String,
    pub(super) until: RawTime,
}

/// RFC 3339 timestamps: a string in JSON and TOML, or a bare TOML datetime. Written as a string.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTime {
    Text(String),
    Toml(toml::value::Datetime),
}

/// Method throttles by method key (`"/pets/{petId}/DELETE"`): a JSON object or a TOML table, kept
/// in file order so that what is written reads back in the same order. A key repeated in JSON
/// replaces the earlier value, as it would in a map.
#[derive(Default)]
pub(super) struct Methods(pub(super) Vec<(String, RawThrottle)>);

impl Methods {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Methods {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Methods;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Methods, A::Error> {
                let mut list: Vec<(String, RawThrottle)> = Vec::new();
                let mut index: HashMap<String, usize> = HashMap::new();
                while let Some((key, throttle)) = map.next_entry::<String, RawThrottle>()? {
                    match index.get(&key) {
                        Some(&i) => list[i].1 = throttle,
                        None => {
                            index.insert(key.clone(), list.len());
                            list.push((key, throttle));
                        }
                    }
                }
                Ok(Methods(list))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

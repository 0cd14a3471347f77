//! `patchOperations` of UpdateApiKey and UpdateUsagePlan, on the paths API Gateway documents:
//!
//! | resource | op | path | value |
//! |---|---|---|---|
//! | API key | replace | `/name`, `/description`, `/customerId` | the text (empty: none, except the name) |
//! | API key | replace | `/enabled` | `true` or `false` |
//! | API key | replace (or add) | `/throttle/rateLimit`, `/throttle/burstLimit` | a number (the key's own throttle) |
//! | API key | replace (or add) | `/quota/limit`, `/quota/offset` | a whole number (the key's own quota) |
//! | API key | replace (or add) | `/quota/period` | `DAY`, `WEEK` or `MONTH` |
//! | API key | replace (or add) | `/methodThrottles/{resourcePath}/{httpMethod}/rateLimit` (or `burstLimit`) | a number |
//! | API key | replace | `/concurrency` | a whole number, at least 1 |
//! | API key | replace | `/quotaAnchor` | an RFC 3339 time, e.g. `2026-01-31T09:30:00Z` |
//! | API key | remove | `/throttle`, `/quota`, `/concurrency`, `/quotaAnchor` | (back to the plan's; no anchor) |
//! | API key | remove | `/methodThrottles/{resourcePath}/{httpMethod}` | (one of the key's own) |
//! | API key | remove | `/methodThrottles` | (back to the plan's method throttles) |
//! | usage plan | replace | `/name`, `/description`, `/productCode` | the text |
//! | usage plan | replace (or add) | `/throttle/rateLimit`, `/throttle/burstLimit` | a number |
//! | usage plan | replace (or add) | `/quota/limit`, `/quota/offset` | a whole number |
//! | usage plan | replace (or add) | `/quota/period` | `DAY`, `WEEK` or `MONTH` |
//! | usage plan | replace | `/concurrency` | a whole number, at least 1 (per key) |
//! | usage plan | remove | `/throttle`, `/quota`, `/concurrency` | |
//! | usage plan | add, remove | `/apiStages` | `apiId:stage` |
//! | usage plan | replace (or add) | `/apiStages/{apiId}:{stage}/throttle/{resourcePath}/{httpMethod}/rateLimit` (or `burstLimit`) | a number |
//! | usage plan | remove | `/apiStages/{apiId}:{stage}/throttle/{resourcePath}/{httpMethod}` or `/apiStages/{apiId}:{stage}/throttle` | |
//!
//! A `/` inside a path segment is written `~1` (`~` is `~0`), as in JSON Pointer:
//! `/apiStages/a1b2:prod/throttle/~1pets~1{petId}/DELETE/rateLimit`. The whole list applies or
//! nothing does; a throttle or quota is checked once all operations are applied, so setting
//! `rateLimit` and `burstLimit` of a new method throttle takes two operations in one request.
//! A key's own method throttles, once it has a list, replace all of its plan's: removing the
//! last one leaves the key with none (`"methodThrottles": {}`), `remove /methodThrottles` gives
//! it its plan's again.

use crate::admin::error::{ApiError, ApiResult};
use crate::import::MAX_NAME_LEN;
use crate::model::{ApiKey, MethodKey, UsagePlan};
use crate::wire::{concurrency, ApiStageShape, LimitsShape, Object, PlanLimits, ThrottleShape};

/// The operations API Gateway has; only the first three change usage plans and keys.
const OPS: [&str; 6] = ["add", "remove", "replace", "move", "copy", "test"];

const KEY_PATHS: &str = "replace /name, /description, /enabled, /customerId, /throttle/rateLimit, \
    /throttle/burstLimit, /quota/limit, /quota/period, /quota/offset, \
    /methodThrottles/{resourcePath}/{httpMethod}/rateLimit|burstLimit, /concurrency, /quotaAnchor; \
    remove /throttle, /quota, /methodThrottles[/{resourcePath}/{httpMethod}], /concurrency, /quotaAnchor";
const PLAN_PATHS: &str = "replace /name, /description, /productCode, /throttle/rateLimit, /throttle/burstLimit, \
    /quota/limit, /quota/period, /quota/offset, /concurrency, \
    /apiStages/{apiId}:{stage}/throttle/{resourcePath}/{httpMethod}/rateLimit|burstLimit; \
    add /apiStages (value apiId:stage); \
    remove /throttle, /quota, /concurrency, /apiStages (value apiId:stage), /apiStages/{apiId}:{stage}/throttle[/{resourcePath}/{httpMethod}]";

/// One `PatchOperation`, its path split into unescaped segments.
#[derive(Debug)]
pub(crate) struct PatchOp {
    index: usize,
    op: &'static str,
    path: String,
    segments: Vec<String>,
    value: Option<String>,
}

impl PatchOp {
    fn invalid_path(&self, paths: &str) -> ApiError {
        ApiError::bad_request(format!(
            "Invalid patch path '{}' specified for op '{}'. Supported: {paths}",
            self.path, self.op
        ))
    }

    fn value(&self) -> ApiResult<&str> {
        self.value.as_deref().ok_or_else(|| {
            ApiError::invalid(
                &format!("patchOperations[{}].value", self.index),
                format!("is required for op '{}' on '{}'", self.op, self.path),
            )
        })
    }

    /// The value, or `None` when absent or empty (clears an optional text).
    fn text(&self) -> Option<String> {
        self.value.clone().filter(|v| !v.is_empty())
    }

    fn parsed<T: std::str::FromStr>(&self, what: &str) -> ApiResult<T> {
        self.value()?.trim().parse().map_err(|_| {
            ApiError::invalid(
                &format!("patchOperations[{}].value", self.index),
                format!("must be {what} for '{}'", self.path),
            )
        })
    }

    /// A whole number value (as a JSON `Integer` or `Long` member of a request reads).
    fn whole(&self) -> ApiResult<i128> {
        self.parsed::<i64>("a whole number").map(i128::from)
    }

    fn segments(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// Reads `patchOperations`; absent means none.
pub(crate) fn parse(body: &Object<'_>) -> ApiResult<Vec<PatchOp>> {
    let mut ops = Vec::new();
    for (index, o) in body.objects("patchOperations")?.into_iter().enumerate() {
        let op_name = o.required_string("op")?;
        let Some(op) = OPS.iter().find(|n| **n == op_name) else {
            return Err(ApiError::invalid(&o.field("op"), format!("must be one of {}", OPS.join(", "))));
        };
        let path = o.required_string("path")?;
        let Some(rest) = path.strip_prefix('/') else {
            return Err(ApiError::invalid(&o.field("path"), "must start with '/'"));
        };
        let segments = rest.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
        let value = o.string("value")?.map(str::to_owned);
        ops.push(PatchOp { index, op, segments, value, path: path.to_owned() });
    }
    Ok(ops)
}

/// Applies `ops` to an API key; its own limits are checked once all are applied.
pub(crate) fn patch_key(mut key: ApiKey, ops: &[PatchOp]) -> ApiResult<ApiKey> {
    let mut limits = LimitsShape::of_key(&key);
    let mut touched = false;
    for op in ops {
        if key_limits_op(&mut limits, op)? {
            touched = true;
            continue;
        }
        key = match (op.op, op.segments().as_slice()) {
            ("replace", ["name"]) => {
                let name = op.value()?;
                if name.trim().is_empty() {
                    return Err(ApiError::invalid("name", "must not be empty"));
                }
                check_key_name(name)?;
                key.with_name(name)
            }
            ("replace", ["description"]) => {
                key.set_description(op.text());
                key
            }
            ("replace", ["customerId"]) => {
                key.set_customer_id(op.text());
                key
            }
            ("replace", ["enabled"]) => key.enabled(op.parsed::<bool>("true or false")?),
            _ => return Err(op.invalid_path(KEY_PATHS)),
        };
    }
    if touched {
        key.set_overrides(Some(limits.build()?));
    }
    Ok(key)
}

/// Applies `op` to a key's own limits if it is about them (`false`: it is not).
fn key_limits_op(limits: &mut LimitsShape, op: &PatchOp) -> ApiResult<bool> {
    let set = matches!(op.op, "replace" | "add");
    match (op.op, op.segments().as_slice()) {
        ("remove", ["throttle"]) => limits.throttle = None,
        ("remove", ["quota"]) => limits.quota = None,
        ("remove", ["concurrency"]) => limits.concurrency = None,
        ("remove", ["quotaAnchor"]) => limits.quota_anchor = None,
        ("remove", ["methodThrottles"]) => limits.method_throttles = None,
        (_, ["throttle", leaf]) if set => set_throttle(limits.throttle.get_or_insert_default(), leaf, op, KEY_PATHS)?,
        (_, ["quota", "limit"]) if set => limits.quota.get_or_insert_default().limit = Some(op.whole()?),
        (_, ["quota", "offset"]) if set => limits.quota.get_or_insert_default().offset = Some(op.whole()?),
        (_, ["quota", "period"]) if set => limits.quota.get_or_insert_default().period = Some(op.value()?.to_owned()),
        ("replace", ["concurrency"]) => limits.concurrency = Some(op.whole()?),
        ("replace", ["quotaAnchor"]) => limits.quota_anchor = Some(op.value()?.to_owned()),
        (_, ["methodThrottles", method @ .., leaf]) if set && !method.is_empty() => {
            let list = limits.method_throttles.get_or_insert_default();
            let key = method.join("/");
            let i = match find_method(list, &key) {
                Some(i) => i,
                None => {
                    list.push((key, ThrottleShape::default()));
                    list.len() - 1
                }
            };
            set_throttle(&mut list[i].1, leaf, op, KEY_PATHS)?;
        }
        ("remove", ["methodThrottles", method @ ..]) if !method.is_empty() => {
            let key = method.join("/");
            let list = limits.method_throttles.as_mut();
            let i = list.as_deref().and_then(|l| find_method(l, &key));
            match (list, i) {
                (Some(list), Some(i)) => drop(list.remove(i)),
                _ => {
                    return Err(ApiError::not_found(format!("The API key has no method throttle of its own for {key}")))
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Checks a key name's length (API Gateway's limit, as in CSV imports).
pub(crate) fn check_key_name(name: &str) -> ApiResult<()> {
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(ApiError::invalid("name", format!("must be at most {MAX_NAME_LEN} characters long, got {len}")));
    }
    Ok(())
}

/// Applies `ops` to a usage plan; limits are checked once all are applied.
pub(crate) fn patch_plan(mut plan: UsagePlan, ops: &[PatchOp]) -> ApiResult<UsagePlan> {
    let mut limits = PlanLimits::of(&plan);
    for op in ops {
        plan = plan_op(plan, &mut limits, op)?;
    }
    limits.apply(&mut plan)?;
    Ok(plan)
}

fn plan_op(mut plan: UsagePlan, limits: &mut PlanLimits, op: &PatchOp) -> ApiResult<UsagePlan> {
    let set = matches!(op.op, "replace" | "add");
    match (op.op, op.segments().as_slice()) {
        ("replace", ["name"]) => {
            let name = op.value()?;
            if name.trim().is_empty() {
                return Err(ApiError::invalid("name", "must not be empty"));
            }
            plan = plan.with_name(name);
        }
        ("replace", ["description"]) => plan.set_description(op.text()),
        ("replace", ["productCode"]) => plan.set_product_code(op.text()),
        ("remove", ["throttle"]) => limits.throttle = None,
        ("remove", ["quota"]) => limits.quota = None,
        ("remove", ["concurrency"]) => plan.set_concurrency(None),
        ("replace", ["concurrency"]) => plan.set_concurrency(Some(concurrency("concurrency", op.whole()?)?)),
        (_, ["throttle", leaf]) if set => set_throttle(limits.throttle.get_or_insert_default(), leaf, op, PLAN_PATHS)?,
        (_, ["quota", "limit"]) if set => limits.quota.get_or_insert_default().limit = Some(op.whole()?),
        (_, ["quota", "offset"]) if set => {
            limits.quota.get_or_insert_default().offset = Some(op.whole()?);
        }
        (_, ["quota", "period"]) if set => limits.quota.get_or_insert_default().period = Some(op.value()?.to_owned()),
        ("add", ["apiStages"]) => {
            let (api, stage) = split_stage(op.value()?, op)?;
            if find_stage(limits, api, stage).is_some() {
                return Err(ApiError::conflict(format!("API stage {api}:{stage} is already in the usage plan")));
            }
            let stage = ApiStageShape { api_id: api.to_owned(), stage: stage.to_owned(), throttle: Vec::new() };
            limits.api_stages.push(stage);
        }
        ("remove", ["apiStages"]) => {
            let (api, stage) = split_stage(op.value()?, op)?;
            let i = stage_index(limits, api, stage)?;
            limits.api_stages.remove(i);
        }
        ("remove", ["apiStages", label, "throttle"]) => {
            let (api, stage) = split_stage(label, op)?;
            let i = stage_index(limits, api, stage)?;
            limits.api_stages[i].throttle.clear();
        }
        (_, ["apiStages", label, "throttle", method @ .., leaf]) if set && !method.is_empty() => {
            let (api, stage) = split_stage(label, op)?;
            let i = stage_index(limits, api, stage)?;
            let s = &mut limits.api_stages[i];
            let key = method.join("/");
            let i = match find_method(&s.throttle, &key) {
                Some(i) => i,
                None => {
                    s.throttle.push((key, ThrottleShape::default()));
                    s.throttle.len() - 1
                }
            };
            set_throttle(&mut s.throttle[i].1, leaf, op, PLAN_PATHS)?;
        }
        ("remove", ["apiStages", label, "throttle", method @ ..]) if !method.is_empty() => {
            let (api, stage) = split_stage(label, op)?;
            let i = stage_index(limits, api, stage)?;
            let s = &mut limits.api_stages[i];
            let key = method.join("/");
            let i = find_method(&s.throttle, &key).ok_or_else(|| {
                ApiError::not_found(format!("API stage {} has no method throttle for {key}", s.label()))
            })?;
            s.throttle.remove(i);
        }
        _ => return Err(op.invalid_path(PLAN_PATHS)),
    }
    Ok(plan)
}

fn set_throttle(t: &mut ThrottleShape, leaf: &str, op: &PatchOp, paths: &str) -> ApiResult<()> {
    match leaf {
        "rateLimit" => t.rate_limit = Some(op.parsed("a number")?),
        "burstLimit" => t.burst_limit = Some(op.whole()?),
        _ => return Err(op.invalid_path(paths)),
    }
    Ok(())
}

/// `apiId:stage`.
fn split_stage<'v>(label: &'v str, op: &PatchOp) -> ApiResult<(&'v str, &'v str)> {
    match label.split_once(':') {
        Some((api, stage)) if !api.is_empty() && !stage.is_empty() => Ok((api, stage)),
        _ => Err(ApiError::bad_request(format!(
            "Invalid API stage in patch operation {} ('{}'): expected apiId:stage",
            op.index, op.path
        ))),
    }
}

fn find_stage(limits: &PlanLimits, api: &str, stage: &str) -> Option<usize> {
    limits.api_stages.iter().position(|s| s.api_id == api && s.stage == stage)
}

fn stage_index(limits: &PlanLimits, api: &str, stage: &str) -> ApiResult<usize> {
    find_stage(limits, api, stage)
        .ok_or_else(|| ApiError::not_found(format!("API stage {api}:{stage} is not in the usage plan")))
}

/// The method throttle for `key`: the same text, or the same method on the same path up to
/// parameter names (`/pets/{id}/GET` is `/pets/{petId}/GET`).
fn find_method(list: &[(String, ThrottleShape)], key: &str) -> Option<usize> {
    let wanted = key.parse::<MethodKey>().ok();
    list.iter().position(|(k, _)| {
        k == key
            || wanted
                .as_ref()
                .zip(k.parse::<MethodKey>().ok())
                .is_some_and(|(w, k)| w.normalized_path() == k.normalized_path() && w.method() == k.method())
    })
}

//! Checks across the parts of a configuration: names present, ids unique, references resolved,
//! at most one plan per stage for a key.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::plan::too_many_in_all;
use crate::model::{ApiKey, KeySecret, Stage, UsagePlan, MAX_METHOD_THROTTLES};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(super) fn nonempty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    Ok(())
}

/// What a file cannot hold, checked on parts built in code as the reader checks a file: empty
/// names and ids, a stage listed twice in one plan, more than [`MAX_METHOD_THROTTLES`] method
/// throttles in all. Linear in the size of the parts (sets, no pairwise comparisons).
pub(super) fn check_names(
    stage: &Stage,
    plans: &[Arc<UsagePlan>],
    keys: &[(KeySecret, ApiKey)],
) -> Result<(), ConfigError> {
    nonempty("stage.api", stage.api())?;
    nonempty("stage.name", stage.stage_name())?;
    let mut total = stage.methods().len();
    for (i, plan) in plans.iter().enumerate() {
        nonempty(&format!("plans[{i}].id"), plan.id())?;
        let mut bound: HashSet<(&str, &str)> = HashSet::with_capacity(plan.stages().len());
        for (j, s) in plan.stages().iter().enumerate() {
            let sf = format!("plans[{i}].stages[{j}]");
            nonempty(&format!("{sf}.api"), s.api())?;
            nonempty(&format!("{sf}.stage"), s.stage_name())?;
            total += s.methods().len();
            if total > MAX_METHOD_THROTTLES {
                return Err(too_many_in_all(format!("{sf}.methods"), total));
            }
            if !bound.insert((s.api(), s.stage_name())) {
                let reason = format!("stage {}/{} is listed twice", s.api(), s.stage_name());
                return Err(ConfigError::new(ConfigErrorKind::Duplicate, sf, reason));
            }
        }
    }
    for (i, (_, key)) in keys.iter().enumerate() {
        nonempty(&format!("keys[{i}].id"), key.id())?;
    }
    Ok(())
}

pub(super) fn check_cross_references(
    plans: &[Arc<UsagePlan>],
    keys: &[(KeySecret, ApiKey)],
) -> Result<(), ConfigError> {
    let plan_index = index_plans(plans)?;
    let mut key_ids: HashMap<&str, usize> = HashMap::new();
    let mut values: HashMap<&str, usize> = HashMap::new();
    for (i, (secret, key)) in keys.iter().enumerate() {
        if let Some(first) = key_ids.insert(key.id(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("keys[{i}].id"),
                format!("{:?} is already the id of keys[{first}]", key.id()),
            ));
        }
        if let Some(first) = values.insert(secret.expose(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("keys[{i}].value"),
                format!("the same value as keys[{first}]"),
            ));
        }
        check_key_plans(plans, &plan_index, key).map_err(|(j, e)| match j {
            Some(j) => e.under(&format!("keys[{i}].plans[{j}]")),
            None => e.under(&format!("keys[{i}].plans")),
        })?;
    }
    Ok(())
}

/// Plan id -> index; refuses duplicate ids.
pub(super) fn index_plans(plans: &[Arc<UsagePlan>]) -> Result<HashMap<&str, usize>, ConfigError> {
    let mut plan_index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        if let Some(first) = plan_index.insert(p.id(), i) {
            return Err(ConfigError::new(
                ConfigErrorKind::Duplicate,
                format!("plans[{i}].id"),
                format!("{:?} is already the id of plans[{first}]", p.id()),
            ));
        }
    }
    Ok(plan_index)
}

/// Checks that every plan of `key` exists and that no two apply to the same stage. The error has
/// an empty field; with it comes the index of the offending plan id (`None`: the list as a whole).
pub(super) fn check_key_plans(
    plans: &[Arc<UsagePlan>],
    plan_index: &HashMap<&str, usize>,
    key: &ApiKey,
) -> Result<(), (Option<usize>, ConfigError)> {
    let mut stages: HashMap<(&str, &str), &str> = HashMap::new();
    for (j, plan_id) in key.plan_ids().iter().enumerate() {
        let Some(&p) = plan_index.get(&**plan_id) else {
            let e = ConfigError::new(ConfigErrorKind::UnknownReference, "", format!("no plan has the id {plan_id:?}"));
            return Err((Some(j), e));
        };
        for s in plans[p].stages() {
            if let Some(other) = stages.insert((s.api(), s.stage_name()), plan_id) {
                if other != &**plan_id {
                    let e = ConfigError::new(
                        ConfigErrorKind::Duplicate,
                        "",
                        format!("plans {other:?} and {plan_id:?} both apply to stage {}/{}; a key may belong to at most one plan per stage", s.api(), s.stage_name()),
                    );
                    return Err((None, e));
                }
            }
        }
    }
    Ok(())
}

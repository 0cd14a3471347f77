//! Plans as this stage applies them: the throttles, method throttles, route table and quota
//! rule of a usage plan, compiled once per plan version and shared by every key of the plan.

use super::clock::{unix_secs, Now};
use super::gcra::Gcra;
use super::quota::QuotaRule;
use super::routes::{slot, RouteTable, RouteTableBuilder};
use crate::error::ConfigError;
use crate::model::{MethodKey, Stage, UsagePlan};
use std::collections::HashMap;
use std::sync::Arc;

/// A plan as this stage applies it.
#[derive(Debug)]
pub(crate) struct CompiledPlan {
    pub(crate) plan: Arc<UsagePlan>,
    /// Stage routes plus this plan's method routes; `None` when the plan adds no routes and the
    /// stage's table can be used as it is.
    pub(crate) routes: Option<RouteTable>,
    pub(crate) throttle: Option<Gcra>,
    pub(crate) methods: Box<[Gcra]>,
    /// The method key of each entry of `methods`.
    pub(crate) method_keys: Arc<[MethodKey]>,
    pub(crate) quota: Option<QuotaRule>,
    /// Unix seconds the plan counts as created at (for the quota offset).
    pub(crate) created: i64,
}

/// Adds the stage's method throttles and public methods to a route table.
pub(super) fn add_stage_routes(b: &mut RouteTableBuilder, stage: &Stage) {
    for (i, (key, _)) in stage.methods().iter().enumerate() {
        b.add(key, |slots| slots.stage = slot(i));
    }
    for key in stage.public_methods() {
        b.add(key, |slots| slots.public = true);
    }
}

/// The compiled plans of one stage, by plan id (the newest version of each).
#[derive(Debug, Default)]
pub(crate) struct Plans {
    by_id: parking_lot::Mutex<HashMap<Arc<str>, Arc<CompiledPlan>>>,
}

impl Plans {
    /// `plan` as `stage` applies it. A plan without a `created` time counts as created when
    /// this layer first used it (so a quota `offset` applies to that period), and keeps that
    /// time when the plan changes.
    pub(crate) fn compile(
        &self,
        stage: &Stage,
        plan: &Arc<UsagePlan>,
        now: Now,
    ) -> Result<Arc<CompiledPlan>, ConfigError> {
        let mut cache = self.by_id.lock();
        let mut created = plan.created().map(unix_secs).unwrap_or(now.unix_secs);
        if let Some(c) = cache.get(plan.id()) {
            if Arc::ptr_eq(&c.plan, plan) || *c.plan == **plan {
                return Ok(Arc::clone(c));
            }
            if plan.created().is_none() {
                created = c.created;
            }
        }
        let methods = plan.stage_binding(stage.api(), stage.stage_name()).map(|b| b.methods()).unwrap_or_default();
        let routes = if methods.is_empty() {
            None
        } else {
            let mut b = RouteTableBuilder::default();
            add_stage_routes(&mut b, stage);
            for (i, (key, _)) in methods.iter().enumerate() {
                b.add(key, |slots| slots.plan = slot(i));
            }
            Some(b.build().map_err(|e| e.under(&format!("plan {:?}", plan.id())))?)
        };
        let compiled = Arc::new(CompiledPlan {
            plan: Arc::clone(plan),
            routes,
            throttle: plan.throttle().map(Gcra::new),
            methods: methods.iter().map(|(_, t)| Gcra::new(*t)).collect(),
            method_keys: methods.iter().map(|(k, _)| k.clone()).collect(),
            quota: plan.quota().map(|q| QuotaRule::new(q, Some(created), None)),
            created,
        });
        cache.insert(Arc::clone(plan.id_arc()), Arc::clone(&compiled));
        Ok(compiled)
    }
}

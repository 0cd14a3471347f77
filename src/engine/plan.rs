//! Plans as this stage applies them: the throttles, method throttles, route table and quota
//! rule of a usage plan, compiled once per plan version and shared by every key of the plan.

use super::clock::{unix_secs, Now};
use super::customer::CustomerBinding;
use super::gcra::Gcra;
use super::quota::QuotaRule;
use super::routes::{slot, RouteTable, RouteTableBuilder};
use crate::error::ConfigError;
use crate::model::{MethodKey, Overrides, Quota, QuotaAnchor, Stage, UsagePlan};
use std::collections::HashMap;
use std::num::NonZeroU32;
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
    /// The per-key concurrency cap (the plan's, or the key's own).
    pub(crate) concurrency: Option<NonZeroU32>,
    /// The customer whose limits this compilation checks too (a plan compiled for the keys of
    /// one customer); `None` for the plan as every other key shares it.
    pub(crate) customer: Option<CustomerBinding>,
}

/// A quota rule whose `offset` applies to the period containing `created`, with periods
/// anchored at `anchor` if given.
pub(crate) fn quota_rule(quota: Quota, created: Option<i64>, anchor: Option<QuotaAnchor>) -> QuotaRule {
    QuotaRule::new(quota, created, anchor)
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

/// A plan id and a customer id.
type PlanAndCustomer = (Arc<str>, Arc<str>);

/// The compiled plans of one stage, by plan id (the newest version of each), and by plan and
/// customer id for keys whose customer limits something.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    by_id: parking_lot::Mutex<HashMap<Arc<str>, Arc<CompiledPlan>>>,
    by_customer: parking_lot::Mutex<HashMap<PlanAndCustomer, Arc<CompiledPlan>>>,
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
        let compiled = Arc::new(build(stage, plan, created, None, None)?);
        cache.insert(Arc::clone(plan.id_arc()), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// `plan` as `stage` applies it to one key: with the key's own limits in place of the plan's
    /// (`overrides`), and the key's customer's limits checked too. A plan for a customer's keys
    /// without overrides is compiled once per plan and customer version; one with overrides once
    /// per key revalidation (such keys are custom deals, few).
    pub(crate) fn compile_for(
        &self,
        stage: &Stage,
        plan: &Arc<UsagePlan>,
        overrides: Option<&Overrides>,
        customer: Option<CustomerBinding>,
        now: Now,
    ) -> Result<Arc<CompiledPlan>, ConfigError> {
        let shared = self.compile(stage, plan, now)?;
        if overrides.is_none() && customer.is_none() {
            return Ok(shared);
        }
        let Some(o) = overrides else {
            let customer = customer.expect("checked above");
            let id = (Arc::clone(plan.id_arc()), Arc::clone(customer.rule.customer.id_arc()));
            let mut cache = self.by_customer.lock();
            if let Some(c) = cache.get(&id) {
                let same_customer = c.customer.as_ref().is_some_and(|b| Arc::ptr_eq(&b.rule, &customer.rule));
                if Arc::ptr_eq(&c.plan, &shared.plan) && same_customer {
                    return Ok(Arc::clone(c));
                }
            }
            let compiled = Arc::new(build(stage, &shared.plan, shared.created, None, Some(customer))?);
            cache.insert(id, Arc::clone(&compiled));
            return Ok(compiled);
        };
        let own = Arc::new(o.apply_to(plan));
        Ok(Arc::new(build(stage, &own, shared.created, o.anchor, customer)?))
    }
}

/// Compiles `plan` for `stage`.
fn build(
    stage: &Stage,
    plan: &Arc<UsagePlan>,
    created: i64,
    anchor: Option<QuotaAnchor>,
    customer: Option<CustomerBinding>,
) -> Result<CompiledPlan, ConfigError> {
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
    Ok(CompiledPlan {
        plan: Arc::clone(plan),
        routes,
        throttle: plan.throttle().map(Gcra::new),
        methods: methods.iter().map(|(_, t)| Gcra::new(*t)).collect(),
        method_keys: methods.iter().map(|(k, _)| k.clone()).collect(),
        quota: plan.quota().map(|q| quota_rule(q, Some(created), anchor)),
        created,
        concurrency: plan.concurrency(),
        customer,
    })
}

//! [`ManagedKeyStore`] for [`InMemoryKeyStore`]: the admin API's operations over the
//! configuration, each one checked change of it.
//!
//! The configuration's checks name keys by their position (`keys[2].value: the same value as
//! keys[0]`), which means nothing to a caller of the admin API: conflicts about keys are told
//! here by key id instead, in the words of the SQL store, so that both stores answer alike.

use super::InMemoryKeyStore;
use crate::import::ImportedKey;
use crate::model::{ApiKey, Customer, KeySecret, PlanStage, UsagePlan};
use crate::store::manage::no_customer;
use crate::store::{
    CustomerQuery, KeyChange, KeyQuery, Listing, ManageError, ManageErrorKind, ManagedKeyStore, PlanChange, PlanQuery,
    StoredKey,
};
use std::sync::{Arc, Mutex};

fn no_plan(id: &str) -> ManageError {
    ManageError::not_found("usagePlanId", format!("no usage plan has the id {id:?}"))
}

fn no_key(id: &str) -> ManageError {
    ManageError::not_found("keyId", format!("no API key has the id {id:?}"))
}

/// A stage both plans are bound to.
fn shared_stage<'a>(plan: &'a UsagePlan, other: &UsagePlan) -> Option<&'a PlanStage> {
    plan.stages().iter().find(|s| other.stage_binding(s.api(), s.stage_name()).is_some())
}

impl InMemoryKeyStore {
    /// A key that would be in `plan` (as changed) and in another plan bound to one of its
    /// stages, as a conflict naming the key.
    fn plan_stage_conflict(&self, plan: &UsagePlan) -> Option<ManageError> {
        let config = self.config();
        for (_, key) in config.keys().iter().filter(|(_, k)| k.plan_ids().iter().any(|p| &**p == plan.id())) {
            for other in key.plan_ids().iter().filter(|p| &***p != plan.id()).filter_map(|p| self.plan_by_id(p)) {
                if let Some(s) = shared_stage(plan, &other) {
                    let reason = format!(
                        "key {:?} is in plans {:?} and {:?}, which would both be bound to stage {}/{}",
                        key.id(),
                        plan.id(),
                        other.id(),
                        s.api(),
                        s.stage_name()
                    );
                    return Some(ManageError::conflict("stages", reason));
                }
            }
        }
        None
    }

    /// `e` with a key the configuration's checks named by position (`the same value as
    /// keys[0]`) named by its id.
    fn naming_keys(&self, e: ManageError) -> ManageError {
        let index = e.reason().strip_prefix("the same value as keys[").and_then(|r| r.strip_suffix(']'));
        let Some(i) = index.and_then(|i| i.parse::<usize>().ok()) else { return e };
        match self.config().keys().get(i) {
            Some((_, key)) => ManageError::new(e.kind(), e.field(), format!("the same value as key {:?}", key.id())),
            None => e,
        }
    }
}

impl ManagedKeyStore for InMemoryKeyStore {
    async fn create_usage_plan(&self, plan: UsagePlan) -> Result<UsagePlan, ManageError> {
        self.create_plan(plan.clone())?;
        Ok(plan)
    }

    async fn get_usage_plan(&self, id: &str) -> Result<Option<UsagePlan>, ManageError> {
        Ok(self.plan_by_id(id).map(|p| (*p).clone()))
    }

    async fn get_usage_plans(&self, query: PlanQuery) -> Result<Listing<UsagePlan>, ManageError> {
        let key = match query.key_id() {
            Some(id) => Some(self.key_by_id(id).ok_or_else(|| no_key(id))?.1),
            None => None,
        };
        let plans = self
            .config()
            .plans()
            .iter()
            .filter(|p| key.as_ref().is_none_or(|k| k.plan_ids().iter().any(|id| &**id == p.id())))
            .map(|p| (**p).clone())
            .collect();
        Ok(Listing::page_of(plans, UsagePlan::id, query.position(), query.limit()))
    }

    async fn update_usage_plan(&self, id: &str, change: PlanChange) -> Result<UsagePlan, ManageError> {
        if self.plan_by_id(id).is_none() {
            return Err(no_plan(id));
        }
        // The plan as changed, to tell a refused result's conflict by key.
        let changed = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&changed);
        let result = self.update_plan(id, move |plan| {
            let new = change(plan)?;
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(new.clone());
            Ok::<_, ManageError>(new)
        });
        match result {
            Err(e) if e.kind() == ManageErrorKind::Conflict => {
                let new = changed.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(new.and_then(|plan| self.plan_stage_conflict(&plan)).unwrap_or(e))
            }
            other => other,
        }
    }

    async fn delete_usage_plan(&self, id: &str) -> Result<(), ManageError> {
        if self.plan_by_id(id).is_none() {
            return Err(no_plan(id));
        }
        Ok(self.delete_plan(id)?)
    }

    async fn create_api_key(&self, key: ApiKey, value: KeySecret) -> Result<ApiKey, ManageError> {
        if self.get(value.expose()).is_some() {
            return Err(ManageError::conflict("value", "this key value is already in use"));
        }
        self.create_key(key.clone(), value)?;
        Ok(key)
    }

    async fn import_api_keys(&self, keys: Vec<ImportedKey>) -> Result<Vec<String>, ManageError> {
        self.import_keys(keys).map_err(|e| self.naming_keys(e.into()))
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<StoredKey>, ManageError> {
        Ok(self.key_by_id(id).map(|(value, key)| StoredKey::new(key, Some(value))))
    }

    async fn get_api_keys(&self, query: KeyQuery) -> Result<Listing<StoredKey>, ManageError> {
        if let Some(plan) = query.plan_id() {
            if self.plan_by_id(plan).is_none() {
                return Err(no_plan(plan));
            }
        }
        let keys = self
            .config()
            .keys()
            .iter()
            .filter(|(_, k)| query.matches(k))
            .map(|(v, k)| StoredKey::new(k.clone(), Some(v.clone())))
            .collect();
        Ok(Listing::page_of(keys, |k: &StoredKey| k.key().id(), query.position(), query.limit()))
    }

    async fn update_api_key(&self, id: &str, change: KeyChange) -> Result<ApiKey, ManageError> {
        if self.key_by_id(id).is_none() {
            return Err(no_key(id));
        }
        self.update_key(id, change)
    }

    async fn delete_api_key(&self, id: &str) -> Result<(), ManageError> {
        if self.key_by_id(id).is_none() {
            return Err(no_key(id));
        }
        Ok(self.delete_key(id)?)
    }

    async fn create_usage_plan_key(&self, plan_id: &str, key_id: &str) -> Result<(), ManageError> {
        let plan = self.plan_by_id(plan_id).ok_or_else(|| no_plan(plan_id))?;
        let (_, key) = self.key_by_id(key_id).ok_or_else(|| no_key(key_id))?;
        if key.plan_ids().iter().any(|p| &**p == plan_id) {
            return Err(ManageError::conflict("keyId", "the API key is already in the usage plan"));
        }
        for other in key.plan_ids().iter().filter_map(|p| self.plan_by_id(p)) {
            if let Some(s) = shared_stage(&plan, &other) {
                let reason = format!(
                    "key {key_id:?} is in plan {:?}, bound to stage {}/{} as plan {plan_id:?} is",
                    other.id(),
                    s.api(),
                    s.stage_name()
                );
                return Err(ManageError::conflict("keyId", reason));
            }
        }
        Ok(self.add_key_to_plan(key_id, plan_id)?)
    }

    async fn delete_usage_plan_key(&self, plan_id: &str, key_id: &str) -> Result<(), ManageError> {
        if self.plan_by_id(plan_id).is_none() {
            return Err(no_plan(plan_id));
        }
        let (_, key) = self.key_by_id(key_id).ok_or_else(|| no_key(key_id))?;
        if !key.plan_ids().iter().any(|p| &**p == plan_id) {
            return Err(ManageError::not_found("keyId", "the API key is not in the usage plan"));
        }
        Ok(self.remove_key_from_plan(key_id, plan_id)?)
    }

    async fn create_customer(&self, customer: Customer) -> Result<Customer, ManageError> {
        if customer.id().trim().is_empty() {
            return Err(ManageError::invalid("id", "must not be empty"));
        }
        // Checked and added under the store's write lock: of two creations of one id, one wins.
        self.edit(|p| {
            if p.customers.iter().any(|c| c.id() == customer.id()) {
                return Err(ManageError::conflict("id", format!("a customer already has the id {:?}", customer.id())));
            }
            p.customers.push(customer.clone());
            Ok(())
        })?;
        Ok(customer)
    }

    async fn put_customer(&self, customer: Customer) -> Result<Customer, ManageError> {
        if customer.id().trim().is_empty() {
            return Err(ManageError::invalid("id", "must not be empty"));
        }
        InMemoryKeyStore::put_customer(self, customer.clone())?;
        Ok(customer)
    }

    async fn get_customer(&self, id: &str) -> Result<Option<Customer>, ManageError> {
        Ok(self.customer_by_id(id).map(Arc::unwrap_or_clone))
    }

    async fn get_customers(&self, query: CustomerQuery) -> Result<Listing<Customer>, ManageError> {
        let all = self.config().customers().iter().map(|c| Customer::clone(c)).collect();
        Ok(Listing::page_of(all, Customer::id, query.position(), query.limit()))
    }

    async fn delete_customer(&self, id: &str) -> Result<(), ManageError> {
        self.edit(|p| {
            let before = p.customers.len();
            p.customers.retain(|c| c.id() != id);
            if p.customers.len() == before {
                return Err(no_customer(id));
            }
            Ok(())
        })
    }
}

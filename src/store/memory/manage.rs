//! [`ManagedKeyStore`] for [`InMemoryKeyStore`]: the admin API's operations over the
//! configuration, each one checked change of it.

use super::InMemoryKeyStore;
use crate::import::ImportedKey;
use crate::model::{ApiKey, KeySecret, UsagePlan};
use crate::store::{KeyChange, KeyQuery, Listing, ManageError, ManagedKeyStore, PlanChange, PlanQuery, StoredKey};

fn no_plan(id: &str) -> ManageError {
    ManageError::not_found("usagePlanId", format!("no usage plan has the id {id:?}"))
}

fn no_key(id: &str) -> ManageError {
    ManageError::not_found("keyId", format!("no API key has the id {id:?}"))
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
        self.update_plan(id, change)
    }

    async fn delete_usage_plan(&self, id: &str) -> Result<(), ManageError> {
        if self.plan_by_id(id).is_none() {
            return Err(no_plan(id));
        }
        Ok(self.delete_plan(id)?)
    }

    async fn create_api_key(&self, key: ApiKey, value: KeySecret) -> Result<ApiKey, ManageError> {
        self.create_key(key.clone(), value)?;
        Ok(key)
    }

    async fn import_api_keys(&self, keys: Vec<ImportedKey>) -> Result<Vec<String>, ManageError> {
        Ok(self.import_keys(keys)?)
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
        if self.plan_by_id(plan_id).is_none() {
            return Err(no_plan(plan_id));
        }
        let (_, key) = self.key_by_id(key_id).ok_or_else(|| no_key(key_id))?;
        if key.plan_ids().iter().any(|p| &**p == plan_id) {
            return Err(ManageError::conflict("keyId", "the API key is already in the usage plan"));
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
}

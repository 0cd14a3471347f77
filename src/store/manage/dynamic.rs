//! The object-safe form of [`ManagedKeyStore`], so that the admin router does not name the store.

use super::{KeyChange, KeyQuery, Listing, ManageError, ManagedKeyStore, PlanChange, PlanQuery, StoredKey};
use crate::import::ImportedKey;
use crate::model::{ApiKey, KeySecret, UsagePlan};
use std::future::Future;
use std::pin::Pin;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ManageError>> + Send + 'a>>;

/// [`ManagedKeyStore`] with boxed futures.
pub(crate) trait DynManagedKeyStore: Send + Sync + 'static {
    fn create_usage_plan(&self, plan: UsagePlan) -> Fut<'_, UsagePlan>;
    fn get_usage_plan<'a>(&'a self, id: &'a str) -> Fut<'a, Option<UsagePlan>>;
    fn get_usage_plans(&self, query: PlanQuery) -> Fut<'_, Listing<UsagePlan>>;
    fn update_usage_plan<'a>(&'a self, id: &'a str, change: PlanChange) -> Fut<'a, UsagePlan>;
    fn delete_usage_plan<'a>(&'a self, id: &'a str) -> Fut<'a, ()>;
    fn create_api_key(&self, key: ApiKey, value: KeySecret) -> Fut<'_, ApiKey>;
    fn import_api_keys(&self, keys: Vec<ImportedKey>) -> Fut<'_, Vec<String>>;
    fn get_api_key<'a>(&'a self, id: &'a str) -> Fut<'a, Option<StoredKey>>;
    fn get_api_keys(&self, query: KeyQuery) -> Fut<'_, Listing<StoredKey>>;
    fn update_api_key<'a>(&'a self, id: &'a str, change: KeyChange) -> Fut<'a, ApiKey>;
    fn delete_api_key<'a>(&'a self, id: &'a str) -> Fut<'a, ()>;
    fn create_usage_plan_key<'a>(&'a self, plan_id: &'a str, key_id: &'a str) -> Fut<'a, ()>;
    fn delete_usage_plan_key<'a>(&'a self, plan_id: &'a str, key_id: &'a str) -> Fut<'a, ()>;
}

impl<T: ManagedKeyStore> DynManagedKeyStore for T {
    fn create_usage_plan(&self, plan: UsagePlan) -> Fut<'_, UsagePlan> {
        Box::pin(ManagedKeyStore::create_usage_plan(self, plan))
    }
    fn get_usage_plan<'a>(&'a self, id: &'a str) -> Fut<'a, Option<UsagePlan>> {
        Box::pin(ManagedKeyStore::get_usage_plan(self, id))
    }
    fn get_usage_plans(&self, query: PlanQuery) -> Fut<'_, Listing<UsagePlan>> {
        Box::pin(ManagedKeyStore::get_usage_plans(self, query))
    }
    fn update_usage_plan<'a>(&'a self, id: &'a str, change: PlanChange) -> Fut<'a, UsagePlan> {
        Box::pin(ManagedKeyStore::update_usage_plan(self, id, change))
    }
    fn delete_usage_plan<'a>(&'a self, id: &'a str) -> Fut<'a, ()> {
        Box::pin(ManagedKeyStore::delete_usage_plan(self, id))
    }
    fn create_api_key(&self, key: ApiKey, value: KeySecret) -> Fut<'_, ApiKey> {
        Box::pin(ManagedKeyStore::create_api_key(self, key, value))
    }
    fn import_api_keys(&self, keys: Vec<ImportedKey>) -> Fut<'_, Vec<String>> {
        Box::pin(ManagedKeyStore::import_api_keys(self, keys))
    }
    fn get_api_key<'a>(&'a self, id: &'a str) -> Fut<'a, Option<StoredKey>> {
        Box::pin(ManagedKeyStore::get_api_key(self, id))
    }
    fn get_api_keys(&self, query: KeyQuery) -> Fut<'_, Listing<StoredKey>> {
        Box::pin(ManagedKeyStore::get_api_keys(self, query))
    }
    fn update_api_key<'a>(&'a self, id: &'a str, change: KeyChange) -> Fut<'a, ApiKey> {
        Box::pin(ManagedKeyStore::update_api_key(self, id, change))
    }
    fn delete_api_key<'a>(&'a self, id: &'a str) -> Fut<'a, ()> {
        Box::pin(ManagedKeyStore::delete_api_key(self, id))
    }
    fn create_usage_plan_key<'a>(&'a self, plan_id: &'a str, key_id: &'a str) -> Fut<'a, ()> {
        Box::pin(ManagedKeyStore::create_usage_plan_key(self, plan_id, key_id))
    }
    fn delete_usage_plan_key<'a>(&'a self, plan_id: &'a str, key_id: &'a str) -> Fut<'a, ()> {
        Box::pin(ManagedKeyStore::delete_usage_plan_key(self, plan_id, key_id))
    }
}

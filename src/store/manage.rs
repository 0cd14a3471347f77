//! [`ManagedKeyStore`]: the management interface the admin API drives, implemented by
//! [`InMemoryKeyStore`](crate::InMemoryKeyStore) and (feature `sqlx`)
//! [`SqlKeyStore`](crate::SqlKeyStore), or by a store of your own.

mod error;
mod query;

pub use error::{ManageError, ManageErrorKind};
pub use query::{CustomerQuery, KeyQuery, Listing, PlanQuery, StoredKey};

use crate::import::ImportedKey;
use crate::model::{ApiKey, Customer, KeySecret, UsagePlan};
use std::future::Future;
use std::pin::Pin;

/// A change of a key: gets the key as stored, returns it as it should be (same id). The store
/// applies it atomically (nothing changes when it fails or the result is refused). The key's
/// own limits ([`ApiKey::with_throttle`], [`with_quota`](ApiKey::with_quota), method
/// throttles, [`with_concurrency`](ApiKey::with_concurrency),
/// [`with_quota_anchor`](ApiKey::with_quota_anchor)) are part of the key: the store keeps
/// what the change returns.
pub type KeyChange = Box<dyn FnOnce(ApiKey) -> Result<ApiKey, ManageError> + Send>;

/// A change of a plan, as [`KeyChange`] is of a key.
pub type PlanChange = Box<dyn FnOnce(UsagePlan) -> Result<UsagePlan, ManageError> + Send>;

/// What the 17 management operations of API Gateway need of a store: plans, keys, plan
/// membership, with their dates and tags. The methods are named after the operations they serve.
///
/// [`AdminRouter::new`](crate::admin::AdminRouter::new) takes any implementation. Every change is
/// atomic: all of it or, on error, nothing. A change must reach the layers built on the store on
/// their next request, through the store's [`Invalidation`](crate::Invalidation) (and, for a
/// store shared by several replicas, through a change feed such as the SQL store's PostgreSQL
/// `LISTEN/NOTIFY`).
///
/// Rules every implementation keeps (the admin API's conformance tests check them for the stores
/// of this crate):
/// - Lists are in id order; a [`Listing`]'s `position` is the id of the first item of the next
///   page, and a query with that position starts there.
/// - A key may be in at most one plan bound to a given stage; plans and keys referred to must
///   exist. Errors: [`ManageErrorKind::NotFound`], [`Conflict`](ManageErrorKind::Conflict),
///   [`Invalid`](ManageErrorKind::Invalid) naming the field, and
///   [`Unavailable`](ManageErrorKind::Unavailable) when the store cannot be reached.
/// - A store that keeps only hashes of key values answers [`StoredKey::value`] `None`: the
///   value is shown once, in the answer to the call that created it.
/// - [`update_api_key`](Self::update_api_key) sets the key's `last_updated` time.
/// - Errors name keys and plans by id (an admin API caller knows no other name for them).
/// - A key's own limits (throttle, quota, method throttles, concurrency, quota anchor) are
///   stored with it and come back as they were given.
///
/// Customers (not an API Gateway resource: the admin API's `/customers` routes) have default
/// implementations for a store that does not keep them: none are found, and creating one is
/// refused as [`Invalid`](ManageErrorKind::Invalid) (field `customers`). A store that keeps
/// them overrides all five; a change of a customer must reach every key that names it.
pub trait ManagedKeyStore: Send + Sync + 'static {
    /// CreateUsagePlan: stores a new plan; [`Conflict`](ManageErrorKind::Conflict) if its id is
    /// taken. Returns the plan as stored.
    fn create_usage_plan(&self, plan: UsagePlan) -> impl Future<Output = Result<UsagePlan, ManageError>> + Send;

    /// GetUsagePlan: plan `id`, `None` if there is none.
    fn get_usage_plan(&self, id: &str) -> impl Future<Output = Result<Option<UsagePlan>, ManageError>> + Send;

    /// GetUsagePlans: a page of plans (with [`PlanQuery::key_id`], the plans of that key).
    fn get_usage_plans(&self, query: PlanQuery)
        -> impl Future<Output = Result<Listing<UsagePlan>, ManageError>> + Send;

    /// UpdateUsagePlan: applies `change` to plan `id` atomically. Its keys stay in it and keep
    /// their counts. Returns the plan as stored.
    fn update_usage_plan(
        &self,
        id: &str,
        change: PlanChange,
    ) -> impl Future<Output = Result<UsagePlan, ManageError>> + Send;

    /// DeleteUsagePlan: deletes plan `id`; its keys leave it (the keys stay).
    fn delete_usage_plan(&self, id: &str) -> impl Future<Output = Result<(), ManageError>> + Send;

    /// CreateApiKey: stores `key` (its plans must exist) with `value`;
    /// [`Conflict`](ManageErrorKind::Conflict) if the id or the value is taken.
    fn create_api_key(&self, key: ApiKey, value: KeySecret)
        -> impl Future<Output = Result<ApiKey, ManageError>> + Send;

    /// ImportApiKeys: stores every key of a CSV read by
    /// [`parse_api_keys_csv`](crate::import::parse_api_keys_csv), each with a new id and a
    /// creation time of now, all or none. Returns the new ids in file order.
    fn import_api_keys(&self, keys: Vec<ImportedKey>) -> impl Future<Output = Result<Vec<String>, ManageError>> + Send;

    /// GetApiKey: key `id` (with its value when the store keeps it), `None` if there is none.
    fn get_api_key(&self, id: &str) -> impl Future<Output = Result<Option<StoredKey>, ManageError>> + Send;

    /// GetApiKeys and GetUsagePlanKeys: a page of keys.
    fn get_api_keys(&self, query: KeyQuery) -> impl Future<Output = Result<Listing<StoredKey>, ManageError>> + Send;

    /// UpdateApiKey: applies `change` to key `id` atomically (the value stays) and sets its
    /// `last_updated` time. Returns the key as stored.
    fn update_api_key(&self, id: &str, change: KeyChange) -> impl Future<Output = Result<ApiKey, ManageError>> + Send;

    /// DeleteApiKey: deletes key `id` and its values.
    fn delete_api_key(&self, id: &str) -> impl Future<Output = Result<(), ManageError>> + Send;

    /// CreateUsagePlanKey: puts key `key_id` into plan `plan_id`;
    /// [`Conflict`](ManageErrorKind::Conflict) if it is in it already, or in another plan bound
    /// to one of its stages.
    fn create_usage_plan_key(
        &self,
        plan_id: &str,
        key_id: &str,
    ) -> impl Future<Output = Result<(), ManageError>> + Send;

    /// DeleteUsagePlanKey: takes key `key_id` out of plan `plan_id`;
    /// [`NotFound`](ManageErrorKind::NotFound) if it is not in it.
    fn delete_usage_plan_key(
        &self,
        plan_id: &str,
        key_id: &str,
    ) -> impl Future<Output = Result<(), ManageError>> + Send;

    /// Stores a new customer; [`Conflict`](ManageErrorKind::Conflict) (field `id`) if its id is
    /// taken. Returns the customer as stored. Default: refused, the store keeps no customers.
    fn create_customer(&self, customer: Customer) -> impl Future<Output = Result<Customer, ManageError>> + Send {
        drop(customer);
        std::future::ready(Err(no_customers()))
    }

    /// Stores a customer, replacing the one with its id (its keys keep the counts of the
    /// current period). Returns the customer as stored. Default: refused.
    fn put_customer(&self, customer: Customer) -> impl Future<Output = Result<Customer, ManageError>> + Send {
        drop(customer);
        std::future::ready(Err(no_customers()))
    }

    /// Customer `id`, `None` if there is none. Default: none.
    fn get_customer(&self, id: &str) -> impl Future<Output = Result<Option<Customer>, ManageError>> + Send {
        let _ = id;
        std::future::ready(Ok(None))
    }

    /// A page of customers, in id order. Default: none.
    fn get_customers(
        &self,
        query: CustomerQuery,
    ) -> impl Future<Output = Result<Listing<Customer>, ManageError>> + Send {
        drop(query);
        std::future::ready(Ok(Listing::new(Vec::new(), None)))
    }

    /// Deletes customer `id` (its keys keep their `customer_id` and lose the shared limits);
    /// [`NotFound`](ManageErrorKind::NotFound) (field `customerId`) if there is none. Default:
    /// not found.
    fn delete_customer(&self, id: &str) -> impl Future<Output = Result<(), ManageError>> + Send {
        std::future::ready(Err(no_customer(id)))
    }
}

/// What a store that keeps no customers answers to a change of one.
fn no_customers() -> ManageError {
    ManageError::invalid("customers", "this store does not keep customers")
}

/// The error for an unknown customer id, as every store words it.
pub(crate) fn no_customer(id: &str) -> ManageError {
    ManageError::not_found("customerId", format!("no customer has the id {id:?}"))
}

// The object-safe form of `ManagedKeyStore`, so that the admin router does not name the store.
// Here rather than in a file of its own: it needs the trait, and a child importing its parent
// is an import cycle (tests/structure.rs).

// Used by the admin router (feature `admin`).
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ManageError>> + Send + 'a>>;

/// [`ManagedKeyStore`] with boxed futures.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
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
    fn create_customer(&self, customer: Customer) -> Fut<'_, Customer>;
    fn put_customer(&self, customer: Customer) -> Fut<'_, Customer>;
    fn get_customer<'a>(&'a self, id: &'a str) -> Fut<'a, Option<Customer>>;
    fn get_customers(&self, query: CustomerQuery) -> Fut<'_, Listing<Customer>>;
    fn delete_customer<'a>(&'a self, id: &'a str) -> Fut<'a, ()>;
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
    fn create_customer(&self, customer: Customer) -> Fut<'_, Customer> {
        Box::pin(ManagedKeyStore::create_customer(self, customer))
    }
    fn put_customer(&self, customer: Customer) -> Fut<'_, Customer> {
        Box::pin(ManagedKeyStore::put_customer(self, customer))
    }
    fn get_customer<'a>(&'a self, id: &'a str) -> Fut<'a, Option<Customer>> {
        Box::pin(ManagedKeyStore::get_customer(self, id))
    }
    fn get_customers(&self, query: CustomerQuery) -> Fut<'_, Listing<Customer>> {
        Box::pin(ManagedKeyStore::get_customers(self, query))
    }
    fn delete_customer<'a>(&'a self, id: &'a str) -> Fut<'a, ()> {
        Box::pin(ManagedKeyStore::delete_customer(self, id))
    }
}

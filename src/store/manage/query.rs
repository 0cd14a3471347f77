//! The queries of list operations and their answers.

use crate::model::{ApiKey, KeySecret};
use std::fmt;

/// Items per page when a query sets no limit (API Gateway's default).
pub(crate) const DEFAULT_LIMIT: usize = 25;

/// A page of a list, in id order: the items, and the id of the first item of the next page when
/// more follow.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Listing<T> {
    items: Vec<T>,
    position: Option<String>,
}

impl<T> Listing<T> {
    /// A page holding `items`, followed by the item with id `position` (if any).
    pub fn new(items: Vec<T>, position: Option<String>) -> Self {
        Self { items, position }
    }

    /// The page of `items` (any order; `id` gives an item's id) that starts at `position` and
    /// holds at most `limit` items: what an implementation that reads every item returns.
    pub fn page_of(mut items: Vec<T>, id: impl Fn(&T) -> &str, position: Option<&str>, limit: usize) -> Self {
        items.sort_by(|a, b| id(a).cmp(id(b)));
        let start = position.map_or(0, |p| items.partition_point(|item| id(item) < p));
        let mut rest = items.into_iter().skip(start);
        let page: Vec<T> = rest.by_ref().take(limit.max(1)).collect();
        let position = rest.next().map(|next| id(&next).to_owned());
        Self { items: page, position }
    }

    /// The items of this page.
    #[must_use]
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The id of the first item of the next page, `None` on the last page.
    #[must_use]
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// The items and the position.
    #[must_use]
    pub fn into_parts(self) -> (Vec<T>, Option<String>) {
        (self.items, self.position)
    }
}

/// Which keys a [`get_api_keys`](super::ManagedKeyStore::get_api_keys) call lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct KeyQuery {
    name_prefix: String,
    customer_id: Option<String>,
    plan_id: Option<String>,
    position: Option<String>,
    limit: usize,
}

impl Default for KeyQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyQuery {
    /// Every key, the first 25.
    pub fn new() -> Self {
        Self { name_prefix: String::new(), customer_id: None, plan_id: None, position: None, limit: DEFAULT_LIMIT }
    }

    /// Only keys whose name starts with `prefix` (GetApiKeys' `nameQuery`).
    pub fn with_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Only keys of this customer (GetApiKeys' `customerId`).
    pub fn with_customer_id(mut self, customer_id: impl Into<String>) -> Self {
        self.customer_id = Some(customer_id.into());
        self
    }

    /// Only keys in this plan (GetUsagePlanKeys).
    pub fn with_plan_id(mut self, plan_id: impl Into<String>) -> Self {
        self.plan_id = Some(plan_id.into());
        self
    }

    /// Starts at the key with this id (or the next one after it).
    pub fn with_position(mut self, position: impl Into<String>) -> Self {
        self.position = Some(position.into());
        self
    }

    /// At most `limit` keys (at least 1).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The name prefix (empty: any name).
    #[must_use]
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }

    /// The customer id keys must have.
    #[must_use]
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    /// The plan keys must be in.
    #[must_use]
    pub fn plan_id(&self) -> Option<&str> {
        self.plan_id.as_deref()
    }

    /// Where the page starts.
    #[must_use]
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// The page's length.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `key` passes the filters (not the paging).
    #[must_use]
    pub fn matches(&self, key: &ApiKey) -> bool {
        key.name().starts_with(&self.name_prefix)
            && self.customer_id.as_deref().is_none_or(|c| key.customer_id() == Some(c))
            && self.plan_id.as_deref().is_none_or(|p| key.plan_ids().iter().any(|id| &**id == p))
    }
}

/// Which plans a [`get_usage_plans`](super::ManagedKeyStore::get_usage_plans) call lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PlanQuery {
    key_id: Option<String>,
    position: Option<String>,
    limit: usize,
}

impl Default for PlanQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl PlanQuery {
    /// Every plan, the first 25.
    pub fn new() -> Self {
        Self { key_id: None, position: None, limit: DEFAULT_LIMIT }
    }

    /// Only the plans this key is in (GetUsagePlans' `keyId`).
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Starts at the plan with this id (or the next one after it).
    pub fn with_position(mut self, position: impl Into<String>) -> Self {
        self.position = Some(position.into());
        self
    }

    /// At most `limit` plans (at least 1).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The key whose plans are listed.
    #[must_use]
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Where the page starts.
    #[must_use]
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// The page's length.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Which customers a [`get_customers`](super::ManagedKeyStore::get_customers) call lists: a
/// page of all of them, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CustomerQuery {
    position: Option<String>,
    limit: usize,
}

impl Default for CustomerQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl CustomerQuery {
    /// Every customer, the first 25.
    pub fn new() -> Self {
        Self { position: None, limit: DEFAULT_LIMIT }
    }

    /// Starts at the customer with this id (or the next one after it).
    pub fn with_position(mut self, position: impl Into<String>) -> Self {
        self.position = Some(position.into());
        self
    }

    /// At most `limit` customers (at least 1).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Where the page starts.
    #[must_use]
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// The page's length.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A key as a store holds it: its record and, when the store keeps it, its value. `Debug` never
/// shows the value.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct StoredKey {
    key: ApiKey,
    value: Option<KeySecret>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey").field("key", &self.key).field("has_value", &self.value.is_some()).finish()
    }
}

impl StoredKey {
    /// `key`, with its value if the store keeps values (`None` for a store of hashes).
    pub fn new(key: ApiKey, value: Option<KeySecret>) -> Self {
        Self { key, value }
    }

    /// The key's record.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The key's value; `None` when the store keeps only its hash.
    #[must_use]
    pub fn value(&self) -> Option<&KeySecret> {
        self.value.as_ref()
    }

    /// The record and the value.
    pub fn into_parts(self) -> (ApiKey, Option<KeySecret>) {
        (self.key, self.value)
    }
}

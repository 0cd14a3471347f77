//! A customer's usage: what all its keys together have used of its quota in the current period.

use super::error::UsageError;
use super::handle::Usage;
use super::report::{quota_usage, QuotaUsage};
use crate::engine::QuotaRule;
use crate::model::Customer;

impl Usage {
    /// The quota of `customer` in its current period (anchored if it has a `quota_anchor`): what
    /// the forwarded requests of all its keys have used, across their plans and rotations, and
    /// what is left. `None` when the customer has no quota. GetUsage stays per key.
    ///
    /// ```
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};
    /// let store = InMemoryKeyStore::from_toml_str(r#"
    ///     [stage]
    ///     api = "petstore"
    ///     name = "prod"
    ///     [[customers]]
    ///     id = "acme"
    ///     quota = { limit = 1000, period = "MONTH" }
    /// "#)?;
    /// let layer = UsagePlanLayer::new(store.clone())?;
    /// let acme = store.customer_by_id("acme").unwrap();
    /// let quota = layer.usage().customer_quota(&acme).await?.unwrap();
    /// assert_eq!((quota.used, quota.remaining), (0, 1000));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f()).unwrap();
    /// ```
    pub async fn customer_quota(&self, customer: &Customer) -> Result<Option<QuotaUsage>, UsageError> {
        let backend = self.backend()?;
        let Some(quota) = customer.quota() else { return Ok(None) };
        let rule = QuotaRule::new(quota, None, customer.quota_anchor());
        let unix = self.now().unix_secs;
        let used = backend.customer_used(customer.id(), &rule, unix).await?;
        Ok(Some(quota_usage(&rule, unix, used)))
    }
}

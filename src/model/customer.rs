//! Customers: limits shared by every key whose `customer_id` names them.

use crate::model::{Quota, Throttle};
use std::num::NonZeroU32;
use std::sync::Arc;

/// A customer: a throttle, a quota and a concurrency cap shared by every key whose
/// [`customer_id`](crate::ApiKey::customer_id) names it, across the keys' plans and rotations.
///
/// Checked after each key's own limits and before the stage's (see
/// [`docs/design.md`](https://docs.rs/tower-usage-plans)); a key whose `customer_id` names no
/// customer has no shared limits (an AWS Marketplace customer id stays informational).
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_usage_plans::{Customer, Quota, QuotaPeriod, Throttle};
/// let acme = Customer::new("acme")
///     .with_name("Acme Corp")
///     .with_throttle(Throttle::new(100.0, 200).unwrap())
///     .with_quota(Quota::new(1_000_000, QuotaPeriod::Month).unwrap())
///     .with_concurrency(NonZeroU32::new(20).unwrap());
/// assert_eq!(acme.id(), "acme");
/// assert_eq!(acme.quota().unwrap().limit(), 1_000_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Customer {
    id: Arc<str>,
    name: Option<String>,
    throttle: Option<Throttle>,
    quota: Option<Quota>,
    concurrency: Option<NonZeroU32>,
    anchor: Option<crate::model::QuotaAnchor>,
}

impl Customer {
    /// A customer with no limits.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self { id: id.into(), name: None, throttle: None, quota: None, concurrency: None, anchor: None }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the throttle shared by all the customer's keys.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sets the quota shared by all the customer's keys: it counts the forwarded requests of
    /// every key of the customer.
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// At most `n` requests of all the customer's keys in the inner service at once.
    pub fn with_concurrency(mut self, n: NonZeroU32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Starts the customer's quota periods at `anchor`'s time of day, weekday or day of month
    /// (its billing day) instead of the calendar's.
    pub fn with_quota_anchor(mut self, anchor: crate::model::QuotaAnchor) -> Self {
        self.anchor = Some(anchor);
        self
    }

    /// The customer id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    /// The display name, if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The shared throttle, if any.
    #[must_use]
    pub fn throttle(&self) -> Option<Throttle> {
        self.throttle
    }

    /// The shared quota, if any.
    #[must_use]
    pub fn quota(&self) -> Option<Quota> {
        self.quota
    }

    /// The shared concurrency cap, if any.
    #[must_use]
    pub fn concurrency(&self) -> Option<NonZeroU32> {
        self.concurrency
    }

    /// The billing anchor of the customer's quota periods, if any.
    #[must_use]
    pub fn quota_anchor(&self) -> Option<crate::model::QuotaAnchor> {
        self.anchor
    }

    /// Whether the customer limits anything (a customer without limits is not checked).
    pub(crate) fn limits_anything(&self) -> bool {
        self.throttle.is_some() || self.quota.is_some() || self.concurrency.is_some()
    }
}

//! Customers as this stage applies them: the throttle, quota and concurrency cap shared by every
//! key of one customer, compiled once per customer version, and the backend's state for them.

use super::clock::Now;
use super::counter::CounterBackend;
use super::gcra::Gcra;
use super::quota::QuotaRule;
use crate::model::Customer;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// A customer as this stage applies it.
#[derive(Debug)]
pub(crate) struct CompiledCustomer {
    pub(crate) customer: Arc<Customer>,
    pub(crate) throttle: Option<Gcra>,
    /// No initial period: a customer has no creation time, so a quota `offset` does not apply.
    pub(crate) quota: Option<QuotaRule>,
    pub(crate) concurrency: Option<NonZeroU32>,
}

/// A backend's state for one customer, shared by the customer's keys.
pub(crate) type CustomerState = Arc<dyn BackendCustomer>;

/// What every backend's per-customer state offers the engine.
pub(crate) trait BackendCustomer: Any + Send + Sync + fmt::Debug {
    /// Requests of the customer in the inner service now (this process's count: concurrency caps
    /// are counted per replica).
    fn inflight(&self) -> &AtomicU32;
    /// For the backend's downcasts.
    fn as_any(&self) -> &dyn Any;
}

/// A customer's rule and the backend's state for it, as a plan compiled for one of its keys holds
/// them.
#[derive(Debug, Clone)]
pub(crate) struct CustomerBinding {
    pub(crate) rule: Arc<CompiledCustomer>,
    pub(crate) state: CustomerState,
}

/// The compiled customers of one stage, by id (the newest version of each).
#[derive(Debug, Default)]
pub(crate) struct Customers {
    by_id: parking_lot::Mutex<HashMap<Arc<str>, CustomerBinding>>,
}

impl Customers {
    /// `customer`'s binding: its compiled rule and the backend's state (which carries the counts
    /// of an earlier version of the customer over). `None` when the customer limits nothing.
    pub(crate) fn bind(
        &self,
        customer: &Arc<Customer>,
        backend: &dyn CounterBackend,
        now: Now,
    ) -> Option<CustomerBinding> {
        if !customer.limits_anything() {
            return None;
        }
        let mut cache = self.by_id.lock();
        if let Some(b) = cache.get(customer.id()) {
            if Arc::ptr_eq(&b.rule.customer, customer) || *b.rule.customer == **customer {
                return Some(b.clone());
            }
        }
        let rule = Arc::new(CompiledCustomer {
            customer: Arc::clone(customer),
            throttle: customer.throttle().map(Gcra::new),
            quota: customer.quota().map(|q| super::plan::quota_rule(q, None, customer.quota_anchor())),
            concurrency: customer.concurrency(),
        });
        let previous = cache.get(customer.id()).map(|b| &b.state);
        let state = backend.customer_state(&rule, previous, now);
        let binding = CustomerBinding { rule, state };
        cache.insert(Arc::clone(customer.id_arc()), binding.clone());
        Some(binding)
    }

    /// The binding of customer `id` this stage has seen, if any (for usage queries).
    pub(crate) fn get(&self, id: &str) -> Option<CustomerBinding> {
        self.by_id.lock().get(id).cloned()
    }
}

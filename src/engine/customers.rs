//! The compiled customers of one stage, once per customer version, with the backend's state.

use super::clock::Now;
use super::counter::CounterBackend;
use super::customer::{CompiledCustomer, CustomerBinding};
use super::gcra::Gcra;
use super::quota::QuotaRule;
use crate::model::Customer;
use std::collections::HashMap;
use std::sync::Arc;

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
            quota: customer.quota().map(|q| QuotaRule::new(q, None, customer.quota_anchor())),
            concurrency: customer.concurrency(),
        });
        let previous = cache.get(customer.id()).map(|b| &b.state);
        let state = backend.customer_state(&rule, previous, now);
        let binding = CustomerBinding { rule, state };
        cache.insert(Arc::clone(customer.id_arc()), binding.clone());
        Some(binding)
    }
}

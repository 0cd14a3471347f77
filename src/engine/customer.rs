//! Customers as this stage applies them: the throttle, quota and concurrency cap shared by every
//! key of one customer, and the backend's state for them (plain types: `customers.rs` compiles
//! and caches them).

use super::gcra::Gcra;
use super::quota::QuotaRule;
use crate::model::Customer;
use std::any::Any;
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

//! The per-key overrides a key may carry instead of its plan's limits.

use crate::error::ConfigError;
use crate::model::plan::push_method;
use crate::model::{MethodKey, Quota, Throttle, UsagePlan};
use std::num::NonZeroU32;

/// A concurrency cap `n` given at `field` (a file, a SQL column, an admin member): 1 to
/// `u32::MAX`, or an error naming the field.
pub(crate) fn concurrency_cap(field: &str, n: i128) -> Result<NonZeroU32, ConfigError> {
    u32::try_from(n).ok().and_then(NonZeroU32::new).ok_or_else(|| {
        let reason =
            if n < 1 { format!("must be at least 1, got {n}") } else { format!("must be at most {}", u32::MAX) };
        ConfigError::invalid(field, reason)
    })
}

/// A key's own limits, each replacing its plan's for this key only (see
/// [`ApiKey::with_throttle`](crate::ApiKey::with_throttle)). One pointer in the key when unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides {
    pub(crate) throttle: Option<Throttle>,
    pub(crate) quota: Option<Quota>,
    /// `Some` replaces the plan's method throttles on every stage (an empty list removes them).
    pub(crate) methods: Option<Vec<(MethodKey, Throttle)>>,
    pub(crate) concurrency: Option<NonZeroU32>,
    pub(crate) anchor: Option<crate::model::QuotaAnchor>,
}

// Throttles hold finite rates only (checked when built), so equality is an equivalence.
impl Eq for Overrides {}

impl Overrides {
    /// Adds a method throttle (starting the override list if there was none).
    pub(crate) fn push_method(&mut self, method: &str, throttle: Throttle) -> Result<(), ConfigError> {
        push_method(self.methods.get_or_insert_with(Vec::new), method, throttle)
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `plan` with these limits in place of its own (a key's custom deal).
    pub(crate) fn apply_to(&self, plan: &UsagePlan) -> UsagePlan {
        let mut plan = plan.clone();
        if let Some(t) = self.throttle {
            plan = plan.with_throttle(t);
        }
        if let Some(q) = self.quota {
            plan = plan.with_quota(q);
        }
        if let Some(c) = self.concurrency {
            plan = plan.with_concurrency(c);
        }
        if let Some(methods) = &self.methods {
            for s in plan.stages_mut() {
                *s.methods_mut() = methods.clone();
            }
        }
        plan
    }
}

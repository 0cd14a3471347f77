//! Plain data: plans, keys, throttles, quotas, periods and the configuration file format.
//!
//! Everything here is validated once, when it is built or loaded; the engine trusts it.
//! No I/O beyond reading a config file, no async.

mod anchor;
mod calendar;
mod customer;
mod file;
mod key;
mod limits;
mod overrides;
mod period;
pub(crate) mod plan;
mod route;
mod secret;
pub(crate) mod tags;

pub use anchor::QuotaAnchor;
pub(crate) use calendar::Calendar;
pub use customer::Customer;
pub use file::{Config, PreviousValue};
pub use key::ApiKey;
pub use limits::{Quota, QuotaPeriod, Throttle, MAX_QUOTA_LIMIT};
pub(crate) use overrides::{concurrency_cap, Overrides};
pub use plan::{PlanStage, Stage, UsagePlan, MAX_METHODS_PER_STAGE, MAX_METHOD_THROTTLES};
pub use route::MethodKey;
pub use secret::{KeySecret, MAX_KEY_LEN, MIN_KEY_LEN};

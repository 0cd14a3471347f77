//! The decision: pure, synchronous, time passed in.
//!
//! Order of checks for a keyed request: key grant → expiry → concurrency caps (key, customer) →
//! per-key method throttle → per-key plan throttle (or the key's override) → customer throttle →
//! stage method throttle → stage default throttle → account throttle → quota (key) → quota
//! (customer).
//! Throttles are all-or-nothing: a request refused by a later bucket (or by the quota) gives back
//! the tokens it took from earlier ones, so only forwarded requests consume anything.
//!
//! The rooms: [`decide`] (the [`Engine`] and the one [`Decision`] it hands the adapter),
//! [`counter`] (the seam to where counters live, with its invariant), [`plan`] (plans compiled
//! for the stage), [`grant`] (what a key's request is decided on), and the pure algorithms:
//! `gcra` (token buckets), `quota` (calendar periods), `routes` (method throttle matching),
//! `ledger` (usage per day) and `clock` (time behind a trait).

mod clock;
pub(crate) mod counter;
mod customer;
mod customers;
mod decide;
mod gcra;
mod grant;
mod inflight;
pub(crate) mod ledger;
mod plan;
mod quota;
mod routes;

pub(crate) use clock::{nanos, unix_secs};
pub use clock::{Clock, ManualClock, Now, SystemClock};
pub(crate) use counter::{
    bucket_view, BackendKey, BucketSlot, Check, CounterBackend, KeyState, Outcome, Refund, Refused, Verdict, BUCKETS,
};
pub(crate) use customer::{BackendCustomer, CompiledCustomer, CustomerState};
pub(crate) use decide::{Admitted, Decision, Engine, Input, Req, Want};
pub(crate) use gcra::{Gcra, Undo};
pub(crate) use grant::Grant;
pub(crate) use inflight::InFlight;
pub(crate) use plan::CompiledPlan;
#[cfg(feature = "redis")]
pub(crate) use quota::PeriodInfo;
pub(crate) use quota::{decode as decode_quota, encode as encode_quota, merge_quota, quota_holds_count, QuotaRule};
#[cfg(feature = "redis")]
pub(crate) use quota::{encode_tagged as encode_quota_tagged, tag_of as quota_tag_of};
pub(crate) use routes::check_routes;

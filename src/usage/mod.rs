//! Usage: what each key forwarded, per UTC day, and its quota now; changed with UpdateUsage,
//! kept across restarts with snapshots, and delivered to billing through a [`UsageSink`].
//!
//! A [`Usage`] handle comes from the layer ([`UsagePlanLayer::usage`]). The layer counts every
//! forwarded request of a key under its plan in the usage ledger: one atomic add beside the quota
//! count, and a short lock once per key per day when the day changes. Days are kept for the
//! retention (90 by default, [`UsagePlanLayerBuilder::usage_retention_days`]). Every method
//! (the queries, UpdateUsage, snapshots, the sink's bookkeeping) is `async`, so that counter
//! backends keeping counts elsewhere (Redis: the whole deployment's) can answer them (the
//! in-process backend answers at once).
//!
//! ```
//! use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};
//! use tower_usage_plans::usage::Usage;
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryKeyStore::from_toml_str(r#"
//!     stage = { api = "petstore", name = "prod" }
//!     [[plans]]
//!     id = "free"
//!     quota = { limit = 100, period = "DAY" }
//!     stages = [{ api = "petstore", stage = "prod" }]
//!     [[keys]]
//!     id = "k1"
//!     value = "free-0123456789abcdefghij"
//!     plans = ["free"]
//! "#)?;
//! let layer = UsagePlanLayer::new(store.clone()).unwrap();
//! let usage: Usage = layer.usage();
//! let svc = layer.layer(service_fn(|_r: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }));
//! for _ in 0..3 {
//!     let req = http::Request::get("/pets").header("x-api-key", "free-0123456789abcdefghij").body(())?;
//!     svc.clone().oneshot(req).await?;
//! }
//! let config = store.config();
//! let plan = &config.plans()[0];
//! let quota = usage.quota(plan, "k1").await?.expect("the plan has a quota");
//! assert_eq!((quota.used, quota.remaining), (3, 97));
//! let today = quota.period_start;
//! let report = usage.report(plan, &["k1"], today, today).await?;
//! assert_eq!(report.keys["k1"][0].used, 3);
//! usage.set_remaining(plan, "k1", 10).await?; // UpdateUsage: 10 more requests today
//! assert_eq!(usage.quota(plan, "k1").await?.unwrap().remaining, 10);
//! # Ok(())
//! # }
//! ```
//!
//! [`UsagePlanLayer::usage`]: crate::UsagePlanLayer::usage
//! [`UsagePlanLayerBuilder::usage_retention_days`]: crate::UsagePlanLayerBuilder::usage_retention_days

mod backend;
mod customer;
mod error;
mod file;
mod handle;
mod report;
mod sink;
mod snapshot;

pub(crate) use backend::{ready, Answer, Counts, DayTotal, Pending, UsageBackend};
pub use error::{UsageError, UsageErrorKind};
pub use file::{remove_leftovers, write_atomic};
pub use handle::Usage;
pub use report::{DayUsage, QuotaUsage, UsageReport};
#[cfg(feature = "tokio")]
pub use sink::{ReportError, ReportErrorKind, UsageReporter, UsageReporterBuilder};
pub use sink::{UsageBatch, UsageRecord, UsageSink};
pub use snapshot::UsageSnapshot;
pub use time::Date;

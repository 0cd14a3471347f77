//! API Gateway's JSON shapes (the `apigateway` 2015-07-09 service model's member names), read
//! and written in one place: by the admin API (requests and answers, feature `admin`) and by
//! the import of the aws CLI's documents (`import::aws`, always built).
//!
//! - [`Object`] reads a JSON object member by member: each reader checks one member's type, and
//!   errors name the member by its path and say what it must be, never what it holds (any string
//!   may be a key value).
//! - The shapes, read as given and then built into the model's types: a usage plan's limits
//!   ([`PlanLimits`]: `throttle`, `quota`, `apiStages`), an API stage with its method throttles
//!   ([`ApiStageShape`]), a throttle ([`ThrottleShape`]), a quota with its period and offset
//!   ([`QuotaShape`]), an API key ([`ApiKeyShape`]), tags and dates ([`Object::tags`],
//!   [`Object::time`]).
//! - One error, [`ShapeError`]: the member's path (`apiStages[0].throttle."/pets/GET".rateLimit`,
//!   `quota.period`) and the reason. The admin API answers it as 400 (409 for a duplicate), the
//!   import puts the document and item in front of it.
//! - [`Source`] says where the JSON comes from (an admin request or an exported document),
//!   which words the errors as each has always worded them.
//! - With feature `admin`, the members beyond API Gateway's (`overrides`: a key's own limits,
//!   a plan's `concurrency`, the `Customer` shape) and the answers' shapes (`write`: `ApiKey`, `UsagePlan`, `UsagePlanKey`,
//!   pages).
//!
//! Direction: `admin` → `wire` ← `import`; `wire` → `model` and `error` (the model's
//! `ConfigError`), never `admin`, `import`, `store` or `http`.

mod error;
mod key;
mod limits;
#[cfg(feature = "admin")]
mod overrides;
mod plan;
mod read;
#[cfg(feature = "admin")]
mod write;

pub(crate) use error::ShapeError;
pub(crate) use key::{check_key_type, key_value, ApiKeyShape};
pub(crate) use limits::{with_offset, QuotaShape, ThrottleShape};
pub(crate) use plan::PlanLimits;
pub(crate) use read::{json_type, Object, Source};

// What only the admin API needs: the error's kind (409 for a duplicate), editing a plan's
// stages, and writing answers.
#[cfg(any(feature = "admin", test))]
pub(crate) use error::ShapeErrorKind;
#[cfg(feature = "admin")]
pub(crate) use overrides::{concurrency, CustomerShape, LimitsShape};
#[cfg(feature = "admin")]
pub(crate) use plan::ApiStageShape;
#[cfg(feature = "admin")]
pub(crate) use write::{ApiKeyIds, ApiKeyOut, CustomerOut, Page, UsagePlanKeyOut, UsagePlanOut};

#[cfg(test)]
mod tests;

//! The tower adapter: [`UsagePlanLayer`], [`UsagePlanService`], [`ResponseFuture`], key
//! extraction, rejection rendering and rate-limit headers. No policy decisions live here; they
//! are the engine's.

#[cfg(feature = "axum")]
mod axum;
mod body;
mod extract;
mod future;
mod headers;
mod layer;
mod post;
mod render;
mod service;
mod shared;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::axum::MissingCaller;
pub use body::UsagePlanBody;
pub use extract::{AuthorizerKey, KeySource, MAX_PRESENTED_KEY_LEN};
pub use future::ResponseFuture;
pub use headers::RateLimitHeaders;
pub use layer::{UsagePlanLayer, UsagePlanLayerBuilder};
pub use render::{AwsRejection, RenderRejection};
pub use service::UsagePlanService;

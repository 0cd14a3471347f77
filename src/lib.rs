//! placeholder
mod engine;
mod error;
mod http;
mod model;
mod rejection;
mod store;

pub use crate::engine::{Clock, ManualClock, Now, SystemClock};
pub use crate::error::{ConfigError, ConfigErrorKind};
pub use crate::http::*;
pub use crate::model::*;
pub use crate::rejection::{Rejection, RejectionKind, ThrottleScope};
pub use crate::store::{InMemoryKeyStore, KeyRecord, KeyStore, StoreError};

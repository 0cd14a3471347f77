//! [`Usage`]: a handle on a layer's usage counts.

use super::backend::UsageBackend;
use super::error::UsageError;
use crate::engine::{Clock, Engine, Now};
use std::fmt;
use std::sync::Arc;

/// A handle on a layer's usage counts. Cheap to clone; every clone sees the same counts.
#[derive(Clone)]
pub struct Usage {
    pub(super) engine: Arc<Engine>,
    backend: Option<Arc<dyn UsageBackend>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Usage").field("engine", &self.engine).finish()
    }
}

impl Usage {
    pub(crate) fn new(engine: Arc<Engine>, backend: Option<Arc<dyn UsageBackend>>, clock: Arc<dyn Clock>) -> Self {
        Self { engine, backend, clock }
    }

    pub(super) fn backend(&self) -> Result<&dyn UsageBackend, UsageError> {
        self.backend.as_deref().ok_or_else(UsageError::unsupported)
    }

    pub(super) fn now(&self) -> Now {
        self.clock.now()
    }
}

//! [`StoreError`]: a key store could not answer.

/// A store could not answer (database down, timeout, ...). The request gets 503 unless the key
/// was validated recently (stale-if-error) or the layer is configured to fail open.
#[derive(Debug, thiserror::Error)]
#[error("key store unavailable: {source}")]
pub struct StoreError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
    kind: StoreErrorKind,
}

/// How a key store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not answer (database down, timeout, ...).
    Unavailable,
    /// The store refused to be asked (a lookup budget was spent): never failed open.
    Overloaded,
}

impl StoreError {
    /// Wraps the underlying error. Do not put key values in it: it may be logged.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: source.into(), kind: StoreErrorKind::Unavailable }
    }

    /// The store refused to be asked (a lookup budget was spent, e.g. under a flood of random
    /// keys), rather than failed. The layer answers 503 and never fails open on it: failing open
    /// would let a flood of random keys through.
    pub fn overloaded(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: source.into(), kind: StoreErrorKind::Overloaded }
    }

    /// Whether this is an [`overloaded`](Self::overloaded) refusal.
    #[must_use]
    pub fn is_overloaded(&self) -> bool {
        self.kind == StoreErrorKind::Overloaded
    }

    /// How the store failed.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

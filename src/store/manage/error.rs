//! [`ManageError`]: why a management call failed.

use crate::error::{ConfigError, ConfigErrorKind};
use std::fmt;

/// What kind of failure a [`ManageError`] is; the admin API answers each with API Gateway's
/// status (404, 409, 400, 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManageErrorKind {
    /// A plan or key referred to does not exist.
    NotFound,
    /// The change contradicts what is stored: an id or value taken, a key already in the plan or
    /// in another plan bound to the same stage.
    Conflict,
    /// The input is not acceptable: the field and the reason say why.
    Invalid,
    /// The store could not be reached or failed; nothing is known to have changed.
    Unavailable,
}

/// Why a management call failed: a kind, the field it is about (may be empty), and a reason.
/// Never holds a key value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageError {
    kind: ManageErrorKind,
    field: String,
    reason: String,
}

impl ManageError {
    /// An error of `kind` about `field` (empty when about no one field).
    pub fn new(kind: ManageErrorKind, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { kind, field: field.into(), reason: reason.into() }
    }

    /// [`ManageErrorKind::NotFound`].
    pub fn not_found(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ManageErrorKind::NotFound, field, reason)
    }

    /// [`ManageErrorKind::Conflict`].
    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ManageErrorKind::Conflict, field, reason)
    }

    /// [`ManageErrorKind::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ManageErrorKind::Invalid, field, reason)
    }

    /// [`ManageErrorKind::Unavailable`]: the store failed (`reason` says how, without secrets).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(ManageErrorKind::Unavailable, "", reason)
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ManageErrorKind {
        self.kind
    }

    /// The field the error is about; empty when it is about no one field.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ManageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ManageError {}

impl From<ConfigError> for ManageError {
    /// Unknown references are [`NotFound`](ManageErrorKind::NotFound), duplicates
    /// [`Conflict`](ManageErrorKind::Conflict), anything else
    /// [`Invalid`](ManageErrorKind::Invalid); field and reason are kept.
    fn from(e: ConfigError) -> Self {
        let kind = match e.kind() {
            ConfigErrorKind::UnknownReference => ManageErrorKind::NotFound,
            ConfigErrorKind::Duplicate => ManageErrorKind::Conflict,
            _ => ManageErrorKind::Invalid,
        };
        Self::new(kind, e.field(), e.reason())
    }
}

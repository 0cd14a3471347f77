//! [`SqlStoreError`]: what a [`SqlKeyStore`](super::SqlKeyStore) call can fail with.

use crate::error::ConfigError;
use std::fmt;

/// Why a [`SqlKeyStore`](crate::SqlKeyStore) call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlStoreErrorKind {
    /// No plan or key has the given id (or the key is not in the plan).
    NotFound,
    /// The id or the key value is already taken, or a key would belong to two plans bound to
    /// the same API stage.
    Conflict,
    /// A value cannot be stored (e.g. a plan lists a stage twice), or a stored row is not valid.
    Invalid,
    /// The database failed, could not be reached, or its schema is missing.
    Database,
}

/// A [`SqlKeyStore`](crate::SqlKeyStore) call failed. Names the field or id at fault; never
/// contains a key value.
///
/// ```
/// # use tower_usage_plans::{SqlStoreError, SqlStoreErrorKind};
/// fn is_missing(e: &SqlStoreError) -> bool {
///     e.kind() == SqlStoreErrorKind::NotFound
/// }
/// ```
#[derive(Debug)]
pub struct SqlStoreError {
    kind: SqlStoreErrorKind,
    field: String,
    message: String,
    source: Option<sqlx::Error>,
}

impl fmt::Display for SqlStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.field.is_empty()) {
            (Some(source), _) => write!(f, "{}: {source}", self.message),
            (None, true) => f.write_str(&self.message),
            (None, false) => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for SqlStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl SqlStoreError {
    pub(super) fn new(kind: SqlStoreErrorKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, field: field.into(), message: message.into(), source: None }
    }

    pub(super) fn not_found(field: &str, message: impl Into<String>) -> Self {
        Self::new(SqlStoreErrorKind::NotFound, field, message)
    }

    pub(super) fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self::new(SqlStoreErrorKind::Conflict, field, message)
    }

    /// A stored row that does not make a valid plan or key.
    pub(super) fn bad_row(field: String, e: &ConfigError) -> Self {
        Self::new(SqlStoreErrorKind::Invalid, field, format!("stored value is not valid: {e}"))
    }

    /// A database error, said in `context` (what was being done, with ids but no key value).
    pub(super) fn db(context: impl Into<String>, source: sqlx::Error) -> Self {
        Self { kind: SqlStoreErrorKind::Database, field: String::new(), message: context.into(), source: Some(source) }
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> SqlStoreErrorKind {
        self.kind
    }

    /// The field or id at fault, e.g. `key_id` or `plans[1]`; empty for database errors.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Whether the database refused a write because a unique key is already taken.
    pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
        e.as_database_error().is_some_and(|d| d.is_unique_violation())
    }
}

impl From<SqlStoreError> for crate::store::manage::ManageError {
    /// Kinds map one to one; a database failure, or a stored row that is not valid (the
    /// database's fault, not the caller's), is [`Unavailable`](crate::ManageErrorKind::Unavailable)
    /// with what was being done and a coarse cause: never the URL, never a key value.
    fn from(e: SqlStoreError) -> Self {
        use crate::store::manage::ManageError;
        match e.kind {
            SqlStoreErrorKind::NotFound => ManageError::not_found(e.field, e.message),
            SqlStoreErrorKind::Conflict => ManageError::conflict(e.field, e.message),
            SqlStoreErrorKind::Invalid if e.field.starts_with("usage_plans_") => {
                ManageError::unavailable(format!("{}: {}", e.field, e.message))
            }
            SqlStoreErrorKind::Invalid => ManageError::invalid(e.field, e.message),
            SqlStoreErrorKind::Database => {
                let cause = match &e.source {
                    Some(sqlx::Error::Database(d)) => format!("the database refused it: {}", d.message()),
                    Some(sqlx::Error::Io(_)) => "cannot reach the database".to_owned(),
                    Some(sqlx::Error::PoolTimedOut) => "no database connection was free in time".to_owned(),
                    Some(sqlx::Error::PoolClosed) => "the connection pool is closed".to_owned(),
                    Some(_) | None => "the database failed".to_owned(),
                };
                ManageError::unavailable(format!("{}: {cause}", e.message))
            }
        }
    }
}

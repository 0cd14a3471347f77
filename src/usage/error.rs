//! Why a usage query or change was refused.

use std::fmt;

/// What kind of usage query or change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageErrorKind {
    /// The counter backend keeps no usage this handle can read or change.
    Unsupported,
    /// The plan has no quota, so there is no remaining quota to read or set.
    NoQuota,
    /// A value is out of range; [`UsageError::field`] names it.
    Invalid,
    /// The plan cannot be applied to this stage (its method throttles conflict).
    Config,
    /// A snapshot file could not be read or written.
    Io,
    /// A snapshot file is not a snapshot this version can read.
    Snapshot,
    /// The store of the counts (Redis) could not be reached or answered with an error; nothing
    /// was read or changed (a change may have been applied if its reply was lost).
    Unavailable,
}

/// A usage query or change was refused. Says what ([`kind`](Self::kind)), and where a field or
/// a file is at fault, which ([`field`](Self::field), [`path`](Self::path)).
#[derive(Debug)]
pub struct UsageError {
    kind: UsageErrorKind,
    /// The field (`Invalid`), the plan id (`NoQuota`) or the file (`Io`, `Snapshot`).
    subject: Option<String>,
    field: Option<&'static str>,
    reason: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl UsageError {
    fn new(kind: UsageErrorKind, reason: impl Into<String>) -> Self {
        Self { kind, subject: None, field: None, reason: reason.into(), source: None }
    }

    pub(crate) fn unsupported() -> Self {
        Self::new(
            UsageErrorKind::Unsupported,
            "the counter backend does not keep usage that can be read or changed here",
        )
    }

    /// A failure of the store of the counts (Redis): `what` was being done.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn unavailable(what: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let source = source.into();
        Self { reason: format!("{what}: {source}"), source: Some(source), ..Self::new(UsageErrorKind::Unavailable, "") }
    }

    pub(crate) fn no_quota(plan: &str) -> Self {
        Self { subject: Some(plan.to_owned()), ..Self::new(UsageErrorKind::NoQuota, "has no quota") }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl fmt::Display) -> Self {
        Self { field: Some(field), ..Self::new(UsageErrorKind::Invalid, reason.to_string()) }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            subject: Some(path.into()),
            reason: source.to_string(),
            source: Some(Box::new(source)),
            ..Self::new(UsageErrorKind::Io, "")
        }
    }

    pub(crate) fn snapshot(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { subject: Some(path.into()), ..Self::new(UsageErrorKind::Snapshot, reason) }
    }

    /// What was refused.
    #[must_use]
    pub fn kind(&self) -> UsageErrorKind {
        self.kind
    }

    /// The field at fault, e.g. `remaining` or `endDate` (kind `Invalid`).
    #[must_use]
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// The snapshot file (kinds `Io` and `Snapshot`).
    #[must_use]
    pub fn path(&self) -> Option<&str> {
        match self.kind {
            UsageErrorKind::Io | UsageErrorKind::Snapshot => self.subject.as_deref(),
            _ => None,
        }
    }

    /// Why, without the field or file (for messages that name those themselves).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.subject, self.field) {
            (UsageErrorKind::NoQuota, Some(plan), _) => write!(f, "usage plan {plan:?} has no quota"),
            (UsageErrorKind::Invalid, _, Some(field)) => write!(f, "{field}: {}", self.reason),
            (UsageErrorKind::Io | UsageErrorKind::Snapshot, Some(path), _) => {
                write!(f, "snapshot {path}: {}", self.reason)
            }
            _ => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for UsageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(e) => Some(&**e as &(dyn std::error::Error + 'static)),
            None => None,
        }
    }
}

impl From<crate::error::ConfigError> for UsageError {
    fn from(e: crate::error::ConfigError) -> Self {
        Self { reason: e.to_string(), source: Some(Box::new(e)), ..Self::new(UsageErrorKind::Config, "") }
    }
}

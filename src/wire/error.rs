//! The one error for JSON that does not fit one of API Gateway's shapes.

use crate::error::{ConfigError, ConfigErrorKind};
use std::fmt;

/// What is wrong with a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShapeErrorKind {
    /// The member is missing, of the wrong JSON type, out of range or not an allowed value.
    Invalid,
    /// The member repeats another one (a method throttle listed twice up to parameter names).
    Duplicate,
}

/// A member that does not fit its shape: the member's path inside the object read
/// (`apiStages[0].throttle."/pets/GET".rateLimit`, `quota.period`; empty for the object itself)
/// and why. It never holds a member's value, since any string may be a key value; numbers the
/// model refused may be named (`must be at least 1, got -1`).
///
/// The admin API answers it as 400 `BadRequestException` (409 `ConflictException` for
/// [`ShapeErrorKind::Duplicate`]) with the message `path: reason`; the import names the
/// document and the item in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError {
    kind: ShapeErrorKind,
    path: String,
    reason: String,
}

impl ShapeError {
    /// A member at `path` that is not as its shape says.
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { kind: ShapeErrorKind::Invalid, path: path.into(), reason: reason.into() }
    }

    /// A refusal of the model (`Throttle::new`, `Quota::new`, `PlanStage::method_throttle`) for
    /// the shape at `path`, its field named as the wire names it: `rate` is `rateLimit`, `burst`
    /// is `burstLimit`; `limit` and `offset` keep their names; any other field (such as
    /// `methods."/pets/GET"`, which `path` already names) adds nothing.
    pub(crate) fn from_model(e: &ConfigError, path: &str) -> Self {
        let member = match e.field() {
            "rate" => ".rateLimit",
            "burst" => ".burstLimit",
            "limit" => ".limit",
            "offset" => ".offset",
            _ => "",
        };
        let kind = match e.kind() {
            ConfigErrorKind::Duplicate => ShapeErrorKind::Duplicate,
            _ => ShapeErrorKind::Invalid,
        };
        Self { kind, path: format!("{path}{member}"), reason: e.reason().to_owned() }
    }

    /// What is wrong.
    #[cfg(any(feature = "admin", test))]
    pub(crate) fn kind(&self) -> ShapeErrorKind {
        self.kind
    }

    /// The member's path; empty when the error is about the object read itself.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Why the member does not fit, e.g. `must be DAY, WEEK or MONTH`.
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ShapeError {
    /// `path: reason`, or the reason alone when the path is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ShapeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_fields_get_wire_names() {
        let e = ShapeError::from_model(&ConfigError::invalid("burst", "must be at least 1"), "throttle");
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ShapeErrorKind::Invalid, "throttle.burstLimit: must be at least 1")
        );
        let twice = ConfigError::new(ConfigErrorKind::Duplicate, "methods.\"/a/GET\"", "listed twice");
        let e = ShapeError::from_model(&twice, "apiStages[a:b].throttle.\"/a/GET\"");
        assert_eq!((e.kind(), e.path()), (ShapeErrorKind::Duplicate, "apiStages[a:b].throttle.\"/a/GET\""));
        assert_eq!(ShapeError::invalid("", "must be an object").to_string(), "must be an object");
    }
}

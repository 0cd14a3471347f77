//! Configuration errors.

use std::fmt;

/// Why a piece of configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML or JSON, or does not have the expected structure.
    Syntax,
    /// A value is outside its allowed range or has the wrong form.
    Invalid,
    /// A reference names something that does not exist (e.g. an unknown plan id).
    UnknownReference,
    /// Two things that must be unique are not (ids, key values, one plan per stage).
    Duplicate,
    /// A required setting is missing (e.g. the stage a layer guards).
    Missing,
}

/// A configuration value was refused. Names the field (e.g. `plans[0].quota.limit`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    kind: ConfigErrorKind,
    field: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self { kind, field: field.into(), reason: reason.to_string() }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::new(ConfigErrorKind::Invalid, field, reason)
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The path of the offending field, e.g. `keys[2].plans[0]`; empty for whole-file errors.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the value was refused.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Prefixes the field path with `parent` (`quota.limit` under `plans[0]` becomes `plans[0].quota.limit`).
    pub(crate) fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

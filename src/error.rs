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

/// A configuration value was refused. Names the field (e.g. `plans[0].quota.limit`) and the
/// reason and, for an error in a file's text, where it is: `plans[1].throttle.burst (line 14,
/// column 30): 18446744073709551616 is out of range: at most 9223372036854775807`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    field: String,
    reason: String,
    at: Option<(u32, u32)>,
    /// The file read, for an error in a file (`Config::from_path`).
    file: Option<Box<str>>,
}

impl fmt::Display for ConfigError {
    /// `field (line L, column C): reason`; without a place in a text, `field: reason`; an error
    /// in a file read from a path starts with the path (`plans.toml: field (line L, ...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        match (self.field.is_empty(), self.at) {
            (false, Some((line, column))) => {
                write!(f, "{} (line {line}, column {column}): {}", self.field, self.reason)
            }
            (true, Some((line, column))) => write!(f, "line {line}, column {column}: {}", self.reason),
            (true, None) => f.write_str(&self.reason),
            (false, None) => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self { kind, field: field.into(), reason: reason.to_string(), at: None, file: None }
    }

    /// The same error, placed at `line` and `column` (from 1) of the text read.
    pub(crate) fn at(mut self, line: u32, column: u32) -> Self {
        self.at = Some((line, column));
        self
    }

    /// The same error, in the file at `path`.
    pub(crate) fn in_file(mut self, path: &str) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The file the error is in, for a configuration read with
    /// [`Config::from_path`](crate::Config::from_path).
    #[must_use]
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The line (from 1) of the text read where the offending field is, when the error comes
    /// from reading a TOML or JSON text.
    #[must_use]
    pub fn line(&self) -> Option<u32> {
        self.at.map(|(line, _)| line)
    }

    /// The column (from 1, in characters) on [`line`](Self::line).
    #[must_use]
    pub fn column(&self) -> Option<u32> {
        self.at.map(|(_, column)| column)
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

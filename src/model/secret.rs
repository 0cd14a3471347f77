//! The secret value of an API key.

use crate::error::ConfigError;
use std::fmt;

/// Shortest key value accepted in configuration (API Gateway's minimum).
pub const MIN_KEY_LEN: usize = 20;
/// Longest key value accepted in configuration.
pub const MAX_KEY_LEN: usize = 128;

/// An API key's secret value. `Debug` never shows it.
///
/// ```
/// use tower_usage_plans::KeySecret;
/// let s = KeySecret::new("acme-0123456789abcdefghij").unwrap();
/// assert_eq!(format!("{s:?}"), "KeySecret(<redacted>)");
/// assert_eq!(s.expose(), "acme-0123456789abcdefghij");
/// assert!(KeySecret::new("short").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeySecret(Box<str>);

impl KeySecret {
    /// Checks that `value` is 20 to 128 visible ASCII characters. The error never contains the value.
    pub fn new(value: impl Into<String>) -> Result<Self, ConfigError> {
        let value: String = value.into();
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid("value", "must contain only visible ASCII characters (no spaces)"));
        }
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&value.len()) {
            return Err(ConfigError::invalid(
                "value",
                format!("must be {MIN_KEY_LEN} to {MAX_KEY_LEN} characters long, got {}", value.len()),
            ));
        }
        Ok(Self(value.into_boxed_str()))
    }

    /// The secret itself. Do not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<redacted>)")
    }
}

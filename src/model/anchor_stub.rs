//! TEMPORARY stand-in for the anchor type (replaced by the period helper's QuotaAnchor).

use crate::error::ConfigError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A billing anchor (a UTC instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaAnchor(i64);

impl QuotaAnchor {
    /// From an instant.
    #[must_use]
    pub fn from_system_time(at: SystemTime) -> Self {
        Self(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
    }
    /// As an instant.
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0 as u64)
    }
    /// Parses RFC 3339.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| ConfigError::invalid("quota_anchor", e.to_string()))?;
        Ok(Self(t.unix_timestamp()))
    }
}

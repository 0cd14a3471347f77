//! `ThrottleSettings` and `QuotaSettings`: read as given (members may be absent while an
//! UpdateUsagePlan sets them one at a time), then checked whole into the model's [`Throttle`]
//! and [`Quota`], with errors under the wire's member names.

use crate::model::{Quota, QuotaPeriod, Throttle};
use crate::wire::{Object, ShapeError, Source};

/// API Gateway's name of a period (`DAY`, `WEEK`, `MONTH`).
pub(crate) fn period_name(p: QuotaPeriod) -> &'static str {
    match p {
        QuotaPeriod::Day => "DAY",
        QuotaPeriod::Week => "WEEK",
        QuotaPeriod::Month => "MONTH",
    }
}

/// The period API Gateway names `name`.
fn parse_period(name: &str) -> Option<QuotaPeriod> {
    [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month].into_iter().find(|p| period_name(*p) == name)
}

/// `ThrottleSettings` as given.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct ThrottleShape {
    /// `rateLimit`: requests per second.
    pub(crate) rate_limit: Option<f64>,
    /// `burstLimit`: the bucket's size.
    pub(crate) burst_limit: Option<i128>,
}

impl ThrottleShape {
    /// `{"rateLimit": .., "burstLimit": ..}`.
    pub(crate) fn read(o: &Object<'_>) -> Result<Self, ShapeError> {
        Ok(Self { rate_limit: o.number("rateLimit")?, burst_limit: o.whole("burstLimit")? })
    }

    /// The members of `t`.
    #[cfg(feature = "admin")]
    pub(crate) fn of(t: Throttle) -> Self {
        Self { rate_limit: Some(t.rate()), burst_limit: Some(i128::from(t.burst())) }
    }

    /// The throttle at `path` (`throttle`, `apiStages[0].throttle."/pets/GET"`): both members
    /// are required, `burstLimit` at least 1. In a document `{}` is no throttle.
    pub(crate) fn build(self, path: &str, source: Source) -> Result<Option<Throttle>, ShapeError> {
        if source == Source::Document && self == Self::default() {
            return Ok(None);
        }
        let required = |m: &str| source.missing(format!("{path}.{m}"), Some("a throttle"), false);
        let rate = self.rate_limit.ok_or_else(|| required("rateLimit"))?;
        let burst = self.burst_limit.ok_or_else(|| required("burstLimit"))?;
        let burst = u32::try_from(burst).map_err(|_| {
            let reason = if burst < 1 {
                format!("must be at least 1, got {burst}")
            } else {
                format!("must be at most {}", u32::MAX)
            };
            ShapeError::invalid(format!("{path}.burstLimit"), reason)
        })?;
        Throttle::new(rate, burst).map(Some).map_err(|e| ShapeError::from_model(&e, path))
    }
}

/// `QuotaSettings` as given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct QuotaShape {
    /// `limit`: requests per period.
    pub(crate) limit: Option<i128>,
    /// `period`: `DAY`, `WEEK` or `MONTH`.
    pub(crate) period: Option<String>,
    /// `offset`: requests taken off the initial period.
    pub(crate) offset: Option<i128>,
}

impl QuotaShape {
    /// `{"limit": .., "period": .., "offset": ..}`.
    pub(crate) fn read(o: &Object<'_>) -> Result<Self, ShapeError> {
        Ok(Self {
            limit: o.whole("limit")?,
            period: o.string("period")?.map(str::to_owned),
            offset: o.whole("offset")?,
        })
    }

    /// The members of `q`.
    #[cfg(feature = "admin")]
    pub(crate) fn of(q: Quota) -> Self {
        Self {
            limit: Some(i128::from(q.limit())),
            period: Some(period_name(q.period()).to_owned()),
            offset: Some(i128::from(q.offset())),
        }
    }

    /// The quota at `path` (`quota`) without its offset, and the offset (absent: 0), which
    /// [`with_offset`] checks against the limit. `limit` and `period` are required.
    pub(crate) fn build(&self, path: &str, source: Source) -> Result<(Quota, u64), ShapeError> {
        let field = |m: &str| format!("{path}.{m}");
        let limit = self.limit.ok_or_else(|| source.missing(field("limit"), Some("a quota"), false))?;
        let period = match self.period.as_deref() {
            // A document's text members are required not blank, as `Object::required_string` does.
            Some(p) if source == Source::Request || !p.trim().is_empty() => p,
            _ => return Err(source.missing(field("period"), Some("a quota"), true)),
        };
        let period =
            parse_period(period).ok_or_else(|| ShapeError::invalid(field("period"), "must be DAY, WEEK or MONTH"))?;
        let limit = u64::try_from(limit)
            .map_err(|_| ShapeError::invalid(field("limit"), format!("must be at least 1, got {limit}")))?;
        let offset = self.offset.unwrap_or(0);
        let offset = u64::try_from(offset)
            .map_err(|_| ShapeError::invalid(field("offset"), format!("must not be negative, got {offset}")))?;
        let quota = Quota::new(limit, period).map_err(|e| ShapeError::from_model(&e, path))?;
        Ok((quota, offset))
    }
}

/// `quota` with `offset` taken off its initial period; errors name `<path>.offset`.
pub(crate) fn with_offset(quota: Quota, offset: u64, path: &str) -> Result<Quota, ShapeError> {
    quota.with_offset(offset).map_err(|e| ShapeError::from_model(&e, path))
}

//! A usage plan's limits while a request builds them: members may be set one at a time (a PATCH
//! sets `/throttle/rateLimit` and `/throttle/burstLimit` in two operations), so they are checked
//! when the request is complete, with the member names of the wire format in errors.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::Object;
use crate::error::ConfigError;
use crate::model::{PlanStage, Quota, QuotaPeriod, Throttle, UsagePlan};

/// `ThrottleSettings` being built.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ThrottleDraft {
    pub(crate) rate: Option<f64>,
    pub(crate) burst: Option<i64>,
}

/// `QuotaSettings` being built.
#[derive(Debug, Default, Clone)]
pub(crate) struct QuotaDraft {
    pub(crate) limit: Option<i64>,
    pub(crate) period: Option<String>,
    pub(crate) offset: Option<i64>,
}

/// An `ApiStage` being built: method throttles keyed `"<resourcePath>/<METHOD>"`.
#[derive(Debug, Clone)]
pub(crate) struct StageDraft {
    pub(crate) api: String,
    pub(crate) stage: String,
    pub(crate) methods: Vec<(String, ThrottleDraft)>,
}

impl StageDraft {
    /// `apiId:stage`, as patch paths and values name a stage.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}", self.api, self.stage)
    }
}

/// A plan's throttle, quota and stages being built.
#[derive(Debug, Default)]
pub(crate) struct PlanDraft {
    pub(crate) throttle: Option<ThrottleDraft>,
    pub(crate) quota: Option<QuotaDraft>,
    pub(crate) stages: Vec<StageDraft>,
}

impl PlanDraft {
    /// The limits `plan` has now.
    pub(crate) fn of(plan: &UsagePlan) -> Self {
        let throttle = |t: Throttle| ThrottleDraft { rate: Some(t.rate()), burst: Some(i64::from(t.burst())) };
        Self {
            throttle: plan.throttle_limit().map(throttle),
            quota: plan.quota_limit().map(|q| QuotaDraft {
                limit: i64::try_from(q.limit()).ok(),
                period: Some(period_name(q.period()).to_owned()),
                offset: i64::try_from(q.offset()).ok(),
            }),
            stages: plan
                .stages()
                .iter()
                .map(|s| StageDraft {
                    api: s.api().to_owned(),
                    stage: s.stage_name().to_owned(),
                    methods: s.methods().iter().map(|(k, t)| (k.to_string(), throttle(*t))).collect(),
                })
                .collect(),
        }
    }

    /// `throttle`, `quota` and `apiStages` of a CreateUsagePlan body.
    pub(crate) fn from_request(body: &Object) -> ApiResult<Self> {
        let throttle = |o: &Object| -> ApiResult<ThrottleDraft> {
            Ok(ThrottleDraft { rate: o.number("rateLimit")?, burst: o.integer("burstLimit")? })
        };
        let mut draft = Self::default();
        if let Some(t) = body.object("throttle")? {
            draft.throttle = Some(throttle(&t)?);
        }
        if let Some(q) = body.object("quota")? {
            draft.quota = Some(QuotaDraft {
                limit: q.integer("limit")?,
                period: q.string("period")?,
                offset: q.integer("offset")?,
            });
        }
        for s in body.objects("apiStages")? {
            let mut stage = StageDraft {
                api: s.required_string("apiId")?,
                stage: s.required_string("stage")?,
                methods: Vec::new(),
            };
            for (key, t) in s.object_map("throttle")? {
                stage.methods.push((key, throttle(&t)?));
            }
            if draft.stages.iter().any(|o| o.api == stage.api && o.stage == stage.stage) {
                return Err(ApiError::invalid(&s.field("stage"), format!("{} is listed twice", stage.label())));
            }
            draft.stages.push(stage);
        }
        Ok(draft)
    }

    /// Checks the draft and sets it on `plan`.
    pub(crate) fn apply(self, plan: &mut UsagePlan) -> ApiResult<()> {
        let throttle = self.throttle.map(|t| build_throttle("throttle", t)).transpose()?;
        let quota = self.quota.map(build_quota).transpose()?;
        let mut stages = Vec::with_capacity(self.stages.len());
        for s in self.stages {
            let field = format!("apiStages[{}]", s.label());
            let mut stage = PlanStage::new(s.api, s.stage);
            for (key, t) in s.methods {
                let field = format!("{field}.throttle.{key:?}");
                let t = build_throttle(&field, t)?;
                stage = stage.method_throttle(&key, t).map_err(|e| ApiError::from(renamed(e, &field)))?;
            }
            stages.push(stage);
        }
        plan.set_limits(throttle, quota);
        plan.set_stages(stages);
        Ok(())
    }
}

/// The error of a part (e.g. `Throttle::new`, field `rate`) under `field` with wire names.
fn renamed(e: ConfigError, field: &str) -> ConfigError {
    let member = match e.field() {
        "rate" => ".rateLimit",
        "burst" => ".burstLimit",
        "limit" => ".limit",
        "offset" => ".offset",
        _ => "",
    };
    ConfigError::new(e.kind(), format!("{field}{member}"), e.reason())
}

fn build_throttle(field: &str, t: ThrottleDraft) -> ApiResult<Throttle> {
    let required = |m: &str| ApiError::invalid(&format!("{field}.{m}"), "is required in a throttle");
    let rate = t.rate.ok_or_else(|| required("rateLimit"))?;
    let burst = t.burst.ok_or_else(|| required("burstLimit"))?;
    let burst = u32::try_from(burst).map_err(|_| {
        let reason = if burst < 1 {
            format!("must be at least 1, got {burst}")
        } else {
            format!("must be at most {}", u32::MAX)
        };
        ApiError::invalid(&format!("{field}.burstLimit"), reason)
    })?;
    Throttle::new(rate, burst).map_err(|e| renamed(e, field).into())
}

fn build_quota(q: QuotaDraft) -> ApiResult<Quota> {
    let required = |m: &str| ApiError::invalid(&format!("quota.{m}"), "is required in a quota");
    let limit = q.limit.ok_or_else(|| required("limit"))?;
    let period = match q.period.as_deref() {
        None => return Err(required("period")),
        Some("DAY") => QuotaPeriod::Day,
        Some("WEEK") => QuotaPeriod::Week,
        Some("MONTH") => QuotaPeriod::Month,
        Some(_) => return Err(ApiError::invalid("quota.period", "must be DAY, WEEK or MONTH")),
    };
    let limit = u64::try_from(limit)
        .map_err(|_| ApiError::invalid("quota.limit", format!("must be at least 1, got {limit}")))?;
    let offset = q.offset.unwrap_or(0);
    let offset = u64::try_from(offset)
        .map_err(|_| ApiError::invalid("quota.offset", format!("must not be negative, got {offset}")))?;
    Quota::new(limit, period).and_then(|q| q.with_offset(offset)).map_err(|e| renamed(e, "quota").into())
}

/// API Gateway's name of a period.
pub(crate) fn period_name(p: QuotaPeriod) -> &'static str {
    match p {
        QuotaPeriod::Day => "DAY",
        QuotaPeriod::Week => "WEEK",
        QuotaPeriod::Month => "MONTH",
    }
}

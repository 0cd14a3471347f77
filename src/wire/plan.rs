//! The limits of a `UsagePlan`: `throttle`, `quota` and `apiStages` (each `ApiStage` with its
//! method throttles keyed `"<resourcePath>/<METHOD>"`), read as given and then built into the
//! model's types.

use crate::model::plan::too_many_methods;
#[cfg(feature = "admin")]
use crate::model::UsagePlan;
use crate::model::{PlanStage, Quota, Throttle, MAX_METHODS_PER_STAGE};
#[cfg(feature = "admin")]
use crate::wire::with_offset;
use crate::wire::{Object, QuotaShape, ShapeError, Source, ThrottleShape};

/// An `ApiStage` as given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiStageShape {
    /// `apiId`.
    pub(crate) api_id: String,
    /// `stage`.
    pub(crate) stage: String,
    /// `throttle`: method throttles by method key (`/pets/GET`), in the object's order.
    pub(crate) throttle: Vec<(String, ThrottleShape)>,
}

impl ApiStageShape {
    /// `{"apiId": .., "stage": .., "throttle": {"/pets/GET": {..}}}`; `apiId` and `stage` are
    /// required.
    pub(crate) fn read(o: &Object<'_>) -> Result<Self, ShapeError> {
        let mut stage = Self {
            api_id: o.required_string("apiId")?.to_owned(),
            stage: o.required_string("stage")?.to_owned(),
            throttle: Vec::new(),
        };
        for (key, t) in o.object_map("throttle")? {
            stage.throttle.push((key.to_owned(), ThrottleShape::read(&t)?));
        }
        Ok(stage)
    }

    /// The members of `s`.
    #[cfg(feature = "admin")]
    pub(crate) fn of(s: &PlanStage) -> Self {
        Self {
            api_id: s.api().to_owned(),
            stage: s.stage_name().to_owned(),
            throttle: s.methods().iter().map(|(k, t)| (k.to_string(), ThrottleShape::of(*t))).collect(),
        }
    }

    /// `apiId:stage`, as patch paths and values name a stage.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}", self.api_id, self.stage)
    }

    /// Whether this is the stage `other` names.
    pub(crate) fn same_stage(&self, other: &Self) -> bool {
        self.api_id == other.api_id && self.stage == other.stage
    }

    /// The stage at `path` (`apiStages[0]`), its method throttles checked.
    pub(crate) fn build(&self, path: &str, source: Source) -> Result<PlanStage, ShapeError> {
        let mut stage = PlanStage::new(&self.api_id, &self.stage);
        if self.throttle.len() > MAX_METHODS_PER_STAGE {
            let e = too_many_methods("", self.throttle.len(), "method throttles");
            return Err(ShapeError::invalid(format!("{path}.throttle"), e.reason()));
        }
        for (key, t) in &self.throttle {
            let path = source.key_path(&format!("{path}.throttle"), key);
            let Some(t) = t.build(&path, source)? else { continue };
            stage = stage.method_throttle(key, t).map_err(|e| ShapeError::from_model(&e, &path))?;
        }
        Ok(stage)
    }
}

/// The limits members of a `UsagePlan` (or of CreateUsagePlan) as given.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct PlanLimits {
    /// `throttle`.
    pub(crate) throttle: Option<ThrottleShape>,
    /// `quota`.
    pub(crate) quota: Option<QuotaShape>,
    /// `apiStages`, in order.
    pub(crate) api_stages: Vec<ApiStageShape>,
}

/// [`PlanLimits`] checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    /// The plan's throttle.
    pub(crate) throttle: Option<Throttle>,
    /// The plan's quota, without its offset.
    pub(crate) quota: Option<Quota>,
    /// `quota.offset` (0 when absent), for `wire::with_offset`.
    pub(crate) offset: u64,
    /// The plan's stages.
    pub(crate) stages: Vec<PlanStage>,
}

impl PlanLimits {
    /// `throttle`, `quota` and `apiStages` of `o`.
    pub(crate) fn read(o: &Object<'_>) -> Result<Self, ShapeError> {
        let mut limits = Self::default();
        if let Some(t) = o.object("throttle")? {
            limits.throttle = Some(ThrottleShape::read(&t)?);
        }
        if let Some(q) = o.object("quota")? {
            limits.quota = Some(QuotaShape::read(&q)?);
        }
        for s in o.objects("apiStages")? {
            limits.api_stages.push(ApiStageShape::read(&s)?);
        }
        Ok(limits)
    }

    /// The limits `plan` has now.
    #[cfg(feature = "admin")]
    pub(crate) fn of(plan: &UsagePlan) -> Self {
        Self {
            throttle: plan.throttle().map(ThrottleShape::of),
            quota: plan.quota().map(QuotaShape::of),
            api_stages: plan.stages().iter().map(ApiStageShape::of).collect(),
        }
    }

    /// The index of the first stage that an earlier one already names.
    pub(crate) fn repeated_stage(&self) -> Option<usize> {
        let stages = &self.api_stages;
        (1..stages.len()).find(|&i| stages[..i].iter().any(|s| s.same_stage(&stages[i])))
    }

    /// The limits checked: the throttle, the quota (its offset apart) and the stages, in that
    /// order. A request's stages are named by label in errors (`apiStages[a1b2:prod]`: after
    /// patch operations an index would name nothing the caller wrote), a document's by index.
    pub(crate) fn build(&self, source: Source) -> Result<Limits, ShapeError> {
        let throttle = self.throttle.map(|t| t.build("throttle", source)).transpose()?.flatten();
        let (quota, offset) = match &self.quota {
            Some(q) => q.build("quota", source).map(|(q, offset)| (Some(q), offset))?,
            None => (None, 0),
        };
        let mut stages = Vec::with_capacity(self.api_stages.len());
        for (i, s) in self.api_stages.iter().enumerate() {
            let path = match source {
                Source::Request => format!("apiStages[{}]", s.label()),
                Source::Document => format!("apiStages[{i}]"),
            };
            stages.push(s.build(&path, source)?);
        }
        Ok(Limits { throttle, quota, offset, stages })
    }

    /// Checks the limits of a request (CreateUsagePlan, or a plan's limits after
    /// UpdateUsagePlan's operations) and sets them on `plan`, the quota with its offset.
    #[cfg(feature = "admin")]
    pub(crate) fn apply(&self, plan: &mut UsagePlan) -> Result<(), ShapeError> {
        let limits = self.build(Source::Request)?;
        let quota = limits.quota.map(|q| with_offset(q, limits.offset, "quota")).transpose()?;
        plan.set_limits(limits.throttle, quota);
        plan.set_stages(limits.stages);
        Ok(())
    }
}

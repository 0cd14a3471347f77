//! Usage plans, the stages they apply to, API keys and the stage a layer guards.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::model::tags::Tags;
use crate::model::{MethodKey, Quota, Throttle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// A usage plan: how fast (throttle) and how much (quota) each of its keys may call, and on which
/// API stages.
///
/// ```
/// use tower_usage_plans::{PlanStage, Quota, QuotaPeriod, Throttle, UsagePlan};
/// let plan = UsagePlan::new("silver")
///     .with_name("Silver")
///     .with_throttle(Throttle::new(50.0, 100).unwrap())
///     .with_quota(Quota::new(5000, QuotaPeriod::Month).unwrap())
///     .stage(PlanStage::new("petstore", "prod").method_throttle("/pets/{petId}/DELETE", Throttle::new(1.0, 1).unwrap()).unwrap());
/// assert_eq!(plan.id(), "silver");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct UsagePlan {
    id: Arc<str>,
    name: String,
    description: Option<String>,
    throttle: Option<Throttle>,
    quota: Option<Quota>,
    created: Option<SystemTime>,
    stages: Vec<PlanStage>,
    product_code: Option<String>,
    tags: Tags,
    concurrency: Option<std::num::NonZeroU32>,
}

impl UsagePlan {
    /// A plan with no limits and no stages.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        Self {
            name: id.to_string(),
            id,
            description: None,
            throttle: None,
            quota: None,
            created: None,
            stages: Vec::new(),
            product_code: None,
            tags: Tags::new(),
            concurrency: None,
        }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the per-key throttle.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sets the per-key quota.
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Sets the creation time; the quota's offset applies to the period that contains it.
    pub fn with_created(mut self, created: SystemTime) -> Self {
        self.created = Some(created);
        self
    }

    /// Binds the plan to one more API stage.
    pub fn stage(mut self, stage: PlanStage) -> Self {
        self.stages.push(stage);
        self
    }

    /// Sets the AWS Marketplace product code (informational: kept and shown, never enforced).
    pub fn with_product_code(mut self, code: impl Into<String>) -> Self {
        self.product_code = Some(code.into());
        self
    }

    /// Adds a tag (or replaces the tag with this name). Checked as on [`ApiKey::tag`](crate::ApiKey::tag).
    pub fn tag(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(name.into(), value.into());
        self
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_description(&mut self, description: Option<String>) {
        self.description = description;
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_product_code(&mut self, code: Option<String>) {
        self.product_code = code;
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_limits(&mut self, throttle: Option<Throttle>, quota: Option<Quota>) {
        self.throttle = throttle;
        self.quota = quota;
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_stages(&mut self, stages: Vec<PlanStage>) {
        self.stages = stages;
    }

    /// At most `n` requests of each of the plan's keys in the inner service at once (per key,
    /// like the plan's throttle and quota). The next gets 429 Too Many Requests with
    /// `Retry-After: 1`.
    pub fn with_concurrency(mut self, n: std::num::NonZeroU32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Sets or clears the per-key concurrency cap (the admin API's patches).
    #[cfg(feature = "admin")]
    pub(crate) fn set_concurrency(&mut self, n: Option<std::num::NonZeroU32>) {
        self.concurrency = n;
    }

    /// The per-key concurrency cap, if any.
    #[must_use]
    pub fn concurrency(&self) -> Option<std::num::NonZeroU32> {
        self.concurrency
    }

    pub(crate) fn stages_mut(&mut self) -> &mut Vec<PlanStage> {
        &mut self.stages
    }

    /// The plan id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    /// The display name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description, if any.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The per-key throttle, if any.
    #[must_use]
    pub fn throttle(&self) -> Option<Throttle> {
        self.throttle
    }

    /// The per-key quota, if any.
    #[must_use]
    pub fn quota(&self) -> Option<Quota> {
        self.quota
    }

    /// The creation time, if known.
    #[must_use]
    pub fn created(&self) -> Option<SystemTime> {
        self.created
    }

    /// The AWS Marketplace product code, if any.
    #[must_use]
    pub fn product_code(&self) -> Option<&str> {
        self.product_code.as_deref()
    }

    /// The plan's tags, by name.
    #[must_use]
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The API stages the plan applies to.
    pub fn stages(&self) -> &[PlanStage] {
        &self.stages
    }

    /// The plan's binding to `api`/`stage`, if it has one.
    #[must_use]
    pub fn stage_binding(&self, api: &str, stage: &str) -> Option<&PlanStage> {
        self.stages.iter().find(|s| s.api == api && s.stage == stage)
    }
}

/// One API stage a plan applies to, with optional per-key method throttles.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct PlanStage {
    api: String,
    stage: String,
    methods: Vec<(MethodKey, Throttle)>,
}

impl PlanStage {
    /// Binds a plan to stage `stage` of API `api`.
    pub fn new(api: impl Into<String>, stage: impl Into<String>) -> Self {
        Self { api: api.into(), stage: stage.into(), methods: Vec::new() }
    }

    /// Adds a per-key throttle for one method, e.g. `"/pets/{petId}/DELETE"`.
    pub fn method_throttle(mut self, method: &str, throttle: Throttle) -> Result<Self, ConfigError> {
        push_method(&mut self.methods, method, throttle)?;
        Ok(self)
    }

    pub(crate) fn methods_mut(&mut self) -> &mut Vec<(MethodKey, Throttle)> {
        &mut self.methods
    }

    /// The API id.
    #[must_use]
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The stage name.
    #[must_use]
    pub fn stage_name(&self) -> &str {
        &self.stage
    }

    /// Per-key method throttles.
    #[must_use]
    pub fn methods(&self) -> &[(MethodKey, Throttle)] {
        &self.methods
    }
}

/// Most method throttles one stage may have ([`Stage::method_throttle`], `stage.methods` in a
/// file), and most one plan may set on one of its stages ([`PlanStage::method_throttle`],
/// `plans[i].stages[j].methods`, `apiStages[i].throttle` in the admin API); also the most public
/// methods a stage may have. More are refused with a [`ConfigError`] naming the field. API
/// Gateway's own quotas for these are far lower.
pub const MAX_METHODS_PER_STAGE: usize = 1_000;

// Every index of such a list is a route slot (`u16`, with `u16::MAX` meaning none).
const _: () = assert!(MAX_METHODS_PER_STAGE < u16::MAX as usize);

/// Most method throttles a configuration may hold in all: the stage's and those of every plan on
/// every stage it names, added up. [`Config::new`](crate::Config::new) (and so a file, and every
/// change to an [`InMemoryKeyStore`](crate::InMemoryKeyStore)) refuses more, naming the stage
/// binding that goes over.
pub const MAX_METHOD_THROTTLES: usize = 10_000;

/// The error for a list of `count` methods (throttles, or public methods with `what`) at `field`.
pub(crate) fn too_many_methods(field: impl Into<String>, count: usize, what: &str) -> ConfigError {
    ConfigError::invalid(field, format!("{count} {what} are too many: at most {MAX_METHODS_PER_STAGE} per stage"))
}

/// The error for the stage binding at `field` that brings the method throttles to `total`.
pub(crate) fn too_many_in_all(field: impl Into<String>, total: usize) -> ConfigError {
    ConfigError::invalid(
        field,
        format!(
            "brings the method throttles of the stage and all plans to {total}: at most {MAX_METHOD_THROTTLES} in all"
        ),
    )
}

/// Parses `method` and adds its throttle; errors name the field `methods."<method>"`.
///
/// The duplicate check reads the whole list, so adding `n` this way costs `n²/2` comparisons,
/// bounded by [`MAX_METHODS_PER_STAGE`]; a file is read with a set instead (`add_methods`).
pub(crate) fn push_method(list: &mut Vec<(MethodKey, Throttle)>, method: &str, t: Throttle) -> Result<(), ConfigError> {
    if list.len() >= MAX_METHODS_PER_STAGE {
        return Err(too_many_methods("methods", list.len() + 1, "method throttles"));
    }
    let field = format!("methods.{method:?}");
    let key: MethodKey = method.parse().map_err(|e: ConfigError| e.under(&field))?;
    if list.iter().any(|(k, _)| k.normalized_path() == key.normalized_path() && k.method() == key.method()) {
        return Err(ConfigError::new(
            ConfigErrorKind::Duplicate,
            field,
            "the same method (up to parameter names) is listed twice",
        ));
    }
    list.push((key, t));
    Ok(())
}

/// The API stage a layer guards, with the throttles that hold for all clients together.
///
/// ```
/// use tower_usage_plans::{Stage, Throttle};
/// let stage = Stage::new("petstore", "prod")
///     .with_throttle(Throttle::new(1000.0, 500).unwrap())
///     .method_throttle("/pets/GET", Throttle::new(200.0, 100).unwrap()).unwrap()
///     .public_method("/health/GET").unwrap()
///     .account_throttle(Throttle::new(10_000.0, 5000).unwrap());
/// assert_eq!(stage.api(), "petstore");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Stage {
    api: String,
    name: String,
    throttle: Option<Throttle>,
    methods: Vec<(MethodKey, Throttle)>,
    public_methods: Vec<MethodKey>,
    account: Option<Throttle>,
}

impl Stage {
    /// Stage `name` of API `api`, with no throttles and no public methods.
    pub fn new(api: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            api: api.into(),
            name: name.into(),
            throttle: None,
            methods: Vec::new(),
            public_methods: Vec::new(),
            account: None,
        }
    }

    /// The stage default throttle, shared by all clients.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// A throttle on one method, shared by all clients.
    pub fn method_throttle(mut self, method: &str, throttle: Throttle) -> Result<Self, ConfigError> {
        push_method(&mut self.methods, method, throttle)?;
        self.check_routes().map_err(|e| ConfigError::new(e.kind(), format!("methods.{method:?}"), e.reason()))?;
        Ok(self)
    }

    /// Checks that the stage's method routes can be matched together.
    pub(crate) fn check_routes(&self) -> Result<(), ConfigError> {
        crate::engine::check_routes(self.methods.iter().map(|(k, _)| k).chain(&self.public_methods))
    }

    pub(crate) fn methods_mut(&mut self) -> &mut Vec<(MethodKey, Throttle)> {
        &mut self.methods
    }

    /// The public methods, to be added in bulk (the caller checks their count and the routes).
    pub(crate) fn public_methods_mut(&mut self) -> &mut Vec<MethodKey> {
        &mut self.public_methods
    }

    /// A method that needs no API key (AWS's `apiKeyRequired = false`). Stage and account
    /// throttles still apply to it; quotas do not.
    pub fn public_method(mut self, method: &str) -> Result<Self, ConfigError> {
        if self.public_methods.len() >= MAX_METHODS_PER_STAGE {
            return Err(too_many_methods("public_methods", self.public_methods.len() + 1, "public methods"));
        }
        let key: MethodKey = method.parse().map_err(|e: ConfigError| e.under("public_methods"))?;
        self.public_methods.push(key);
        self.check_routes().map_err(|e| ConfigError::new(e.kind(), "public_methods", e.reason()))?;
        Ok(self)
    }

    /// One limit over everything this layer serves.
    pub fn account_throttle(mut self, throttle: Throttle) -> Self {
        self.account = Some(throttle);
        self
    }

    /// The API id.
    #[must_use]
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The stage name.
    #[must_use]
    pub fn stage_name(&self) -> &str {
        &self.name
    }

    /// The stage default throttle.
    #[must_use]
    pub fn throttle(&self) -> Option<Throttle> {
        self.throttle
    }

    /// Per-method throttles for all clients.
    #[must_use]
    pub fn methods(&self) -> &[(MethodKey, Throttle)] {
        &self.methods
    }

    /// Methods that need no key.
    #[must_use]
    pub fn public_methods(&self) -> &[MethodKey] {
        &self.public_methods
    }

    /// The account throttle.
    #[must_use]
    pub fn account(&self) -> Option<Throttle> {
        self.account
    }
}

/// The getters' earlier names.
impl UsagePlan {
    /// Renamed [`name`](Self::name).
    #[deprecated(since = "0.1.0", note = "renamed `name`, after its field")]
    #[must_use]
    pub fn display_name(&self) -> &str {
        self.name()
    }

    /// Renamed [`description`](Self::description).
    #[deprecated(since = "0.1.0", note = "renamed `description`, after its field")]
    #[must_use]
    pub fn description_text(&self) -> Option<&str> {
        self.description()
    }

    /// Renamed [`throttle`](Self::throttle).
    #[deprecated(since = "0.1.0", note = "renamed `throttle`, after its field")]
    #[must_use]
    pub fn throttle_limit(&self) -> Option<Throttle> {
        self.throttle()
    }

    /// Renamed [`quota`](Self::quota).
    #[deprecated(since = "0.1.0", note = "renamed `quota`, after its field")]
    #[must_use]
    pub fn quota_limit(&self) -> Option<Quota> {
        self.quota()
    }

    /// Renamed [`created`](Self::created).
    #[deprecated(since = "0.1.0", note = "renamed `created`, after its field")]
    #[must_use]
    pub fn created_at(&self) -> Option<SystemTime> {
        self.created()
    }

    /// Renamed [`product_code`](Self::product_code).
    #[deprecated(since = "0.1.0", note = "renamed `product_code`, after its field")]
    #[must_use]
    pub fn product_code_text(&self) -> Option<&str> {
        self.product_code()
    }
}

/// The getters' earlier names.
impl Stage {
    /// Renamed [`throttle`](Self::throttle).
    #[deprecated(since = "0.1.0", note = "renamed `throttle`, after its field")]
    #[must_use]
    pub fn default_throttle(&self) -> Option<Throttle> {
        self.throttle()
    }
}

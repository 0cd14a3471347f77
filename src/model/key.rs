//! API keys: the record of a key (everything but its secret value).

use crate::error::ConfigError;
use crate::model::tags::Tags;
use crate::model::{MethodKey, Overrides, Quota, QuotaAnchor, Throttle};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::SystemTime;

/// An API key's record (everything but its secret value).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tower_usage_plans::ApiKey;
/// let created = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
/// let key = ApiKey::new("k1").with_name("Acme CI").with_customer_id("acme").with_created(created).tag("team", "billing").plan("free");
/// assert_eq!(key.created(), Some(created));
/// assert_eq!(key.tags()["team"], "billing");
/// assert_eq!(key.plan_ids()[0].as_ref(), "free");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ApiKey {
    id: Arc<str>,
    name: String,
    description: Option<String>,
    enabled: bool,
    customer_id: Option<String>,
    expires: Option<SystemTime>,
    plans: Vec<Arc<str>>,
    /// Management metadata, rarely set and never read on the request path: one pointer when unset.
    meta: Option<Arc<Meta>>,
    /// The key's own limits (replacing its plan's), rarely set: one pointer when unset.
    overrides: Option<Arc<Overrides>>,
}

/// What API Gateway's management API shows of a key beyond what the layer needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Meta {
    created: Option<SystemTime>,
    last_updated: Option<SystemTime>,
    tags: Tags,
}

static NO_TAGS: Tags = Tags::new();

impl ApiKey {
    /// An enabled key with no plans.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        Self {
            name: id.to_string(),
            description: None,
            id,
            enabled: true,
            customer_id: None,
            expires: None,
            plans: Vec::new(),
            meta: None,
            overrides: None,
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

    /// Enables or disables the key. A disabled key gets 403.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the customer id (AWS Marketplace's customer, or yours).
    pub fn with_customer_id(mut self, customer: impl Into<String>) -> Self {
        self.customer_id = Some(customer.into());
        self
    }

    /// Sets the expiry: from this instant on the key gets 403.
    pub fn with_expires(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Adds the key to a plan.
    pub fn plan(mut self, plan_id: impl Into<Arc<str>>) -> Self {
        self.plans.push(plan_id.into());
        self
    }

    /// Sets when the key was created (API Gateway's `createdDate`; informational).
    pub fn with_created(mut self, at: SystemTime) -> Self {
        self.meta_mut().created = Some(at);
        self
    }

    /// Sets when the key was last changed (API Gateway's `lastUpdatedDate`; informational).
    /// [`InMemoryKeyStore`](crate::InMemoryKeyStore) sets it when it changes the key.
    pub fn with_last_updated(mut self, at: SystemTime) -> Self {
        self.meta_mut().last_updated = Some(at);
        self
    }

    /// Adds a tag (or replaces the tag with this name). Checked when the key joins a
    /// [`Config`](crate::Config): names of 1 to 128 characters not starting with `aws:`, values of
    /// at most 256 characters, at most 50 tags.
    pub fn tag(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta_mut().tags.insert(name.into(), value.into());
        self
    }

    /// Gives this key its own throttle, replacing its plan's for this key only (a custom deal
    /// without a plan of its own). Exact like the plan's.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.overrides_mut().throttle = Some(throttle);
        self
    }

    /// Gives this key its own quota, replacing its plan's for this key only. The plan's `offset`
    /// does not apply to it unless the override sets its own.
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.overrides_mut().quota = Some(quota);
        self
    }

    /// Adds a method throttle of this key's own (e.g. `"/pets/GET"`). A key with method throttles
    /// of its own uses them instead of its plan's method throttles (all of them, on the stage its
    /// plan binds); [`without_method_throttles`](Self::without_method_throttles) removes the plan's
    /// without adding any.
    ///
    /// # Errors
    ///
    /// A malformed method key, or one listed twice, naming the field `methods."<key>"`.
    pub fn method_throttle(mut self, method: &str, throttle: Throttle) -> Result<Self, ConfigError> {
        self.overrides_mut().push_method(method, throttle)?;
        Ok(self)
    }

    /// Makes this key use no method throttles of its plan (and none of its own until
    /// [`method_throttle`](Self::method_throttle) adds some).
    pub fn without_method_throttles(mut self) -> Self {
        self.overrides_mut().methods.get_or_insert_with(Vec::new);
        self
    }

    /// At most `n` requests of this key in the inner service at once, replacing its plan's cap.
    pub fn with_concurrency(mut self, n: NonZeroU32) -> Self {
        self.overrides_mut().concurrency = Some(n);
        self
    }

    /// Starts this key's quota periods at `anchor`'s time of day, weekday or day of month (its
    /// billing day) instead of the calendar's.
    pub fn with_quota_anchor(mut self, anchor: QuotaAnchor) -> Self {
        self.overrides_mut().anchor = Some(anchor);
        self
    }

    fn overrides_mut(&mut self) -> &mut Overrides {
        Arc::make_mut(self.overrides.get_or_insert_with(Arc::default))
    }

    /// The key's own limits, if it has any.
    pub(crate) fn overrides(&self) -> Option<&Arc<Overrides>> {
        self.overrides.as_ref().filter(|o| !o.is_empty())
    }

    /// Replaces the key's own limits (the admin API and stores set them all at once).
    #[cfg_attr(not(any(feature = "admin", feature = "sqlx")), allow(dead_code))]
    pub(crate) fn set_overrides(&mut self, overrides: Option<Overrides>) {
        self.overrides = overrides.filter(|o| !o.is_empty()).map(Arc::new);
    }

    fn meta_mut(&mut self) -> &mut Meta {
        Arc::make_mut(self.meta.get_or_insert_with(Arc::default))
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_description(&mut self, description: Option<String>) {
        self.description = description;
    }

    #[cfg(feature = "admin")]
    pub(crate) fn set_customer_id(&mut self, customer: Option<String>) {
        self.customer_id = customer;
    }

    /// The key id (not secret).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    /// The key without plan `plan_id`.
    pub(crate) fn without_plan(mut self, plan_id: &str) -> Self {
        self.plans.retain(|p| &**p != plan_id);
        self
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

    /// Whether the key is enabled.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The customer id, if any.
    #[must_use]
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    /// The expiry, if any.
    #[must_use]
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// Ids of the plans the key belongs to.
    #[must_use]
    pub fn plan_ids(&self) -> &[Arc<str>] {
        &self.plans
    }

    /// When the key was created, if known.
    #[must_use]
    pub fn created(&self) -> Option<SystemTime> {
        self.meta.as_ref().and_then(|m| m.created)
    }

    /// When the key was last changed, if known.
    #[must_use]
    pub fn last_updated(&self) -> Option<SystemTime> {
        self.meta.as_ref().and_then(|m| m.last_updated)
    }

    /// The key's tags, by name.
    #[must_use]
    pub fn tags(&self) -> &BTreeMap<String, String> {
        self.meta.as_ref().map_or(&NO_TAGS, |m| &m.tags)
    }

    /// The key's own throttle (replacing its plan's), if any.
    #[must_use]
    pub fn throttle(&self) -> Option<Throttle> {
        self.overrides.as_ref().and_then(|o| o.throttle)
    }

    /// The key's own quota (replacing its plan's), if any.
    #[must_use]
    pub fn quota(&self) -> Option<Quota> {
        self.overrides.as_ref().and_then(|o| o.quota)
    }

    /// The key's own method throttles, if it has its own list (which replaces its plan's).
    #[must_use]
    pub fn method_throttles(&self) -> Option<&[(MethodKey, Throttle)]> {
        self.overrides.as_ref().and_then(|o| o.methods.as_deref())
    }

    /// The key's own concurrency cap (replacing its plan's), if any.
    #[must_use]
    pub fn concurrency(&self) -> Option<NonZeroU32> {
        self.overrides.as_ref().and_then(|o| o.concurrency)
    }

    /// The billing anchor of the key's quota periods, if any.
    #[must_use]
    pub fn quota_anchor(&self) -> Option<QuotaAnchor> {
        self.overrides.as_ref().and_then(|o| o.anchor)
    }
}

/// The getters' earlier names.
impl ApiKey {
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

    /// Renamed [`customer_id`](Self::customer_id).
    #[deprecated(since = "0.1.0", note = "renamed `customer_id`, after its field")]
    #[must_use]
    pub fn customer(&self) -> Option<&str> {
        self.customer_id()
    }

    /// Renamed [`expires`](Self::expires).
    #[deprecated(since = "0.1.0", note = "renamed `expires`, after its field")]
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires()
    }

    /// Renamed [`created`](Self::created).
    #[deprecated(since = "0.1.0", note = "renamed `created`, after its field")]
    #[must_use]
    pub fn created_at(&self) -> Option<SystemTime> {
        self.created()
    }

    /// Renamed [`last_updated`](Self::last_updated).
    #[deprecated(since = "0.1.0", note = "renamed `last_updated`, after its field")]
    #[must_use]
    pub fn last_updated_at(&self) -> Option<SystemTime> {
        self.last_updated()
    }
}

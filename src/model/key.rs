//! API keys: the record of a key (everything but its secret value).

use crate::model::tags::Tags;
use std::collections::BTreeMap;
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

//! [`Caller`]: who an admitted request is from, for the handler behind the layer.

use crate::model::{Stage, UsagePlan};
use crate::view::{BucketView, QuotaView};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Who is calling: the key, its plan, its customer and the stage, put in the request extensions
/// of every admitted keyed request (API Gateway's `$context.identity.apiKeyId`, Kong's
/// `X-Consumer-ID`). Read it in a handler with axum's extractor (feature `axum`:
/// `async fn h(caller: Caller)`, or `Option<Caller>`), from tonic's `Request::extensions()`, or
/// from `http::Request::extensions()`.
///
/// It never holds the key value, and none of its methods returns it. Cloning it is one reference
/// count: the key's part is made once per key-cache entry, not per request.
///
/// What is left of the quota and of the key's bucket is known when the layer computes it for the
/// rate-limit headers (the default, draft headers); with headers off it is `None`.
/// [`UsagePlanLayerBuilder::caller`](crate::UsagePlanLayerBuilder::caller) turns the extension off
/// (the allocation-free path).
///
/// ```
/// use tower_usage_plans::Caller;
/// fn handler(req: http::Request<()>) -> String {
///     match req.extensions().get::<Caller>() {
///         Some(c) => format!("key {} on plan {}", c.key_id(), c.plan_id()),
///         None => "public method".to_owned(),
///     }
/// }
/// # assert_eq!(handler(http::Request::new(())), "public method");
/// ```
#[derive(Clone)]
pub struct Caller {
    profile: Arc<CallerProfile>,
    quota: Option<QuotaView>,
    bucket: Option<BucketView>,
}

/// The part of a [`Caller`] made once per key-cache entry: 40 bytes (and the `Arc`'s counts) for
/// a key with no name of its own, no customer and no tags; part of the memory per cached key.
pub(crate) struct CallerProfile {
    key_id: Arc<str>,
    /// `None` for a key whose name is its id, with no customer and no tags (the common case).
    labels: Option<Box<Labels>>,
    plan: Arc<UsagePlan>,
    stage: Arc<Stage>,
}

/// What few keys carry besides their id.
struct Labels {
    /// `None` when the name is the id (the default).
    key_name: Option<Box<str>>,
    customer_id: Option<Box<str>>,
    tags: BTreeMap<String, String>,
}

impl CallerProfile {
    pub(crate) fn new(key: &crate::ApiKey, plan: &Arc<UsagePlan>, stage: &Arc<Stage>) -> Self {
        let key_name = (key.name() != key.id()).then(|| key.name().into());
        let customer_id = key.customer_id().map(Into::into);
        let plain = key_name.is_none() && customer_id.is_none() && key.tags().is_empty();
        Self {
            key_id: Arc::clone(key.id_arc()),
            labels: (!plain).then(|| Box::new(Labels { key_name, customer_id, tags: key.tags().clone() })),
            plan: Arc::clone(plan),
            stage: Arc::clone(stage),
        }
    }

    fn labels(&self) -> Option<&Labels> {
        self.labels.as_deref()
    }
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<CallerProfile>() == 40);

impl Caller {
    #[inline]
    pub(crate) fn new(profile: Arc<CallerProfile>, quota: Option<QuotaView>, bucket: Option<BucketView>) -> Self {
        Self { profile, quota, bucket }
    }

    /// The key id (never the value).
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.profile.key_id
    }

    /// The key's display name.
    #[must_use]
    pub fn key_name(&self) -> &str {
        self.profile.labels().and_then(|l| l.key_name.as_deref()).unwrap_or(&self.profile.key_id)
    }

    /// The id of the plan the request was decided under.
    #[must_use]
    pub fn plan_id(&self) -> &str {
        self.profile.plan.id()
    }

    /// The plan's display name.
    #[must_use]
    pub fn plan_name(&self) -> &str {
        self.profile.plan.name()
    }

    /// The key's customer id, if any.
    #[must_use]
    pub fn customer_id(&self) -> Option<&str> {
        self.profile.labels().and_then(|l| l.customer_id.as_deref())
    }

    /// The API id of the stage the layer guards.
    #[must_use]
    pub fn api(&self) -> &str {
        self.profile.stage.api()
    }

    /// The stage name.
    #[must_use]
    pub fn stage(&self) -> &str {
        self.profile.stage.stage_name()
    }

    /// The key's tags.
    #[must_use]
    pub fn tags(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.profile.labels().map_or(&NONE, |l| &l.tags)
    }

    /// Requests left in the key's quota period after this one, when known.
    #[must_use]
    pub fn quota_remaining(&self) -> Option<u64> {
        self.quota.map(|q| q.remaining)
    }

    /// The limit of the key's current quota period, when known.
    #[must_use]
    pub fn quota_limit(&self) -> Option<u64> {
        self.quota.map(|q| q.limit)
    }

    /// Time until the key's quota period resets, when known.
    #[must_use]
    pub fn quota_resets_in(&self) -> Option<Duration> {
        self.quota.map(|q| Duration::from_secs(q.resets_in_secs))
    }

    /// Requests the key's plan bucket would admit right now, after this one, when known.
    #[must_use]
    pub fn bucket_remaining(&self) -> Option<u64> {
        self.bucket.map(|b| b.remaining)
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("key_id", &self.key_id())
            .field("key_name", &self.key_name())
            .field("plan_id", &self.plan_id())
            .field("customer_id", &self.customer_id())
            .field("api", &self.api())
            .field("stage", &self.stage())
            .field("tags", self.tags())
            .field("quota_remaining", &self.quota_remaining())
            .field("bucket_remaining", &self.bucket_remaining())
            .finish()
    }
}

impl fmt::Debug for CallerProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerProfile").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

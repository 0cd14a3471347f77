//! [`UsagePlanLayer`] and its builder.

use super::extract::KeySource;
use super::headers::RateLimitHeaders;
use super::post::RefundPolicy;
use super::render::{AwsRejection, RenderRejection, Renderer};
use super::service::UsagePlanService;
use super::shared::Shared;
use crate::backend::InProcess;
use crate::engine::{Clock, CounterBackend, Engine, SystemClock};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::keycache::{CacheSettings, KeyCache, KeyCacheStats};
use crate::keys::KeyPrefixes;
use crate::model::Stage;
use crate::store::{DynKeyStore, Invalidation, KeyStore};
use crate::usage::{Usage, UsageBackend};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Enforces usage plans on every request: API key, throttles, quota.
///
/// Every clone of the layer, and every service it makes, shares one state: the same buckets and
/// the same quota counters.
#[derive(Debug, Clone)]
#[must_use]
pub struct UsagePlanLayer {
    shared: Arc<Shared>,
    usage: Option<Arc<dyn UsageBackend>>,
}

impl std::fmt::Debug for dyn UsageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageBackend")
    }
}

impl UsagePlanLayer {
    /// A layer with default settings, guarding the stage the store was configured with
    /// ([`KeyStore::stage`]).
    ///
    /// # Errors
    ///
    /// A store that carries no stage (a [`KeyStore`] of yours whose
    /// [`stage`](KeyStore::stage) is `None`) is refused with a [`ConfigError`] of kind
    /// [`Missing`](ConfigErrorKind::Missing) for the field `stage`: name it with
    /// [`UsagePlanLayerBuilder::stage`]. A layer never guards "any stage".
    pub fn new<K: KeyStore>(store: K) -> Result<Self, ConfigError> {
        Self::builder(store).build()
    }

    /// A handle on this layer's usage: per-day counts for GetUsage, the current quota, UpdateUsage,
    /// snapshots and usage sinks. Every clone of the layer gives a handle on the same counts.
    pub fn usage(&self) -> Usage {
        Usage::new(Arc::clone(&self.shared.engine), self.usage.clone(), Arc::clone(&self.shared.clock))
    }

    /// What this layer's key cache has done so far: store calls and failures, stale-if-error
    /// and fail-open answers, cached values.
    #[must_use]
    pub fn key_cache_stats(&self) -> KeyCacheStats {
        self.shared.keys.stats()
    }

    /// A builder to change the defaults.
    pub fn builder<K: KeyStore>(store: K) -> UsagePlanLayerBuilder {
        UsagePlanLayerBuilder {
            stage: store.stage(),
            invalidation: store.invalidation(),
            store: Arc::new(store),
            clock: Arc::new(SystemClock::new()),
            source: KeySource::default(),
            key_prefixes: Vec::new(),
            headers: RateLimitHeaders::default(),
            renderer: Renderer(Box::new(AwsRejection)),
            cache: CacheSettings::default(),
            retention_days: crate::engine::ledger::DEFAULT_RETENTION_DAYS,
            refund: None,
            backend: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl<S> Layer<S> for UsagePlanLayer {
    type Service = UsagePlanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UsagePlanService::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`UsagePlanLayer`].
#[derive(Debug)]
#[must_use]
pub struct UsagePlanLayerBuilder {
    stage: Option<Stage>,
    store: Arc<dyn DynKeyStore>,
    clock: Arc<dyn Clock>,
    source: KeySource,
    key_prefixes: Vec<String>,
    headers: RateLimitHeaders,
    renderer: Renderer,
    cache: CacheSettings,
    retention_days: u32,
    refund: Option<RefundPolicy>,
    backend: Option<Arc<dyn CounterBackend>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::backend::redis::RedisBackend>,
    invalidation: Option<Invalidation>,
}

impl UsagePlanLayerBuilder {
    /// Where counters live (in this process by default).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn backend(mut self, backend: Arc<dyn CounterBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Keeps the counters in Redis, shared by every replica of the app (feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, backend: crate::backend::redis::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The stage this layer guards (replaces the store's). Keys must belong to a plan bound to it.
    ///
    /// A layer needs a stage, from here or from the store ([`KeyStore::stage`]):
    /// [`build`](Self::build) refuses one without.
    pub fn stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
    }

    /// Revalidate every cached key on its next request after `handle` is invalidated. Replaces
    /// the store's own handle ([`KeyStore::invalidation`]); for a store of yours that learns of
    /// changes (a database notification, an admin call) and has no handle of its own.
    pub fn invalidation(mut self, handle: Invalidation) -> Self {
        self.invalidation = Some(handle);
        self
    }

    /// Where the key is read from; `x-api-key` by default.
    pub fn key_source(mut self, source: KeySource) -> Self {
        self.source = source;
        self
    }

    /// Prefixes of the keys made with [`keys::generate_with_prefix`](crate::keys::generate_with_prefix)
    /// (e.g. `["sk_live_"]`). A presented value that starts with one of them but has no valid
    /// checksum for any it starts with (a mistyped, truncated or made-up key) is refused with
    /// 403 Forbidden ([`RejectionKind::MalformedKey`](crate::RejectionKind::MalformedKey))
    /// without asking the store or the key cache, so typos cost no lookup. Values without any of
    /// the prefixes (keys imported from API Gateway, say) are looked up as before. None by
    /// default; each call replaces the previous set. [`build`](Self::build) checks the prefixes
    /// as [`generate_with_prefix`](crate::keys::generate_with_prefix) does.
    pub fn key_prefixes(mut self, prefixes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.key_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Which rate-limit headers to send; [`RateLimitHeaders::Draft`] by default.
    pub fn rate_limit_headers(mut self, style: RateLimitHeaders) -> Self {
        self.headers = style;
        self
    }

    /// Renders refused (non-gRPC) requests; API Gateway's JSON by default.
    pub fn render_rejection(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Renderer(Box::new(renderer));
        self
    }

    /// The clock; [`SystemClock`] by default. Use a [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a store's answer about a key is used before asking again (60 s by default).
    /// Changes made in the store take effect within this time.
    pub fn key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache.ttl = ttl;
        self
    }

    /// How long past its TTL a validated key keeps working while the store fails (5 min by
    /// default). Keys not validated within that window get 503.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.cache.stale_if_error = window;
        self
    }

    /// Whether every admitted keyed request carries a [`Caller`](crate::Caller) in its extensions
    /// (key id and name, plan, customer, stage, tags, what is left). On by default. It costs one
    /// small box per request for the extension (and the extension map's first allocation when the
    /// request has none yet), and a per-key profile made when a key is (re)validated; turn it off
    /// for the allocation-free path when no handler reads it.
    pub fn caller(mut self, on: bool) -> Self {
        self.cache.caller = on;
        self
    }

    /// Forward requests when the store fails and the key is not cached, held only to the stage
    /// and account throttles (no per-key limit, no quota). Off by default (fail closed with 503).
    /// Logged at `warn` each time it happens. A key invalidated (e.g. disabled) while the store
    /// is down is forwarded this way too: its next request must ask the store, and the store
    /// cannot answer.
    pub fn fail_open_on_store_error(mut self, fail_open: bool) -> Self {
        self.cache.fail_open = fail_open;
        self
    }

    /// Gives a forwarded request's quota count back when its response status matches, e.g.
    /// `|s| s.is_server_error()` so that a customer is not billed for your outages. Off by default:
    /// as in API Gateway, every forwarded request counts, whatever its status. Throttle tokens are
    /// not given back.
    pub fn refund_quota_when(mut self, policy: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.refund = Some(RefundPolicy(Box::new(policy)));
        self
    }

    /// How many days of usage the in-process ledger keeps before today (default 90, as API
    /// Gateway). See [`Usage`](crate::usage::Usage).
    pub fn usage_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] of kind [`Missing`](ConfigErrorKind::Missing) for the field `stage`
    /// when neither [`stage`](Self::stage) nor the store named the stage to guard; one of kind
    /// [`Invalid`](ConfigErrorKind::Invalid) for the field `key_prefixes[i]` when a prefix given
    /// to [`key_prefixes`](Self::key_prefixes) is empty, longer than 32 characters or has a
    /// character outside `[A-Za-z0-9_-]`.
    pub fn build(self) -> Result<UsagePlanLayer, ConfigError> {
        /// Where the counters live, and where their usage is read (if it can be).
        type Backends = (Arc<dyn CounterBackend>, Option<Arc<dyn UsageBackend>>);
        let stage = self.stage.ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Missing,
                "stage",
                "the layer guards no stage: name it with UsagePlanLayerBuilder::stage (the store carries none)",
            )
        })?;
        let prefixes = KeyPrefixes::new("key_prefixes", self.key_prefixes)?;
        // The builder picks where counters live: in Redis when given one, else in this process.
        #[cfg(feature = "redis")]
        let redis = self
            .redis
            .as_ref()
            .map(|r| (r.bind(Some(&stage), Arc::clone(&self.clock)), Some(r.usage(self.retention_days))));
        #[cfg(not(feature = "redis"))]
        let redis: Option<Backends> = None;
        let given = self.backend.map(|b| (b, None));
        let (backend, usage): Backends = match given.or(redis) {
            Some(pair) => pair,
            None => {
                let local = Arc::new(InProcess::new(&stage, self.retention_days));
                (Arc::clone(&local) as Arc<dyn CounterBackend>, Some(local as Arc<dyn UsageBackend>))
            }
        };
        Ok(UsagePlanLayer {
            shared: Arc::new(Shared {
                engine: Arc::new(Engine::new(stage, backend)),
                keys: KeyCache::new(self.cache, self.invalidation),
                store: self.store,
                clock: self.clock,
                source: self.source,
                prefixes,
                headers: self.headers,
                renderer: self.renderer,
                refund: self.refund.map(Arc::new),
            }),
            usage,
        })
    }
}

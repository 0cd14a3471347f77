//! [`UsagePlanLayer`] and its builder.

use super::extract::KeySource;
use super::headers::RateLimitHeaders;
use super::render::{AwsRejection, RenderRejection, Renderer};
use super::service::UsagePlanService;
use crate::backend::CounterBackend;
use crate::engine::{CacheSettings, Clock, Engine, SystemClock};
use crate::model::Stage;
use crate::store::{DynKeyStore, Invalidation, KeyStore};
use http::StatusCode;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// What every clone of the layer and of its services shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn DynKeyStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) source: KeySource,
    pub(crate) headers: RateLimitHeaders,
    pub(crate) renderer: Renderer,
    pub(crate) fail_open: bool,
    pub(crate) refund: Option<RefundPolicy>,
    pub(crate) flights: super::flight::Flights,
}

impl Shared {
    pub(crate) fn refund_applies(&self, status: StatusCode) -> bool {
        self.refund.as_ref().is_some_and(|p| (p.0)(status))
    }
}

/// Which response statuses give the quota count back.
pub(crate) struct RefundPolicy(Box<dyn Fn(StatusCode) -> bool + Send + Sync>);

impl fmt::Debug for RefundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefundPolicy(..)")
    }
}

impl fmt::Debug for dyn DynKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyStore")
    }
}

/// Enforces usage plans on every request: API key, throttles, quota.
///
/// Every clone of the layer, and every service it makes, shares one state: the same buckets and
/// the same quota counters.
#[derive(Debug, Clone)]
#[must_use]
pub struct UsagePlanLayer {
    shared: Arc<Shared>,
}

impl UsagePlanLayer {
    /// A layer with default settings, guarding the stage the store was configured with
    /// ([`KeyStore::stage`]).
    pub fn new<K: KeyStore>(store: K) -> Self {
        Self::builder(store).build()
    }

    /// A handle on this layer's usage: per-day counts for GetUsage, the current quota, UpdateUsage,
    /// snapshots and usage sinks. Every clone of the layer gives a handle on the same counts.
    pub fn usage(&self) -> crate::usage::Usage {
        crate::usage::Usage::new(Arc::clone(&self.shared))
    }

    /// A builder to change the defaults.
    pub fn builder<K: KeyStore>(store: K) -> UsagePlanLayerBuilder {
        UsagePlanLayerBuilder {
            stage: store.stage(),
            invalidation: store.invalidation(),
            store: Arc::new(store),
            clock: Arc::new(SystemClock::new()),
            source: KeySource::default(),
            headers: RateLimitHeaders::default(),
            renderer: Renderer(Box::new(AwsRejection)),
            cache: CacheSettings { ttl: Duration::from_secs(60), stale_if_error: Duration::from_secs(300) },
            retention_days: crate::engine::ledger::DEFAULT_RETENTION_DAYS,
            fail_open: false,
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
    headers: RateLimitHeaders,
    renderer: Renderer,
    cache: CacheSettings,
    retention_days: u32,
    fail_open: bool,
    refund: Option<RefundPolicy>,
    backend: Option<Arc<dyn CounterBackend>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisBackend>,
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
    pub fn redis(mut self, backend: crate::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The stage this layer guards (replaces the store's). Keys must belong to a plan bound to it.
    ///
    /// Without any stage (neither here nor from the store), stage bindings are not checked: a
    /// key's first plan applies, with the method throttles of that plan's first stage.
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

    /// Forward requests when the store fails and the key is not cached, held only to the stage
    /// and account throttles (no per-key limit, no quota). Off by default (fail closed with 503).
    /// Logged at `warn` each time it happens.
    pub fn fail_open_on_store_error(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
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
    pub fn build(self) -> UsagePlanLayer {
        #[cfg(feature = "redis")]
        let backend =
            self.backend.or_else(|| self.redis.as_ref().map(|r| r.bind(self.stage.as_ref(), Arc::clone(&self.clock))));
        #[cfg(not(feature = "redis"))]
        let backend = self.backend;
        UsagePlanLayer {
            shared: Arc::new(Shared {
                engine: Engine::new(self.stage, self.cache, backend, self.invalidation, self.retention_days),
                store: self.store,
                clock: self.clock,
                source: self.source,
                headers: self.headers,
                renderer: self.renderer,
                fail_open: self.fail_open,
                refund: self.refund,
                flights: Default::default(),
            }),
        }
    }
}

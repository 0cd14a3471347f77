//! Why a request was refused: the typed rejection the layer puts in the response extensions.

use crate::view::Limits;
use http::StatusCode;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong, at the level a client or an operator cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No key was presented.
    MissingKey,
    /// The key was presented more than once, was too long, had characters no key can have, or
    /// started with one of the layer's [key prefixes](crate::UsagePlanLayerBuilder::key_prefixes)
    /// without a valid checksum (a mistyped key).
    MalformedKey,
    /// No such key.
    UnknownKey,
    /// The key is disabled.
    DisabledKey,
    /// The key has expired.
    ExpiredKey,
    /// The key is not in a usage plan bound to this stage.
    WrongStage,
    /// A throttle (token bucket) refused the request.
    Throttled,
    /// The key's quota for the current period is used up.
    QuotaExceeded,
    /// The key store could not answer and the key was not recently validated.
    StoreUnavailable,
}

/// Which throttle refused a request, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleScope {
    /// The plan's throttle for this method, per key.
    KeyMethod,
    /// The plan's throttle, per key (or the key's own).
    Key,
    /// The throttle of the key's customer, all its keys together.
    Customer,
    /// The stage's throttle for this method, all clients together.
    StageMethod,
    /// The stage default throttle, all clients together.
    Stage,
    /// The account throttle.
    Account,
    /// The key's concurrency cap (its plan's or its own): too many of its requests in flight.
    KeyConcurrency,
    /// The concurrency cap of the key's customer.
    CustomerConcurrency,
}

/// A refused request. Found in the rejection response's extensions.
///
/// ```
/// use tower_usage_plans::{Rejection, RejectionKind};
/// # fn check(r: &Rejection) {
/// if r.kind() == RejectionKind::QuotaExceeded {
///     println!("quota used up, retry in {:?}", r.retry_after());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Rejection {
    kind: RejectionKind,
    scope: Option<ThrottleScope>,
    retry_after: Option<Duration>,
    key_id: Option<Arc<str>>,
    limits: Option<Box<Limits>>,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.kind)
            .field("scope", &self.scope)
            .field("retry_after", &self.retry_after)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())?;
        if let Some(scope) = self.scope {
            write!(f, " ({scope:?} throttle)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind) -> Self {
        Self { kind, scope: None, retry_after: None, key_id: None, limits: None }
    }

    pub(crate) fn throttled(scope: ThrottleScope, wait_nanos: u64) -> Self {
        Self {
            scope: Some(scope),
            retry_after: Some(Duration::from_nanos(wait_nanos)),
            ..Self::new(RejectionKind::Throttled)
        }
    }

    pub(crate) fn quota(resets_in_secs: u64) -> Self {
        Self { retry_after: Some(Duration::from_secs(resets_in_secs)), ..Self::new(RejectionKind::QuotaExceeded) }
    }

    pub(crate) fn with_key(mut self, id: &Arc<str>) -> Self {
        self.key_id = Some(Arc::clone(id));
        self
    }

    pub(crate) fn with_limits(mut self, limits: Option<Box<Limits>>) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn limits(&self) -> Option<&Limits> {
        self.limits.as_deref()
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// Which throttle refused the request, for [`RejectionKind::Throttled`].
    #[must_use]
    pub fn throttle_scope(&self) -> Option<ThrottleScope> {
        self.scope
    }

    /// How long until a retry can succeed (exact; the `Retry-After` header rounds it up).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// `Retry-After` in whole seconds: rounded up, never 0.
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
    }

    /// The id (never the value) of the key, when one was identified.
    #[must_use]
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The HTTP status: 403, 429 or 503.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::Throttled | RejectionKind::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// API Gateway's message: `Forbidden`, `Too Many Requests` or `Limit Exceeded`.
    #[must_use]
    pub fn message(&self) -> &'static str {
        match self.kind {
            RejectionKind::Throttled => "Too Many Requests",
            RejectionKind::QuotaExceeded => "Limit Exceeded",
            RejectionKind::StoreUnavailable => "Service Unavailable",
            _ => "Forbidden",
        }
    }

    /// API Gateway's `x-amzn-ErrorType`.
    #[must_use]
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            RejectionKind::Throttled => "TooManyRequestsException",
            RejectionKind::QuotaExceeded => "LimitExceededException",
            RejectionKind::StoreUnavailable => "ServiceUnavailableException",
            _ => "ForbiddenException",
        }
    }

    /// The gRPC status code: 16 (no or unknown key), 7 (key not allowed here), 8 (throttle or
    /// quota), 14 (store unavailable).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        match self.kind {
            RejectionKind::MissingKey | RejectionKind::MalformedKey | RejectionKind::UnknownKey => 16,
            RejectionKind::DisabledKey | RejectionKind::ExpiredKey | RejectionKind::WrongStage => 7,
            RejectionKind::Throttled | RejectionKind::QuotaExceeded => 8,
            RejectionKind::StoreUnavailable => 14,
        }
    }

    /// A short English explanation for logs and gRPC messages (never contains the key value).
    #[must_use]
    pub fn detail(&self) -> &'static str {
        match self.kind {
            RejectionKind::MissingKey => "missing API key",
            RejectionKind::MalformedKey => "malformed API key",
            RejectionKind::UnknownKey => "invalid API key",
            RejectionKind::DisabledKey => "API key disabled",
            RejectionKind::ExpiredKey => "API key expired",
            RejectionKind::WrongStage => "API key not allowed on this stage",
            RejectionKind::Throttled => "rate limit exceeded",
            RejectionKind::QuotaExceeded => "quota exceeded",
            RejectionKind::StoreUnavailable => "key store unavailable",
        }
    }
}

//! [`UsagePlanService`]: extract → look up → decide → forward.

use super::flight::{Failure, Role};
use super::future::{Post, ResponseFuture, Step};
use super::layer::Shared;
use super::render;
use crate::engine::{Admitted, Cached, Decision, Now, Req, Slots, Want};
use crate::rejection::{Rejection, RejectionKind};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service [`UsagePlanLayer`](crate::UsagePlanLayer) wraps around an inner service.
///
/// `poll_ready` is the inner service's. Refusals are responses (403, 429, 503), never errors, so
/// `Error = S::Error` and axum needs no `HandleErrorLayer`.
#[derive(Debug, Clone)]
pub struct UsagePlanService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> UsagePlanService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The request's content type if it is gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web...`).
fn grpc_type<B>(req: &Request<B>) -> Option<http::HeaderValue> {
    req.headers().get(CONTENT_TYPE).filter(|v| v.as_bytes().starts_with(b"application/grpc")).cloned()
}

impl Shared {
    /// A throttle refusal decided with a clock reading taken before this thread was preempted
    /// can be spurious (other requests moved the bucket to a later time meanwhile). Refusals
    /// are the rare path, so decide once more with a fresh reading before answering 429.
    fn recheck(&self, decided: Decision, then: Now, again: impl FnOnce(Now) -> Option<Decision>) -> Decision {
        match &decided {
            Decision::Ready(Err(r)) if r.kind() == RejectionKind::Throttled => {
                let now = self.clock.now();
                if now.mono_nanos > then.mono_nanos {
                    again(now).unwrap_or(decided)
                } else {
                    decided
                }
            }
            _ => decided,
        }
    }

    fn want(&self) -> Want {
        Want { views: self.headers != super::RateLimitHeaders::Off, refund: self.refund.is_some() }
    }

    fn post(self: &Arc<Self>, admitted: Admitted) -> Option<Box<Post>> {
        let Admitted { limits, refund } = admitted;
        if self.headers == super::RateLimitHeaders::Off && refund.is_none() {
            return None;
        }
        Some(Box::new(Post { headers: self.headers, limits, refund: refund.map(|r| (r, Arc::clone(self))) }))
    }

    fn render(&self, rejection: Rejection, grpc: Option<http::HeaderValue>) -> Response<Bytes> {
        let is_grpc = grpc.is_some();
        let mut resp = match grpc {
            Some(content_type) => render::grpc(&rejection, Some(&content_type)),
            None => self.renderer.0.render(&rejection),
        };
        if !is_grpc {
            render::add_retry_after(&rejection, &mut resp);
            if rejection.key_id().is_some() {
                if let Some(limits) = rejection.limits() {
                    self.headers.apply(limits, resp.headers_mut());
                }
            }
        }
        resp.extensions_mut().insert(rejection);
        resp
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for UsagePlanService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = Response<super::UsagePlanBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let now = shared.clock.now();
        let r = Req { method: req.method(), path: req.uri().path() };
        let slots = shared.engine.route(r);
        let first =
            if slots.public {
                let decided = shared.engine.decide_public(slots, now);
                First::Public(shared.recheck(decided, now, |now| Some(shared.engine.decide_public(slots, now))))
            } else {
                match shared.source.extract(&req) {
                    Err(kind) => First::Keyed(Decision::Ready(Err(Rejection::new(kind)))),
                    Ok(value) => match shared.engine.decide_cached(&value, r, slots, now, shared.want()) {
                        Cached::Decided(d) => First::Keyed(shared.recheck(d, now, |now| {
                            match shared.engine.decide_cached(&value, r, slots, now, shared.want()) {
                                Cached::Decided(d) => Some(d),
                                Cached::Miss => None,
                            }
                        })),
                        // Extracted values are visible ASCII, hence UTF-8.
                        Cached::Miss => First::Lookup(Box::<str>::from(String::from_utf8_lossy(&value))),
                    },
                }
            };
        // The hot path: decided now.
        let pending = match first {
            First::Public(Decision::Ready(Ok(_))) => return ResponseFuture::inner(self.inner.call(req), None),
            First::Keyed(Decision::Ready(Ok(admitted))) => {
                return ResponseFuture::inner(self.inner.call(req), shared.post(admitted))
            }
            First::Public(Decision::Ready(Err(rejection))) | First::Keyed(Decision::Ready(Err(rejection))) => {
                return ResponseFuture::reject(shared.render(rejection, grpc_type(&req)))
            }
            First::Public(Decision::Pending(fut)) => Pending::Public(fut),
            First::Keyed(Decision::Pending(fut)) => Pending::Keyed(fut),
            First::Lookup(value) => Pending::Lookup(value, slots),
        };
        // Waiting for the key store or the counter backend: move the ready inner service into
        // the future and leave a clone in its place.
        let shared = Arc::clone(&self.shared);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::lookup(Box::pin(async move {
            let grpc = grpc_type(&req);
            let (decided, public) = match pending {
                Pending::Public(fut) => (fut.await, true),
                Pending::Keyed(fut) => (fut.await, false),
                Pending::Lookup(value, slots) => {
                    match shared.look_up(&req.method().clone(), req.uri().path().into(), value, slots).await {
                        Ok(decided) => (decided, false),
                        Err(fail_open) => (settle(fail_open).await, true),
                    }
                }
            };
            match decided {
                Ok(_) if public => Step::Forward(inner.call(req), None),
                Ok(admitted) => Step::Forward(inner.call(req), shared.post(admitted)),
                Err(rejection) => Step::Reject(shared.render(rejection, grpc)),
            }
        }))
    }
}

/// What `call` knows before any await.
enum First {
    Public(Decision),
    Keyed(Decision),
    Lookup(Box<str>),
}

/// What the slow path waits for.
enum Pending {
    Public(Pin<Box<dyn Future<Output = Result<Admitted, Rejection>> + Send>>),
    Keyed(Pin<Box<dyn Future<Output = Result<Admitted, Rejection>> + Send>>),
    Lookup(Box<str>, Slots),
}

async fn settle(decision: Decision) -> Result<Admitted, Rejection> {
    match decision {
        Decision::Ready(d) => d,
        Decision::Pending(fut) => fut.await,
    }
}

impl Shared {
    /// Asks the store about `value` (one request per value at a time: concurrent misses wait for
    /// the first one's answer) and decides. `Err` carries a fail-open decision (stage and account
    /// throttles only) when the store failed, the key is not cached and fail-open is on.
    async fn look_up(
        &self,
        method: &http::Method,
        path: Box<str>,
        value: Box<str>,
        slots: Slots,
    ) -> Result<Result<Admitted, Rejection>, Decision> {
        let r = Req { method, path: &path };
        let want = self.want();
        let decision = loop {
            match self.flights.join(&value, self.engine.generation()) {
                Role::Leader(leader) => {
                    let generation = leader.generation();
                    let looked_up = Arc::clone(&self.store).lookup_owned(value.clone()).await;
                    leader.answer(&looked_up);
                    let looked_up = looked_up.map_err(|error| {
                        tracing::warn!(%error, "API key lookup failed");
                        Failure::of(&error)
                    });
                    // The flight ends (`leader` dropped) once the answer is in the key cache.
                    break self.decide_looked_up(looked_up, generation, &value, r, slots, want)?;
                }
                Role::Follower(wait) => match wait.await {
                    Some((looked_up, generation)) => {
                        break self.decide_looked_up(looked_up, generation, &value, r, slots, want)?
                    }
                    // The request asking the store was dropped: ask again.
                    None => continue,
                },
            }
        };
        Ok(settle(decision).await)
    }

    fn decide_looked_up(
        &self,
        looked_up: Result<Option<crate::store::KeyRecord>, Failure>,
        generation: u32,
        value: &str,
        r: Req<'_>,
        slots: Slots,
        want: Want,
    ) -> Result<Decision, Decision> {
        let now = self.clock.now();
        Ok(match looked_up {
            Ok(record) => self.engine.decide_record(value.as_bytes(), record, generation, r, slots, now, want),
            Err(failure) => match self.engine.decide_stale(value.as_bytes(), r, slots, now, want) {
                Some(d) => d,
                // Never on an overloaded store: that would let a flood of random keys through.
                None if self.fail_open && failure == Failure::Failed => {
                    // Fail-open skips the key's own limits, never the stage and account
                    // throttles that protect the backend.
                    tracing::warn!("key store failed: forwarding without per-key limits (fail-open)");
                    return Err(self.engine.decide_public(slots, now));
                }
                None => Decision::Ready(Err(Rejection::new(RejectionKind::StoreUnavailable))),
            },
        })
    }
}

//! [`UsagePlanService`]: extract → look up → decide → forward.

use super::future::{ResponseFuture, Step};
use super::shared::Shared;
use crate::caller::Caller;
use crate::engine::{Admitted, Decision, InFlight, Input, Now, Req};
use crate::rejection::{Rejection, RejectionKind};
use http::header::CONTENT_TYPE;
use http::{Request, Response};
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

/// A throttle refusal decided with a clock reading taken before this thread was preempted can be
/// spurious (other requests moved the bucket to a later time meanwhile). Refusals are the rare
/// path, so decide once more with a fresh reading before answering 429.
fn recheck(shared: &Shared, decided: Decision, then: Now, again: impl FnOnce(Now) -> Option<Decision>) -> Decision {
    match &decided {
        Decision::Ready(Err(r)) if r.kind() == RejectionKind::Throttled => {
            let now = shared.clock.now();
            if now.mono_nanos > then.mono_nanos {
                again(now).unwrap_or(decided)
            } else {
                decided
            }
        }
        _ => decided,
    }
}

/// Puts the [`Caller`](crate::Caller) in the request's extensions and takes the concurrency slots
/// out of the admission, for the response future to hold.
#[inline]
fn hand_over<B>(admitted: &mut Admitted, req: &mut Request<B>) -> Option<InFlight> {
    if let Some(profile) = admitted.caller.take() {
        let limits = admitted.limits.as_deref();
        let caller = Caller::new(profile, limits.and_then(|l| l.quota), limits.and_then(|l| l.key));
        req.extensions_mut().insert(caller);
    }
    admitted.inflight.take()
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (engine, keys) = (&*shared.engine, &shared.keys);
        let r = Req { method: req.method(), path: req.uri().path() };
        let now = shared.clock.now();
        let input = Input { req: r, slots: engine.route(r), now, want: shared.want() };
        // Decided now, or the presented value to ask the store about.
        let first: Result<Decision, Box<str>> = if input.slots.public {
            let d = engine.decide_public(&input);
            Ok(recheck(shared, d, now, |now| Some(engine.decide_public(&input.at(now)))))
        } else {
            match shared.source.extract(&req) {
                Err(kind) => Ok(Decision::reject(Rejection::new(kind))),
                Ok(value) if shared.bad_checksum(&value) => {
                    Ok(Decision::reject(Rejection::new(RejectionKind::MalformedKey)))
                }
                Ok(value) => match keys.decide_cached(engine, &value, &input) {
                    Some(d) => Ok(recheck(shared, d, now, |now| keys.decide_cached(engine, &value, &input.at(now)))),
                    // Extracted values are visible ASCII, hence UTF-8.
                    None => Err(Box::<str>::from(String::from_utf8_lossy(&value))),
                },
            }
        };
        // The hot path: decided now.
        let pending = match first {
            Ok(Decision::Ready(Ok(mut admitted))) => {
                let inflight = hand_over(&mut admitted, &mut req);
                return ResponseFuture::inner(self.inner.call(req), shared.post(admitted), inflight);
            }
            Ok(Decision::Ready(Err(rejection))) => {
                return ResponseFuture::reject(shared.render(rejection, grpc_type(&req)))
            }
            Ok(Decision::Pending(fut)) => Ok(fut),
            Err(value) => Err(value),
        };
        let slots = input.slots;
        // Waiting for the key store or the counter backend: move the ready inner service into
        // the future and leave a clone in its place.
        let shared = Arc::clone(&self.shared);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::lookup(Box::pin(async move {
            let grpc = grpc_type(&req);
            let decided = match pending {
                Ok(fut) => fut.await,
                Err(value) => {
                    let r = Req { method: req.method(), path: req.uri().path() };
                    let input = Input { req: r, slots, now, want: shared.want() };
                    let (engine, store, clock) = (&*shared.engine, &shared.store, &*shared.clock);
                    shared.keys.look_up(engine, store, clock, value, input).await.settle().await
                }
            };
            match decided {
                Ok(mut admitted) => {
                    let inflight = hand_over(&mut admitted, &mut req);
                    Step::Forward(inner.call(req), shared.post(admitted), inflight)
                }
                Err(rejection) => Step::Reject(shared.render(rejection, grpc)),
            }
        }))
    }
}

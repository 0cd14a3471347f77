//! [`UsagePlanService`]: extract → look up → decide → forward.

use super::future::{Post, ResponseFuture, Step};
use super::layer::Shared;
use super::render;
use crate::engine::{Admitted, Cached, Req, Want};
use crate::rejection::{Rejection, RejectionKind};
use bytes::Bytes;
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

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl Shared {
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

    fn render(&self, rejection: Rejection, grpc: bool) -> Response<Bytes> {
        let mut resp = if grpc { render::grpc(&rejection) } else { self.renderer.0.render(&rejection) };
        if !grpc {
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
        if slots.public {
            return match shared.engine.decide_public(slots, now) {
                Ok(()) => ResponseFuture::inner(self.inner.call(req), None),
                Err(rejection) => ResponseFuture::reject(shared.render(rejection, is_grpc(&req))),
            };
        }
        let want = shared.want();
        let value = match shared.source.extract(&req) {
            Err(kind) => return ResponseFuture::reject(shared.render(Rejection::new(kind), is_grpc(&req))),
            Ok(value) => match shared.engine.decide_cached(&value, r, slots, now, want) {
                Cached::Decided(Ok(admitted)) => {
                    return ResponseFuture::inner(self.inner.call(req), shared.post(admitted))
                }
                Cached::Decided(Err(rejection)) => {
                    return ResponseFuture::reject(shared.render(rejection, is_grpc(&req)))
                }
                // Extracted values are visible ASCII, hence UTF-8.
                Cached::Miss => Box::<str>::from(String::from_utf8_lossy(&value)),
            },
        };
        let shared = Arc::clone(&self.shared);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::lookup(Box::pin(async move {
            let grpc = is_grpc(&req);
            let looked_up = Arc::clone(&shared.store).lookup_owned(value.clone()).await;
            let now = shared.clock.now();
            let r = Req { method: req.method(), path: req.uri().path() };
            let decided = match looked_up {
                Ok(record) => shared.engine.decide_record(value.as_bytes(), record, r, slots, now, want),
                Err(error) => {
                    tracing::warn!(%error, "API key lookup failed");
                    match shared.engine.decide_stale(value.as_bytes(), r, slots, now, want) {
                        Some(d) => d,
                        None if shared.fail_open => {
                            // Fail-open skips the key's own limits, never the stage and account
                            // throttles that protect the backend.
                            tracing::warn!("key store failed: forwarding without per-key limits (fail-open)");
                            return match shared.engine.decide_public(slots, now) {
                                Ok(()) => Step::Forward(inner.call(req), None),
                                Err(rejection) => Step::Reject(shared.render(rejection, grpc)),
                            };
                        }
                        None => Err(Rejection::new(RejectionKind::StoreUnavailable)),
                    }
                }
            };
            match decided {
                Ok(admitted) => Step::Forward(inner.call(req), shared.post(admitted)),
                Err(rejection) => Step::Reject(shared.render(rejection, grpc)),
            }
        }))
    }
}

//! The response body: the inner service's body, or the layer's own rejection body.

use crate::engine::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// Response body of [`UsagePlanService`](crate::UsagePlanService): the inner body for
    /// forwarded requests, a small fixed body for rejections.
    pub struct UsagePlanBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // `inflight`: the request's concurrency slots, given back when the body ends (or fails,
        // or is dropped).
        Inner { #[pin] body: B, inflight: Option<InFlight> },
        Full { data: Option<Bytes> },
    }
}

impl<B: fmt::Debug> fmt::Debug for UsagePlanBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body, .. } => f.debug_tuple("UsagePlanBody::Inner").field(body).finish(),
            Kind::Full { data } => f.debug_tuple("UsagePlanBody::Full").field(data).finish(),
        }
    }
}

impl<B> UsagePlanBody<B> {
    pub(crate) fn inner(body: B, inflight: Option<InFlight>) -> Self {
        Self { kind: Kind::Inner { body, inflight } }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self { kind: Kind::Full { data: (!data.is_empty()).then_some(data) } }
    }
}

impl<B> Body for UsagePlanBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body, inflight } => {
                let frame = body.poll_frame(cx);
                if inflight.is_some() && matches!(frame, Poll::Ready(None | Some(Err(_)))) {
                    *inflight = None;
                }
                frame
            }
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

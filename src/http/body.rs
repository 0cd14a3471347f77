//! The response body: the inner service's body, or the layer's own rejection body.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// Response body of [`UsagePlanService`](crate::UsagePlanService): the inner body for
    /// forwarded requests, a small fixed body for rejections.
    #[project = BodyProj]
    #[derive(Debug)]
    pub enum UsagePlanBody<B> {
        /// The inner service's body.
        Inner { #[pin] body: B },
        /// A rejection body.
        Full { data: Option<Bytes> },
    }
}

impl<B> UsagePlanBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        UsagePlanBody::Inner { body }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        UsagePlanBody::Full { data: (!data.is_empty()).then_some(data) }
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
        match self.project() {
            BodyProj::Inner { body } => body.poll_frame(cx),
            BodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UsagePlanBody::Inner { body } => body.is_end_stream(),
            UsagePlanBody::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UsagePlanBody::Inner { body } => body.size_hint(),
            UsagePlanBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

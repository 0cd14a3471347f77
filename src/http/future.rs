//! [`ResponseFuture`]: the inner service's future, a pending key lookup, or a ready rejection.

use super::body::UsagePlanBody;
use super::post::Post;
use crate::engine::InFlight;
use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The outcome of the slow path (a key lookup or a distributed check): forward (with the inner
/// future already started) or refuse.
pub(crate) enum Step<F> {
    Forward(F, Option<Box<Post>>, Option<InFlight>),
    Reject(Response<Bytes>),
}

pub(crate) type Lookup<F> = Pin<Box<dyn Future<Output = Step<F>> + Send>>;

pin_project! {
    /// Response future of [`UsagePlanService`](crate::UsagePlanService).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // `inflight`: the concurrency slots, held until the response body is over (dropped with
        // the future if the request is cancelled or the inner service panics).
        Inner { #[pin] fut: F, post: Option<Box<Post>>, inflight: Option<InFlight> },
        Lookup { fut: Lookup<F> },
        Reject { resp: Option<Response<Bytes>> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "Inner",
            State::Lookup { .. } => "Lookup",
            State::Reject { .. } => "Reject",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F, post: Option<Box<Post>>, inflight: Option<InFlight>) -> Self {
        Self { state: State::Inner { fut, post, inflight } }
    }

    pub(crate) fn lookup(fut: Lookup<F>) -> Self {
        Self { state: State::Lookup { fut } }
    }

    pub(crate) fn reject(resp: Response<Bytes>) -> Self {
        Self { state: State::Reject { resp: Some(resp) } }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<UsagePlanBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Inner { fut, post, inflight } => {
                    let mut resp = ready!(fut.poll(cx))?;
                    if let Some(post) = post {
                        let status = resp.status();
                        post.apply(status, resp.headers_mut());
                    }
                    let inflight = inflight.take();
                    return Poll::Ready(Ok(resp.map(|body| UsagePlanBody::inner(body, inflight))));
                }
                StateProj::Lookup { fut } => {
                    let next = match ready!(fut.as_mut().poll(cx)) {
                        Step::Forward(fut, post, inflight) => State::Inner { fut, post, inflight },
                        Step::Reject(resp) => State::Reject { resp: Some(resp) },
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Reject { resp } => {
                    let resp = resp.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(resp.map(UsagePlanBody::full)));
                }
            }
        }
    }
}

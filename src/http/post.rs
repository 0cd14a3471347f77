//! What a forwarded request does when its response arrives: rate-limit headers, and the quota
//! count given back when the refund policy says so.

use super::headers::RateLimitHeaders;
use crate::engine::{Admitted, Refund};
use crate::view::Limits;
use http::{HeaderMap, StatusCode};
use std::fmt;
use std::sync::Arc;

/// Which response statuses give the quota count back.
pub(crate) struct RefundPolicy(pub(crate) Box<dyn Fn(StatusCode) -> bool + Send + Sync>);

impl fmt::Debug for RefundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefundPolicy(..)")
    }
}

/// What to do when a forwarded request's response arrives. Boxed, and only made when there is
/// something to do.
pub(crate) struct Post {
    headers: RateLimitHeaders,
    limits: Option<Box<Limits>>,
    refund: Option<(Refund, Arc<RefundPolicy>)>,
}

impl fmt::Debug for Post {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Post").field("headers", &self.headers).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Post {
    /// The work left for an admitted request's response, if any.
    #[inline]
    pub(crate) fn of(
        admitted: Admitted,
        headers: RateLimitHeaders,
        policy: Option<&Arc<RefundPolicy>>,
    ) -> Option<Box<Post>> {
        let Admitted { limits, refund, .. } = admitted;
        let limits = limits.filter(|_| headers != RateLimitHeaders::Off);
        let refund = refund.zip(policy.cloned());
        if limits.is_none() && refund.is_none() {
            return None;
        }
        Some(Box::new(Post { headers, limits, refund }))
    }

    /// Applies to the response's status and headers.
    pub(crate) fn apply(&mut self, status: StatusCode, headers: &mut HeaderMap) {
        if let Some((refund, policy)) = self.refund.take() {
            if (policy.0)(status) {
                refund();
            }
        }
        if let Some(limits) = &self.limits {
            self.headers.apply(limits, headers);
        }
    }
}

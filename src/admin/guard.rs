//! What runs before routing: failed authentications slowed down per client address,
//! credentials checked from the head, then the body read within a size limit, a time budget
//! and a byte budget shared by every request of the router, then the SigV4 signature.

use super::auth::{AdminAuth, AuthError, Head};
use super::error::ApiError;
use super::failures::FailureLimit;
use crate::engine::{Clock, Now};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use http_body::Body as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The checks and limits of one router.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) auth: AdminAuth,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) buffered: Budget,
    pub(crate) failures: Option<FailureLimit>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Body bytes held by the router's requests in flight, and the most allowed.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0) }
    }
}

/// The bytes of the budget one request holds, given back when it is dropped.
#[derive(Debug)]
struct Held<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Held<'_> {
    /// Holds `n` bytes in all; false (and nothing more held) if the budget has not that many.
    fn grow_to(&mut self, n: usize) -> bool {
        let Some(extra) = n.checked_sub(self.bytes).filter(|e| *e > 0) else { return true };
        let limit = self.budget.limit;
        let taken = self.budget.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(extra).filter(|total| *total <= limit)
        });
        if taken.is_ok() {
            self.bytes = n;
        }
        taken.is_ok()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a body was not read.
enum Unread {
    /// Over `max_body`, or the stream failed.
    Bad,
    /// Over the router's byte budget.
    Busy,
}

impl Guard {
    fn too_large(&self) -> Response {
        ApiError::bad_request(format!(
            "The request body is larger than the {} bytes accepted, or could not be read",
            self.max_body
        ))
        .into_response()
    }

    /// 403 for `e` (the failure taken for the request stays spent).
    fn refuse(e: &AuthError) -> Response {
        tracing::debug!(kind = ?e.kind(), "admin request refused");
        ApiError::forbidden(e.aws_type(), e.message()).into_response()
    }

    /// `client` authenticated: the failure taken for its request is given back.
    fn authenticated(&self, client: Option<IpAddr>, now: Now) {
        if let Some(limit) = &self.failures {
            limit.succeeded(client, now.mono_nanos);
        }
    }
}

/// The whole body, up to `max` bytes, each byte held in `held` as it arrives.
async fn read(mut body: Body, max: usize, held: &mut Held<'_>) -> Result<Bytes, Unread> {
    let mut buf = Vec::with_capacity(held.bytes.min(max));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| Unread::Bad)?.into_data() else { continue };
        let len = buf.len().saturating_add(data.len());
        if len > max {
            return Err(Unread::Bad);
        }
        if !held.grow_to(len) {
            return Err(Unread::Busy);
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

fn wall(now: Now) -> SystemTime {
    let secs = Duration::from_secs(now.unix_secs.unsigned_abs());
    if now.unix_secs >= 0 {
        UNIX_EPOCH + secs
    } else {
        UNIX_EPOCH - secs
    }
}

/// Authenticates the request as received (before routing), reading its body only for a
/// caller whose credentials pass the head's checks.
pub(crate) async fn authenticate(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let now = guard.clock.now();
    if let Some(limit) = &guard.failures {
        if let Err(secs) = limit.take(client, now.mono_nanos) {
            tracing::debug!("admin request refused: too many failed authentications");
            return ApiError::too_many_requests(secs).into_response();
        }
    }
    // `nest` strips the mount prefix from the URI; a signature covers the full path.
    let uri = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |o| o.0.clone());
    let at = wall(now);
    let head = match guard.auth.verify_head(&uri, &parts.headers, at) {
        Ok(head) => head,
        Err(e) => return Guard::refuse(&e),
    };
    // A bearer token is settled here. A SigV4 caller is not authenticated until its signature
    // is checked over the body: until then (and if the body never comes, is too large or
    // finds the budget spent) its request counts as a failure of its address, so that callers
    // that know an access key id but not its secret cannot hold body budget for free.
    if head == Head::Accepted {
        guard.authenticated(client, now);
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut held = Held { budget: &guard.buffered, bytes: 0 };
    if let Some(n) = declared {
        let Some(n) = usize::try_from(n).ok().filter(|n| *n <= guard.max_body) else { return guard.too_large() };
        if !held.grow_to(n) {
            return busy();
        }
    }
    let body = match tokio::time::timeout(guard.body_timeout, read(body, guard.max_body, &mut held)).await {
        Ok(Ok(body)) => body,
        Ok(Err(Unread::Bad)) => return guard.too_large(),
        Ok(Err(Unread::Busy)) => return busy(),
        Err(_) => {
            return ApiError::request_timeout(format!(
                "The request body did not arrive within {} ms",
                guard.body_timeout.as_millis()
            ))
            .into_response()
        }
    };
    if head == Head::NeedsBody {
        if let Err(e) = guard.auth.verify_body(&parts.method, &uri, &parts.headers, &body, at) {
            return Guard::refuse(&e);
        }
        guard.authenticated(client, now);
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    drop(held);
    response
}

fn busy() -> Response {
    tracing::debug!("admin request refused: the body budget is spent");
    ApiError::unavailable("Too many request bodies are being received; try again.").retry_after(1).into_response()
}

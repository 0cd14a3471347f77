//! Turning a [`Rejection`] into a response: API Gateway's JSON by default, a gRPC Trailers-Only
//! answer for gRPC requests, or whatever a user's [`RenderRejection`] builds.

use crate::rejection::Rejection;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use std::fmt;

static X_AMZN_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_RETRY_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// Builds the response for a refused (non-gRPC) request.
///
/// Implemented for closures, so a problem+json body is one line away:
///
/// ```
/// use bytes::Bytes;
/// use http::Response;
/// use tower_usage_plans::{InMemoryKeyStore, Rejection, UsagePlanLayer};
///
/// let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"").unwrap();
/// let layer = UsagePlanLayer::builder(store)
///     .render_rejection(|r: &Rejection| {
///         let body = format!(r#"{{"type":"about:blank","title":"{}","status":{}}}"#, r.message(), r.status().as_u16());
///         Response::builder()
///             .status(r.status())
///             .header("content-type", "application/problem+json")
///             .body(Bytes::from(body))
///             .unwrap()
///     })
///     .build()
///     .unwrap();
/// ```
///
/// The layer then adds `Retry-After` (if the renderer did not) and the rate-limit headers, and
/// puts the [`Rejection`] in the response extensions. gRPC requests always get the gRPC answer.
pub trait RenderRejection: Send + Sync + 'static {
    /// The response for `rejection`.
    fn render(&self, rejection: &Rejection) -> Response<Bytes>;
}

impl<F> RenderRejection for F
where
    F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// The default: API Gateway's status, `{"message":"..."}` body and `x-amzn-ErrorType` header.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsRejection;

impl RenderRejection for AwsRejection {
    fn render(&self, rejection: &Rejection) -> Response<Bytes> {
        let body = match rejection.message() {
            "Forbidden" => Bytes::from_static(br#"{"message":"Forbidden"}"#),
            "Too Many Requests" => Bytes::from_static(br#"{"message":"Too Many Requests"}"#),
            "Limit Exceeded" => Bytes::from_static(br#"{"message":"Limit Exceeded"}"#),
            other => Bytes::from(format!(r#"{{"message":"{other}"}}"#)),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = rejection.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(X_AMZN_ERROR_TYPE.clone(), HeaderValue::from_static(rejection.error_type()));
        resp
    }
}

/// A gRPC Trailers-Only response: HTTP 200, `grpc-status`, `grpc-message`, and on code 8 a
/// `grpc-retry-pushback-ms` hint. `content_type` is the request's (`application/grpc...`): a
/// grpc-web client gets its own content type back, any other gRPC client `application/grpc`.
pub(crate) fn grpc(rejection: &Rejection, content_type: Option<&HeaderValue>) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    let web = content_type.filter(|v| v.as_bytes().starts_with(b"application/grpc-web"));
    h.insert(CONTENT_TYPE, web.cloned().unwrap_or(HeaderValue::from_static("application/grpc")));
    h.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(rejection.grpc_code())));
    // The details are plain ASCII without '%' or control characters: no percent-encoding needed
    // beyond spaces being allowed as they are (grpc-message permits 0x20..0x7E except '%').
    h.insert(GRPC_MESSAGE.clone(), HeaderValue::from_static(rejection.detail()));
    if rejection.grpc_code() == 8 {
        if let Some(d) = rejection.retry_after() {
            h.insert(GRPC_RETRY_PUSHBACK.clone(), HeaderValue::from(d.as_millis().max(1) as u64));
        }
    }
    resp
}

pub(crate) fn add_retry_after(rejection: &Rejection, resp: &mut Response<Bytes>) {
    if resp.status() == StatusCode::TOO_MANY_REQUESTS && !resp.headers().contains_key(RETRY_AFTER) {
        if let Some(secs) = rejection.retry_after_secs() {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

/// Holder for the configured renderer, with a `Debug` that does not require one of closures.
pub(crate) struct Renderer(pub(crate) Box<dyn RenderRejection>);

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Renderer(..)")
    }
}

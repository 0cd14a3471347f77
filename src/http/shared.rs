//! What every clone of the layer and of its services shares.

use super::extract::KeySource;
use super::headers::RateLimitHeaders;
use super::post::{Post, RefundPolicy};
use super::render::{self, Renderer};
use crate::engine::{Admitted, Clock, Engine, Want};
use crate::keycache::KeyCache;
use crate::keys::KeyPrefixes;
use crate::rejection::Rejection;
use crate::store::DynKeyStore;
use bytes::Bytes;
use http::{HeaderValue, Response};
use std::fmt;
use std::sync::Arc;

/// The layer's state: the engine, the key cache, the store and the adapter's settings.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) keys: KeyCache,
    pub(crate) store: Arc<dyn DynKeyStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) source: KeySource,
    pub(crate) prefixes: KeyPrefixes,
    pub(crate) headers: RateLimitHeaders,
    pub(crate) renderer: Renderer,
    pub(crate) refund: Option<Arc<RefundPolicy>>,
}

impl fmt::Debug for dyn DynKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyStore")
    }
}

impl Shared {
    /// Whether a presented value carries a configured prefix but not a valid checksum: refused
    /// before the key cache and the store. One branch when no prefix is configured.
    #[inline]
    pub(crate) fn bad_checksum(&self, value: &[u8]) -> bool {
        !self.prefixes.is_empty() && self.prefixes.refuses(value)
    }

    #[inline]
    pub(crate) fn want(&self) -> Want {
        Want { views: self.headers != RateLimitHeaders::Off, refund: self.refund.is_some() }
    }

    #[inline]
    pub(crate) fn post(&self, admitted: Admitted) -> Option<Box<Post>> {
        Post::of(admitted, self.headers, self.refund.as_ref())
    }

    /// The response for a refused request: gRPC's Trailers-Only answer, or the renderer's with
    /// `Retry-After` and the rate-limit headers. The rejection goes in its extensions.
    pub(crate) fn render(&self, rejection: Rejection, grpc: Option<HeaderValue>) -> Response<Bytes> {
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

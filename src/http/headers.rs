//! Rate-limit response headers: draft-ietf-httpapi-ratelimit-headers-10 or the legacy
//! `X-RateLimit-*` trio.

use crate::view::{BucketView, Limits};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Which rate-limit headers go on responses to identified keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10), one item per
    /// per-key limit: `"quota"`, `"throttle"` (the plan's bucket) and `"method"` (the plan's
    /// bucket for this method).
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` for the most binding
    /// per-key limit (the one with the fewest requests left).
    Legacy,
    /// No rate-limit headers (the fastest path: no allocation).
    Off,
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

/// (name, quota, window secs, remaining, reset secs) of each per-key limit.
fn items(limits: &Limits) -> impl Iterator<Item = (&'static str, u64, u64, u64, u64)> + '_ {
    let quota = limits.quota.map(|q| ("quota", q.limit, q.window_secs, q.remaining, q.resets_in_secs));
    let bucket = |name, v: BucketView| {
        (name, u64::from(v.burst), ceil_secs(v.window_nanos).max(1), v.remaining, ceil_secs(v.full_in_nanos))
    };
    let key = limits.key.map(|v| bucket("throttle", v));
    let method = limits.method.map(|v| bucket("method", v));
    quota.into_iter().chain(key).chain(method)
}

impl RateLimitHeaders {
    pub(crate) fn apply(self, limits: &Limits, headers: &mut HeaderMap) {
        match self {
            RateLimitHeaders::Off => {}
            RateLimitHeaders::Draft => {
                let (mut policy, mut state) = (String::new(), String::new());
                for (name, q, w, r, t) in items(limits) {
                    let sep = if policy.is_empty() { "" } else { ", " };
                    policy.push_str(&format!("{sep}\"{name}\";q={q};w={w}"));
                    state.push_str(&format!("{sep}\"{name}\";r={r};t={t}"));
                }
                if !policy.is_empty() {
                    if let (Ok(p), Ok(s)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
                        headers.insert(RATELIMIT_POLICY.clone(), p);
                        headers.insert(RATELIMIT.clone(), s);
                    }
                }
            }
            RateLimitHeaders::Legacy => {
                if let Some((_, q, _, r, t)) = items(limits).min_by_key(|&(_, _, _, r, _)| r) {
                    headers.insert(X_LIMIT.clone(), HeaderValue::from(q));
                    headers.insert(X_REMAINING.clone(), HeaderValue::from(r));
                    headers.insert(X_RESET.clone(), HeaderValue::from(t));
                }
            }
        }
    }
}

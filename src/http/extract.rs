//! Where the API key is read from, and the checks made before any store is asked.

use crate::rejection::RejectionKind;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, Request};
use std::borrow::Cow;
use std::fmt;

/// Longest presented key value looked up; a longer one is refused without asking the store.
pub const MAX_PRESENTED_KEY_LEN: usize = 256;

/// Where the layer reads the API key from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A header; `x-api-key` by default.
    Header(HeaderName),
    /// `Authorization: Bearer <key>`.
    AuthorizationBearer,
    /// A query parameter, e.g. `?api_key=...`.
    Query(String),
    /// An [`AuthorizerKey`] put in the request extensions by an upstream authenticator
    /// (API Gateway's `AUTHORIZER` key source).
    Authorizer,
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource::Header(HeaderName::from_static("x-api-key"))
    }
}

/// The API key an upstream authenticator resolved for a request (insert it into the request's
/// extensions and use [`KeySource::Authorizer`]). `Debug` does not show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizerKey(String);

impl AuthorizerKey {
    /// Wraps the key value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for AuthorizerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizerKey(<redacted>)")
    }
}

fn check(value: &[u8]) -> Result<&[u8], RejectionKind> {
    if value.is_empty() {
        return Err(RejectionKind::MissingKey);
    }
    // Visible ASCII is 0x21..=0x7E; written branch-free over the whole slice so it vectorizes.
    if value.len() > MAX_PRESENTED_KEY_LEN || !value.iter().fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5E)) {
        return Err(RejectionKind::MalformedKey);
    }
    Ok(value)
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a [u8], RejectionKind> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(RejectionKind::MissingKey),
        (Some(v), None) => Ok(v.as_bytes()),
        (Some(_), Some(_)) => Err(RejectionKind::MalformedKey),
    }
}

fn from_query<'a>(query: Option<&'a str>, name: &str) -> Result<Cow<'a, [u8]>, RejectionKind> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if found.is_some() {
                return Err(RejectionKind::MalformedKey);
            }
            found = Some(v);
        }
    }
    let raw = found.ok_or(RejectionKind::MissingKey)?;
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw.as_bytes()));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or(RejectionKind::MalformedKey)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

impl KeySource {
    /// The presented key, checked for form (present once, visible ASCII, at most 256 bytes).
    pub(crate) fn extract<'a, B>(&self, req: &'a Request<B>) -> Result<Cow<'a, [u8]>, RejectionKind> {
        let raw = match self {
            KeySource::Header(name) => Cow::Borrowed(single(req.headers(), name)?),
            KeySource::AuthorizationBearer => {
                let v = single(req.headers(), &AUTHORIZATION)?;
                match v.get(..7) {
                    Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => Cow::Borrowed(v[7..].trim_ascii()),
                    _ => return Err(RejectionKind::MissingKey),
                }
            }
            KeySource::Query(name) => from_query(req.uri().query(), name)?,
            KeySource::Authorizer => match req.extensions().get::<AuthorizerKey>() {
                Some(k) => Cow::Owned(k.0.as_bytes().to_vec()),
                None => return Err(RejectionKind::MissingKey),
            },
        };
        check(&raw)?;
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn header_source_requires_exactly_one_visible_value() {
        let s = KeySource::default();
        assert_eq!(s.extract(&req(&[("x-api-key", "abc")], "/")).unwrap().as_ref(), b"abc");
        assert_eq!(s.extract(&req(&[], "/")).unwrap_err(), RejectionKind::MissingKey);
        assert_eq!(s.extract(&req(&[("x-api-key", "")], "/")).unwrap_err(), RejectionKind::MissingKey);
        assert_eq!(
            s.extract(&req(&[("x-api-key", "a"), ("x-api-key", "b")], "/")).unwrap_err(),
            RejectionKind::MalformedKey
        );
        assert_eq!(s.extract(&req(&[("x-api-key", "a b")], "/")).unwrap_err(), RejectionKind::MalformedKey);
        let long = "k".repeat(MAX_PRESENTED_KEY_LEN + 1);
        assert_eq!(s.extract(&req(&[("x-api-key", &long)], "/")).unwrap_err(), RejectionKind::MalformedKey);
    }

    #[test]
    fn bearer_and_query_sources() {
        let b = KeySource::AuthorizationBearer;
        assert_eq!(b.extract(&req(&[("authorization", "Bearer tok123")], "/")).unwrap().as_ref(), b"tok123");
        assert_eq!(b.extract(&req(&[("authorization", "Basic xyz")], "/")).unwrap_err(), RejectionKind::MissingKey);
        let q = KeySource::Query("api_key".into());
        assert_eq!(q.extract(&req(&[], "/p?x=1&api_key=abc")).unwrap().as_ref(), b"abc");
        assert_eq!(q.extract(&req(&[], "/p?api_key=a%2Bb")).unwrap().as_ref(), b"a+b");
        assert_eq!(q.extract(&req(&[], "/p?api_key=a&api_key=b")).unwrap_err(), RejectionKind::MalformedKey);
        assert_eq!(q.extract(&req(&[], "/p?api_key=%zz")).unwrap_err(), RejectionKind::MalformedKey);
        assert_eq!(q.extract(&req(&[], "/p")).unwrap_err(), RejectionKind::MissingKey);
    }

    #[test]
    fn authorizer_source_reads_extensions() {
        let mut r = req(&[], "/");
        assert_eq!(KeySource::Authorizer.extract(&r).unwrap_err(), RejectionKind::MissingKey);
        r.extensions_mut().insert(AuthorizerKey::new("from-upstream"));
        assert_eq!(KeySource::Authorizer.extract(&r).unwrap().as_ref(), b"from-upstream");
        assert_eq!(format!("{:?}", AuthorizerKey::new("s3cret")), "AuthorizerKey(<redacted>)");
    }
}

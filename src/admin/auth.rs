//! Who may call the management API: SigV4-signed requests and bearer tokens.

use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

mod errors;
mod sigv4;

pub use errors::{AdminAuthError, AdminAuthErrorKind, AuthError, AuthErrorKind};

/// Credentials the admin router accepts. No anonymous access: an `AdminAuth` with nothing
/// configured refuses everything.
///
/// Two ways in, tried according to the scheme of the `Authorization` header:
///
/// - **`AWS4-HMAC-SHA256`** (Signature Version 4), as the AWS SDKs and CLI sign for service
///   `apigateway`: point them at the router (`aws apigateway get-usage-plans --endpoint-url
///   http://host:8080/admin`) with one of the access key pairs given to [`AdminAuth::sigv4`]. Any
///   region is accepted (the signature covers the one the client used); the service must be
///   `apigateway`. The request must carry `X-Amz-Date` within [`max_clock_skew`] of now, and
///   sign `host` and `x-amz-date`. The canonical request is botocore's for a non-S3 service (the
///   path as received is encoded again). When `x-amz-content-sha256` is present it must be the
///   SHA-256 of the body: unsigned payloads are refused. An `X-Amz-Security-Token` is covered by
///   the signature when the client signed it, but is not validated: access key pairs are
///   long-term credentials configured here, and temporary credentials from AWS STS are not known.
///   Not supported: presigned URLs (`X-Amz-Signature` in the query), the `Date` header instead of
///   `X-Amz-Date`, SigV4a.
///   With [`expected_hosts`](AdminAuth::expected_hosts), the signed `host` must be one of them.
/// - **`Bearer <token>`** with a token given to [`AdminAuth::bearer`] (at least
///   [`MIN_BEARER_CHARS`] characters). Only SHA-256 digests of the tokens are kept; a presented
///   token is compared with every one in constant time.
///
/// Everything but a SigV4 signature is checked from the request's head
/// ([`AdminRouter`](super::AdminRouter) refuses a caller before reading its body); the signature
/// covers the body, so [`verify`](AdminAuth::verify) takes it.
///
/// `Debug` shows the access key ids and how many tokens there are, never a secret or a token.
///
/// [`max_clock_skew`]: AdminAuth::max_clock_skew
///
/// ```
/// use http::{HeaderMap, Method, Uri};
/// use std::time::SystemTime;
/// use tower_usage_plans::admin::{AdminAuth, AuthErrorKind};
///
/// let auth = AdminAuth::new().bearer("s3cr3t-admin-token-0123456789");
/// let uri: Uri = "/admin/usageplans".parse()?;
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cr3t-admin-token-0123456789".parse()?);
/// assert!(auth.verify(&Method::GET, &uri, &headers, b"", SystemTime::now()).is_ok());
///
/// headers.insert("authorization", "Bearer guess".parse()?);
/// let err = auth.verify(&Method::GET, &uri, &headers, b"", SystemTime::now()).unwrap_err();
/// assert_eq!(err.kind(), AuthErrorKind::UnknownCredentials);
/// assert_eq!(err.aws_type(), "UnrecognizedClientException");
/// assert!(!format!("{auth:?}").contains("s3cr3t"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct AdminAuth {
    /// SHA-256 of each bearer token.
    bearer: Vec<[u8; 32]>,
    /// Access key id and secret access key.
    sigv4: Vec<(String, Secret)>,
    max_clock_skew: Duration,
    /// Lowercase `host[:port]` values a SigV4 request may sign; `None`: any.
    expected_hosts: Option<Vec<String>>,
}

/// The fewest characters a bearer token may have ([`AdminAuth::bearer`]).
pub const MIN_BEARER_CHARS: usize = 16;

/// A secret access key. `Debug` never shows it.
#[derive(Clone)]
struct Secret(Box<str>);

impl Default for AdminAuth {
    fn default() -> Self {
        Self {
            bearer: Vec::new(),
            sigv4: Vec::new(),
            max_clock_skew: Duration::from_secs(15 * 60),
            expected_hosts: None,
        }
    }
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.sigv4.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("AdminAuth")
            .field("sigv4_access_key_ids", &ids)
            .field("bearer_tokens", &self.bearer.len())
            .field("max_clock_skew", &self.max_clock_skew)
            .field("expected_hosts", &self.expected_hosts)
            .finish()
    }
}

/// What the head of a request settles ([`AdminAuth::verify_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// Authenticated: a bearer token.
    Accepted,
    /// SigV4 credentials that may be valid: the signature covers the body, so
    /// [`AdminAuth::verify_body`] decides once it is read.
    NeedsBody,
}

impl AdminAuth {
    /// Accepts nothing until credentials are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `Authorization: Bearer <token>`. May be called several times. Use long random
    /// tokens (e.g. [`keys::generate`](crate::keys::generate)); for a token read from input, use
    /// [`try_bearer`](Self::try_bearer).
    ///
    /// # Panics
    ///
    /// If `token` has fewer than [`MIN_BEARER_CHARS`] (16) characters. The message says so,
    /// without the token.
    pub fn bearer(self, token: impl Into<String>) -> Self {
        self.try_bearer(token).unwrap_or_else(|e| panic!("AdminAuth::bearer: {e}"))
    }

    /// Like [`bearer`](Self::bearer), but a token shorter than [`MIN_BEARER_CHARS`] (16)
    /// characters is an [`AdminAuthError`] of kind
    /// [`TokenTooShort`](AdminAuthErrorKind::TokenTooShort) instead of a panic.
    pub fn try_bearer(mut self, token: impl Into<String>) -> Result<Self, AdminAuthError> {
        let token: String = token.into();
        let chars = token.chars().count();
        if chars < MIN_BEARER_CHARS {
            return Err(AdminAuthError::new(
                AdminAuthErrorKind::TokenTooShort,
                format!("a bearer token must be at least {MIN_BEARER_CHARS} characters long, got {chars}"),
            ));
        }
        self.bearer.push(Sha256::digest(token.as_bytes()).into());
        Ok(self)
    }

    /// Accepts requests signed (SigV4) with this access key pair. May be called several times;
    /// a later pair with the same access key id replaces the earlier one.
    pub fn sigv4(mut self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        let id: String = access_key_id.into();
        self.sigv4.retain(|(other, _)| *other != id);
        self.sigv4.push((id, Secret(secret_access_key.into().into_boxed_str())));
        self
    }

    /// How far `X-Amz-Date` may be from now, either way. Default: 15 minutes, as AWS.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// The host names (`host` or `host:port`, compared without case) this server answers
    /// for: a SigV4 request whose signed `host` (or HTTP/2 `:authority`) is none of them is
    /// refused (kind [`UnexpectedHost`](AuthErrorKind::UnexpectedHost), 403
    /// `InvalidSignatureException`), so a request signed for another server is not replayed
    /// here. A port must match as written: list `admin.example.com` and
    /// `admin.example.com:8443` if clients use both. Unset (the default), any host is accepted.
    /// Bearer tokens are not affected.
    pub fn expected_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let hosts = hosts.into_iter().map(|h| h.into().trim().to_ascii_lowercase()).collect();
        self.expected_hosts = Some(hosts);
        self
    }

    /// Checks one request. `uri` is the URI as received by the server (the full path, including
    /// any prefix the router is mounted under, e.g. `/admin/usageplans`: with axum's `nest`, take
    /// it from `OriginalUri`), `body` the full request body, `now` the current time.
    pub fn verify(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        match self.verify_head(uri, headers, now)? {
            Head::Accepted => Ok(()),
            Head::NeedsBody => self.verify_body(method, uri, headers, body, now),
        }
    }

    /// Everything that needs no body: a bearer token completely; for SigV4 the header, the
    /// scope, a known access key id, `X-Amz-Date` within the skew, the signed headers present,
    /// the expected host.
    pub(crate) fn verify_head(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        now: SystemTime,
    ) -> Result<Head, AuthError> {
        let (scheme, rest) = authorization(headers)?;
        if scheme == sigv4::ALGORITHM {
            self.sigv4_head(uri, headers, now, rest).map(|_| Head::NeedsBody)
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            self.verify_bearer(rest.trim()).map(|()| Head::Accepted)
        } else {
            Err(AuthError::new(
                AuthErrorKind::Malformed,
                "Unsupported authorization scheme: sign requests with AWS4-HMAC-SHA256 or send a Bearer token.",
            ))
        }
    }

    fn verify_bearer(&self, token: &str) -> Result<(), AuthError> {
        if token.is_empty() {
            return Err(AuthError::new(AuthErrorKind::Malformed, "The Bearer token is empty."));
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let found = self.bearer.iter().fold(subtle::Choice::from(0), |found, known| found | known.ct_eq(&presented));
        if bool::from(found) {
            Ok(())
        } else {
            Err(AuthError::new(
                AuthErrorKind::UnknownCredentials,
                "The bearer token included in the request is invalid.",
            ))
        }
    }

    /// The SigV4 checks of [`verify_head`](Self::verify_head): the secret of the access key
    /// id, and the value of `X-Amz-Date`.
    fn sigv4_head<'a>(
        &'a self,
        uri: &http::Uri,
        headers: &'a http::HeaderMap,
        now: SystemTime,
        params: &'a str,
    ) -> Result<(sigv4::Authorization<'a>, &'a Secret, &'a str), AuthError> {
        let malformed = |message: &str| AuthError::new(AuthErrorKind::Malformed, message);
        let auth = sigv4::parse_authorization(params)?;
        let timestamp = single(headers, "x-amz-date")?
            .ok_or_else(|| malformed("Authorization header requires existence of a 'X-Amz-Date' header."))?;
        let at = parse_timestamp(timestamp)
            .ok_or_else(|| malformed("X-Amz-Date must have the form YYYYMMDDTHHMMSSZ (ISO 8601 basic, UTC)."))?;
        for required in ["host", "x-amz-date"] {
            if auth.signed_headers.binary_search_by(|h| h.as_str().cmp(required)).is_err() {
                let message = format!("'{required}' must be a 'SignedHeader' in the AWS Authorization.");
                return Err(AuthError::new(AuthErrorKind::Malformed, message));
            }
        }
        let scope = |message: String| AuthError::new(AuthErrorKind::WrongScope, message);
        if auth.service != "apigateway" {
            return Err(scope("Credential should be scoped to correct service: 'apigateway'.".to_owned()));
        }
        if auth.terminator != "aws4_request" {
            return Err(scope("Credential should be scoped with a valid terminator: 'aws4_request'.".to_owned()));
        }
        if auth.date != &timestamp[..8] {
            return Err(scope(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{timestamp}'.",
                auth.date,
                &timestamp[..8]
            )));
        }
        let Some((_, secret)) = self.sigv4.iter().find(|(id, _)| id == auth.access_key_id) else {
            return Err(AuthError::new(
                AuthErrorKind::UnknownCredentials,
                "The security token included in the request is invalid.",
            ));
        };
        check_skew(timestamp, at, now, self.max_clock_skew)?;
        if matches!(single(headers, "x-amz-content-sha256")?, Some(claimed) if sigv4::from_hex(claimed).is_none()) {
            return Err(malformed(
                "x-amz-content-sha256 must be the hex SHA-256 of the body: unsigned payloads are not accepted.",
            ));
        }
        for name in &auth.signed_headers {
            canonical_header_value(headers, uri, name)?;
        }
        if let Some(hosts) = &self.expected_hosts {
            let host = canonical_header_value(headers, uri, "host")?.to_ascii_lowercase();
            if !hosts.contains(&host) {
                return Err(AuthError::new(
                    AuthErrorKind::UnexpectedHost,
                    "The signed 'host' header does not name this server.",
                ));
            }
        }
        Ok((auth, secret, timestamp))
    }

    /// The SigV4 signature, over the body: after [`verify_head`](Self::verify_head) said
    /// [`Head::NeedsBody`] for the same request and `now` (the head's checks are repeated).
    pub(crate) fn verify_body(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let (_, params) = authorization(headers)?;
        let (auth, secret, timestamp) = self.sigv4_head(uri, headers, now, params)?;
        let body_hash = sigv4::sha256_hex(body);
        let payload_hash = match single(headers, "x-amz-content-sha256")? {
            None => body_hash,
            Some(claimed) if !claimed.eq_ignore_ascii_case(&body_hash) => {
                return Err(AuthError::new(
                    AuthErrorKind::BadSignature,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
            Some(claimed) => claimed.to_owned(),
        };
        let mut values = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            values.push(canonical_header_value(headers, uri, name)?);
        }
        let canonical = sigv4::canonical_request(method.as_str(), uri, &auth.signed_headers, &values, &payload_hash);
        let to_sign = sigv4::string_to_sign(timestamp, &auth, &canonical);
        if sigv4::signature_matches(&secret.0, &auth, &to_sign) {
            Ok(())
        } else {
            Err(AuthError::new(
                AuthErrorKind::BadSignature,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            ))
        }
    }
}

/// The scheme of the one `Authorization` header and what follows it.
fn authorization(headers: &http::HeaderMap) -> Result<(&str, &str), AuthError> {
    let value = single(headers, http::header::AUTHORIZATION.as_str())?
        .ok_or_else(|| AuthError::new(AuthErrorKind::Missing, "Missing Authentication Token"))?;
    let value = value.trim();
    Ok(value.split_once([' ', '\t']).unwrap_or((value, "")))
}

/// The one value of header `name` as text; `None` when absent; an error when repeated or not
/// visible ASCII. Errors name the header, never its value.
fn single<'h>(headers: &'h http::HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    let mut all = headers.get_all(name).iter();
    let Some(value) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(AuthError::new(
            AuthErrorKind::Malformed,
            format!("The request has more than one '{name}' header."),
        ));
    }
    value.to_str().map(Some).map_err(|_| {
        AuthError::new(AuthErrorKind::Malformed, format!("The '{name}' header must be visible ASCII text."))
    })
}

/// The canonical value of signed header `name`: every value trimmed, joined with `,`. `host`
/// falls back to the URI's authority (HTTP/2 sends `:authority`, not `Host`).
fn canonical_header_value(headers: &http::HeaderMap, uri: &http::Uri, name: &str) -> Result<String, AuthError> {
    let mut parts = Vec::new();
    for value in headers.get_all(name) {
        let text = value.to_str().map_err(|_| {
            AuthError::new(AuthErrorKind::Malformed, format!("The signed header '{name}' must be visible ASCII text."))
        })?;
        parts.push(sigv4::trim_all(text));
    }
    if parts.is_empty() {
        match uri.authority() {
            Some(authority) if name == "host" => parts.push(authority.as_str().to_owned()),
            _ => {
                let message = format!("The signed header '{name}' is not in the request.");
                return Err(AuthError::new(AuthErrorKind::Malformed, message));
            }
        }
    }
    Ok(parts.join(","))
}

/// `YYYYMMDDTHHMMSSZ` as Unix seconds.
fn parse_timestamp(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(text, &format).ok()?;
    (text.len() == 16).then(|| at.assume_utc().unix_timestamp())
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`.
fn format_timestamp(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{secs}"),
    }
}

/// AWS's "Signature expired" / "Signature not yet current" when `at` is more than `skew` from `now`.
fn check_skew(timestamp: &str, at: i64, now: SystemTime, skew: Duration) -> Result<(), AuthError> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let skew_secs = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    let label = if skew_secs % 60 == 0 { format!("{} min.", skew_secs / 60) } else { format!("{skew_secs} s.") };
    let (earliest, latest) = (now.saturating_sub(skew_secs), now.saturating_add(skew_secs));
    let message = if at < earliest {
        format!(
            "Signature expired: {timestamp} is now earlier than {} ({} - {label})",
            format_timestamp(earliest),
            format_timestamp(now)
        )
    } else if at > latest {
        format!(
            "Signature not yet current: {timestamp} is still later than {} ({} + {label})",
            format_timestamp(latest),
            format_timestamp(now)
        )
    } else {
        return Ok(());
    };
    Err(AuthError::new(AuthErrorKind::Stale, message))
}

#[cfg(test)]
mod tests;

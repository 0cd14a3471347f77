//! Who may call the admin API. STUB with the agreed interface: bearer tokens are compared, and a
//! SigV4 `Authorization` header is accepted when its access key id is configured, WITHOUT
//! checking the signature. The real verifier replaces this file.

use std::fmt;
use std::time::{Duration, SystemTime};

/// The credentials the admin API accepts. `Debug` never shows them.
#[derive(Clone)]
#[must_use]
pub struct AdminAuth {
    tokens: Vec<String>,
    sigv4: Vec<(String, String)>,
    max_clock_skew: Duration,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth")
            .field("bearer_tokens", &self.tokens.len())
            .field("sigv4_credentials", &self.sigv4.len())
            .field("max_clock_skew", &self.max_clock_skew)
            .finish()
    }
}

impl Default for AdminAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminAuth {
    /// Accepts nobody until credentials are added.
    pub fn new() -> Self {
        Self { tokens: Vec::new(), sigv4: Vec::new(), max_clock_skew: Duration::from_secs(300) }
    }

    /// Accepts `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// Accepts requests signed with AWS Signature Version 4 under this access key.
    pub fn sigv4(mut self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        self.sigv4.push((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// How far a signed request's time may be from ours.
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.max_clock_skew = d;
        self
    }

    /// Checks a request as received (`uri` with any mount prefix, the full body).
    pub fn verify(
        &self,
        _method: &http::Method,
        _uri: &http::Uri,
        headers: &http::HeaderMap,
        _body: &[u8],
        _now: SystemTime,
    ) -> Result<(), AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AuthError(AuthErrorKind::Missing));
        };
        let value = value.to_str().map_err(|_| AuthError(AuthErrorKind::Malformed))?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            return if self.tokens.iter().any(|t| t == token) {
                Ok(())
            } else {
                Err(AuthError(AuthErrorKind::UnknownCredentials))
            };
        }
        if let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") {
            let akid = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))
                .and_then(|c| c.split('/').next())
                .ok_or(AuthError(AuthErrorKind::Malformed))?;
            return if self.sigv4.iter().any(|(id, _)| id == akid) {
                Ok(())
            } else {
                Err(AuthError(AuthErrorKind::UnknownCredentials))
            };
        }
        Err(AuthError(AuthErrorKind::Malformed))
    }
}

/// Why a request was refused (403).
#[derive(Debug, Clone)]
pub struct AuthError(AuthErrorKind);

impl AuthError {
    /// What kind of refusal this is.
    #[must_use]
    pub fn kind(&self) -> AuthErrorKind {
        self.0
    }

    /// The `x-amzn-ErrorType` API Gateway sends for it.
    #[must_use]
    pub fn aws_type(&self) -> &'static str {
        match self.0 {
            AuthErrorKind::Missing => "MissingAuthenticationTokenException",
            AuthErrorKind::UnknownCredentials => "UnrecognizedClientException",
            AuthErrorKind::Malformed | AuthErrorKind::BadSignature | AuthErrorKind::Stale => {
                "InvalidSignatureException"
            }
        }
    }

    /// The message for the response body (never a secret).
    #[must_use]
    pub fn message(&self) -> String {
        match self.0 {
            AuthErrorKind::Missing => "Missing Authentication Token",
            AuthErrorKind::Malformed => "Authorization header is malformed",
            AuthErrorKind::UnknownCredentials => "The security token included in the request is invalid.",
            AuthErrorKind::BadSignature => {
                "The request signature we calculated does not match the signature you provided."
            }
            AuthErrorKind::Stale => "Signature expired",
        }
        .to_owned()
    }
}

/// Kinds of [`AuthError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials.
    Missing,
    /// Credentials that cannot be read.
    Malformed,
    /// A token or access key id that is not configured.
    UnknownCredentials,
    /// A signature that does not match.
    BadSignature,
    /// A signed time too far from now.
    Stale,
}

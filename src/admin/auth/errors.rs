//! Errors of the admin authenticator: why a request was refused ([`AuthError`]), and why a
//! credential cannot be configured ([`AdminAuthError`]).

/// Why a request was refused (the router answers 403 to every kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No `Authorization` header.
    Missing,
    /// The `Authorization` header, `X-Amz-Date` or `x-amz-content-sha256` cannot be used: not
    /// parseable, an unsupported scheme, `host` or `x-amz-date` not signed, a signed header absent.
    Malformed,
    /// Unknown access key id, or a bearer token that is not configured.
    UnknownCredentials,
    /// The credential scope is not for service `apigateway`, or its date is not `X-Amz-Date`'s.
    WrongScope,
    /// `X-Amz-Date` is further from now than the allowed clock skew.
    Stale,
    /// The signature (or the body hash) does not match.
    BadSignature,
    /// The signed `host` is not one of [`AdminAuth::expected_hosts`](super::AdminAuth::expected_hosts).
    UnexpectedHost,
}

/// Why a request was refused: a kind, AWS's error type and an AWS-like message. Neither the
/// message nor `Debug` ever contains a secret, a token or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    kind: AuthErrorKind,
    message: String,
}

impl AuthError {
    pub(super) fn new(kind: AuthErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// What kind of refusal this is.
    #[must_use]
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// AWS's error type, for `x-amzn-ErrorType`: `MissingAuthenticationTokenException`,
    /// `IncompleteSignatureException` (malformed), `UnrecognizedClientException` (unknown
    /// credentials) or `InvalidSignatureException` (scope, expiry, signature, a signed `host` that
    /// is not expected).
    #[must_use]
    pub fn aws_type(&self) -> &'static str {
        match self.kind {
            AuthErrorKind::Missing => "MissingAuthenticationTokenException",
            AuthErrorKind::Malformed => "IncompleteSignatureException",
            AuthErrorKind::UnknownCredentials => "UnrecognizedClientException",
            AuthErrorKind::WrongScope
            | AuthErrorKind::Stale
            | AuthErrorKind::BadSignature
            | AuthErrorKind::UnexpectedHost => "InvalidSignatureException",
        }
    }

    /// The message for the body `{"message": ...}`, in AWS's words where AWS has them.
    #[must_use]
    pub fn message(&self) -> String {
        self.message.clone()
    }
}

/// Why a credential given to [`AdminAuth`](super::AdminAuth) cannot be used. Neither `Display`
/// nor `Debug` ever shows the credential.
///
/// ```
/// use tower_usage_plans::admin::{AdminAuth, AdminAuthErrorKind};
///
/// let err = AdminAuth::new().try_bearer("s3cret").unwrap_err();
/// assert_eq!(err.kind(), AdminAuthErrorKind::TokenTooShort);
/// assert_eq!(err.to_string(), "a bearer token must be at least 16 characters long, got 6");
/// assert!(AdminAuth::new().try_bearer("adm_7Qx2Lr9TfKp4Wz8Nc3Vb6Hs1").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdminAuthError {
    kind: AdminAuthErrorKind,
    message: String,
}

/// What kind of [`AdminAuthError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdminAuthErrorKind {
    /// A bearer token shorter than [`MIN_BEARER_CHARS`](super::MIN_BEARER_CHARS) characters.
    TokenTooShort,
}

impl AdminAuthError {
    pub(super) fn new(kind: AdminAuthErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> AdminAuthErrorKind {
        self.kind
    }
}

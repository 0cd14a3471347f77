//! Management API (feature `admin`), speaking API Gateway's REST wire format.
//!
//! [`AdminAuth`] decides who may call it: AWS Signature Version 4 as the AWS SDKs and CLI sign
//! (service `apigateway`), or bearer tokens.

mod auth;

pub use auth::{AdminAuth, AuthError, AuthErrorKind};

//! [`RedisBackendError`]: why [`RedisBackendBuilder::connect`](crate::RedisBackendBuilder::connect)
//! failed.

use std::fmt;

/// Why connecting to Redis failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisBackendErrorKind {
    /// A URL (of the server, or of a cluster node) does not parse, or names a scheme or an
    /// option the client does not support (`rediss://` without a TLS feature of `redis`).
    InvalidUrl,
    /// No server could be reached: connection refused or reset, host not found, no node of a
    /// cluster answering.
    Connect,
    /// A server did not answer within the [timeout](crate::RedisBackendBuilder::timeout).
    Timeout,
    /// A server refused the credentials (wrong user name or password, or none given).
    Auth,
    /// Anything else, e.g. a server error answered while setting up a cluster connection.
    Other,
}

impl RedisBackendErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid URL",
            Self::Connect => "cannot connect",
            Self::Timeout => "timed out",
            Self::Auth => "authentication failed",
            Self::Other => "error",
        }
    }

    fn of(e: &redis::RedisError) -> Self {
        use redis::ErrorKind as K;
        if e.is_timeout() {
            return Self::Timeout;
        }
        match e.kind() {
            K::InvalidClientConfig => Self::InvalidUrl,
            K::AuthenticationFailed => Self::Auth,
            K::Server(redis::ServerErrorKind::NoPerm) => Self::Auth,
            K::Io | K::ClusterConnectionNotFound => Self::Connect,
            // The server's own codes for refused credentials.
            _ if e.code().is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH") => Self::Auth,
            _ => Self::Other,
        }
    }
}

/// Connecting to Redis failed. Neither `Display` nor `Debug` shows a URL or a password.
///
/// ```no_run
/// # async fn run() {
/// use tower_usage_plans::{RedisBackend, RedisBackendErrorKind};
/// match RedisBackend::builder("redis://:secret@127.0.0.1:6379").connect().await {
///     Ok(_backend) => {}
///     Err(e) if e.kind() == RedisBackendErrorKind::InvalidUrl => panic!("fix the configuration: {e}"),
///     Err(e) => eprintln!("redis not there yet: {e}"),
/// }
/// # }
/// ```
pub struct RedisBackendError {
    kind: RedisBackendErrorKind,
    /// The client's message with any password of the URL masked.
    message: String,
    source: redis::RedisError,
}

impl RedisBackendError {
    /// An error of the Redis client while connecting to `url` (whose password, if any, is
    /// masked in the message kept).
    pub(crate) fn new(source: redis::RedisError, urls: &[String]) -> Self {
        let mut message = source.to_string();
        for password in urls.iter().filter_map(|u| password(u)) {
            message = message.replace(password, "***");
        }
        Self { kind: RedisBackendErrorKind::of(&source), message, source }
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> RedisBackendErrorKind {
        self.kind
    }
}

/// The password of a `scheme://user:password@host/...` URL, if it has one.
fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (user_info, _host) = authority.rsplit_once('@')?;
    let (_user, password) = user_info.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

impl fmt::Display for RedisBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}: {}", self.kind.describe(), self.message)
    }
}

impl fmt::Debug for RedisBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendError").field("kind", &self.kind).field("message", &self.message).finish()
    }
}

impl std::error::Error for RedisBackendError {
    /// The Redis client's error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;
    use std::error::Error as _;

    #[test]
    fn kinds_follow_the_client_error() {
        let urls = [String::from("redis://127.0.0.1:6379")];
        let kind = |e: redis::RedisError| RedisBackendError::new(e, &urls).kind();
        assert_eq!(
            kind((ErrorKind::InvalidClientConfig, "Redis URL did not parse").into()),
            RedisBackendErrorKind::InvalidUrl
        );
        assert_eq!(
            kind((ErrorKind::AuthenticationFailed, "Password authentication failed").into()),
            RedisBackendErrorKind::Auth
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(kind(refused.into()), RedisBackendErrorKind::Connect);
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(kind(timed_out.into()), RedisBackendErrorKind::Timeout);
        assert_eq!(kind((ErrorKind::Client, "something").into()), RedisBackendErrorKind::Other);
    }

    #[test]
    fn no_password_in_display_or_debug_and_the_source_is_kept() {
        let urls = [String::from("redis://default:s3cret-pass@10.0.0.1:6379/0")];
        let e = RedisBackendError::new((ErrorKind::Io, "cannot reach", String::from("with s3cret-pass")).into(), &urls);
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!shown.contains("s3cret-pass") && !debug.contains("s3cret-pass"), "{shown} / {debug}");
        assert_eq!(shown, "redis: cannot connect: cannot reach - Io: with ***");
        let source = e.source().expect("a source");
        assert!(source.downcast_ref::<redis::RedisError>().is_some());
    }

    #[test]
    fn passwords_are_found_in_urls() {
        assert_eq!(password("redis://:pw@host:6379"), Some("pw"));
        assert_eq!(password("rediss://user:p@ss@host/1"), Some("p@ss"));
        assert_eq!(password("redis://user@host"), None);
        assert_eq!(password("redis://host:6379/0?x=a:b@c"), None);
        assert_eq!(password("not a url"), None);
    }
}

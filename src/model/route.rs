//! Method keys: `"<resourcePath>/<METHOD>"`, e.g. `"/pets/GET"`, `"/pets/{petId}/DELETE"`, `"//GET"`.

use crate::error::ConfigError;
use std::fmt;

/// One HTTP method on one resource-path template, written as API Gateway writes method settings:
/// `"/pets/{petId}/DELETE"`, `"//GET"` for the root, `"/files/{proxy+}/GET"` for a greedy path,
/// `ANY` (or `*`) for every method.
///
/// ```
/// use tower_usage_plans::MethodKey;
/// let k: MethodKey = "/pets/{petId}/DELETE".parse().unwrap();
/// assert_eq!(k.path(), "/pets/{petId}");
/// assert_eq!(k.method(), "DELETE");
/// assert!("/pets".parse::<MethodKey>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodKey {
    path: String,
    method: String,
    /// The path in matchit syntax with parameters renamed by position (`/pets/{p1}`), so that
    /// `{id}` and `{petId}` at the same place are the same route.
    normalized: String,
}

const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY", "*"];

impl std::str::FromStr for MethodKey {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| {
            ConfigError::invalid("", format!("{s:?} is not a method key of the form \"/path/METHOD\": {reason}"))
        };
        let Some(cut) = s.rfind('/') else { return Err(bad("no '/'")) };
        let (path, method) = (&s[..cut], &s[cut + 1..]);
        if !METHODS.contains(&method) {
            return Err(bad(&format!("unknown method {method:?} (use one of {})", METHODS.join(", "))));
        }
        let method = if method == "*" { "ANY" } else { method };
        if path.is_empty() {
            return Err(bad("empty resource path (the root is written \"//GET\")"));
        }
        if !path.starts_with('/') {
            return Err(bad("the resource path must start with '/'"));
        }
        let mut normalized = String::with_capacity(path.len());
        if path == "/" {
            normalized.push('/');
        } else {
            let segments: Vec<&str> = path[1..].split('/').collect();
            for (i, seg) in segments.iter().enumerate() {
                normalized.push('/');
                if seg.is_empty() {
                    return Err(bad("empty path segment"));
                }
                if let Some(inner) = seg.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                    let (name, greedy) = match inner.strip_suffix('+') {
                        Some(n) => (n, true),
                        None => (inner, false),
                    };
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                    {
                        return Err(bad(&format!("bad parameter name in segment {seg:?}")));
                    }
                    if greedy {
                        if i + 1 != segments.len() {
                            return Err(bad("a greedy {name+} parameter must be the last segment"));
                        }
                        normalized.push_str("{*rest}");
                    } else {
                        normalized.push_str(&format!("{{p{i}}}"));
                    }
                } else if seg.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}' && b != b'?' && b != b'#')
                {
                    normalized.push_str(seg);
                } else {
                    return Err(bad(&format!("segment {seg:?} must be a literal or a {{param}}")));
                }
            }
        }
        Ok(Self { path: path.to_owned(), method: method.to_owned(), normalized })
    }
}

impl MethodKey {
    /// The resource path template, e.g. `/pets/{petId}`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The method, upper case; `ANY` for every method.
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    pub(crate) fn normalized_path(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.path, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MethodKey, ConfigError> {
        s.parse()
    }

    #[test]
    fn parses_aws_method_keys() {
        let root = parse("//GET").unwrap();
        assert_eq!((root.path(), root.method(), root.normalized_path()), ("/", "GET", "/"));
        let k = parse("/pets/{petId}/DELETE").unwrap();
        assert_eq!(k.normalized_path(), "/pets/{p1}");
        assert_eq!(parse("/files/{proxy+}/GET").unwrap().normalized_path(), "/files/{*rest}");
        assert_eq!(parse("/pets/*").unwrap().method(), "ANY");
        assert_eq!(k.to_string(), "/pets/{petId}/DELETE");
    }

    #[test]
    fn rejects_malformed_keys() {
        for bad in [
            "",
            "GET",
            "/GET",
            "pets/GET",
            "/pets/get",
            "/pets/FETCH",
            "/pets//GET",
            "/{proxy+}/x/GET",
            "/{}/GET",
            "/a b/GET",
            "/{a/GET",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

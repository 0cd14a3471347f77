//! Reading requests: JSON members and query parameters, checked by hand so that an error names
//! the member and what it must be, and never repeats a value (it could be a key).

use crate::admin::error::{ApiError, ApiResult};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A JSON object from a request body, with the path of members read from it (for errors).
#[derive(Debug)]
pub(crate) struct Object {
    members: Map<String, Value>,
    path: String,
}

impl Object {
    /// The body as a JSON object; an empty body is `{}`.
    pub(crate) fn parse(body: &[u8]) -> ApiResult<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { members: Map::new(), path: String::new() });
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(members)) => Ok(Self { members, path: String::new() }),
            Ok(_) => Err(ApiError::bad_request("Invalid request body: expected a JSON object")),
            // serde_json's syntax errors give a position, not the text there.
            Err(e) => Err(ApiError::bad_request(format!(
                "Invalid request body: not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))),
        }
    }

    /// The dotted path of member `name` (e.g. `throttle.burstLimit`).
    pub(crate) fn field(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Member `name`, unless absent or `null`.
    fn get(&self, name: &str) -> Option<&Value> {
        self.members.get(name).filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, what: &str) -> ApiError {
        ApiError::invalid(&self.field(name), format!("must be {what}"))
    }

    /// A string member.
    pub(crate) fn string(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    /// A string member that must be present and not empty.
    pub(crate) fn required_string(&self, name: &str) -> ApiResult<String> {
        match self.string(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::invalid(&self.field(name), "is required")),
        }
    }

    /// A boolean member.
    pub(crate) fn boolean(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(name, "true or false")),
        }
    }

    /// A number member (`Double`).
    pub(crate) fn number(&self, name: &str) -> ApiResult<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| self.wrong(name, "a number")),
            Some(_) => Err(self.wrong(name, "a number")),
        }
    }

    /// A whole number member (`Integer`).
    pub(crate) fn integer(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| self.wrong(name, "a whole number")),
            Some(_) => Err(self.wrong(name, "a whole number")),
        }
    }

    /// An object member.
    pub(crate) fn object(&self, name: &str) -> ApiResult<Option<Object>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Object { members: m.clone(), path: self.field(name) })),
            Some(_) => Err(self.wrong(name, "an object")),
        }
    }

    /// A list member whose elements are objects.
    pub(crate) fn objects(&self, name: &str) -> ApiResult<Vec<Object>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(Object { members: m.clone(), path: format!("{}[{i}]", self.field(name)) }),
                    _ => Err(ApiError::invalid(&format!("{}[{i}]", self.field(name)), "must be an object")),
                })
                .collect(),
            Some(_) => Err(self.wrong(name, "a list")),
        }
    }

    /// Whether a list member is present and not empty.
    pub(crate) fn has_items(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
    }

    /// An object member whose values are objects (a map of structures), in key order.
    pub(crate) fn object_map(&self, name: &str) -> ApiResult<Vec<(String, Object)>> {
        let Some(map) = self.object(name)? else { return Ok(Vec::new()) };
        let path = map.path.clone();
        map.members
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(m) => {
                    let path = format!("{path}.{k:?}");
                    Ok((k, Object { members: m, path }))
                }
                _ => Err(ApiError::invalid(&format!("{path}.{k:?}"), "must be an object")),
            })
            .collect()
    }

    /// A map of strings (`MapOfStringToString`, e.g. `tags`).
    pub(crate) fn string_map(&self, name: &str) -> ApiResult<BTreeMap<String, String>> {
        let Some(map) = self.object(name)? else { return Ok(BTreeMap::new()) };
        map.members
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::invalid(&format!("{}.{k:?}", map.path), "must be a string")),
            })
            .collect()
    }
}

/// Query parameters (`?a=1&b=2`), decoded.
#[derive(Debug)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(uri: &http::Uri) -> ApiResult<Self> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| Self(q.0))
            .map_err(|_| ApiError::bad_request("Invalid query string"))
    }

    /// The last value of parameter `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: `true` or `false`, any case.
    pub(crate) fn boolean(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(name, "must be true or false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_members_not_values() {
        let o = Object::parse(br#"{"name":"secret-0123456789abcdefghij","throttle":{"burstLimit":"secret"},"n":null}"#)
            .unwrap();
        assert_eq!(o.string("name").unwrap().as_deref(), Some("secret-0123456789abcdefghij"));
        assert_eq!(o.string("n").unwrap(), None);
        let t = o.object("throttle").unwrap().unwrap();
        let e = t.integer("burstLimit").unwrap_err();
        assert_eq!(e.message(), "throttle.burstLimit: must be a whole number");
        assert_eq!(o.boolean("name").unwrap_err().message(), "name: must be true or false");
        let e = Object::parse(b"{\"name\": secret}").unwrap_err();
        assert!(!e.message().contains("secret"), "{}", e.message());
        assert!(Object::parse(b"[1]").is_err());
        assert!(Object::parse(b"").unwrap().string("x").unwrap().is_none());
    }
}

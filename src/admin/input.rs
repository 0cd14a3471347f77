//! Reading requests: the JSON body (its members are read by [`crate::wire::Object`]) and query
//! parameters, with errors that name what is wrong and never repeat a value (it could be a key).

use crate::admin::error::{ApiError, ApiResult};
use serde_json::{Map, Value};

/// The body as a JSON object; an empty body is `{}`. Read its members with
/// `Object::new(&body, Source::Request)`.
pub(crate) fn parse_body(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(ApiError::bad_request("Invalid request body: expected a JSON object")),
        // serde_json's syntax errors give a position, not the text there.
        Err(e) => Err(ApiError::bad_request(format!(
            "Invalid request body: not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
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
    use crate::wire::{Object, Source};

    #[test]
    fn errors_name_members_not_values() {
        let body = parse_body(br#"{"name":"secret-0123456789abcdefghij","throttle":{"burstLimit":"secret"},"n":null}"#)
            .unwrap();
        let o = Object::new(&body, Source::Request);
        assert_eq!(o.string("name").unwrap(), Some("secret-0123456789abcdefghij"));
        assert_eq!(o.string("n").unwrap(), None);
        let t = o.object("throttle").unwrap().unwrap();
        let e = ApiError::from(t.whole("burstLimit").unwrap_err());
        assert_eq!(e.message(), "throttle.burstLimit: must be a whole number");
        assert_eq!(ApiError::from(o.boolean("name").unwrap_err()).message(), "name: must be true or false");
        let e = parse_body(b"{\"name\": secret}").unwrap_err();
        assert!(!e.message().contains("secret"), "{}", e.message());
        assert!(parse_body(b"[1]").is_err());
        assert!(Object::new(&parse_body(b"").unwrap(), Source::Request).string("x").unwrap().is_none());
    }
}

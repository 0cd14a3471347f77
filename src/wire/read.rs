//! Reading JSON objects member by member: each reader checks one member's type and names the
//! member (by its path from the object read) and what it must be, never its value.

use crate::model::tags::Tags;
use crate::wire::ShapeError;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the JSON comes from. It decides the wording of errors (each as it has always been
/// worded: clients and scripts read these messages) and what counts as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A request to the admin API. Errors say what a member must be (`must be a string`,
    /// `is required`, `is required in a throttle`); a whole number may be negative (the shape
    /// then says which bound it misses); map keys are always quoted in paths
    /// (`tags."team"`); the stages of a plan are named `apiStages[apiId:stage]`, as patch
    /// paths name them.
    // Constructed only by the admin API.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    Request,
    /// A document the aws CLI printed. Errors also name the JSON type found (`must be a
    /// string, got a number`) and say `missing` (`missing or empty` for text); a whole number is
    /// never negative; `null` map entries and an empty throttle `{}` are absent; map keys are
    /// quoted only when they are not plain names (`throttle."/pets/GET"`, `tags.team`); stages
    /// are named `apiStages[0]`.
    Document,
}

impl Source {
    /// The error for a member at `path` whose JSON type is not `want` (`a string`).
    pub(crate) fn wrong_type(self, path: String, want: &str, found: &Value) -> ShapeError {
        match self {
            Self::Request => ShapeError::invalid(path, format!("must be {want}")),
            Self::Document => ShapeError::invalid(path, format!("must be {want}, got {}", json_type(found))),
        }
    }

    /// The error for a required member at `path` that is absent (or, for `text`, empty);
    /// `within` names the shape that requires it (`a throttle`), if not the object itself.
    pub(crate) fn missing(self, path: String, within: Option<&str>, text: bool) -> ShapeError {
        let reason = match (self, within) {
            (Self::Request, None) => "is required".to_owned(),
            (Self::Request, Some(shape)) => format!("is required in {shape}"),
            (Self::Document, _) if text => "missing or empty".to_owned(),
            (Self::Document, _) => "missing".to_owned(),
        };
        ShapeError::invalid(path, reason)
    }

    /// The path of the map entry `key` of the member at `path`.
    pub(crate) fn key_path(self, path: &str, key: &str) -> String {
        let plain = key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'[' | b']'));
        match self {
            Self::Document if plain => format!("{path}.{key}"),
            _ => format!("{path}.{key:?}"),
        }
    }
}

/// The JSON type of `v`, as errors name it (`a string`, `an array`).
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being read, with its path from the object first read (for errors). Its
/// `Debug` leaves out the JSON, which may hold key values.
#[derive(Clone)]
pub(crate) struct Object<'v> {
    members: &'v Map<String, Value>,
    path: String,
    source: Source,
}

impl std::fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("members", &self.members.len())
            .finish()
    }
}

impl<'v> Object<'v> {
    /// The object `members`, read from `source`; paths start here.
    pub(crate) fn new(members: &'v Map<String, Value>, source: Source) -> Self {
        Self { members, path: String::new(), source }
    }

    fn at(&self, members: &'v Map<String, Value>, path: String) -> Self {
        Self { members, path, source: self.source }
    }

    /// The path of member `name` (e.g. `throttle.burstLimit`); empty `name`: this object's path.
    pub(crate) fn field(&self, name: &str) -> String {
        match (self.path.is_empty(), name.is_empty()) {
            (true, _) => name.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{name}", self.path),
        }
    }

    /// An error about member `name` (empty: this object).
    pub(crate) fn invalid(&self, name: &str, reason: impl Into<String>) -> ShapeError {
        ShapeError::invalid(self.field(name), reason)
    }

    /// Member `name`, unless absent or `null`.
    fn get(&self, name: &str) -> Option<&'v Value> {
        self.members.get(name).filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, want: &str, found: &Value) -> ShapeError {
        self.source.wrong_type(self.field(name), want, found)
    }

    /// A string member.
    pub(crate) fn string(&self, name: &str) -> Result<Option<&'v str>, ShapeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    /// A string member that must be present and not blank.
    pub(crate) fn required_string(&self, name: &str) -> Result<&'v str, ShapeError> {
        match self.string(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.source.missing(self.field(name), None, true)),
        }
    }

    /// A boolean member.
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, ShapeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "true or false", v)),
        }
    }

    /// A number member (`Double`).
    pub(crate) fn number(&self, name: &str) -> Result<Option<f64>, ShapeError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| self.wrong(name, "a number", v)),
            Some(v) => Err(self.wrong(name, "a number", v)),
        }
    }

    /// A whole number member (`Integer`, `Long`): any `i64` in a request, any `u64` in a
    /// document (`i128` holds both).
    pub(crate) fn whole(&self, name: &str) -> Result<Option<i128>, ShapeError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                let (n, want) = match self.source {
                    Source::Request => (n.as_i64().map(i128::from), "a whole number"),
                    Source::Document => (n.as_u64().map(i128::from), "a whole number, not negative"),
                };
                n.map(Some).ok_or_else(|| self.wrong(name, want, v))
            }
            Some(v) => Err(self.wrong(name, "a whole number", v)),
        }
    }

    /// An object member.
    pub(crate) fn object(&self, name: &str) -> Result<Option<Object<'v>>, ShapeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(self.at(m, self.field(name)))),
            Some(v) => Err(self.wrong(name, "an object", v)),
        }
    }

    /// A list member whose elements are objects (`apiStages[0]`, ...).
    pub(crate) fn objects(&self, name: &str) -> Result<Vec<Object<'v>>, ShapeError> {
        let items = match self.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(v) => {
                let want = if self.source == Source::Request { "a list" } else { "an array" };
                return Err(self.wrong(name, want, v));
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.field(name));
            match v {
                Value::Object(m) => out.push(self.at(m, path)),
                v => return Err(self.source.wrong_type(path, "an object", v)),
            }
        }
        Ok(out)
    }

    /// Whether a list member is present and not empty.
    #[cfg(feature = "admin")]
    pub(crate) fn has_items(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
    }

    /// A map of structures (e.g. method throttles by method key), in the object's order; in a
    /// document a `null` entry is absent.
    pub(crate) fn object_map(&self, name: &str) -> Result<Vec<(&'v str, Object<'v>)>, ShapeError> {
        let Some(map) = self.object(name)? else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(map.members.len());
        for (k, v) in map.members {
            let path = self.source.key_path(&map.path, k);
            match v {
                Value::Object(m) => out.push((k.as_str(), self.at(m, path))),
                Value::Null if self.source == Source::Document => {}
                v => return Err(self.source.wrong_type(path, "an object", v)),
            }
        }
        Ok(out)
    }

    /// A map of strings (`MapOfStringToString`: `tags`).
    pub(crate) fn tags(&self, name: &str) -> Result<Tags, ShapeError> {
        let Some(map) = self.object(name)? else { return Ok(Tags::new()) };
        map.members
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                v => Err(self.source.wrong_type(self.source.key_path(&map.path, k), "a string", v)),
            })
            .collect()
    }

    /// A timestamp (`createdDate`): ISO 8601 text (the aws CLI v2) or epoch seconds (v1, the
    /// REST wire).
    pub(crate) fn time(&self, name: &str) -> Result<Option<SystemTime>, ShapeError> {
        let from_secs = |secs: f64| {
            (secs.is_finite() && (0.0..1e11).contains(&secs)).then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
        };
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                n.as_f64().and_then(from_secs).map(Some).ok_or_else(|| self.wrong(name, "a time", v))
            }
            Some(v @ Value::String(text)) => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| from_secs(t.unix_timestamp() as f64))
                    .map(Some)
                    .ok_or_else(|| self.wrong(name, "an ISO 8601 time or epoch seconds", v))
            }
            Some(v) => Err(self.wrong(name, "a time", v)),
        }
    }
}

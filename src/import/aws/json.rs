//! Reading the JSON the AWS CLI prints, member by member, with errors that name the document,
//! the item and the field and never quote a value (any string might be a key value).

use super::MAX_JSON_BYTES;
use crate::import::{ImportError, ImportErrorKind};
use crate::model::{ApiKey, KeySecret, PlanStage, Quota, QuotaPeriod, Throttle, UsagePlan};
use serde_json::{Map, Value};

/// A plan from `get-usage-plans`, its quota without the offset, which is kept apart.
#[derive(Debug, Clone)]
pub(super) struct ParsedPlan {
    pub(super) plan: UsagePlan,
    pub(super) offset: u64,
}

/// The items of a document: `items` as the CLI prints them (`item` on the REST wire).
/// `position` and every other member are ignored.
pub(super) fn items(doc: &str, text: &str) -> Result<Vec<Value>, ImportError> {
    let fail = |kind, reason: String| ImportError::in_document(kind, Some(doc), None, None, reason);
    if text.len() > MAX_JSON_BYTES {
        let reason = format!("the input has {} bytes, more than the {MAX_JSON_BYTES} accepted", text.len());
        return Err(fail(ImportErrorKind::TooLarge, reason));
    }
    let value: Value = serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(text)).map_err(|e| {
        let what = if e.is_eof() { "ends early" } else { "is not valid JSON" };
        fail(ImportErrorKind::Syntax, format!("{what} (column {})", e.column())).at_line(e.line() as u64)
    })?;
    let Value::Object(mut top) = value else {
        return Err(fail(ImportErrorKind::Invalid, format!("must be a JSON object, got {}", type_of(&value))));
    };
    match top.remove("items").or_else(|| top.remove("item")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(fail(ImportErrorKind::Invalid, format!("items must be an array, got {}", type_of(&other)))),
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON object inside item `item` of document `doc`, at `path` inside the item. Its
/// `Debug` leaves out the JSON, which may hold key values.
#[derive(Clone)]
pub(super) struct Obj<'v> {
    map: &'v Map<String, Value>,
    doc: String,
    item: String,
    path: String,
}

impl std::fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Obj").field("doc", &self.doc).field("item", &self.item).field("path", &self.path).finish()
    }
}

impl<'v> Obj<'v> {
    /// Item `index` of `doc`, named by its `id` when it has a string one.
    pub(super) fn item(doc: &str, index: usize, value: &'v Value, what: &str) -> Result<Self, ImportError> {
        let item = match value.get("id") {
            Some(Value::String(id)) => format!("{what} {id:?}"),
            _ => format!("items[{index}]"),
        };
        let Value::Object(map) = value else {
            let reason = format!("must be an object, got {}", type_of(value));
            return Err(ImportError::in_document(ImportErrorKind::Invalid, Some(doc), Some(item), None, reason));
        };
        Ok(Self { map, doc: doc.to_owned(), item, path: String::new() })
    }

    /// The path of member `name`; a name that is not a plain identifier (a method key such as
    /// `/pets/GET`) is quoted.
    fn field(&self, name: &str) -> String {
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'[' | b']'));
        let name = if plain { name.to_owned() } else { format!("{name:?}") };
        match (self.path.is_empty(), name.starts_with('[')) {
            (true, _) => name.to_owned(),
            (false, true) => format!("{}{name}", self.path),
            (false, false) => format!("{}.{name}", self.path),
        }
    }

    /// An error about member `name` (empty: this object).
    pub(super) fn err(&self, kind: ImportErrorKind, name: &str, reason: impl Into<String>) -> ImportError {
        let field = if name.is_empty() { self.path.clone() } else { self.field(name) };
        let field = (!field.is_empty()).then_some(field);
        ImportError::in_document(kind, Some(&self.doc), Some(self.item.clone()), field, reason)
    }

    fn get(&self, name: &str) -> Option<&'v Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, name: &str, want: &str, got: &Value) -> ImportError {
        self.err(ImportErrorKind::Invalid, name, format!("must be {want}, got {}", type_of(got)))
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<&'v str>, ImportError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(name, "a string", v)),
        }
    }

    pub(super) fn required_string(&self, name: &str) -> Result<&'v str, ImportError> {
        match self.string(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.err(ImportErrorKind::Invalid, name, "missing or empty")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ImportError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(name, "true or false", v)),
        }
    }

    /// A timestamp: ISO 8601 text (the aws CLI v2) or epoch seconds (v1, the REST wire).
    fn time(&self, name: &str) -> Result<Option<std::time::SystemTime>, ImportError> {
        let from_secs = |secs: f64| {
            (secs.is_finite() && (0.0..1e11).contains(&secs))
                .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs))
        };
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                n.as_f64().and_then(from_secs).map(Some).ok_or_else(|| self.wrong_type(name, "a time", v))
            }
            Some(v @ Value::String(text)) => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| from_secs(t.unix_timestamp() as f64))
                    .map(Some)
                    .ok_or_else(|| self.wrong_type(name, "an ISO 8601 time or epoch seconds", v))
            }
            Some(v) => Err(self.wrong_type(name, "a time", v)),
        }
    }

    /// `{"name": "value", ...}`.
    fn tags(&self, name: &str) -> Result<Vec<(&'v str, &'v str)>, ImportError> {
        let Some(tags) = self.object(name)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (k, v) in tags.map {
            match v {
                Value::String(v) => out.push((k.as_str(), v.as_str())),
                v => return Err(tags.wrong_type(k, "a string", v)),
            }
        }
        Ok(out)
    }

    fn whole(&self, name: &str) -> Result<Option<u64>, ImportError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                n.as_u64().map(Some).ok_or_else(|| self.wrong_type(name, "a whole number, not negative", v))
            }
            Some(v) => Err(self.wrong_type(name, "a whole number", v)),
        }
    }

    fn object(&self, name: &str) -> Result<Option<Obj<'v>>, ImportError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj { map, path: self.field(name), ..self.clone() })),
            Some(v) => Err(self.wrong_type(name, "an object", v)),
        }
    }

    fn objects(&self, name: &str) -> Result<Vec<Obj<'v>>, ImportError> {
        let list = match self.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(v) => return Err(self.wrong_type(name, "an array", v)),
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let field = format!("{name}[{i}]");
            match v {
                Value::Object(map) => out.push(Obj { map, path: self.field(&field), ..self.clone() }),
                v => return Err(self.wrong_type(&field, "an object", v)),
            }
        }
        Ok(out)
    }

    /// `{"burstLimit": .., "rateLimit": ..}`; `{}` means no throttle.
    fn throttle(&self) -> Result<Option<Throttle>, ImportError> {
        let burst = self.whole("burstLimit")?;
        let rate = match self.get("rateLimit") {
            None => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| self.wrong_type("rateLimit", "a number", v))?),
        };
        let (rate, burst) = match (rate, burst) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(self.err(ImportErrorKind::Invalid, "rateLimit", "missing")),
            (Some(_), None) => return Err(self.err(ImportErrorKind::Invalid, "burstLimit", "missing")),
            (Some(r), Some(b)) => (r, b),
        };
        let burst = u32::try_from(burst)
            .map_err(|_| self.err(ImportErrorKind::Invalid, "burstLimit", format!("must be at most {}", u32::MAX)))?;
        Throttle::new(rate, burst).map(Some).map_err(|e| {
            let name = if e.field() == "burst" { "burstLimit" } else { "rateLimit" };
            self.err(ImportErrorKind::Invalid, name, e.reason())
        })
    }

    /// `{"limit": .., "period": .., "offset": ..}`: the quota without its offset, and the offset.
    fn quota(&self) -> Result<(Quota, u64), ImportError> {
        let limit = self.whole("limit")?.ok_or_else(|| self.err(ImportErrorKind::Invalid, "limit", "missing"))?;
        let period = match self.required_string("period")? {
            "DAY" => QuotaPeriod::Day,
            "WEEK" => QuotaPeriod::Week,
            "MONTH" => QuotaPeriod::Month,
            _ => return Err(self.err(ImportErrorKind::Invalid, "period", "must be DAY, WEEK or MONTH")),
        };
        let quota = Quota::new(limit, period).map_err(|e| self.err(ImportErrorKind::Invalid, "limit", e.reason()))?;
        Ok((quota, self.whole("offset")?.unwrap_or(0)))
    }

    /// A usage plan (`UsagePlan` in API Gateway's model).
    pub(super) fn usage_plan(&self) -> Result<ParsedPlan, ImportError> {
        let id = self.required_string("id")?;
        let mut plan = UsagePlan::new(id).name(self.string("name")?.unwrap_or(id));
        if let Some(description) = self.string("description")? {
            plan = plan.description(description);
        }
        if let Some(code) = self.string("productCode")? {
            plan = plan.product_code(code);
        }
        for (name, value) in self.tags("tags")? {
            plan = plan.tag(name, value);
        }
        if let Some(t) = self.object("throttle")?.map(|o| o.throttle()).transpose()?.flatten() {
            plan = plan.throttle(t);
        }
        let mut offset = 0;
        if let Some((quota, o)) = self.object("quota")?.map(|o| o.quota()).transpose()? {
            plan = plan.quota(quota);
            offset = o;
        }
        for (i, s) in self.objects("apiStages")?.into_iter().enumerate() {
            let (api, stage) = (s.required_string("apiId")?, s.required_string("stage")?);
            if plan.stage_binding(api, stage).is_some() {
                let reason = format!("stage {api}/{stage} is listed twice");
                return Err(self.err(ImportErrorKind::Duplicate, &format!("apiStages[{i}]"), reason));
            }
            let mut binding = PlanStage::new(api, stage);
            if let Some(methods) = s.object("throttle")? {
                for method in methods.map.keys() {
                    let Some(t) = methods.object(method)?.map(|o| o.throttle()).transpose()?.flatten() else {
                        continue;
                    };
                    binding = binding
                        .method_throttle(method, t)
                        .map_err(|e| methods.err(ImportErrorKind::Invalid, method, e.reason()))?;
                }
            }
            plan = plan.stage(binding);
        }
        Ok(ParsedPlan { plan, offset })
    }

    /// An API key (`ApiKey`), without plans.
    pub(super) fn api_key(&self) -> Result<(KeySecret, ApiKey), ImportError> {
        let id = self.required_string("id")?;
        let Some(value) = self.string("value")? else {
            let reason = "no value: export the keys with `aws apigateway get-api-keys --include-values`";
            return Err(self.err(ImportErrorKind::MissingValue, "value", reason));
        };
        let value = KeySecret::new(value).map_err(|e| self.err(ImportErrorKind::Invalid, "value", e.reason()))?;
        let mut key = ApiKey::new(id).name(self.string("name")?.unwrap_or(id));
        key = key.enabled(self.boolean("enabled")?.unwrap_or(false));
        if let Some(description) = self.string("description")? {
            key = key.description(description);
        }
        if let Some(customer) = self.string("customerId")? {
            key = key.customer_id(customer);
        }
        if let Some(at) = self.time("createdDate")? {
            key = key.created(at);
        }
        if let Some(at) = self.time("lastUpdatedDate")? {
            key = key.last_updated(at);
        }
        for (name, value) in self.tags("tags")? {
            key = key.tag(name, value);
        }
        Ok((value, key))
    }

    /// A usage plan key (`UsagePlanKey`): the key id and, when present, its value.
    pub(super) fn usage_plan_key(&self) -> Result<(String, Option<KeySecret>), ImportError> {
        let id = self.required_string("id")?;
        if let Some(kind) = self.string("type")? {
            if kind != "API_KEY" {
                return Err(self.err(ImportErrorKind::Invalid, "type", "must be API_KEY"));
            }
        }
        let value = self
            .string("value")?
            .map(KeySecret::new)
            .transpose()
            .map_err(|e| self.err(ImportErrorKind::Invalid, "value", e.reason()))?;
        Ok((id.to_owned(), value))
    }
}

//! Reading the documents the AWS CLI prints: their items, each read with the shapes of
//! [`crate::wire`], with errors that name the document, the item and the member and never quote
//! a value (any string might be a key value).

use crate::import::{ImportError, ImportErrorKind};
use crate::model::{ApiKey, KeySecret, UsagePlan};
use crate::wire::{check_key_type, json_type, key_value, ApiKeyShape, Object, PlanLimits, ShapeError, Source};
use serde_json::Value;

/// Largest JSON document accepted: 16 MiB.
pub const MAX_JSON_BYTES: usize = 16 << 20;

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
        return Err(fail(ImportErrorKind::Invalid, format!("must be a JSON object, got {}", json_type(&value))));
    };
    match top.remove("items").or_else(|| top.remove("item")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => {
            Err(fail(ImportErrorKind::Invalid, format!("items must be an array, got {}", json_type(&other))))
        }
    }
}

/// Why an item was refused, before the document and the item are put in front: a member that
/// does not fit its shape ([`ImportErrorKind::Invalid`]), or one of the import's own kinds.
#[derive(Debug)]
struct Fault {
    kind: ImportErrorKind,
    field: String,
    reason: String,
}

impl From<ShapeError> for Fault {
    fn from(e: ShapeError) -> Self {
        Self { kind: ImportErrorKind::Invalid, field: e.path().to_owned(), reason: e.reason().to_owned() }
    }
}

/// Item `index` of document `doc`, named by its `id` when it has a string one.
#[derive(Debug, Clone)]
pub(super) struct Item<'v> {
    object: Object<'v>,
    doc: String,
    item: String,
}

impl<'v> Item<'v> {
    /// Item `index` of `doc`, a `what` (`plan`, `key`).
    pub(super) fn new(doc: &str, index: usize, value: &'v Value, what: &str) -> Result<Self, ImportError> {
        let item = match value.get("id") {
            Some(Value::String(id)) => format!("{what} {id:?}"),
            _ => format!("items[{index}]"),
        };
        let Value::Object(map) = value else {
            let reason = format!("must be an object, got {}", json_type(value));
            return Err(ImportError::in_document(ImportErrorKind::Invalid, Some(doc), Some(item), None, reason));
        };
        Ok(Self { object: Object::new(map, Source::Document), doc: doc.to_owned(), item })
    }

    /// An error about member `name` (empty: the item).
    pub(super) fn err(&self, kind: ImportErrorKind, name: &str, reason: impl Into<String>) -> ImportError {
        self.locate(Fault { kind, field: name.to_owned(), reason: reason.into() })
    }

    fn locate(&self, f: Fault) -> ImportError {
        let field = (!f.field.is_empty()).then_some(f.field);
        ImportError::in_document(f.kind, Some(&self.doc), Some(self.item.clone()), field, f.reason)
    }

    /// A usage plan (`UsagePlan` in API Gateway's model).
    pub(super) fn usage_plan(&self) -> Result<ParsedPlan, ImportError> {
        usage_plan(&self.object).map_err(|f| self.locate(f))
    }

    /// An API key (`ApiKey`), without plans.
    pub(super) fn api_key(&self) -> Result<(KeySecret, ApiKey), ImportError> {
        api_key(&self.object).map_err(|f| self.locate(f))
    }

    /// A usage plan key (`UsagePlanKey`): the key id and, when present, its value.
    pub(super) fn usage_plan_key(&self) -> Result<(String, Option<KeySecret>), ImportError> {
        usage_plan_key(&self.object).map_err(|f| self.locate(f))
    }
}

fn usage_plan(o: &Object<'_>) -> Result<ParsedPlan, Fault> {
    let id = o.required_string("id")?;
    let mut plan = UsagePlan::new(id).with_name(o.string("name")?.unwrap_or(id));
    if let Some(description) = o.string("description")? {
        plan = plan.with_description(description);
    }
    if let Some(code) = o.string("productCode")? {
        plan = plan.with_product_code(code);
    }
    for (name, value) in o.tags("tags")? {
        plan = plan.tag(name, value);
    }
    let limits = PlanLimits::read(o)?;
    if let Some(i) = limits.repeated_stage() {
        let s = &limits.api_stages[i];
        let reason = format!("stage {}/{} is listed twice", s.api_id, s.stage);
        return Err(Fault { kind: ImportErrorKind::Duplicate, field: format!("apiStages[{i}]"), reason });
    }
    let limits = limits.build(Source::Document)?;
    if let Some(t) = limits.throttle {
        plan = plan.with_throttle(t);
    }
    if let Some(q) = limits.quota {
        plan = plan.with_quota(q);
    }
    for stage in limits.stages {
        plan = plan.stage(stage);
    }
    Ok(ParsedPlan { plan, offset: limits.offset })
}

fn api_key(o: &Object<'_>) -> Result<(KeySecret, ApiKey), Fault> {
    let id = o.required_string("id")?;
    let shape = ApiKeyShape::read(o)?;
    let Some(value) = shape.value else {
        let reason = "no value: export the keys with `aws apigateway get-api-keys --include-values`".to_owned();
        return Err(Fault { kind: ImportErrorKind::MissingValue, field: "value".to_owned(), reason });
    };
    let mut key = ApiKey::new(id).with_name(shape.name.unwrap_or(id)).enabled(shape.enabled.unwrap_or(false));
    if let Some(description) = shape.description {
        key = key.with_description(description);
    }
    if let Some(customer) = shape.customer_id {
        key = key.with_customer_id(customer);
    }
    if let Some(at) = o.time("createdDate")? {
        key = key.with_created(at);
    }
    if let Some(at) = o.time("lastUpdatedDate")? {
        key = key.with_last_updated(at);
    }
    for (name, value) in shape.tags {
        key = key.tag(name, value);
    }
    Ok((value, key))
}

fn usage_plan_key(o: &Object<'_>) -> Result<(String, Option<KeySecret>), Fault> {
    let id = o.required_string("id")?;
    check_key_type(o, "type")?;
    Ok((id.to_owned(), key_value(o, "value")?))
}

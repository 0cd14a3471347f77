//! `ApiKey` and `UsagePlanKey`: the members CreateApiKey and an exported key share, and the key
//! type of a plan's key.

use crate::model::tags::Tags;
use crate::model::KeySecret;
use crate::wire::{Object, ShapeError};

/// The only key type API Gateway has: `keyType` of CreateUsagePlanKey, `type` of `UsagePlanKey`.
pub(crate) const API_KEY_TYPE: &str = "API_KEY";

/// The members of an `ApiKey` that CreateApiKey takes too, as given (`id`, the dates and the
/// deprecated `stageKeys` are read by whoever needs them). `Debug` never shows the value.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyShape<'v> {
    /// `value`, checked as a key value.
    pub(crate) value: Option<KeySecret>,
    /// `name`.
    pub(crate) name: Option<&'v str>,
    /// `enabled`.
    pub(crate) enabled: Option<bool>,
    /// `description`.
    pub(crate) description: Option<&'v str>,
    /// `customerId`.
    pub(crate) customer_id: Option<&'v str>,
    /// `tags`.
    pub(crate) tags: Tags,
}

impl<'v> ApiKeyShape<'v> {
    /// `value`, `name`, `enabled`, `description`, `customerId` and `tags` of `o`. A `value`
    /// that is not a valid key value is refused without repeating it.
    pub(crate) fn read(o: &Object<'v>) -> Result<Self, ShapeError> {
        Ok(Self {
            value: key_value(o, "value")?,
            name: o.string("name")?,
            enabled: o.boolean("enabled")?,
            description: o.string("description")?,
            customer_id: o.string("customerId")?,
            tags: o.tags("tags")?,
        })
    }
}

/// Member `name` of `o`, a key value (`value` of `ApiKey` and `UsagePlanKey`), refused without
/// repeating it when it is not a valid one.
pub(crate) fn key_value(o: &Object<'_>, name: &str) -> Result<Option<KeySecret>, ShapeError> {
    o.string(name)?.map(KeySecret::new).transpose().map_err(|e| o.invalid(name, e.reason()))
}

/// Member `name` of `o`, a key type: when present it must be `API_KEY`.
pub(crate) fn check_key_type(o: &Object<'_>, name: &str) -> Result<(), ShapeError> {
    match o.string(name)? {
        Some(t) if t != API_KEY_TYPE => Err(o.invalid(name, format!("must be {API_KEY_TYPE}"))),
        _ => Ok(()),
    }
}

//! The embedded default store: keys and plans held in memory, loaded from TOML or JSON.

use crate::error::ConfigError;
use crate::model::{ApiKey, Config, Stage, UsagePlan};
use crate::store::{KeyRecord, KeyStore, StoreError};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Keys and plans in memory, from a [`Config`] (a TOML or JSON file).
///
/// ```
/// use tower_usage_plans::InMemoryKeyStore;
/// let store = InMemoryKeyStore::from_toml_str(r#"
///     [stage]
///     api = "petstore"
///     name = "prod"
/// "#).unwrap();
/// assert_eq!(store.len(), 0);
/// ```
pub struct InMemoryKeyStore {
    stage: Stage,
    by_value: HashMap<Box<str>, KeyRecord>,
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryKeyStore")
            .field("stage", &self.stage)
            .field("keys", &self.by_value.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryKeyStore {
    /// A store holding `config`'s keys and plans.
    #[must_use]
    pub fn from_config(config: Config) -> Self {
        let (stage, plans, keys, previous) = config.into_parts();
        let plans: HashMap<&str, &Arc<UsagePlan>> = plans.iter().map(|p| (p.id(), p)).collect();
        let mut by_value: HashMap<Box<str>, KeyRecord> = keys
            .into_iter()
            .map(|(secret, key): (_, ApiKey)| {
                let key_plans =
                    key.plan_ids().iter().filter_map(|id| plans.get(&**id).map(|p| Arc::clone(p))).collect();
                (secret.expose().into(), KeyRecord::new(key, key_plans))
            })
            .collect();
        // A rotated key's old value: the same record, expiring at the end of the overlap.
        let by_id: HashMap<&str, &KeyRecord> = by_value.values().map(|r| (r.key().id(), r)).collect();
        let old: Vec<(Box<str>, KeyRecord)> = previous
            .iter()
            .filter_map(|p| {
                let current = by_id.get(p.key_id())?;
                let until = current.key().expires_at().map_or(p.until(), |e| e.min(p.until()));
                let key = current.key().clone().expires(until);
                Some((p.value().expose().into(), KeyRecord::new(key, current.plans().to_vec())))
            })
            .collect();
        drop(by_id);
        by_value.extend(old);
        Self { stage, by_value }
    }

    /// Reads a `.toml` or `.json` file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Config::from_path(path).map(Self::from_config)
    }

    /// Parses TOML.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Config::from_toml_str(text).map(Self::from_config)
    }

    /// Parses JSON.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        Config::from_json_str(text).map(Self::from_config)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_value.len()
    }

    /// Whether the store holds no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_value.is_empty()
    }

    /// The record for a presented value, without going through the async trait.
    #[must_use]
    pub fn get(&self, presented: &str) -> Option<&KeyRecord> {
        self.by_value.get(presented)
    }
}

impl KeyStore for InMemoryKeyStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.by_value.get(presented).cloned())
    }

    fn stage(&self) -> Option<Stage> {
        Some(self.stage.clone())
    }
}

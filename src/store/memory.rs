//! The embedded default store: keys and plans held in memory, loaded from TOML or JSON.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::import::ImportedKey;
use crate::model::{ApiKey, Config, Customer, KeySecret, PreviousValue, Stage, UsagePlan};
use crate::store::{Invalidation, KeyRecord, KeyStore, StoreError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Keys and plans in memory, from a [`Config`] (a TOML or JSON file), changeable while the app
/// serves: clones share one store, so keep one to change keys and plans and give another to the
/// layer. A change is checked like a configuration file (the same errors) and takes effect on the
/// next request of every layer built on the store (through its [`Invalidation`] handle); counts
/// already made in the period are kept.
///
/// ```
/// use tower_usage_plans::{ApiKey, InMemoryKeyStore, KeySecret, PlanStage, UsagePlan, UsagePlanLayer};
/// let store = InMemoryKeyStore::from_toml_str(r#"
///     [stage]
///     api = "petstore"
///     name = "prod"
/// "#).unwrap();
/// let layer = UsagePlanLayer::new(store.clone()).unwrap();
/// store.put_plan(UsagePlan::new("free").stage(PlanStage::new("petstore", "prod"))).unwrap();
/// store.create_key(ApiKey::new("k1").plan("free"), KeySecret::new("k1-0123456789abcdefghij").unwrap()).unwrap();
/// assert_eq!(store.len(), 1);
/// store.set_key_enabled("k1", false).unwrap(); // refused from its next request on
/// assert!(store.add_key_to_plan("k1", "gold").is_err()); // no such plan
/// ```
#[derive(Clone)]
pub struct InMemoryKeyStore {
    inner: Arc<Shared>,
}

struct Shared {
    loaded: RwLock<Loaded>,
    invalidation: Invalidation,
}

/// A configuration and its lookup table.
struct Loaded {
    config: Config,
    by_value: HashMap<Box<str>, KeyRecord>,
}

impl Loaded {
    fn new(config: Config) -> Self {
        let plans: HashMap<&str, &Arc<UsagePlan>> = config.plans().iter().map(|p| (p.id(), p)).collect();
        let customers: HashMap<&str, &Arc<Customer>> = config.customers().iter().map(|c| (c.id(), c)).collect();
        let customer = |key: &ApiKey| key.customer_id().and_then(|id| customers.get(id)).map(|c| Arc::clone(c));
        let mut by_value: HashMap<Box<str>, KeyRecord> = config
            .keys()
            .iter()
            .map(|(secret, key): &(_, ApiKey)| {
                let key_plans =
                    key.plan_ids().iter().filter_map(|id| plans.get(&**id).map(|p| Arc::clone(p))).collect();
                let record = KeyRecord::new(key.clone(), key_plans).with_customer(customer(key));
                (secret.expose().into(), record)
            })
            .collect();
        // A rotated key's old value: the same record, expiring at the end of the overlap.
        let by_id: HashMap<&str, &KeyRecord> = by_value.values().map(|r| (r.key().id(), r)).collect();
        let old: Vec<(Box<str>, KeyRecord)> = config
            .previous_values()
            .iter()
            .filter_map(|p| {
                let current = by_id.get(p.key_id())?;
                let until = current.key().expires().map_or(p.until(), |e| e.min(p.until()));
                let key = current.key().clone().with_expires(until);
                let record = KeyRecord::new(key, current.plans().to_vec()).with_customer(current.customer().cloned());
                Some((p.value().expose().into(), record))
            })
            .collect();
        drop(by_id);
        by_value.extend(old);
        Self { config, by_value }
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loaded = self.inner.loaded.read();
        f.debug_struct("InMemoryKeyStore")
            .field("stage", loaded.config.stage())
            .field("plans", &loaded.config.plans().len())
            .field("keys", &loaded.by_value.len())
            .finish_non_exhaustive()
    }
}

/// A configuration taken apart for a change.
struct Parts {
    stage: Stage,
    plans: Vec<UsagePlan>,
    keys: Vec<(KeySecret, ApiKey)>,
    previous: Vec<PreviousValue>,
    customers: Vec<Customer>,
}

impl Parts {
    /// The configuration of these parts, checked as a file is checked.
    fn assemble(self) -> Result<Config, ConfigError> {
        let mut config = Config::new(self.stage, self.plans, self.keys)?.with_customers(self.customers)?;
        for p in self.previous {
            // Old values of a deleted key go with it.
            if config.keys().iter().any(|(_, k)| k.id() == p.key_id()) {
                config = config.with_previous_value(p.key_id(), p.value().clone(), p.until())?;
            }
        }
        Ok(config)
    }
}

fn unknown(field: &str, what: &str, id: &str) -> ConfigError {
    ConfigError::new(ConfigErrorKind::UnknownReference, field, format!("no {what} has the id {id:?}"))
}

impl InMemoryKeyStore {
    /// A store holding `config`'s keys and plans.
    #[must_use]
    pub fn from_config(config: Config) -> Self {
        Self { inner: Arc::new(Shared { loaded: RwLock::new(Loaded::new(config)), invalidation: Invalidation::new() }) }
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

    /// Number of key values (a rotated key's old values count).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.loaded.read().by_value.len()
    }

    /// Whether the store holds no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record for a presented value, without going through the async trait.
    #[must_use]
    pub fn get(&self, presented: &str) -> Option<KeyRecord> {
        self.inner.loaded.read().by_value.get(presented).cloned()
    }

    /// Key `id` with its value, if there is one.
    #[must_use]
    pub fn key_by_id(&self, id: &str) -> Option<(KeySecret, ApiKey)> {
        self.inner.loaded.read().config.keys().iter().find(|(_, k)| k.id() == id).cloned()
    }

    /// Plan `id`, if there is one.
    #[must_use]
    pub fn plan_by_id(&self, id: &str) -> Option<Arc<UsagePlan>> {
        self.inner.loaded.read().config.plans().iter().find(|p| p.id() == id).cloned()
    }

    /// The configuration as it is now (changes included). To keep the changes across restarts,
    /// write it with [`Config::to_json_string`] (or [`to_toml_string`](Config::to_toml_string))
    /// and load that file at the next start. The file holds every key value: keep it private.
    ///
    /// ```
    /// use tower_usage_plans::{ApiKey, InMemoryKeyStore, KeySecret, PlanStage, UsagePlan};
    /// let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"petstore\"\nname = \"prod\"")?;
    /// store.put_plan(UsagePlan::new("free").stage(PlanStage::new("petstore", "prod")))?;
    /// store.create_key(ApiKey::new("k1").plan("free"), KeySecret::new("k1-0123456789abcdefghij")?)?;
    ///
    /// // Persist: write a new file, then rename it over the old one (never a half-written file).
    /// let dir = std::env::temp_dir().join(format!("usage-plans-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let (path, tmp) = (dir.join("plans.json"), dir.join("plans.json.tmp"));
    /// std::fs::write(&tmp, store.config().to_json_string())?;
    /// std::fs::rename(&tmp, &path)?;
    ///
    /// // Reload, e.g. at the next start.
    /// let reloaded = InMemoryKeyStore::from_path(&path)?;
    /// assert_eq!(reloaded.config(), store.config());
    /// assert!(reloaded.get("k1-0123456789abcdefghij").is_some());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn config(&self) -> Config {
        self.inner.loaded.read().config.clone()
    }

    /// Applies `change` to the configuration, checks the result as a file is checked, and
    /// swaps it in; layers built on the store see it from their next request. Nothing changes
    /// on error.
    fn edit<T, E: From<ConfigError>>(&self, change: impl FnOnce(&mut Parts) -> Result<T, E>) -> Result<T, E> {
        let mut loaded = self.inner.loaded.write();
        let customers = loaded.config.customers().iter().map(|c| Customer::clone(c)).collect();
        let (stage, plans, keys, previous) = loaded.config.clone().into_parts();
        let plans = plans.into_iter().map(Arc::unwrap_or_clone).collect();
        let mut parts = Parts { stage, plans, keys, previous, customers };
        let out = change(&mut parts)?;
        *loaded = Loaded::new(parts.assemble()?);
        drop(loaded);
        self.inner.invalidation.invalidate();
        Ok(out)
    }

    /// Creates a plan, or replaces the one with its id (limits, stages, method throttles). The
    /// keys in it stay in it, and keep the counts of the current period.
    pub fn put_plan(&self, plan: UsagePlan) -> Result<(), ConfigError> {
        self.edit(|p| {
            match p.plans.iter_mut().find(|old| old.id() == plan.id()) {
                Some(old) => *old = plan,
                None => p.plans.push(plan),
            }
            Ok(())
        })
    }

    /// Creates a customer, or replaces the one with its id (its limits). Its keys keep the
    /// customer's counts of the current period.
    pub fn put_customer(&self, customer: Customer) -> Result<(), ConfigError> {
        self.edit(|p| {
            match p.customers.iter_mut().find(|old| old.id() == customer.id()) {
                Some(old) => *old = customer,
                None => p.customers.push(customer),
            }
            Ok(())
        })
    }

    /// Deletes a customer: its keys keep their `customer_id` and lose the shared limits.
    pub fn delete_customer(&self, id: &str) -> Result<(), ConfigError> {
        self.edit(|p| {
            let before = p.customers.len();
            p.customers.retain(|c| c.id() != id);
            if p.customers.len() == before {
                return Err(unknown("customer_id", "customer", id));
            }
            Ok(())
        })
    }

    /// Customer `id`, if there is one.
    #[must_use]
    pub fn customer_by_id(&self, id: &str) -> Option<Arc<Customer>> {
        self.inner.loaded.read().config.customer(id).cloned()
    }

    /// Deletes a plan; its keys leave it (and get 403 unless another plan of theirs is bound to
    /// the stage).
    pub fn delete_plan(&self, id: &str) -> Result<(), ConfigError> {
        self.edit(|p| {
            let before = p.plans.len();
            p.plans.retain(|plan| plan.id() != id);
            if p.plans.len() == before {
                return Err(unknown("plan_id", "plan", id));
            }
            for (_, key) in &mut p.keys {
                *key = key.clone().without_plan(id);
            }
            Ok(())
        })
    }

    /// Creates a key with its value (its plans must exist; the id and the value must be new).
    pub fn create_key(&self, key: ApiKey, value: KeySecret) -> Result<(), ConfigError> {
        self.edit(|p| {
            p.keys.push((value, key));
            Ok(())
        })
    }

    fn edit_key(&self, id: &str, f: impl FnOnce(ApiKey) -> ApiKey) -> Result<(), ConfigError> {
        self.edit(|p| {
            let (_, key) = p.keys.iter_mut().find(|(_, k)| k.id() == id).ok_or_else(|| unknown("key_id", "key", id))?;
            *key = f(key.clone());
            Ok(())
        })
    }

    /// Enables or disables a key; a disabled key is refused (403) from its next request on. Sets
    /// the key's [`last_updated`](ApiKey::last_updated) time to now.
    pub fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), ConfigError> {
        self.edit_key(id, |k| k.enabled(enabled).with_last_updated(SystemTime::now()))
    }

    /// Creates a plan; errors ([`Duplicate`](ConfigErrorKind::Duplicate)) if a plan has its id.
    pub fn create_plan(&self, plan: UsagePlan) -> Result<(), ConfigError> {
        self.edit(|p| {
            if p.plans.iter().any(|old| old.id() == plan.id()) {
                let reason = format!("a plan already has the id {:?}", plan.id());
                return Err(ConfigError::new(ConfigErrorKind::Duplicate, "plan_id", reason));
            }
            p.plans.push(plan);
            Ok(())
        })
    }

    /// Changes plan `id` in one step: `change` gets the plan as it is and returns it as it should
    /// be (with the same id). Nothing changes if `change` or the check of the result fails.
    /// Returns the plan as stored. The keys in it stay in it, and keep the counts of the current
    /// period.
    ///
    /// ```
    /// use tower_usage_plans::{InMemoryKeyStore, Throttle, UsagePlan};
    /// let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"a\"\nname = \"b\"").unwrap();
    /// store.create_plan(UsagePlan::new("free")).unwrap();
    /// let plan = store.update_plan("free", |p| Ok::<_, tower_usage_plans::ConfigError>(p.with_throttle(Throttle::new(5.0, 10)?))).unwrap();
    /// assert_eq!(plan.throttle().unwrap().burst(), 10);
    /// ```
    pub fn update_plan<E: From<ConfigError>>(
        &self,
        id: &str,
        change: impl FnOnce(UsagePlan) -> Result<UsagePlan, E>,
    ) -> Result<UsagePlan, E> {
        self.edit(|p| {
            let plan = p.plans.iter_mut().find(|plan| plan.id() == id).ok_or_else(|| unknown("plan_id", "plan", id))?;
            let new = change(plan.clone())?;
            if new.id() != id {
                return Err(ConfigError::invalid("plan_id", "a plan's id cannot be changed").into());
            }
            *plan = new.clone();
            Ok(new)
        })
    }

    /// Changes key `id` in one step, as [`update_plan`](Self::update_plan) changes a plan (the
    /// value stays; the id cannot change). Sets the key's [`last_updated`](ApiKey::last_updated)
    /// time to now. Returns the key as stored.
    pub fn update_key<E: From<ConfigError>>(
        &self,
        id: &str,
        change: impl FnOnce(ApiKey) -> Result<ApiKey, E>,
    ) -> Result<ApiKey, E> {
        self.edit(|p| {
            let (_, key) = p.keys.iter_mut().find(|(_, k)| k.id() == id).ok_or_else(|| unknown("key_id", "key", id))?;
            let new = change(key.clone())?.with_last_updated(SystemTime::now());
            if new.id() != id {
                return Err(ConfigError::invalid("key_id", "a key's id cannot be changed").into());
            }
            *key = new.clone();
            Ok(new)
        })
    }

    /// Adds keys read by [`parse_api_keys_csv`](crate::import::parse_api_keys_csv) in one step, as
    /// [`Config::with_imported_keys`] does (the same checks and errors, naming CSV lines): all of
    /// them or, on error, none. Each gets a new id and a creation time of now. Returns the new ids
    /// in file order.
    pub fn import_keys(&self, keys: Vec<ImportedKey>) -> Result<Vec<String>, ConfigError> {
        let now = SystemTime::now();
        let mut loaded = self.inner.loaded.write();
        let existing = loaded.config.keys().len();
        let customers = loaded.config.customers().iter().map(|c| Customer::clone(c)).collect();
        let (stage, plans, mut keys, previous) = loaded.config.clone().with_imported_keys(keys)?.into_parts();
        let ids = keys[existing..]
            .iter_mut()
            .map(|(_, key)| {
                *key = key.clone().with_created(now).with_last_updated(now);
                key.id().to_owned()
            })
            .collect();
        let plans = plans.into_iter().map(Arc::unwrap_or_clone).collect();
        let parts = Parts { stage, plans, keys, previous, customers };
        *loaded = Loaded::new(parts.assemble()?);
        drop(loaded);
        self.inner.invalidation.invalidate();
        Ok(ids)
    }

    /// Deletes a key (and its old values).
    pub fn delete_key(&self, id: &str) -> Result<(), ConfigError> {
        self.edit(|p| {
            let before = p.keys.len();
            p.keys.retain(|(_, k)| k.id() != id);
            if p.keys.len() == before {
                return Err(unknown("key_id", "key", id));
            }
            Ok(())
        })
    }

    /// Puts a key into a plan (at most one plan per stage, as in a file).
    pub fn add_key_to_plan(&self, key_id: &str, plan_id: &str) -> Result<(), ConfigError> {
        self.edit_key(key_id, |k| if k.plan_ids().iter().any(|p| &**p == plan_id) { k } else { k.plan(plan_id) })
    }

    /// Takes a key out of a plan.
    pub fn remove_key_from_plan(&self, key_id: &str, plan_id: &str) -> Result<(), ConfigError> {
        self.edit(|p| {
            let (_, key) =
                p.keys.iter_mut().find(|(_, k)| k.id() == key_id).ok_or_else(|| unknown("key_id", "key", key_id))?;
            if !key.plan_ids().iter().any(|id| &**id == plan_id) {
                return Err(unknown("plan_id", "plan of this key", plan_id));
            }
            *key = key.clone().without_plan(plan_id);
            Ok(())
        })
    }
}

impl KeyStore for InMemoryKeyStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.get(presented))
    }

    fn stage(&self) -> Option<Stage> {
        Some(self.inner.loaded.read().config.stage().clone())
    }

    fn invalidation(&self) -> Option<Invalidation> {
        Some(self.inner.invalidation.clone())
    }
}

mod manage;
#[cfg(test)]
mod tests;

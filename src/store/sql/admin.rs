//! [`ManagedKeyStore`] for [`SqlKeyStore`]: the admin API's operations, each one transaction,
//! with the semantics and errors of [`InMemoryKeyStore`](crate::InMemoryKeyStore)'s.

use super::customers::{read_customer, CustomerWrite};
use super::limits::customer_columns;
use super::write::{self, Changed, PlanWrite, Tx};
use super::{get, key_from_row, unix_now, Backend, PlanRows, SqlKeyStore, SqlStoreError, SqlStoreErrorKind};
use crate::import::ImportedKey;
use crate::keys::KeyHash;
use crate::model::{ApiKey, Customer, KeySecret, UsagePlan};
use crate::store::manage::{
    no_customer, CustomerQuery, KeyChange, KeyQuery, Listing, ManageError, ManagedKeyStore, PlanChange, PlanQuery,
    StoredKey,
};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

fn no_plan(id: &str) -> ManageError {
    ManageError::not_found("usagePlanId", format!("no usage plan has the id {id:?}"))
}

fn no_key(id: &str) -> ManageError {
    ManageError::not_found("keyId", format!("no API key has the id {id:?}"))
}

fn db(what: &str) -> impl Fn(sqlx::Error) -> ManageError + '_ {
    move |e| SqlStoreError::db(what, e).into()
}

/// `text` is not empty (as a file's ids must not be).
fn nonempty(field: &str, text: &str) -> Result<(), ManageError> {
    match text.trim().is_empty() {
        true => Err(ManageError::invalid(field, "must not be empty")),
        false => Ok(()),
    }
}

/// The collation that orders ids by their bytes (as Rust does, and as paging needs on every
/// database): PostgreSQL's "C"; SQLite's default (BINARY) already does.
fn bytewise(tx: &mut Tx<'_>) -> &'static str {
    match Backend::of(tx) {
        Backend::Postgres => " COLLATE \"C\"",
        Backend::Sqlite | Backend::Other => "",
    }
}

/// Whether a row with this id exists in `table`.
async fn exists(tx: &mut Tx<'_>, table: &str, id: &str) -> Result<bool, ManageError> {
    let found = sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("find a row"))?;
    Ok(found.is_some())
}

/// A page of ids: the SQL conditions so far (`conditions`, with `$n` placeholders for `binds`)
/// plus the position, ordered and limited to one more than the page (the next page's first).
fn page_sql(
    select: &str,
    column: &str,
    c: &str,
    mut conditions: Vec<String>,
    binds: &mut Vec<String>,
    position: Option<&str>,
    limit: usize,
) -> String {
    if let Some(p) = position {
        binds.push(p.to_owned());
        conditions.push(format!("{column}{c} >= ${}", binds.len()));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    format!("{select}{filter} ORDER BY {column}{c} LIMIT {}", limit.saturating_add(1))
}

impl ManagedKeyStore for SqlKeyStore {
    async fn create_usage_plan(&self, plan: UsagePlan) -> Result<UsagePlan, ManageError> {
        nonempty("plan_id", plan.id())?;
        let changed = Changed::all(&self.invalidation);
        let mut tx = self.pool.begin().await.map_err(db("create_usage_plan"))?;
        write::write_plan(&mut tx, &plan, PlanWrite::Create).await?;
        let stored = write::read_plan(&mut tx, plan.id()).await?.ok_or_else(|| no_plan(plan.id()))?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("create_usage_plan"))?;
        Ok(stored)
    }

    async fn get_usage_plan(&self, id: &str) -> Result<Option<UsagePlan>, ManageError> {
        Ok(self.get_plan(id).await?)
    }

    async fn get_usage_plans(&self, query: PlanQuery) -> Result<Listing<UsagePlan>, ManageError> {
        let mut tx = self.pool.begin().await.map_err(db("get_usage_plans"))?;
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some(key) = query.key_id() {
            if !exists(&mut tx, "usage_plans_keys", key).await? {
                return Err(no_key(key));
            }
            binds.push(key.to_owned());
            conditions.push("pk.key_id = $1".to_owned());
        }
        let c = bytewise(&mut tx);
        let from = match query.key_id() {
            Some(_) => "SELECT p.id FROM usage_plans_plans p JOIN usage_plans_plan_keys pk ON pk.plan_id = p.id",
            None => "SELECT p.id FROM usage_plans_plans p",
        };
        let page = page_sql(from, "p.id", c, conditions, &mut binds, query.position(), query.limit());
        let sql = format!(
            "SELECT {} FROM usage_plans_plans p {} WHERE p.id IN (SELECT id FROM ({page}) AS page) {}",
            plan_columns!(),
            plan_joins!(),
            plan_order!()
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db("get_usage_plans"))?;
        tx.commit().await.map_err(db("get_usage_plans"))?;
        let mut plans = PlanRows::default();
        for row in &rows {
            plans.push(row, 0)?;
        }
        let mut plans = plans.finish();
        let position = match plans.len() > query.limit() {
            true => plans.pop().map(|p| p.id().to_owned()),
            false => None,
        };
        Ok(Listing::new(plans, position))
    }

    async fn update_usage_plan(&self, id: &str, change: PlanChange) -> Result<UsagePlan, ManageError> {
        let changed = Changed::all(&self.invalidation);
        let mut tx = self.pool.begin().await.map_err(db("update_usage_plan"))?;
        write::lock_memberships(&mut tx).await.map_err(db("update_usage_plan"))?;
        let plan = write::read_plan(&mut tx, id).await?.ok_or_else(|| no_plan(id))?;
        let new = change(plan)?;
        if new.id() != id {
            return Err(ManageError::invalid("plan_id", "a plan's id cannot be changed"));
        }
        write::write_plan(&mut tx, &new, PlanWrite::Put).await?;
        let stored = write::read_plan(&mut tx, id).await?.ok_or_else(|| no_plan(id))?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("update_usage_plan"))?;
        Ok(stored)
    }

    async fn delete_usage_plan(&self, id: &str) -> Result<(), ManageError> {
        match self.delete_plan(id).await {
            Err(e) if e.kind() == SqlStoreErrorKind::NotFound => Err(no_plan(id)),
            other => Ok(other?),
        }
    }

    async fn create_api_key(&self, key: ApiKey, value: KeySecret) -> Result<ApiKey, ManageError> {
        nonempty("key_id", key.id())?;
        write::check_key(&key)?;
        let id = key.id();
        let changed = Changed::key(&self.invalidation, id);
        let mut tx = self.pool.begin().await.map_err(db("create_api_key"))?;
        write::insert_key_row(&mut tx, &key).await?;
        write::insert_value(&mut tx, id, &value, unix_now()).await?;
        for (i, plan) in key.plan_ids().iter().enumerate() {
            write::add_member(&mut tx, id, plan, &format!("plans[{i}]")).await?;
        }
        let stored = write::read_key(&mut tx, id).await?.ok_or_else(|| no_key(id))?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("create_api_key"))?;
        Ok(stored)
    }

    async fn import_api_keys(&self, keys: Vec<ImportedKey>) -> Result<Vec<String>, ManageError> {
        // Many new keys: one notice about every key (a new key outdates only "unknown" answers).
        let changed = Changed::all(&self.invalidation);
        let now = SystemTime::now();
        let mut tx = self.pool.begin().await.map_err(db("import_api_keys"))?;
        write::lock_memberships(&mut tx).await.map_err(db("import_api_keys"))?;
        let mut ids = Vec::with_capacity(keys.len());
        let mut taken: HashSet<String> = HashSet::new();
        let mut lines: HashMap<String, u64> = HashMap::new();
        for imported in keys {
            let line = imported.line;
            let id = loop {
                let id = crate::keys::generate_id();
                if !taken.contains(&id) && !exists(&mut tx, "usage_plans_keys", &id).await? {
                    break id;
                }
            };
            taken.insert(id.clone());
            let (value, key) = imported.into_api_key(id.as_str());
            let key = key.with_created(now).with_last_updated(now);
            let column = |name: &str| format!("line {line}, column {name}");
            let hash = KeyHash::of(value.expose()).to_hex();
            if let Some(first) = lines.insert(hash.clone(), line) {
                return Err(ManageError::conflict(column("Key"), format!("the same value as line {first}")));
            }
            let owner = sqlx::query("SELECT key_id FROM usage_plans_key_values WHERE hash = $1")
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("import_api_keys"))?;
            if let Some(row) = owner {
                let other: String = get(&row, 0)?;
                return Err(ManageError::conflict(column("Key"), format!("the same value as key {other:?}")));
            }
            // The key is new: only its own plans can share a stage. Told as the in-memory store
            // tells it (the key's id, made up here, would mean nothing to the caller).
            let mut stages: HashMap<(String, String), &str> = HashMap::new();
            for plan_id in key.plan_ids() {
                let Some(plan) = write::read_plan(&mut tx, plan_id).await? else {
                    return Err(ManageError::not_found(
                        column("UsagePlanIds"),
                        format!("no plan has the id {plan_id:?}"),
                    ));
                };
                for s in plan.stages() {
                    let stage = (s.api().to_owned(), s.stage_name().to_owned());
                    match stages.insert(stage, plan_id) {
                        Some(other) if other != &**plan_id => {
                            let reason = format!(
                                "plans {other:?} and {plan_id:?} both apply to stage {}/{}; a key may belong to at most \
                                 one plan per stage",
                                s.api(),
                                s.stage_name()
                            );
                            return Err(ManageError::conflict(column("UsagePlanIds"), reason));
                        }
                        _ => {}
                    }
                }
            }
            write::insert_key_row(&mut tx, &key).await?;
            write::insert_value(&mut tx, &id, &value, super::unix_secs(now)).await?;
            for plan in key.plan_ids() {
                write::add_member(&mut tx, &id, plan, "").await.map_err(|e| match e.kind() {
                    SqlStoreErrorKind::NotFound => {
                        ManageError::not_found(column("UsagePlanIds"), format!("no plan has the id {plan:?}"))
                    }
                    SqlStoreErrorKind::Conflict => ManageError::conflict(column("UsagePlanIds"), e.to_string()),
                    _ => e.into(),
                })?;
            }
            ids.push(id);
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("import_api_keys"))?;
        Ok(ids)
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<StoredKey>, ManageError> {
        Ok(self.get_key(id).await?.map(|k| StoredKey::new(k, None)))
    }

    async fn get_api_keys(&self, query: KeyQuery) -> Result<Listing<StoredKey>, ManageError> {
        let mut tx = self.pool.begin().await.map_err(db("get_api_keys"))?;
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some(plan) = query.plan_id() {
            if !exists(&mut tx, "usage_plans_plans", plan).await? {
                return Err(no_plan(plan));
            }
            binds.push(plan.to_owned());
            conditions
                .push(format!("k.id IN (SELECT key_id FROM usage_plans_plan_keys WHERE plan_id = ${})", binds.len()));
        }
        if !query.name_prefix().is_empty() {
            // Not LIKE: `%` and `_` in the prefix are plain characters.
            binds.push(query.name_prefix().to_owned());
            let n = binds.len();
            conditions.push(format!("substr(k.name, 1, length(${n})) = ${n}"));
        }
        if let Some(customer) = query.customer_id() {
            binds.push(customer.to_owned());
            conditions.push(format!("k.customer_id = ${}", binds.len()));
        }
        let c = bytewise(&mut tx);
        let select = concat!("SELECT ", key_columns!(), " FROM usage_plans_keys k");
        let sql = page_sql(select, "k.id", c, conditions, &mut binds, query.position(), query.limit());
        let mut q = sqlx::query(&sql).persistent(false);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db("get_api_keys"))?;
        let mut position = None;
        let mut ids: Vec<String> = rows.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
        let rows = match ids.len() > query.limit() {
            true => {
                position = ids.pop();
                &rows[..query.limit()]
            }
            false => &rows[..],
        };
        let mut plans: HashMap<String, Vec<String>> = HashMap::new();
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            let sql =
                format!("SELECT key_id, plan_id FROM usage_plans_plan_keys WHERE key_id{c} >= $1 AND key_id{c} <= $2");
            let members = sqlx::query(&sql)
                .bind(first.as_str())
                .bind(last.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db("get_api_keys"))?;
            for row in &members {
                plans.entry(get(row, 0)?).or_default().push(get(row, 1)?);
            }
        }
        tx.commit().await.map_err(db("get_api_keys"))?;
        let mut items = Vec::with_capacity(rows.len());
        for (row, id) in rows.iter().zip(&ids) {
            let mut of_key = plans.remove(id).unwrap_or_default();
            of_key.sort();
            items.push(StoredKey::new(key_from_row(row, None, of_key.iter().map(String::as_str))?, None));
        }
        Ok(Listing::new(items, position))
    }

    async fn update_api_key(&self, id: &str, change: KeyChange) -> Result<ApiKey, ManageError> {
        let changed = Changed::key(&self.invalidation, id);
        let mut tx = self.pool.begin().await.map_err(db("update_api_key"))?;
        write::lock_memberships(&mut tx).await.map_err(db("update_api_key"))?;
        let key = write::read_key(&mut tx, id).await?.ok_or_else(|| no_key(id))?;
        let new = change(key)?.with_last_updated(SystemTime::now());
        if new.id() != id {
            return Err(ManageError::invalid("key_id", "a key's id cannot be changed"));
        }
        write::check_key(&new)?;
        write::update_key_row(&mut tx, &new).await?;
        let stored = write::read_key(&mut tx, id).await?.ok_or_else(|| no_key(id))?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("update_api_key"))?;
        Ok(stored)
    }

    async fn delete_api_key(&self, id: &str) -> Result<(), ManageError> {
        match self.delete_key(id).await {
            Err(e) if e.kind() == SqlStoreErrorKind::NotFound => Err(no_key(id)),
            other => Ok(other?),
        }
    }

    async fn create_usage_plan_key(&self, plan_id: &str, key_id: &str) -> Result<(), ManageError> {
        let changed = Changed::key(&self.invalidation, key_id);
        let mut tx = self.pool.begin().await.map_err(db("create_usage_plan_key"))?;
        write::lock_memberships(&mut tx).await.map_err(db("create_usage_plan_key"))?;
        member_check(&mut tx, plan_id, key_id).await?;
        let member = sqlx::query("SELECT 1 FROM usage_plans_plan_keys WHERE plan_id = $1 AND key_id = $2")
            .bind(plan_id)
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("create_usage_plan_key"))?;
        if member.is_some() {
            return Err(ManageError::conflict("keyId", "the API key is already in the usage plan"));
        }
        write::add_member(&mut tx, key_id, plan_id, "keyId").await?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("create_usage_plan_key"))
    }

    async fn delete_usage_plan_key(&self, plan_id: &str, key_id: &str) -> Result<(), ManageError> {
        let changed = Changed::key(&self.invalidation, key_id);
        let mut tx = self.pool.begin().await.map_err(db("delete_usage_plan_key"))?;
        member_check(&mut tx, plan_id, key_id).await?;
        let deleted = sqlx::query("DELETE FROM usage_plans_plan_keys WHERE plan_id = $1 AND key_id = $2")
            .bind(plan_id)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(db("delete_usage_plan_key"))?;
        if deleted.rows_affected() == 0 {
            return Err(ManageError::not_found("keyId", "the API key is not in the usage plan"));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db("delete_usage_plan_key"))
    }

    async fn create_customer(&self, customer: Customer) -> Result<Customer, ManageError> {
        self.change_customer(&customer, CustomerWrite::Create).await?;
        Ok(customer)
    }

    async fn put_customer(&self, customer: Customer) -> Result<Customer, ManageError> {
        self.change_customer(&customer, CustomerWrite::Put).await?;
        Ok(customer)
    }

    async fn get_customer(&self, id: &str) -> Result<Option<Customer>, ManageError> {
        let mut conn = self.pool.acquire().await.map_err(db("get_customer"))?;
        Ok(read_customer(&mut conn, id).await?)
    }

    async fn get_customers(&self, query: CustomerQuery) -> Result<Listing<Customer>, ManageError> {
        let mut tx = self.pool.begin().await.map_err(db("get_customers"))?;
        let c = bytewise(&mut tx);
        let mut binds = Vec::new();
        let select = concat!("SELECT ", customer_columns!(), " FROM usage_plans_customers c");
        let sql = page_sql(select, "c.id", c, Vec::new(), &mut binds, query.position(), query.limit());
        let mut q = sqlx::query(&sql).persistent(false);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db("get_customers"))?;
        tx.commit().await.map_err(db("get_customers"))?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.extend(super::limits::customer_from_row(row, 0)?);
        }
        let position = match items.len() > query.limit() {
            true => items.pop().map(|c| c.id().to_owned()),
            false => None,
        };
        Ok(Listing::new(items, position))
    }

    async fn delete_customer(&self, id: &str) -> Result<(), ManageError> {
        match SqlKeyStore::delete_customer(self, id).await {
            Err(e) if e.kind() == SqlStoreErrorKind::NotFound => Err(no_customer(id)),
            other => Ok(other?),
        }
    }
}

/// Plan `plan_id` and key `key_id` exist.
async fn member_check(tx: &mut Tx<'_>, plan_id: &str, key_id: &str) -> Result<(), ManageError> {
    if !exists(tx, "usage_plans_plans", plan_id).await? {
        return Err(no_plan(plan_id));
    }
    if !exists(tx, "usage_plans_keys", key_id).await? {
        return Err(no_key(key_id));
    }
    Ok(())
}

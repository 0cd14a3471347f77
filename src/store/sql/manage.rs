//! Managing plans and keys: writes, each in one transaction, and reads by id.

use super::write::{self, Changed, PlanWrite};
use super::{unix_now, unix_secs, SqlKeyStore, SqlStoreError};
use crate::keys;
use crate::model::{ApiKey, KeySecret, UsagePlan};
use std::time::{Duration, SystemTime};

impl SqlKeyStore {
    /// Inserts `plan`, or replaces the plan with its id (limits, stages, method throttles,
    /// product code, tags); its keys stay in it.
    ///
    /// A plan without [`created`](UsagePlan::created) time gets the current time when inserted
    /// and keeps its stored one when replaced (the quota `offset` applies to that period).
    /// Times are stored in whole seconds.
    ///
    /// Errors: [`Invalid`](super::SqlStoreErrorKind::Invalid) if the plan lists a stage twice,
    /// its method throttles conflict or its tags break API Gateway's limits,
    /// [`Conflict`](super::SqlStoreErrorKind::Conflict) if one of its keys would then be in two
    /// plans bound to the same stage.
    pub async fn put_plan(&self, plan: &UsagePlan) -> Result<(), SqlStoreError> {
        // Layers built on this store (and, through the change feed, on other replicas)
        // revalidate every key once the change is made.
        let changed = Changed::all(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("put_plan {:?}", plan.id()), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write::write_plan(&mut tx, plan, PlanWrite::Put).await?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Deletes a plan; its keys leave it (and stay).
    pub async fn delete_plan(&self, id: &str) -> Result<(), SqlStoreError> {
        let changed = Changed::all(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("delete_plan {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write::lock_memberships(&mut tx).await.map_err(db)?;
        let mut deleted = 0;
        for table in
            ["usage_plans_plan_keys", "usage_plans_method_throttles", "usage_plans_plan_stages", "usage_plans_plans"]
        {
            let column = if table == "usage_plans_plans" { "id" } else { "plan_id" };
            let sql = format!("DELETE FROM {table} WHERE {column} = $1");
            deleted = sqlx::query(&sql).bind(id).execute(&mut *tx).await.map_err(db)?.rows_affected();
        }
        if deleted == 0 {
            return Err(SqlStoreError::not_found("plan_id", format!("no plan with id {id:?}")));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// The plan with this id, as [`lookup`](crate::KeyStore::lookup) returns it.
    pub async fn get_plan(&self, id: &str) -> Result<Option<UsagePlan>, SqlStoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| SqlStoreError::db(format!("get_plan {id:?}"), e))?;
        write::read_plan(&mut conn, id).await
    }

    /// Creates a key with a new generated value ([`keys::generate`]) and returns the value: the
    /// only time it is seen, since the store keeps its hash. The key joins the plans it lists.
    pub async fn create_key(&self, key: ApiKey) -> Result<KeySecret, SqlStoreError> {
        let secret = keys::generate();
        self.insert_key(key, &secret).await?;
        Ok(secret)
    }

    /// Creates a key with an existing value (e.g. imported from elsewhere); stores its hash.
    /// The key joins the plans it lists. Its [`created`](ApiKey::created) time (now if it has
    /// none), [`last_updated`](ApiKey::last_updated) time and tags are stored with it.
    ///
    /// Errors: [`Conflict`](super::SqlStoreErrorKind::Conflict) if the id or the value is taken
    /// or two of its plans share a stage, [`NotFound`](super::SqlStoreErrorKind::NotFound) for an
    /// unknown plan (field `plans[i]`), [`Invalid`](super::SqlStoreErrorKind::Invalid) for tags
    /// beyond API Gateway's limits.
    pub async fn insert_key(&self, key: ApiKey, value: &KeySecret) -> Result<(), SqlStoreError> {
        let changed = Changed::key(&self.invalidation, key.id());
        write::check_key(&key)?;
        let id = key.id();
        let db = |e| SqlStoreError::db(format!("insert_key {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write::insert_key_row(&mut tx, &key).await?;
        write::insert_value(&mut tx, id, value, unix_now()).await?;
        for (i, plan) in key.plan_ids().iter().enumerate() {
            write::add_member(&mut tx, id, plan, &format!("plans[{i}]")).await?;
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// The key with this id (expiry: the key's own, not its values'), with its plan ids.
    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, SqlStoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| SqlStoreError::db(format!("get_key {id:?}"), e))?;
        write::read_key(&mut conn, id).await
    }

    /// Enables or disables a key (a disabled key gets 403). Sets its
    /// [`last_updated`](ApiKey::last_updated) time to now.
    pub async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), SqlStoreError> {
        let sql = "UPDATE usage_plans_keys SET enabled = $2, last_updated_at = $3 WHERE id = $1";
        self.update_key(id, "set_key_enabled", sql, enabled).await
    }

    /// Sets or clears a key's expiry (whole seconds): from then on all its values get 403. Sets
    /// its [`last_updated`](ApiKey::last_updated) time to now.
    pub async fn set_key_expiry(&self, id: &str, expires: Option<SystemTime>) -> Result<(), SqlStoreError> {
        let sql = "UPDATE usage_plans_keys SET expires_at = $2, last_updated_at = $3 WHERE id = $1";
        self.update_key(id, "set_key_expiry", sql, expires.map(unix_secs)).await
    }

    async fn update_key<T>(&self, id: &str, what: &str, sql: &str, value: T) -> Result<(), SqlStoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send,
    {
        let changed = Changed::key(&self.invalidation, id);
        let db = |e| SqlStoreError::db(format!("{what} {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let result = sqlx::query(sql)
            .persistent(false) // optional values, see write_plan
            .bind(id)
            .bind(value)
            .bind(unix_now())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if result.rows_affected() == 0 {
            return Err(SqlStoreError::not_found("key_id", format!("no key with id {id:?}")));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Deletes a key with all its values and plan memberships.
    pub async fn delete_key(&self, id: &str) -> Result<(), SqlStoreError> {
        let changed = Changed::key(&self.invalidation, id);
        let db = |e| SqlStoreError::db(format!("delete_key {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut deleted = 0;
        for sql in [
            "DELETE FROM usage_plans_plan_keys WHERE key_id = $1",
            "DELETE FROM usage_plans_key_values WHERE key_id = $1",
            "DELETE FROM usage_plans_keys WHERE id = $1",
        ] {
            deleted = sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db)?.rows_affected();
        }
        if deleted == 0 {
            return Err(SqlStoreError::not_found("key_id", format!("no key with id {id:?}")));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Adds a key to a plan (nothing to do if it is in it already).
    ///
    /// Errors: [`NotFound`](super::SqlStoreErrorKind::NotFound) for an unknown key or plan,
    /// [`Conflict`](super::SqlStoreErrorKind::Conflict) if the key is in another plan bound to
    /// one of this plan's stages (a key has at most one plan per stage).
    pub async fn add_key_to_plan(&self, key_id: &str, plan_id: &str) -> Result<(), SqlStoreError> {
        let changed = Changed::key(&self.invalidation, key_id);
        let db = |e| SqlStoreError::db(format!("add_key_to_plan {key_id:?} {plan_id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write::key_exists(&mut tx, key_id).await?;
        write::add_member(&mut tx, key_id, plan_id, "plan_id").await?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Takes a key out of a plan.
    pub async fn remove_key_from_plan(&self, key_id: &str, plan_id: &str) -> Result<(), SqlStoreError> {
        let changed = Changed::key(&self.invalidation, key_id);
        let db = |e| SqlStoreError::db(format!("remove_key_from_plan {key_id:?} {plan_id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let result = sqlx::query("DELETE FROM usage_plans_plan_keys WHERE key_id = $1 AND plan_id = $2")
            .bind(key_id)
            .bind(plan_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if result.rows_affected() == 0 {
            return Err(SqlStoreError::not_found("plan_id", format!("key {key_id:?} is not in plan {plan_id:?}")));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Gives a key a new generated value and returns it; the key's other current values keep
    /// working for `overlap` (or until their earlier expiry), then only the new one does.
    /// Uses the system clock; see [`rotate_key_at`](Self::rotate_key_at).
    ///
    /// Layers built on this store see the change on their next request (the store's
    /// [`Invalidation`](crate::Invalidation)), as for every change made through it.
    pub async fn rotate_key(&self, id: &str, overlap: Duration) -> Result<KeySecret, SqlStoreError> {
        self.rotate_key_at(id, overlap, SystemTime::now()).await
    }

    /// [`rotate_key`](Self::rotate_key) as if the time were `now`: the other values of the key
    /// that have not expired by `now` expire at `now + overlap` (whole seconds), unless they
    /// expire earlier already.
    pub async fn rotate_key_at(
        &self,
        id: &str,
        overlap: Duration,
        now: SystemTime,
    ) -> Result<KeySecret, SqlStoreError> {
        let changed = Changed::key(&self.invalidation, id);
        let db = |e| SqlStoreError::db(format!("rotate_key {id:?}"), e);
        let secret = keys::generate();
        let until = now.checked_add(overlap).map_or(i64::MAX, unix_secs);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write::key_exists(&mut tx, id).await?;
        sqlx::query(
            "UPDATE usage_plans_key_values SET expires_at = $1 \
             WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(until)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        write::insert_value(&mut tx, id, &secret, unix_secs(now)).await?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(secret)
    }
}

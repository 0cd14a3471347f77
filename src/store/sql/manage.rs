//! Managing plans and keys: writes, each in one transaction, and reads by id.

use super::{get, key_from_row, unix_now, unix_secs, Backend, PlanRows, SqlKeyStore, SqlStoreError};
use crate::keys::{self, KeyHash};
use crate::model::{ApiKey, KeySecret, QuotaPeriod, UsagePlan};
use sqlx::{Any, Transaction};
use std::time::{Duration, SystemTime};

/// Bumps the store's invalidation handle when a change ends (after its commit; a failed change
/// costs only a revalidation).
struct Changed<'a>(&'a crate::store::Invalidation);

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

/// Another plan of key `$1` (not `$2`) bound to a stage plan `$2` is bound to.
const KEY_STAGE_CONFLICT: &str = "SELECT o.plan_id, o.api, o.stage FROM usage_plans_plan_keys pk \
    JOIN usage_plans_plan_stages o ON o.plan_id = pk.plan_id \
    JOIN usage_plans_plan_stages n ON n.api = o.api AND n.stage = o.stage \
    WHERE pk.key_id = $1 AND n.plan_id = $2 AND pk.plan_id <> $2";

/// A key of plan `$1` that is also in another plan bound to one of `$1`'s stages.
const PLAN_STAGE_CONFLICT: &str = "SELECT pk.key_id, o.plan_id, o.api, o.stage FROM usage_plans_plan_keys pk \
    JOIN usage_plans_plan_keys other ON other.key_id = pk.key_id AND other.plan_id <> pk.plan_id \
    JOIN usage_plans_plan_stages o ON o.plan_id = other.plan_id \
    JOIN usage_plans_plan_stages n ON n.plan_id = pk.plan_id AND n.api = o.api AND n.stage = o.stage \
    WHERE pk.plan_id = $1";

impl SqlKeyStore {
    /// Inserts `plan`, or replaces the plan with its id (limits, stages, method throttles);
    /// its keys stay in it.
    ///
    /// A plan without [`created`](UsagePlan::created) time gets the current time when inserted
    /// and keeps its stored one when replaced (the quota `offset` applies to that period).
    /// Times are stored in whole seconds.
    ///
    /// Errors: [`Invalid`](super::SqlStoreErrorKind::Invalid) if the plan lists a stage twice,
    /// [`Conflict`](super::SqlStoreErrorKind::Conflict) if one of its keys would then be in two
    /// plans bound to the same stage.
    pub async fn put_plan(&self, plan: &UsagePlan) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let stages = plan.stages();
        for (i, s) in stages.iter().enumerate() {
            if stages[..i].iter().any(|o| o.api() == s.api() && o.stage_name() == s.stage_name()) {
                return Err(SqlStoreError::new(
                    super::SqlStoreErrorKind::Invalid,
                    format!("stages[{i}]"),
                    format!("stage {}/{} is listed twice in plan {:?}", s.api(), s.stage_name(), plan.id()),
                ));
            }
        }
        let id = plan.id();
        let db = |e| SqlStoreError::db(format!("put_plan {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_memberships(&mut tx).await.map_err(db)?;
        let throttle = plan.throttle();
        let quota = plan.quota();
        let period = quota.map(|q| match q.period() {
            QuotaPeriod::Day => "DAY",
            QuotaPeriod::Week => "WEEK",
            QuotaPeriod::Month => "MONTH",
        });
        sqlx::query(
            "INSERT INTO usage_plans_plans (id, name, description, throttle_rate, throttle_burst, quota_limit, \
             quota_period, quota_offset, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, \
             throttle_rate = excluded.throttle_rate, throttle_burst = excluded.throttle_burst, \
             quota_limit = excluded.quota_limit, quota_period = excluded.quota_period, \
             quota_offset = excluded.quota_offset, \
             created_at = CASE WHEN $10 THEN excluded.created_at ELSE usage_plans_plans.created_at END",
        )
        // Not a prepared statement kept per connection: through sqlx's `Any` driver, a NULL and a
        // value of an optional column are sent with different types, which a statement
        // prepared for the other one rejects ("incorrect binary data format").
        .persistent(false)
        .bind(id)
        .bind(plan.name())
        .bind(plan.description())
        .bind(throttle.map(|t| t.rate()))
        .bind(throttle.map(|t| i64::from(t.burst())))
        .bind(quota.map(|q| q.limit() as i64))
        .bind(period)
        .bind(quota.map(|q| q.offset() as i64))
        .bind(plan.created().map_or_else(unix_now, unix_secs))
        .bind(plan.created().is_some())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for table in ["usage_plans_method_throttles", "usage_plans_plan_stages"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE plan_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (i, s) in stages.iter().enumerate() {
            sqlx::query("INSERT INTO usage_plans_plan_stages (plan_id, api, stage, position) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(s.api())
                .bind(s.stage_name())
                .bind(i as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            for (j, (method, t)) in s.methods().iter().enumerate() {
                sqlx::query(
                    "INSERT INTO usage_plans_method_throttles (plan_id, api, stage, method, rate, burst, position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(s.api())
                .bind(s.stage_name())
                .bind(method.to_string())
                .bind(t.rate())
                .bind(i64::from(t.burst()))
                .bind(j as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        let conflict = sqlx::query(PLAN_STAGE_CONFLICT).bind(id).fetch_optional(&mut *tx).await.map_err(db)?;
        if let Some(row) = conflict {
            let (key, other, api, stage): (String, String, String, String) =
                (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
            return Err(SqlStoreError::conflict(
                "stages",
                format!(
                    "key {key:?} is in plans {id:?} and {other:?}, which would both be bound to stage {api}/{stage}"
                ),
            ));
        }
        tx.commit().await.map_err(db)
    }

    /// Deletes a plan; its keys leave it (and stay).
    pub async fn delete_plan(&self, id: &str) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("delete_plan {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
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
        tx.commit().await.map_err(db)
    }

    /// The plan with this id, as [`lookup`](crate::KeyStore::lookup) returns it.
    pub async fn get_plan(&self, id: &str) -> Result<Option<UsagePlan>, SqlStoreError> {
        const QUERY: &str = concat!(
            "SELECT ",
            plan_columns!(),
            " FROM usage_plans_plans p ",
            plan_joins!(),
            " WHERE p.id = $1 ",
            plan_order!()
        );
        let rows = sqlx::query(QUERY)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| SqlStoreError::db(format!("get_plan {id:?}"), e))?;
        let mut plans = PlanRows::default();
        for row in &rows {
            plans.push(row, 0)?;
        }
        Ok(plans.finish().pop())
    }

    /// Creates a key with a new generated value ([`keys::generate`]) and returns the value: the
    /// only time it is seen, since the store keeps its hash. The key joins the plans it lists.
    pub async fn create_key(&self, key: ApiKey) -> Result<KeySecret, SqlStoreError> {
        let secret = keys::generate();
        self.insert_key(key, &secret).await?;
        Ok(secret)
    }

    /// Creates a key with an existing value (e.g. imported from elsewhere); stores its hash.
    /// The key joins the plans it lists.
    ///
    /// Errors: [`Conflict`](super::SqlStoreErrorKind::Conflict) if the id or the value is taken
    /// or two of its plans share a stage, [`NotFound`](super::SqlStoreErrorKind::NotFound) for an
    /// unknown plan (field `plans[i]`).
    pub async fn insert_key(&self, key: ApiKey, value: &KeySecret) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let id = key.id();
        let db = |e| SqlStoreError::db(format!("insert_key {id:?}"), e);
        let now = unix_now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO usage_plans_keys (id, name, description, enabled, customer_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .persistent(false) // optional values, see put_plan
        .bind(id)
        .bind(key.name())
        .bind(key.description())
        .bind(key.is_enabled())
        .bind(key.customer_id())
        .bind(key.expires().map(unix_secs))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match SqlStoreError::is_unique_violation(&e) {
            true => SqlStoreError::conflict("id", format!("a key with id {id:?} already exists")),
            false => db(e),
        })?;
        insert_value(&mut tx, id, value, now).await?;
        for (i, plan) in key.plan_ids().iter().enumerate() {
            add_member(&mut tx, id, plan, &format!("plans[{i}]")).await?;
        }
        tx.commit().await.map_err(db)
    }

    /// The key with this id (expiry: the key's own, not its values'), with its plan ids.
    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, SqlStoreError> {
        let db = |e| SqlStoreError::db(format!("get_key {id:?}"), e);
        let row = sqlx::query(
            "SELECT id, name, description, CASE WHEN enabled THEN 1 ELSE 0 END, customer_id, expires_at \
             FROM usage_plans_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let plans = sqlx::query("SELECT plan_id FROM usage_plans_plan_keys WHERE key_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut plans: Vec<String> = plans.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
        plans.sort();
        key_from_row(&row, None, plans.iter().map(String::as_str)).map(Some)
    }

    /// Enables or disables a key (a disabled key gets 403).
    pub async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), SqlStoreError> {
        self.update_key(id, "set_key_enabled", "UPDATE usage_plans_keys SET enabled = $2 WHERE id = $1", enabled).await
    }

    /// Sets or clears a key's expiry (whole seconds): from then on all its values get 403.
    pub async fn set_key_expiry(&self, id: &str, expires: Option<SystemTime>) -> Result<(), SqlStoreError> {
        let sql = "UPDATE usage_plans_keys SET expires_at = $2 WHERE id = $1";
        self.update_key(id, "set_key_expiry", sql, expires.map(unix_secs)).await
    }

    async fn update_key<T>(&self, id: &str, what: &str, sql: &str, value: T) -> Result<(), SqlStoreError>
    where
        T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send,
    {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let result = sqlx::query(sql)
            .persistent(false) // optional values, see put_plan
            .bind(id)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(|e| SqlStoreError::db(format!("{what} {id:?}"), e))?;
        match result.rows_affected() {
            0 => Err(SqlStoreError::not_found("key_id", format!("no key with id {id:?}"))),
            _ => Ok(()),
        }
    }

    /// Deletes a key with all its values and plan memberships.
    pub async fn delete_key(&self, id: &str) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
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
        tx.commit().await.map_err(db)
    }

    /// Adds a key to a plan (nothing to do if it is in it already).
    ///
    /// Errors: [`NotFound`](super::SqlStoreErrorKind::NotFound) for an unknown key or plan,
    /// [`Conflict`](super::SqlStoreErrorKind::Conflict) if the key is in another plan bound to
    /// one of this plan's stages (a key has at most one plan per stage).
    pub async fn add_key_to_plan(&self, key_id: &str, plan_id: &str) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("add_key_to_plan {key_id:?} {plan_id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        key_exists(&mut tx, key_id).await?;
        add_member(&mut tx, key_id, plan_id, "plan_id").await?;
        tx.commit().await.map_err(db)
    }

    /// Takes a key out of a plan.
    pub async fn remove_key_from_plan(&self, key_id: &str, plan_id: &str) -> Result<(), SqlStoreError> {
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let result = sqlx::query("DELETE FROM usage_plans_plan_keys WHERE key_id = $1 AND plan_id = $2")
            .bind(key_id)
            .bind(plan_id)
            .execute(&self.pool)
            .await
            .map_err(|e| SqlStoreError::db(format!("remove_key_from_plan {key_id:?} {plan_id:?}"), e))?;
        match result.rows_affected() {
            0 => Err(SqlStoreError::not_found("plan_id", format!("key {key_id:?} is not in plan {plan_id:?}"))),
            _ => Ok(()),
        }
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
        // Layers built on this store revalidate their keys once the change is made.
        let _changed = Changed(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("rotate_key {id:?}"), e);
        let secret = keys::generate();
        let until = now.checked_add(overlap).map_or(i64::MAX, unix_secs);
        let mut tx = self.pool.begin().await.map_err(db)?;
        key_exists(&mut tx, id).await?;
        sqlx::query(
            "UPDATE usage_plans_key_values SET expires_at = $1 \
             WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(until)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_value(&mut tx, id, &secret, unix_secs(now)).await?;
        tx.commit().await.map_err(db)?;
        Ok(secret)
    }
}

async fn key_exists(tx: &mut Transaction<'_, Any>, id: &str) -> Result<(), SqlStoreError> {
    let found = sqlx::query("SELECT 1 FROM usage_plans_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| SqlStoreError::db(format!("find key {id:?}"), e))?;
    found.map(drop).ok_or_else(|| SqlStoreError::not_found("key_id", format!("no key with id {id:?}")))
}

/// Stores the hash of `value` for key `id` (no expiry of its own).
async fn insert_value(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    value: &KeySecret,
    now: i64,
) -> Result<(), SqlStoreError> {
    sqlx::query("INSERT INTO usage_plans_key_values (hash, key_id, expires_at, created_at) VALUES ($1, $2, NULL, $3)")
        .bind(KeyHash::of(value.expose()).to_hex())
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| match SqlStoreError::is_unique_violation(&e) {
            true => SqlStoreError::conflict("value", "this key value is already in use"),
            false => SqlStoreError::db(format!("store a value of key {id:?}"), e),
        })?;
    Ok(())
}

/// The "one plan per key and stage" rule is checked, then written: two such changes at once
/// could each pass the check (write skew). On PostgreSQL they queue on a transaction-scoped
/// advisory lock; SQLite runs one writing transaction at a time already.
async fn lock_memberships(tx: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
    const MEMBERSHIP_LOCK: i64 = 0x7475_7073_716c_6d31;
    if Backend::of(tx) == Backend::Postgres {
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)").bind(MEMBERSHIP_LOCK).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Puts key `key_id` (which exists) into plan `plan_id`, checking the plan exists and that the
/// key has no other plan on the same stage. `field` names `plan_id` in errors.
async fn add_member(
    tx: &mut Transaction<'_, Any>,
    key_id: &str,
    plan_id: &str,
    field: &str,
) -> Result<(), SqlStoreError> {
    let db = |e| SqlStoreError::db(format!("add key {key_id:?} to plan {plan_id:?}"), e);
    lock_memberships(tx).await.map_err(db)?;
    let plan = sqlx::query("SELECT 1 FROM usage_plans_plans WHERE id = $1")
        .bind(plan_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    if plan.is_none() {
        return Err(SqlStoreError::not_found(field, format!("no plan with id {plan_id:?}")));
    }
    let conflict =
        sqlx::query(KEY_STAGE_CONFLICT).bind(key_id).bind(plan_id).fetch_optional(&mut **tx).await.map_err(db)?;
    if let Some(row) = conflict {
        let (other, api, stage): (String, String, String) = (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?);
        return Err(SqlStoreError::conflict(
            field,
            format!("key {key_id:?} is in plan {other:?}, bound to stage {api}/{stage} as plan {plan_id:?} is"),
        ));
    }
    sqlx::query("INSERT INTO usage_plans_plan_keys (plan_id, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(plan_id)
        .bind(key_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

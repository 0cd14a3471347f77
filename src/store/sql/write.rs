//! Reads and writes inside one transaction, shared by the store's own methods (`manage.rs`) and
//! the management interface (`admin.rs`): plan and key rows, plan membership with its
//! one-plan-per-stage rule, and the change notice (the local [`Invalidation`] and, on
//! PostgreSQL, the notification the other replicas' change feeds receive).

use super::limits::{check_methods, write_limits};
use super::{get, key_from_row, unix_now, unix_secs, write_tags, Backend, PlanRows, SqlStoreError, SqlStoreErrorKind};
use crate::keys::KeyHash;
use crate::model::{ApiKey, KeySecret, QuotaPeriod, UsagePlan};
use crate::store::Invalidation;
use sqlx::{Any, AnyConnection, Transaction};

pub(super) type Tx<'c> = Transaction<'c, Any>;

/// Key ids longer than this are announced as "all" (PostgreSQL's payload limit is 8000 bytes).
const MAX_ID_IN_PAYLOAD: usize = 1000;

/// Bumps the store's invalidation when a change ends (after its commit; a failed change costs
/// only a revalidation): [`invalidate_key`](Invalidation::invalidate_key) for a change of one
/// key, [`invalidate`](Invalidation::invalidate) for a change of a plan (every key).
pub(super) struct Changed<'a> {
    invalidation: &'a Invalidation,
    key: Option<String>,
}

impl<'a> Changed<'a> {
    /// A change about key `id` only.
    pub(super) fn key(invalidation: &'a Invalidation, id: &str) -> Self {
        Self { invalidation, key: Some(id.to_owned()) }
    }

    /// A change about every key (a plan changed, or many keys did).
    pub(super) fn all(invalidation: &'a Invalidation) -> Self {
        Self { invalidation, key: None }
    }

    /// Tells the other replicas (PostgreSQL: `pg_notify` in the transaction, delivered when it
    /// commits and never if it rolls back). A no-op on other databases.
    pub(super) async fn notify(&self, tx: &mut Tx<'_>) -> Result<(), SqlStoreError> {
        if Backend::of(tx) != Backend::Postgres {
            return Ok(());
        }
        let payload = match &self.key {
            Some(id) if id.len() <= MAX_ID_IN_PAYLOAD => format!("key {id}"),
            _ => "all".to_owned(),
        };
        sqlx::query(concat!("SELECT pg_notify(", channel_sql!(), ", $1)"))
            .bind(payload)
            .execute(&mut **tx)
            .await
            .map_err(|e| SqlStoreError::db("notify the change feed", e))?;
        Ok(())
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        match &self.key {
            Some(id) => self.invalidation.invalidate_key(id),
            None => self.invalidation.invalidate(),
        }
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

/// How [`write_plan`] treats an existing plan with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlanWrite {
    /// Insert, or replace (keeping the stored creation time when the plan has none).
    Put,
    /// Insert; [`Conflict`](SqlStoreErrorKind::Conflict) (field `plan_id`) if the id is taken.
    Create,
}

/// Writes `plan`: its row, stages and method throttles, then checks that none of its keys is
/// now in two plans bound to one stage. Takes the membership lock.
pub(super) async fn write_plan(tx: &mut Tx<'_>, plan: &UsagePlan, mode: PlanWrite) -> Result<(), SqlStoreError> {
    let stages = plan.stages();
    for (i, s) in stages.iter().enumerate() {
        if stages[..i].iter().any(|o| o.api() == s.api() && o.stage_name() == s.stage_name()) {
            return Err(SqlStoreError::new(
                SqlStoreErrorKind::Invalid,
                format!("stages[{i}]"),
                format!("stage {}/{} is listed twice in plan {:?}", s.api(), s.stage_name(), plan.id()),
            ));
        }
        crate::engine::check_routes(s.methods().iter().map(|(k, _)| k)).map_err(|e| {
            SqlStoreError::new(SqlStoreErrorKind::Invalid, format!("stages[{i}].methods"), e.reason().to_owned())
        })?;
    }
    crate::model::tags::check_tags(plan.tags())
        .map_err(|e| SqlStoreError::new(SqlStoreErrorKind::Invalid, e.field(), e.reason().to_owned()))?;
    let id = plan.id();
    let db = |e| SqlStoreError::db(format!("write plan {id:?}"), e);
    lock_memberships(tx).await.map_err(db)?;
    let throttle = plan.throttle();
    let quota = plan.quota();
    let period = quota.map(|q| match q.period() {
        QuotaPeriod::Day => "DAY",
        QuotaPeriod::Week => "WEEK",
        QuotaPeriod::Month => "MONTH",
    });
    let upsert = match mode {
        PlanWrite::Put => {
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, \
             throttle_rate = excluded.throttle_rate, throttle_burst = excluded.throttle_burst, \
             quota_limit = excluded.quota_limit, quota_period = excluded.quota_period, \
             quota_offset = excluded.quota_offset, product_code = excluded.product_code, tags = excluded.tags, \
             concurrency = excluded.concurrency, \
             created_at = CASE WHEN $13 THEN excluded.created_at ELSE usage_plans_plans.created_at END"
        }
        PlanWrite::Create => " ON CONFLICT DO NOTHING",
    };
    let sql = format!(
        "INSERT INTO usage_plans_plans (id, name, description, throttle_rate, throttle_burst, quota_limit, \
         quota_period, quota_offset, created_at, product_code, tags, concurrency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12){upsert}"
    );
    let query = sqlx::query(&sql)
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
        .bind(plan.product_code())
        .bind(write_tags(plan.tags()))
        .bind(plan.concurrency().map(|n| i64::from(n.get())));
    let query = match mode {
        PlanWrite::Put => query.bind(plan.created().is_some()),
        PlanWrite::Create => query,
    };
    let written = query.execute(&mut **tx).await.map_err(db)?;
    if mode == PlanWrite::Create && written.rows_affected() == 0 {
        return Err(SqlStoreError::conflict("plan_id", format!("a plan already has the id {id:?}")));
    }
    for table in ["usage_plans_method_throttles", "usage_plans_plan_stages"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE plan_id = $1"))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    for (i, s) in stages.iter().enumerate() {
        sqlx::query("INSERT INTO usage_plans_plan_stages (plan_id, api, stage, position) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(s.api())
            .bind(s.stage_name())
            .bind(i as i64)
            .execute(&mut **tx)
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
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
    }
    let conflict = sqlx::query(PLAN_STAGE_CONFLICT).bind(id).fetch_optional(&mut **tx).await.map_err(db)?;
    if let Some(row) = conflict {
        let (key, other, api, stage): (String, String, String, String) =
            (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
        return Err(SqlStoreError::conflict(
            "stages",
            format!("key {key:?} is in plans {id:?} and {other:?}, which would both be bound to stage {api}/{stage}"),
        ));
    }
    Ok(())
}

/// Inserts key `key`'s row (not its plans): its creation time, or now.
/// [`Conflict`](SqlStoreErrorKind::Conflict) (field `id`) if the id is taken.
pub(super) async fn insert_key_row(tx: &mut Tx<'_>, key: &ApiKey) -> Result<(), SqlStoreError> {
    let id = key.id();
    sqlx::query(
        "INSERT INTO usage_plans_keys (id, name, description, enabled, customer_id, expires_at, created_at, \
         last_updated_at, tags, limits) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .persistent(false) // optional values, see write_plan
    .bind(id)
    .bind(key.name())
    .bind(key.description())
    .bind(key.is_enabled())
    .bind(key.customer_id())
    .bind(key.expires().map(unix_secs))
    .bind(key.created().map_or_else(unix_now, unix_secs))
    .bind(key.last_updated().map(unix_secs))
    .bind(write_tags(key.tags()))
    .bind(write_limits(key))
    .execute(&mut **tx)
    .await
    .map_err(|e| match SqlStoreError::is_unique_violation(&e) {
        true => SqlStoreError::conflict("id", format!("a key with id {id:?} already exists")),
        false => SqlStoreError::db(format!("insert key {id:?}"), e),
    })?;
    Ok(())
}

/// Rewrites key `key`'s row (which exists) and its plan memberships; the values stay.
pub(super) async fn update_key_row(tx: &mut Tx<'_>, key: &ApiKey) -> Result<(), SqlStoreError> {
    let id = key.id();
    let db = |e| SqlStoreError::db(format!("update key {id:?}"), e);
    sqlx::query(
        "UPDATE usage_plans_keys SET name = $2, description = $3, enabled = $4, customer_id = $5, expires_at = $6, \
         created_at = COALESCE($7, created_at), last_updated_at = $8, tags = $9, limits = $10 WHERE id = $1",
    )
    .persistent(false) // optional values, see write_plan
    .bind(id)
    .bind(key.name())
    .bind(key.description())
    .bind(key.is_enabled())
    .bind(key.customer_id())
    .bind(key.expires().map(unix_secs))
    .bind(key.created().map(unix_secs))
    .bind(key.last_updated().map(unix_secs))
    .bind(write_tags(key.tags()))
    .bind(write_limits(key))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM usage_plans_plan_keys WHERE key_id = $1").bind(id).execute(&mut **tx).await.map_err(db)?;
    for (i, plan) in key.plan_ids().iter().enumerate() {
        add_member(tx, id, plan, &format!("plans[{i}]")).await?;
    }
    Ok(())
}

/// Checks `key`'s tags and its own method throttles as a file's are checked.
pub(super) fn check_key(key: &ApiKey) -> Result<(), SqlStoreError> {
    crate::model::tags::check_tags(key.tags())
        .and_then(|()| check_methods(key))
        .map_err(|e| SqlStoreError::new(SqlStoreErrorKind::Invalid, e.field(), e.reason().to_owned()))
}

pub(super) async fn key_exists(tx: &mut Tx<'_>, id: &str) -> Result<(), SqlStoreError> {
    let found = sqlx::query("SELECT 1 FROM usage_plans_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| SqlStoreError::db(format!("find key {id:?}"), e))?;
    found.map(drop).ok_or_else(|| SqlStoreError::not_found("key_id", format!("no key with id {id:?}")))
}

/// Stores the hash of `value` for key `id` (no expiry of its own).
pub(super) async fn insert_value(tx: &mut Tx<'_>, id: &str, value: &KeySecret, now: i64) -> Result<(), SqlStoreError> {
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
/// advisory lock, as do the management interface's read-change-write updates; SQLite runs one
/// writing transaction at a time already. The lock is the schema's (advisory locks are
/// database-wide): stores on the tables of other schemas do not wait for it.
pub(super) async fn lock_memberships(tx: &mut Tx<'_>) -> Result<(), sqlx::Error> {
    const MEMBERSHIP_LOCK: i32 = 0x7570_6d31;
    if Backend::of(tx) == Backend::Postgres {
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), 'public')))")
            .bind(MEMBERSHIP_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Puts key `key_id` (which exists) into plan `plan_id`, checking the plan exists and that the
/// key has no other plan on the same stage. `field` names `plan_id` in errors.
pub(super) async fn add_member(tx: &mut Tx<'_>, key_id: &str, plan_id: &str, field: &str) -> Result<(), SqlStoreError> {
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

/// Plan `id`, as a lookup returns it.
pub(super) async fn read_plan(conn: &mut AnyConnection, id: &str) -> Result<Option<UsagePlan>, SqlStoreError> {
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
        .fetch_all(conn)
        .await
        .map_err(|e| SqlStoreError::db(format!("get plan {id:?}"), e))?;
    let mut plans = PlanRows::default();
    for row in &rows {
        plans.push(row, 0)?;
    }
    Ok(plans.finish().pop())
}

/// Key `id` (expiry: the key's own, not its values'), with its plan ids in id order.
pub(super) async fn read_key(conn: &mut AnyConnection, id: &str) -> Result<Option<ApiKey>, SqlStoreError> {
    let db = |e| SqlStoreError::db(format!("get key {id:?}"), e);
    let row = sqlx::query(concat!("SELECT ", key_columns!(), " FROM usage_plans_keys k WHERE k.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let plans = sqlx::query("SELECT plan_id FROM usage_plans_plan_keys WHERE key_id = $1 ORDER BY plan_id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let mut plans: Vec<String> = plans.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
    // Byte order, the same on every database.
    plans.sort();
    key_from_row(&row, None, plans.iter().map(String::as_str)).map(Some)
}

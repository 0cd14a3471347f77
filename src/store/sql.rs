//! [`SqlKeyStore`]: keys and plans in PostgreSQL or SQLite (feature `sqlx`). The schema and an
//! example are in the type's documentation (this module is private).

/// Columns 0-16 of a plan row: the plan, one of its stages, one of that stage's method
/// throttles, then the plan's product code, tags and concurrency cap.
macro_rules! plan_columns {
    () => {
        "p.id, p.name, p.description, p.throttle_rate, p.throttle_burst, p.quota_limit, p.quota_period, \
         p.quota_offset, p.created_at, s.api, s.stage, m.method, m.rate, m.burst, p.product_code, p.tags, \
         p.concurrency"
    };
}
/// Columns 0-9 of a key row `k` (read by `key_from_row`).
macro_rules! key_columns {
    () => {
        "k.id, k.name, k.description, CASE WHEN k.enabled THEN 1 ELSE 0 END, k.customer_id, k.expires_at, \
         k.created_at, k.last_updated_at, k.tags, k.limits"
    };
}
/// Joins a plan `p` to its stages `s` and method throttles `m`.
macro_rules! plan_joins {
    () => {
        "LEFT JOIN usage_plans_plan_stages s ON s.plan_id = p.id \
         LEFT JOIN usage_plans_method_throttles m ON m.plan_id = s.plan_id AND m.api = s.api AND m.stage = s.stage"
    };
}
/// Rows of one plan together, stages and methods in their stored order.
macro_rules! plan_order {
    () => {
        "ORDER BY p.id, s.position, m.position"
    };
}

/// The change feed's channel: `usage_plans_changes`, or `usage_plans_changes.<schema>` when the
/// tables are in another schema than `public` (a long schema name: its MD5), as an SQL scalar.
macro_rules! channel_sql {
    () => {
        "(SELECT CASE WHEN s = 'public' THEN 'usage_plans_changes' \
         WHEN octet_length(s) <= 43 THEN 'usage_plans_changes.' || s \
         ELSE 'usage_plans_changes.' || md5(s) END FROM (SELECT coalesce(current_schema(), 'public') AS s) AS t)"
    };
}

mod admin;
mod customers;
mod error;
mod feed;
mod limits;
mod manage;
mod migrate;
mod write;

pub use error::{SqlStoreError, SqlStoreErrorKind};

use crate::error::ConfigError;
use crate::keys::KeyHash;
use crate::model::{ApiKey, PlanStage, Quota, QuotaPeriod, Throttle, UsagePlan};
#[cfg(doc)]
use crate::store::StoredKey;
use crate::store::{KeyRecord, KeyStore, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// API keys and usage plans in PostgreSQL or SQLite (feature `sqlx`), looked up by the SHA-256
/// of the presented value.
///
/// A lookup is one query. The layer caches its answers
/// ([`key_cache_ttl`](crate::UsagePlanLayerBuilder::key_cache_ttl)); changes made through this
/// store (or a clone) bump its [`Invalidation`](crate::Invalidation) (a key change outdates that
/// key's answers only, a plan change every key's), so layers built on it see them on their next
/// request. On PostgreSQL the [change feed](#change-feed) carries them to the other replicas
/// within about a second. Changes made to the tables directly reach layers within the TTL.
///
/// The store implements [`ManagedKeyStore`](crate::ManagedKeyStore), the interface the admin
/// API drives: each operation is one transaction, lists page in SQL (by id, in byte order on
/// both databases), and keys come back without their value ([`StoredKey::value`] `None`).
///
/// One type serves both databases through [`sqlx::AnyPool`], with runtime queries in portable
/// SQL (no `DATABASE_URL` needed to build). The store keeps only the SHA-256 of key values
/// ([`KeyHash`]); a value is shown once, when [`create_key`](SqlKeyStore::create_key) or
/// [`rotate_key`](SqlKeyStore::rotate_key) returns it.
///
/// # Schema
///
/// [`migrate`](SqlKeyStore::migrate) creates these tables (all prefixed `usage_plans_`, so they
/// live beside the application's own). Times are unix seconds (UTC) in `BIGINT` columns;
/// foreign keys cascade on delete.
///
/// | table | columns | key |
/// |---|---|---|
/// | `usage_plans_plans` | `id`, `name`, `description`?, `throttle_rate`?, `throttle_burst`?, `quota_limit`?, `quota_period`? (`'DAY'`, `'WEEK'`, `'MONTH'`), `quota_offset`?, `created_at`, `product_code`?², `tags`?², `concurrency`?³ | `id` |
/// | `usage_plans_plan_stages` | `plan_id`, `api`, `stage`, `position` | `plan_id, api, stage` |
/// | `usage_plans_method_throttles` | `plan_id`, `api`, `stage`, `method` (e.g. `/pets/GET`), `rate`, `burst`, `position` | `plan_id, api, stage, method` |
/// | `usage_plans_keys` | `id`, `name`, `description`?, `enabled`, `customer_id`?, `expires_at`?, `created_at`, `last_updated_at`?², `tags`?², `limits`?³ | `id` |
/// | `usage_plans_customers`³ | `id`, `name`?, `throttle_rate`?, `throttle_burst`?, `quota_limit`?, `quota_period`?, `quota_offset`?, `concurrency`?, `quota_anchor`? (unix seconds) | `id` |
/// | `usage_plans_key_values` | `hash` (lowercase hex SHA-256 of the value), `key_id`, `expires_at`?, `created_at` | `hash` |
/// | `usage_plans_plan_keys` | `plan_id`, `key_id` | `plan_id, key_id` |
/// | `usage_plans_schema` | `version`, `name`, `applied_at` | `version` |
///
/// (`?`: nullable; ²: since schema version 2; ³: since version 3.) `tags` is a JSON object of
/// tag names to values (`{"team":"billing"}`), NULL for none; rows written by version 1 read
/// back with no tags, no product code and no last-updated time, rows of version 2 with no
/// limits of their own, no concurrency cap and no customer. A key's `limits` (its own limits,
/// replacing its plan's) is a JSON object whose members are all optional:
/// `{"throttle":{"rate":5.0,"burst":2}, "quota":{"limit":100,"period":"MONTH","offset":0},
/// "methods":[{"method":"/pets/GET","rate":1.0,"burst":2}], "concurrency":3,
/// "quota_anchor":1769851800}` (`methods` present, even empty, replaces the plan's method
/// throttles; `quota_anchor` in unix seconds); NULL for none. A lookup returns the key with
/// the customer its `customer_id` names in `usage_plans_customers`, if any
/// ([`KeyRecord::customer`]); a change of a customer revalidates every key. A key may have several values (rows in `usage_plans_key_values`): that is
/// how [`rotate_key`](SqlKeyStore::rotate_key) lets old and new values work side by side for a
/// while. A value's effective expiry is the earlier of its own `expires_at` and its key's.
/// `position` keeps the order of a plan's stages and method throttles. `enabled` is a `BOOLEAN`
/// (1 or 0 in SQLite).
///
/// Migrations are embedded in the binary and recorded in `usage_plans_schema` (not in sqlx's
/// `_sqlx_migrations`, which belongs to the application). Rows may also be written by other
/// tools; the store validates what it reads and reports bad rows as errors.
///
/// # Change feed
///
/// On PostgreSQL every change made through a `SqlKeyStore` runs `pg_notify` inside its
/// transaction, on the channel `usage_plans_changes` (`usage_plans_changes.<schema>` when the
/// tables are in another schema than `public`), with the payload `key <id>` or `all`. So a
/// notice is delivered when the change commits, and never for one rolled back. Every store
/// on PostgreSQL listens ([`connect`](Self::connect) starts it; for a store made with
/// [`new`](Self::new), call [`watch_changes`](Self::watch_changes)) on a connection of its own
/// and feeds what it hears to its `Invalidation`, so layers of every replica revalidate the
/// key (or every key) on their next request. The listener ends with the last clone of the store.
///
/// If its connection is lost, the listener logs a warning once, reconnects with backoff
/// (100 ms doubling to 5 s), then outdates every key (notices sent meanwhile are lost) and logs
/// the reconnection at info level; until then changes made elsewhere reach this replica within
/// the key cache TTL. Changes written to the tables by other tools are not announced.
///
/// SQLite has no feed: run one process per database file, or rely on the TTL.
///
/// # Example
///
/// ```
/// use sqlx::any::AnyPoolOptions;
/// use tower_usage_plans::{
///     ApiKey, KeyStore, PlanStage, Quota, QuotaPeriod, SqlKeyStore, Stage, UsagePlan, UsagePlanLayer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // PostgreSQL: SqlKeyStore::connect("postgres://app@db/app").await?
/// // Here an in-memory SQLite database, which lives as long as its one connection.
/// sqlx::any::install_default_drivers();
/// let pool = AnyPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None)
///     .connect("sqlite::memory:").await?;
/// let store = SqlKeyStore::new(pool);
/// store.migrate().await?;
///
/// store.put_plan(&UsagePlan::new("free")
///     .with_quota(Quota::new(100, QuotaPeriod::Day)?)
///     .stage(PlanStage::new("petstore", "prod"))).await?;
/// let secret = store.create_key(ApiKey::new("acme").plan("free")).await?; // show it once
///
/// let record = store.lookup(secret.expose()).await?.expect("the key exists");
/// assert_eq!(record.key().id(), "acme");
/// assert_eq!(record.plans()[0].id(), "free");
/// assert!(store.lookup("not-a-key-0123456789").await?.is_none());
///
/// // This store carries no stage: give the layer the one it guards.
/// let layer = UsagePlanLayer::builder(store.clone()).stage(Stage::new("petstore", "prod")).build().unwrap();
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
///
/// Without a stage ([`UsagePlanLayerBuilder::stage`](crate::UsagePlanLayerBuilder::stage)) the
/// layer applies a key's first plan (by id), whatever stages it is bound to.
#[derive(Clone)]
pub struct SqlKeyStore {
    pool: AnyPool,
    /// Bumped by every change made through this store (and its clones), and by the change feed.
    invalidation: crate::store::Invalidation,
    /// Shared by the clones: the change feed's listener stops when the last one is dropped.
    feed: Arc<Feed>,
}

/// The change feed's side of the store: while the listener task runs, `stop` holds the sender
/// whose drop (with the last clone of the store) ends it.
#[derive(Default)]
struct Feed {
    stop: tokio::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl fmt::Debug for SqlKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show its scheme only.
        f.debug_struct("SqlKeyStore")
            .field("database", &self.pool.connect_options().database_url.scheme())
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl SqlKeyStore {
    /// Connects to `url` (`postgres://...`, or `sqlite://path?mode=rwc` to create the file if
    /// missing) with a default pool, installing sqlx's default `Any` drivers first.
    ///
    /// For `sqlite::memory:` build a pool of one connection and use [`new`](Self::new): every
    /// in-memory connection is a database of its own. If the application installs `Any`
    /// drivers itself (`sqlx::any::install_drivers`), use [`new`](Self::new) too.
    pub async fn connect(url: &str) -> Result<Self, SqlStoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(url).await.map_err(|e| SqlStoreError::db("connect", e))?;
        let store = Self::new(pool);
        store.watch_changes().await?;
        Ok(store)
    }

    /// A store over an existing pool (`sqlx::any::install_default_drivers()` must have run
    /// before the pool was made). Call [`migrate`](Self::migrate) before use.
    #[must_use]
    pub fn new(pool: AnyPool) -> Self {
        Self { pool, invalidation: crate::store::Invalidation::new(), feed: Arc::default() }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The record for a value with this hash: one query joining the value, its key, the key's
    /// plans, their stages and their method throttles.
    async fn lookup_hash(&self, hash: &str) -> Result<Option<KeyRecord>, SqlStoreError> {
        const QUERY: &str = concat!(
            "SELECT ",
            key_columns!(),
            ", v.expires_at, ",
            plan_columns!(),
            ", ",
            limits::customer_columns!(),
            " FROM usage_plans_key_values v JOIN usage_plans_keys k ON k.id = v.key_id",
            " LEFT JOIN usage_plans_customers c ON c.id = k.customer_id",
            " LEFT JOIN usage_plans_plan_keys pk ON pk.key_id = k.id",
            " LEFT JOIN usage_plans_plans p ON p.id = pk.plan_id ",
            plan_joins!(),
            " WHERE v.hash = $1 ",
            plan_order!()
        );
        let rows = sqlx::query(QUERY)
            .bind(hash)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| SqlStoreError::db("look up a key value", e))?;
        let Some(first) = rows.first() else { return Ok(None) };
        let value_expires: Option<i64> = get(first, 10)?;
        let mut plans = PlanRows::default();
        for row in &rows {
            plans.push(row, 11)?;
        }
        let plans = plans.finish();
        let key = key_from_row(first, value_expires, plans.iter().map(|p| p.id()))?;
        // Columns: the key 0-9, the value 10, the plan 11-27, then the customer.
        let customer = limits::customer_from_row(first, 28)?.map(Arc::new);
        Ok(Some(KeyRecord::new(key, plans.into_iter().map(Arc::new).collect()).with_customer(customer)))
    }
}

impl KeyStore for SqlKeyStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.lookup_hash(&KeyHash::of(presented).to_hex()).await.map_err(StoreError::new)
    }

    /// Changes made through this store (or a clone) reach layers on their next request;
    /// changes made to the tables directly, within the layers' TTL.
    fn invalidation(&self) -> Option<crate::store::Invalidation> {
        Some(self.invalidation.clone())
    }
}

/// The database behind an `Any` connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
    Other,
}

impl Backend {
    fn of(conn: &AnyConnection) -> Self {
        match conn.backend_name() {
            "PostgreSQL" => Self::Postgres,
            "SQLite" => Self::Sqlite,
            _ => Self::Other,
        }
    }
}

/// Column `i` of `row`.
fn get<'r, T>(row: &'r AnyRow, i: usize) -> Result<T, SqlStoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(i).map_err(|e| SqlStoreError::db(format!("read column {i}"), e))
}

/// Builds plans from rows of [`plan_columns!`] starting at column `at`, ordered by [`plan_order!`].
#[derive(Default)]
struct PlanRows {
    plans: Vec<(UsagePlan, Vec<PlanStage>)>,
}

impl PlanRows {
    fn push(&mut self, row: &AnyRow, at: usize) -> Result<(), SqlStoreError> {
        let Some(id) = get::<Option<String>>(row, at)? else { return Ok(()) };
        if self.plans.last().is_none_or(|(p, _)| p.id() != id) {
            let plan = plan_head(row, at, &id)?;
            self.plans.push((plan, Vec::new()));
        }
        let Some((_, stages)) = self.plans.last_mut() else { return Ok(()) };
        let (Some(api), Some(stage)) = (get::<Option<String>>(row, at + 9)?, get::<Option<String>>(row, at + 10)?)
        else {
            return Ok(());
        };
        let mut current = match stages.pop() {
            Some(s) if s.api() == api && s.stage_name() == stage => s,
            other => {
                stages.extend(other);
                PlanStage::new(api, stage)
            }
        };
        if let Some(method) = get::<Option<String>>(row, at + 11)? {
            let field = || format!("usage_plans_method_throttles[{id:?}, {method:?}]");
            let rate: f64 = get(row, at + 12)?;
            let burst = u32::try_from(get::<i64>(row, at + 13)?)
                .map_err(|_| SqlStoreError::bad_row(field(), &ConfigError::invalid("burst", "out of range")))?;
            let throttle = Throttle::new(rate, burst).map_err(|e| SqlStoreError::bad_row(field(), &e))?;
            current = current.method_throttle(&method, throttle).map_err(|e| SqlStoreError::bad_row(field(), &e))?;
        }
        stages.push(current);
        Ok(())
    }

    /// The plans, sorted by id (byte order, the same on every database).
    fn finish(self) -> Vec<UsagePlan> {
        let mut plans: Vec<UsagePlan> =
            self.plans.into_iter().map(|(plan, stages)| stages.into_iter().fold(plan, UsagePlan::stage)).collect();
        plans.sort_by(|a, b| a.id().cmp(b.id()));
        plans
    }
}

/// The plan's own columns (no stages).
fn plan_head(row: &AnyRow, at: usize, id: &str) -> Result<UsagePlan, SqlStoreError> {
    let bad = |column: &str, e: ConfigError| SqlStoreError::bad_row(format!("usage_plans_plans[{id:?}].{column}"), &e);
    let mut plan = UsagePlan::new(id).with_name(get::<String>(row, at + 1)?);
    if let Some(d) = get::<Option<String>>(row, at + 2)? {
        plan = plan.with_description(d);
    }
    match (get::<Option<f64>>(row, at + 3)?, get::<Option<i64>>(row, at + 4)?) {
        (None, None) => {}
        (Some(rate), Some(burst)) => {
            let burst =
                u32::try_from(burst).map_err(|_| bad("throttle_burst", ConfigError::invalid("", "out of range")))?;
            plan = plan.with_throttle(Throttle::new(rate, burst).map_err(|e| bad("throttle", e))?);
        }
        _ => {
            return Err(bad("throttle_rate", ConfigError::invalid("", "rate and burst must both be set or both null")))
        }
    }
    let limit: Option<i64> = get(row, at + 5)?;
    let period: Option<String> = get(row, at + 6)?;
    let offset: Option<i64> = get(row, at + 7)?;
    match (limit, period) {
        (None, None) => {}
        (Some(limit), Some(period)) => {
            let period = match period.as_str() {
                "DAY" => QuotaPeriod::Day,
                "WEEK" => QuotaPeriod::Week,
                "MONTH" => QuotaPeriod::Month,
                other => {
                    return Err(bad("quota_period", ConfigError::invalid("", format!("unknown period {other:?}"))))
                }
            };
            let limit = u64::try_from(limit).map_err(|_| bad("quota_limit", ConfigError::invalid("", "negative")))?;
            let offset = u64::try_from(offset.unwrap_or(0))
                .map_err(|_| bad("quota_offset", ConfigError::invalid("", "negative")))?;
            let quota = Quota::new(limit, period).and_then(|q| q.with_offset(offset)).map_err(|e| bad("quota", e))?;
            plan = plan.with_quota(quota);
        }
        _ => {
            return Err(bad("quota_limit", ConfigError::invalid("", "limit and period must both be set or both null")))
        }
    }
    let created: i64 = get(row, at + 8)?;
    let created = from_unix(created).ok_or_else(|| bad("created_at", ConfigError::invalid("", "out of range")))?;
    if let Some(code) = get::<Option<String>>(row, at + 14)? {
        plan = plan.with_product_code(code);
    }
    if let Some(n) = limits::concurrency(get(row, at + 16)?).map_err(|e| bad("concurrency", e))? {
        plan = plan.with_concurrency(n);
    }
    let tags = read_tags(get(row, at + 15)?).map_err(|e| bad("tags", e))?;
    Ok(tags.into_iter().fold(plan.with_created(created), |p, (n, v)| p.tag(n, v)))
}

/// Tags from a `tags` column: a JSON object of strings, or NULL for none.
fn read_tags(column: Option<String>) -> Result<BTreeMap<String, String>, ConfigError> {
    match column {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| ConfigError::invalid("", format!("not a JSON object of strings: {e}"))),
    }
}

/// What a `tags` column holds for `tags`: NULL when there are none.
fn write_tags(tags: &BTreeMap<String, String>) -> Option<String> {
    // A map of strings always serializes.
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

/// A key from the columns of [`key_columns!`], expiring at the earlier of its own expiry and
/// `value_expires`.
fn key_from_row<'a>(
    row: &AnyRow,
    value_expires: Option<i64>,
    plan_ids: impl Iterator<Item = &'a str>,
) -> Result<ApiKey, SqlStoreError> {
    let id: String = get(row, 0)?;
    let mut key = ApiKey::new(id.as_str()).with_name(get::<String>(row, 1)?).enabled(get::<i64>(row, 3)? != 0);
    if let Some(d) = get::<Option<String>>(row, 2)? {
        key = key.with_description(d);
    }
    if let Some(c) = get::<Option<String>>(row, 4)? {
        key = key.with_customer_id(c);
    }
    let expires = match (get::<Option<i64>>(row, 5)?, value_expires) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(e) = expires {
        let at = from_unix(e).ok_or_else(|| {
            SqlStoreError::bad_row(
                format!("usage_plans_keys[{id:?}].expires_at"),
                &ConfigError::invalid("", "out of range"),
            )
        })?;
        key = key.with_expires(at);
    }
    let bad = |column: &str| {
        let field = format!("usage_plans_keys[{id:?}].{column}");
        move |e: ConfigError| SqlStoreError::bad_row(field, &e)
    };
    let time = |secs: i64| from_unix(secs).ok_or_else(|| ConfigError::invalid("", "out of range"));
    key = key.with_created(time(get(row, 6)?).map_err(bad("created_at"))?);
    if let Some(at) = get::<Option<i64>>(row, 7)? {
        key = key.with_last_updated(time(at).map_err(bad("last_updated_at"))?);
    }
    let tags = read_tags(get(row, 8)?).map_err(bad("tags"))?;
    let mut key = tags.into_iter().fold(key, |k, (n, v)| k.tag(n, v));
    key.set_overrides(limits::read_limits(get(row, 9)?).map_err(bad("limits"))?);
    Ok(plan_ids.fold(key, |k, p| k.plan(p.to_owned())))
}

/// Whole unix seconds, rounded down (as the engine compares expiries).
fn unix_secs(t: SystemTime) -> i64 {
    crate::engine::unix_secs(t)
}

fn unix_now() -> i64 {
    unix_secs(SystemTime::now())
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

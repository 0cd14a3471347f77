//! Customers in `usage_plans_customers`: writes (each one transaction, revalidating every key)
//! and reads by id.

use super::limits::{anchor_secs, customer_columns, customer_from_row, period_name};
use super::write::{Changed, Tx};
use super::{SqlKeyStore, SqlStoreError, SqlStoreErrorKind};
use crate::model::Customer;
use sqlx::AnyConnection;

/// How [`write_customer`] treats an existing customer with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CustomerWrite {
    /// Insert, or replace.
    Put,
    /// Insert; [`Conflict`](SqlStoreErrorKind::Conflict) (field `id`) if the id is taken.
    Create,
}

/// Writes `customer`'s row.
pub(super) async fn write_customer(tx: &mut Tx<'_>, c: &Customer, mode: CustomerWrite) -> Result<(), SqlStoreError> {
    let id = c.id();
    if id.trim().is_empty() {
        return Err(SqlStoreError::new(SqlStoreErrorKind::Invalid, "id", "must not be empty"));
    }
    let upsert = match mode {
        CustomerWrite::Put => {
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, throttle_rate = excluded.throttle_rate, \
             throttle_burst = excluded.throttle_burst, quota_limit = excluded.quota_limit, \
             quota_period = excluded.quota_period, quota_offset = excluded.quota_offset, \
             concurrency = excluded.concurrency, quota_anchor = excluded.quota_anchor"
        }
        CustomerWrite::Create => " ON CONFLICT DO NOTHING",
    };
    let sql = format!(
        "INSERT INTO usage_plans_customers (id, name, throttle_rate, throttle_burst, quota_limit, quota_period, \
         quota_offset, concurrency, quota_anchor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9){upsert}"
    );
    let (throttle, quota) = (c.throttle(), c.quota());
    let written = sqlx::query(&sql)
        .persistent(false) // optional values, see write_plan
        .bind(id)
        .bind(c.name())
        .bind(throttle.map(|t| t.rate()))
        .bind(throttle.map(|t| i64::from(t.burst())))
        .bind(quota.map(|q| q.limit() as i64))
        .bind(quota.map(|q| period_name(q.period())))
        .bind(quota.map(|q| q.offset() as i64))
        .bind(c.concurrency().map(|n| i64::from(n.get())))
        .bind(c.quota_anchor().map(anchor_secs))
        .execute(&mut **tx)
        .await
        .map_err(|e| SqlStoreError::db(format!("write customer {id:?}"), e))?;
    if mode == CustomerWrite::Create && written.rows_affected() == 0 {
        return Err(SqlStoreError::conflict("id", format!("a customer already has the id {id:?}")));
    }
    Ok(())
}

/// Customer `id`.
pub(super) async fn read_customer(conn: &mut AnyConnection, id: &str) -> Result<Option<Customer>, SqlStoreError> {
    let row = sqlx::query(concat!("SELECT ", customer_columns!(), " FROM usage_plans_customers c WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(|e| SqlStoreError::db(format!("get customer {id:?}"), e))?;
    match row {
        Some(row) => customer_from_row(&row, 0),
        None => Ok(None),
    }
}

impl SqlKeyStore {
    /// Inserts `customer`, or replaces the customer with its id (name and limits). Every key
    /// whose `customer_id` names it shares its limits from the next lookup on: layers built on
    /// this store (and, through the change feed, on other replicas) revalidate every key once
    /// the change is made. Counts of the current period are kept.
    ///
    /// Errors: [`Invalid`](SqlStoreErrorKind::Invalid) for an empty id (field `id`).
    pub async fn put_customer(&self, customer: &Customer) -> Result<(), SqlStoreError> {
        self.change_customer(customer, CustomerWrite::Put).await
    }

    /// Writes `customer` in one transaction that announces the change to every key.
    pub(super) async fn change_customer(&self, customer: &Customer, mode: CustomerWrite) -> Result<(), SqlStoreError> {
        let changed = Changed::all(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("put_customer {:?}", customer.id()), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        write_customer(&mut tx, customer, mode).await?;
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Deletes a customer: its keys keep their `customer_id` and lose the shared limits (every
    /// key revalidates). [`NotFound`](SqlStoreErrorKind::NotFound) (field `customer_id`) if
    /// there is none.
    pub async fn delete_customer(&self, id: &str) -> Result<(), SqlStoreError> {
        let changed = Changed::all(&self.invalidation);
        let db = |e| SqlStoreError::db(format!("delete_customer {id:?}"), e);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let deleted = sqlx::query("DELETE FROM usage_plans_customers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if deleted == 0 {
            return Err(SqlStoreError::not_found("customer_id", format!("no customer with id {id:?}")));
        }
        changed.notify(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// Customer `id`, as [`lookup`](crate::KeyStore::lookup) returns it with its keys.
    pub async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SqlStoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| SqlStoreError::db(format!("customer_by_id {id:?}"), e))?;
        read_customer(&mut conn, id).await
    }
}

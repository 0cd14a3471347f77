//! Versioned migrations, embedded in the binary and recorded in `usage_plans_schema`.

use super::{Backend, SqlKeyStore, SqlStoreError};
use sqlx::{Connection, Executor, Row};

/// One schema version: its number, a short name and the SQL that creates it.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every schema version, oldest first. Append only: a released migration never changes.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("migrations/0001_initial.sql") },
    Migration { version: 2, name: "tags_and_dates", sql: include_str!("migrations/0002_tags_and_dates.sql") },
    Migration {
        version: 3,
        name: "overrides_and_customers",
        sql: include_str!("migrations/0003_overrides_and_customers.sql"),
    },
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS usage_plans_schema (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Key of the PostgreSQL advisory lock held while migrating (the bytes of "tupsqlv1").
const PG_LOCK: i64 = 0x7475_7073_716c_7631;

impl SqlKeyStore {
    /// The schema version this build creates and reads (the highest `version` it writes to
    /// `usage_plans_schema`).
    pub const SCHEMA_VERSION: i64 = 3;

    /// Creates or upgrades the `usage_plans_*` tables to this build's schema; does nothing if
    /// they are up to date. Call it at start-up, before serving.
    ///
    /// Everything runs in one transaction, so a failed upgrade leaves the schema as it was.
    /// Several processes may call it at once: on PostgreSQL they queue on a transaction-scoped
    /// advisory lock (`pg_advisory_xact_lock`), on SQLite on the database's write lock
    /// (`BEGIN IMMEDIATE`, waiting up to the connection's busy timeout); the first applies the
    /// migrations and the others find them applied.
    pub async fn migrate(&self) -> Result<(), SqlStoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| fail("connect", e))?;
        let backend = Backend::of(&conn);
        let mut tx = match backend {
            Backend::Sqlite => Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await,
            Backend::Postgres | Backend::Other => Connection::begin(&mut *conn).await,
        }
        .map_err(|e| fail("begin", e))?;
        // Rolled back explicitly on failure: a dropped transaction would keep its locks until
        // the connection is used again.
        match Self::apply(&mut tx, backend).await {
            Ok(()) => tx.commit().await.map_err(|e| fail("commit", e)),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn apply(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: Backend) -> Result<(), SqlStoreError> {
        if backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(PG_LOCK)
                .execute(&mut **tx)
                .await
                .map_err(|e| fail("lock", e))?;
        }
        tx.as_mut().execute(VERSION_TABLE).await.map_err(|e| fail("create usage_plans_schema", e))?;
        let rows = sqlx::query("SELECT version FROM usage_plans_schema")
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| fail("read usage_plans_schema", e))?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in &rows {
            applied.push(row.try_get::<i64, _>(0).map_err(|e| fail("read usage_plans_schema", e))?);
        }
        // A database migrated by a newer version of this crate: this one does not know its schema.
        if let Some(newer) = applied.iter().copied().filter(|v| *v > Self::SCHEMA_VERSION).max() {
            return Err(SqlStoreError::new(
                super::SqlStoreErrorKind::Invalid,
                "usage_plans_schema",
                format!(
                    "the database has schema version {newer}, newer than this crate's {}; upgrade the crate",
                    Self::SCHEMA_VERSION
                ),
            ));
        }
        let now = super::unix_now();
        for m in MIGRATIONS {
            if applied.contains(&m.version) {
                continue;
            }
            let what = format!("version {} ({})", m.version, m.name);
            tx.as_mut().execute(m.sql).await.map_err(|e| fail(&what, e))?;
            sqlx::query("INSERT INTO usage_plans_schema (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(|e| fail(&what, e))?;
        }
        Ok(())
    }
}

fn fail(what: &str, e: sqlx::Error) -> SqlStoreError {
    SqlStoreError::db(format!("migrate: {what}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_tables_prefixed() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            for line in m.sql.lines().filter(|l| l.starts_with("CREATE")) {
                assert!(line.contains(" usage_plans_"), "{line}");
            }
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SqlKeyStore::SCHEMA_VERSION));
    }
}

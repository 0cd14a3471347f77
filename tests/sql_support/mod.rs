//! Runs the SQL store tests (`tests/sql.rs`, and the admin API's in `tests/admin`) on SQLite (a
//! temporary file) and on PostgreSQL (`DATABASE_URL`, a fresh schema per test, dropped afterwards).
#![allow(dead_code, unreachable_pub)]

pub mod example;

use sqlx::{Connection, Executor, PgConnection, Row, SqliteConnection};
use std::path::PathBuf;
use tower_usage_plans::{keys, SqlKeyStore};

/// One database a test runs on.
pub struct Db {
    /// "SQLite" or "PostgreSQL", for messages.
    pub name: &'static str,
    /// URL of this test's database (for PostgreSQL: with its schema as search_path).
    pub url: String,
    pub store: SqlKeyStore,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Schema { admin_url: String, schema: String },
}

/// The PostgreSQL URL, or `None` after saying loudly that the PostgreSQL part is skipped
/// (a failure when `USAGE_PLANS_REQUIRE_SERVICES=1`).
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("USAGE_PLANS_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{test}: USAGE_PLANS_REQUIRE_SERVICES=1 but DATABASE_URL is not set"
            );
            eprintln!(
                "\n*** SKIPPED the PostgreSQL part of {test}: DATABASE_URL is not set \
                 (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test) ***\n"
            );
            None
        }
    }
}

/// SQLite and, if `DATABASE_URL` is set, PostgreSQL, each fresh and migrated.
pub async fn databases(test: &str) -> Vec<Db> {
    let dbs = fresh_databases(test).await;
    for db in &dbs {
        db.store.migrate().await.unwrap_or_else(|e| panic!("{}: migrate: {e}", db.name));
    }
    dbs
}

/// Like [`databases`], without running the migrations.
pub async fn fresh_databases(test: &str) -> Vec<Db> {
    let mut dbs = vec![sqlite().await];
    if let Some(url) = postgres_url(test) {
        dbs.push(postgres(&url).await);
    }
    dbs
}

fn suffix() -> String {
    keys::generate().expose()[..16].to_ascii_lowercase()
}

/// A fresh SQLite database in a temporary file, not migrated.
pub async fn sqlite() -> Db {
    let path = std::env::temp_dir().join(format!("tup-sql-{}.db", suffix()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqlKeyStore::connect(&url).await.unwrap_or_else(|e| panic!("SQLite {url}: {e}"));
    Db { name: "SQLite", url, store, cleanup: Cleanup::File(path) }
}

/// A fresh schema in the PostgreSQL database at `admin_url`, not migrated.
pub async fn postgres(admin_url: &str) -> Db {
    let schema = format!("t_{}", suffix());
    let mut admin = PgConnection::connect(admin_url).await.unwrap_or_else(|e| panic!("PostgreSQL {admin_url}: {e}"));
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");
    let store = SqlKeyStore::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL {url}: {e}"));
    Db { name: "PostgreSQL", url, store, cleanup: Cleanup::Schema { admin_url: admin_url.to_owned(), schema } }
}

impl Db {
    /// Stores `value` (hashed) as key `k`'s value, migrates the schema to the latest version, and
    /// returns the versions the schema table then lists (for the migration tests).
    pub async fn add_value_and_migrate(&self, value: &str) -> Vec<i64> {
        let pool = self.store.pool();
        let hash = tower_usage_plans::keys::KeyHash::of(value).to_hex();
        sqlx::query("INSERT INTO usage_plans_key_values (hash, key_id, created_at) VALUES ($1, 'k', 2000)")
            .bind(hash)
            .execute(pool)
            .await
            .unwrap();
        self.store.migrate().await.unwrap();
        sqlx::query_scalar("SELECT version FROM usage_plans_schema ORDER BY version").fetch_all(pool).await.unwrap()
    }

    /// Every value of every text column of every `usage_plans_` table, as "table.column" and value.
    pub async fn text_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &self.cleanup {
            Cleanup::File(_) => {
                let mut c = SqliteConnection::connect(&self.url).await.unwrap();
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name LIKE 'usage_plans_%' AND upper(p.type) = 'TEXT'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                for (t, col) in columns {
                    for row in sqlx::query(&format!("SELECT {col} FROM {t}")).fetch_all(&mut c).await.unwrap() {
                        if let Some(v) = row.get::<Option<String>, _>(0) {
                            out.push((format!("{t}.{col}"), v));
                        }
                    }
                }
            }
            Cleanup::Schema { .. } => {
                let mut c = PgConnection::connect(&self.url).await.unwrap();
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name LIKE 'usage_plans_%' AND data_type = 'text'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                for (t, col) in columns {
                    for row in sqlx::query(&format!("SELECT {col} FROM {t}")).fetch_all(&mut c).await.unwrap() {
                        if let Some(v) = row.get::<Option<String>, _>(0) {
                            out.push((format!("{t}.{col}"), v));
                        }
                    }
                }
            }
        }
        out
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for ext in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                // On a thread of its own: drop may run inside the test's runtime.
                // The test's runtime is blocked meanwhile, so a transaction its store dropped
                // (rolled back by a task of that runtime) may still hold locks on the schema's
                // tables: its connection is ended first, or DROP SCHEMA would wait for it forever.
                let terminate = format!(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' \
                     AND l.pid <> pg_backend_pid()"
                );
                let (url, sql) = (admin_url.clone(), format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        let mut c = PgConnection::connect(&url).await.map_err(|e| e.to_string())?;
                        c.execute(terminate.as_str()).await.map_err(|e| e.to_string())?;
                        c.execute(sql.as_str()).await.map_err(|e| e.to_string())?;
                        c.close().await.map_err(|e| e.to_string())
                    })
                })
                .join();
                if let Ok(Err(e)) = dropped {
                    eprintln!("warning: could not drop schema {schema}: {e}");
                }
            }
        }
    }
}

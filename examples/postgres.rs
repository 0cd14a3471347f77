//! An axum app whose API keys live in PostgreSQL, in a table of the app's own design: how to
//! implement [`KeyStore`] for your schema. (For a ready-made schema, see `SqlKeyStore`.)
//!
//! The table `tup_example.customers` says which plan each customer has; the plans themselves
//! are fixed in code. Only the SHA-256 of each key is stored.
//!
//! ```text
//! cargo run --example postgres --features sqlx                        # DATABASE_URL or the default below
//! DATABASE_URL=postgres://app@db/app cargo run --example postgres --features sqlx -- --addr 127.0.0.1:3002
//! ```

use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tower_usage_plans::keys::{self, KeyHash};
use tower_usage_plans::{
    ApiKey, KeyRecord, KeySecret, KeyStore, PlanStage, Quota, QuotaPeriod, Stage, StoreError, Throttle, UsagePlan,
    UsagePlanLayer,
};

mod common;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

// ---------------------------------------------------------------- the store (your code) ----

const SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS tup_example;
CREATE TABLE IF NOT EXISTS tup_example.customers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    plan           TEXT NOT NULL,
    api_key_sha256 TEXT NOT NULL UNIQUE,
    active         BOOLEAN NOT NULL
)";

/// Customers and their keys in PostgreSQL; plans in code.
#[derive(Debug, Clone)]
struct CustomerStore {
    pool: PgPool,
    plans: Arc<HashMap<&'static str, Arc<UsagePlan>>>,
}

impl CustomerStore {
    /// Creates the table if missing.
    async fn new(pool: PgPool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        let plan = |id: &'static str, rate, burst, quota| {
            let plan = UsagePlan::new(id)
                .with_throttle(Throttle::new(rate, burst).expect("valid throttle"))
                .with_quota(quota)
                .stage(PlanStage::new("petstore", "prod"));
            (id, Arc::new(plan))
        };
        let plans = HashMap::from([
            plan("free", 0.2, 3, Quota::new(100, QuotaPeriod::Day).expect("valid quota")),
            plan("pro", 50.0, 100, Quota::new(1_000_000, QuotaPeriod::Month).expect("valid quota")),
        ]);
        Ok(Self { pool, plans: Arc::new(plans) })
    }

    /// Gives customer `id` a new key (replacing any old one) and returns it: the only time the
    /// value is seen.
    async fn issue_key(&self, id: &str, name: &str, plan: &str, active: bool) -> Result<KeySecret, sqlx::Error> {
        let secret = keys::generate();
        sqlx::query(
            "INSERT INTO tup_example.customers (id, name, plan, api_key_sha256, active) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, plan = excluded.plan,
                 api_key_sha256 = excluded.api_key_sha256, active = excluded.active",
        )
        .bind(id)
        .bind(name)
        .bind(plan)
        .bind(KeyHash::of(secret.expose()).to_hex())
        .bind(active)
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }
}

impl KeyStore for CustomerStore {
    async fn lookup(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row: Option<(String, String, String, bool)> =
            sqlx::query_as("SELECT id, name, plan, active FROM tup_example.customers WHERE api_key_sha256 = $1")
                .bind(KeyHash::of(presented).to_hex())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::new)?;
        let Some((id, name, plan, active)) = row else { return Ok(None) };
        // A plan name the code does not know gives the key no plan: 403.
        let plans = self.plans.get(plan.as_str()).cloned().into_iter().collect();
        Ok(Some(KeyRecord::new(ApiKey::new(id).with_name(name).enabled(active).plan(plan), plans)))
    }

    fn stage(&self) -> Option<Stage> {
        Some(Stage::new("petstore", "prod"))
    }
}

// ---------------------------------------------------------------------------- the app ----

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("error: {what}: {e}");
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let args = common::args("postgres", 3002);
    if args.config.is_some() {
        fail("--config", "this example keeps its keys in PostgreSQL (set DATABASE_URL)");
    }
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    // The URL may hold a password: errors do not repeat it.
    let pool = PgPool::connect(&url).await.unwrap_or_else(|e| fail("cannot connect to PostgreSQL (DATABASE_URL)", e));
    let store = CustomerStore::new(pool).await.unwrap_or_else(|e| fail("cannot create tup_example.customers", e));
    let issue = |id: &'static str, name: &'static str, plan: &'static str, active| {
        let store = store.clone();
        async move { store.issue_key(id, name, plan, active).await.unwrap_or_else(|e| fail("cannot store a key", e)) }
    };
    let acme = issue("acme", "Acme Inc", "pro", true).await;
    let tiny = issue("tiny", "Tiny Ltd", "free", true).await;
    let gone = issue("gone", "Gone Corp", "pro", false).await;

    let app = Router::new().route("/pets", get(|| async { Json(serde_json::json!([{ "id": 1, "name": "Rex" }])) }));
    let app =
        if args.no_layer { app } else { app.layer(UsagePlanLayer::new(store).unwrap_or_else(|e| fail("layer", e))) };
    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound socket has an address");
    let base = format!("http://{addr}");

    println!("Customers in tup_example.customers (new keys on every start; only their SHA-256 is stored):");
    println!("  acme  (pro: 50 req/s, burst 100, 1M/month)  x-api-key: {}", acme.expose());
    println!("  tiny  (free: burst 3, 1 per 5 s, 100/day)   x-api-key: {}", tiny.expose());
    println!("  gone  (pro, but active = false)             x-api-key: {}", gone.expose());
    println!();
    println!("Try:");
    println!("  # 200 OK");
    println!("  curl -i -H 'x-api-key: {}' {base}/pets", acme.expose());
    println!("  # 403 Forbidden: no API key");
    println!("  curl -i {base}/pets");
    println!("  # 403 Forbidden: the customer is not active");
    println!("  curl -i -H 'x-api-key: {}' {base}/pets", gone.expose());
    println!("  # 429 Too Many Requests after the free plan's burst of 3");
    println!(
        "  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'x-api-key: {}' {base}/pets; done",
        tiny.expose()
    );
    println!("  # what the table holds");
    println!("  psql \"${{DATABASE_URL:-{DEFAULT_URL}}}\" -c 'SELECT * FROM tup_example.customers'");
    println!();
    println!("listening on {base}");

    // A bounded server: a time limit on request heads, a drain deadline at shutdown.
    common::serve(&args, listener, app, async {}).await;
}

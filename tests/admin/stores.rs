//! The stores every scenario runs against: [`InMemoryKeyStore`], and (feature `sqlx`)
//! [`SqlKeyStore`] on SQLite (a temporary file) and on PostgreSQL (`DATABASE_URL`, a fresh
//! schema per test), each seeded from [`CONFIG`](crate::CONFIG) and read back through the
//! [`ManagedKeyStore`] and [`KeyStore`] traits only.

#[cfg(feature = "sqlx")]
use crate::sql_support::{self, Db};
use std::fmt;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
#[cfg(feature = "sqlx")]
use tower_usage_plans::SqlKeyStore;
use tower_usage_plans::{
    ApiKey, Customer, CustomerQuery, InMemoryKeyStore, KeyQuery, KeyRecord, KeyStore, ManagedKeyStore, PlanQuery,
    Stage, StoredKey, UsagePlan, UsagePlanLayer,
};

/// Which store a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    #[cfg(feature = "sqlx")]
    Sqlite,
    #[cfg(feature = "sqlx")]
    Postgres,
}

/// One store, as the scenarios see it.
pub(crate) enum Store {
    Memory(InMemoryKeyStore),
    /// The database (dropped, file or schema, with the store).
    #[cfg(feature = "sqlx")]
    Sql(Db),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("Store::Memory"),
            #[cfg(feature = "sqlx")]
            Self::Sql(db) => write!(f, "Store::Sql({})", db.name),
        }
    }
}

/// `$body` with `$s` bound to the store, whichever it is.
macro_rules! each {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            Store::Memory($s) => $body,
            #[cfg(feature = "sqlx")]
            Store::Sql(db) => {
                let $s = &db.store;
                $body
            }
        }
    };
}

/// What a failed call must leave as it was: every plan and every key (with its value where the
/// store keeps values), and for the in-memory store its invalidation generation (a refused call
/// revalidates nothing). The SQL store invalidates on any write it starts, committed or not, and
/// on PostgreSQL its change feed delivers notices asynchronously: its generation is left out.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    plans: Vec<UsagePlan>,
    keys: Vec<StoredKey>,
    customers: Vec<Customer>,
    generation: Option<u64>,
}

/// The stage every layer of these tests guards (CONFIG's).
fn stage() -> Stage {
    Stage::new("petstore", "prod")
}

impl Store {
    /// A fresh store of `backend` holding CONFIG's plans and keys.
    pub(crate) async fn new(backend: Backend) -> Self {
        let memory = InMemoryKeyStore::from_toml_str(crate::CONFIG).unwrap();
        match backend {
            Backend::Memory => Self::Memory(memory),
            #[cfg(feature = "sqlx")]
            Backend::Sqlite => Self::sql(sql_support::sqlite().await, &memory).await,
            #[cfg(feature = "sqlx")]
            Backend::Postgres => {
                let url = sql_support::postgres_url("admin").expect("the test checked DATABASE_URL");
                Self::sql(sql_support::postgres(&url).await, &memory).await
            }
        }
    }

    /// `db` migrated and loaded with `config`'s plans and keys, as the quickstart loads a
    /// configuration into an empty database.
    #[cfg(feature = "sqlx")]
    async fn sql(db: Db, config: &InMemoryKeyStore) -> Self {
        let store: &SqlKeyStore = &db.store;
        store.migrate().await.unwrap_or_else(|e| panic!("{}: migrate: {e}", db.name));
        let config = config.config();
        for plan in config.plans() {
            store.put_plan(plan).await.unwrap();
        }
        for customer in config.customers() {
            store.put_customer(customer).await.unwrap();
        }
        for (value, key) in config.keys() {
            store.insert_key(key.clone(), value).await.unwrap();
        }
        Self::Sql(db)
    }

    /// Whether the store keeps key values (the SQL store keeps only their hashes).
    pub(crate) fn keeps_values(&self) -> bool {
        matches!(self, Self::Memory(_))
    }

    /// Whether keys loaded from CONFIG (which gives no dates) have a creation time: the SQL
    /// store stores one for every key, the time it was loaded.
    pub(crate) fn dates_loaded_keys(&self) -> bool {
        !self.keeps_values()
    }

    /// The admin router over this store.
    pub(crate) fn admin(&self, auth: AdminAuth) -> AdminRouter {
        each!(self, s => AdminRouter::new(s.clone(), auth))
    }

    /// A layer over this store guarding CONFIG's stage, with in-process counters.
    pub(crate) fn layer(&self) -> UsagePlanLayer {
        each!(self, s => UsagePlanLayer::builder(s.clone()).stage(stage()).build().unwrap())
    }

    /// The record a layer gets for the presented `value`.
    pub(crate) async fn lookup(&self, value: &str) -> Option<KeyRecord> {
        each!(self, s => KeyStore::lookup(s, value).await.unwrap())
    }

    pub(crate) async fn plan(&self, id: &str) -> Option<UsagePlan> {
        each!(self, s => s.get_usage_plan(id).await.unwrap())
    }

    pub(crate) async fn key(&self, id: &str) -> Option<ApiKey> {
        each!(self, s => s.get_api_key(id).await.unwrap()).map(|k| k.into_parts().0)
    }

    pub(crate) async fn add_key_to_plan(&self, key_id: &str, plan_id: &str) {
        each!(self, s => s.create_usage_plan_key(plan_id, key_id).await.unwrap());
    }

    pub(crate) async fn remove_key_from_plan(&self, key_id: &str, plan_id: &str) {
        each!(self, s => s.delete_usage_plan_key(plan_id, key_id).await.unwrap());
    }

    /// Every key, all pages, in id order.
    pub(crate) async fn keys(&self) -> Vec<StoredKey> {
        let mut out = Vec::new();
        let mut position = None::<String>;
        loop {
            let mut query = KeyQuery::new().with_limit(2);
            if let Some(p) = position.take() {
                query = query.with_position(p);
            }
            let (items, next) = each!(self, s => s.get_api_keys(query).await.unwrap()).into_parts();
            out.extend(items);
            match next {
                Some(p) => position = Some(p),
                None => return out,
            }
        }
    }

    /// Every plan, all pages, in id order.
    pub(crate) async fn plans(&self) -> Vec<UsagePlan> {
        let mut out = Vec::new();
        let mut position = None::<String>;
        loop {
            let mut query = PlanQuery::new().with_limit(2);
            if let Some(p) = position.take() {
                query = query.with_position(p);
            }
            let (items, next) = each!(self, s => s.get_usage_plans(query).await.unwrap()).into_parts();
            out.extend(items);
            match next {
                Some(p) => position = Some(p),
                None => return out,
            }
        }
    }

    pub(crate) async fn snapshot(&self) -> Snapshot {
        let generation = match self {
            Self::Memory(s) => Some(s.invalidation().unwrap().generation()),
            #[cfg(feature = "sqlx")]
            Self::Sql(_) => None,
        };
        let customers = self.customers().await;
        Snapshot { plans: self.plans().await, keys: self.keys().await, customers, generation }
    }

    /// Every customer, in id order.
    pub(crate) async fn customers(&self) -> Vec<Customer> {
        let query = CustomerQuery::new().with_limit(500);
        each!(self, s => s.get_customers(query).await.unwrap()).into_parts().0
    }
}

//! What the examples share: command-line flags and graceful shutdown.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use tower_usage_plans::InMemoryKeyStore;

/// The built-in demo configuration (also `examples/plans.toml`).
pub const DEMO_CONFIG: &str = include_str!("../plans.toml");

/// Flags every example takes.
pub struct Args {
    /// `--config PATH` (`.toml` or `.json`); the demo configuration without it.
    pub config: Option<String>,
    /// `--addr HOST:PORT`.
    pub addr: SocketAddr,
    /// `--no-layer`: serve the same app without the layer (for overhead measurements).
    pub no_layer: bool,
    /// `--redis URL`: keep the counters in Redis, shared with every process given the same URL
    /// (needs `--features redis`).
    pub redis: Option<String>,
    /// `--database-url URL`: keep keys and plans in PostgreSQL (or SQLite) through
    /// `SqlKeyStore`, shared with every process given the same URL (needs `--features sqlx`).
    pub database_url: Option<String>,
    /// `--admin-token TOKEN`: mount the admin API (API Gateway's wire format) under `/admin`,
    /// answering that bearer token.
    pub admin_token: Option<String>,
    /// `--admin-access-key ID` and `--admin-secret-key SECRET`: SigV4 credentials the admin API
    /// also accepts (for boto3 and the aws CLI).
    pub admin_access_key: Option<String>,
    pub admin_secret_key: Option<String>,
    /// `--state-file PATH`: restore keys, plans and usage counts from PATH at start; write them
    /// every 5 s and at shutdown.
    pub state_file: Option<std::path::PathBuf>,
}

/// Parses the flags, or prints the error and exits with status 2.
pub fn args(name: &str, default_port: u16) -> Args {
    match parse(name, default_port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn parse(name: &str, default_port: u16) -> Result<Args, String> {
    let mut args = Args {
        config: None,
        addr: SocketAddr::from(([127, 0, 0, 1], default_port)),
        no_layer: false,
        redis: None,
        database_url: None,
        admin_token: None,
        admin_access_key: None,
        admin_secret_key: None,
        state_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--config" => args.config = Some(value("--config")?),
            "--addr" => {
                let v = value("--addr")?;
                // A name (`localhost:3000`) is resolved; its first address is used.
                args.addr = std::net::ToSocketAddrs::to_socket_addrs(v.as_str())
                    .map_err(|e| format!("--addr {v:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:3000)"))?
                    .next()
                    .ok_or_else(|| format!("--addr {v:?}: the name has no address"))?;
            }
            "--no-layer" => args.no_layer = true,
            "--redis" => args.redis = Some(value("--redis")?),
            "--database-url" => args.database_url = Some(value("--database-url")?),
            "--admin-token" => args.admin_token = Some(value("--admin-token")?),
            "--admin-access-key" => args.admin_access_key = Some(value("--admin-access-key")?),
            "--admin-secret-key" => args.admin_secret_key = Some(value("--admin-secret-key")?),
            "--state-file" => args.state_file = Some(value("--state-file")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: {name} [--config PATH.toml|PATH.json] [--addr HOST:PORT] [--no-layer] [--redis URL]\n\
                     \x20      [--database-url URL] [--admin-token TOKEN [--admin-access-key ID --admin-secret-key SECRET]] [--state-file PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.database_url.is_some() && args.state_file.is_some() {
        return Err(String::from(
            "--state-file keeps keys and plans in a file, --database-url in the database: give one of them",
        ));
    }
    if args.admin_access_key.is_some() != args.admin_secret_key.is_some() {
        return Err(String::from("--admin-access-key and --admin-secret-key go together"));
    }
    Ok(args)
}

/// The configuration from `--config`, or the demo configuration; exits with status 2 on a bad
/// file.
pub fn config(args: &Args) -> tower_usage_plans::Config {
    let config = match &args.config {
        Some(path) => tower_usage_plans::Config::from_path(path),
        None => tower_usage_plans::Config::from_toml_str(DEMO_CONFIG),
    };
    config.unwrap_or_else(|e| {
        eprintln!("error: config: {e}");
        std::process::exit(2);
    })
}

/// The store from `--config`, or the demo configuration; exits with status 2 on a bad file.
pub fn store(args: &Args) -> InMemoryKeyStore {
    InMemoryKeyStore::from_config(config(args))
}

/// Key of the PostgreSQL advisory lock a quickstart holds from migrating to loading its
/// configuration (the bytes of "tupstart").
#[cfg(feature = "sqlx")]
const START_LOCK: i64 = 0x7475_7073_7461_7274;

/// The SQL store at `--database-url`, migrated, and the stage of `--config` (or the demo
/// configuration). On the first start against an empty database the configuration's plans and
/// keys are loaded into it; later starts keep the database as it is. Exits with status 1 when
/// the database cannot be reached or set up.
///
/// Replicas may start at the same moment: on PostgreSQL each holds a session advisory lock
/// (`pg_advisory_lock`, on a connection of its own) from migrating to loading, so the first
/// loads the configuration and the others wait, then find the database filled. (SQLite is one
/// process's file; its start is not guarded.)
#[cfg(feature = "sqlx")]
pub async fn sql_store(args: &Args, url: &str) -> (tower_usage_plans::SqlKeyStore, tower_usage_plans::Stage) {
    use sqlx::Connection;
    let fail = database_failed;
    let config = config(args);
    let store = tower_usage_plans::SqlKeyStore::connect(url).await.unwrap_or_else(|e| fail("connect", &e));
    // Out of the pool: the lock is the session's, and the session ends with this connection.
    let mut lock = store.pool().acquire().await.unwrap_or_else(|e| fail("connect", &e)).detach();
    let postgres = lock.backend_name() == "PostgreSQL";
    if postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(START_LOCK)
            .execute(&mut lock)
            .await
            .unwrap_or_else(|e| fail("lock", &e));
    }
    set_up(&store, &config, args).await;
    if postgres {
        // Closing the connection would release it too; unlock first so that a replica waiting
        // goes on at once.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(START_LOCK).execute(&mut lock).await;
    }
    let _ = lock.close().await;
    (store, config.stage().clone())
}

/// Prints what could not be done with the database and exits with status 1.
#[cfg(feature = "sqlx")]
fn database_failed(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: --database-url: {what}: {e}");
    std::process::exit(1);
}

/// Migrates `store` and loads `config` into it if it holds no plan and no key.
#[cfg(feature = "sqlx")]
async fn set_up(store: &tower_usage_plans::SqlKeyStore, config: &tower_usage_plans::Config, args: &Args) {
    use tower_usage_plans::{KeyQuery, ManagedKeyStore, PlanQuery};
    let fail = database_failed;
    store.migrate().await.unwrap_or_else(|e| fail("migrate", &e));
    let plans = store.get_usage_plans(PlanQuery::new().with_limit(1)).await.unwrap_or_else(|e| fail("read", &e));
    let keys = store.get_api_keys(KeyQuery::new().with_limit(1)).await.unwrap_or_else(|e| fail("read", &e));
    if plans.items().is_empty() && keys.items().is_empty() {
        for plan in config.plans() {
            store.put_plan(plan).await.unwrap_or_else(|e| fail("load the configuration", &e));
        }
        for (value, key) in config.keys() {
            store.insert_key(key.clone(), value).await.unwrap_or_else(|e| fail("load the configuration", &e));
        }
        println!(
            "database: empty, loaded {} plans and {} keys from {}",
            config.plans().len(),
            config.keys().len(),
            args.config.as_deref().unwrap_or("the demo configuration")
        );
    } else {
        println!(
            "database: holds keys and plans already; {} was not applied (its stage {}/{} is used)",
            args.config.as_deref().map_or_else(|| String::from("the demo configuration"), |p| format!("--config {p}")),
            config.stage().api(),
            config.stage().stage_name()
        );
    }
}

/// The layer, or the configuration error printed and exit status 2.
pub fn built(
    layer: Result<tower_usage_plans::UsagePlanLayer, tower_usage_plans::ConfigError>,
) -> tower_usage_plans::UsagePlanLayer {
    layer.unwrap_or_else(|e| {
        eprintln!("error: config: {e}");
        std::process::exit(2);
    })
}

/// The layer for `store`: counters in Redis with `--redis URL` (and the backend, to shut down
/// gracefully), in this process otherwise. Exits with status 2 when `--redis` is given to a
/// build without the `redis` feature, 1 when Redis cannot be set up.
pub async fn layer(
    args: &Args,
    store: impl tower_usage_plans::KeyStore,
    stage: Option<tower_usage_plans::Stage>,
) -> (tower_usage_plans::UsagePlanLayer, Option<Redis>) {
    let mut builder = tower_usage_plans::UsagePlanLayer::builder(store);
    if let Some(stage) = stage {
        builder = builder.stage(stage);
    }
    let Some(url) = &args.redis else { return (built(builder.build()), None) };
    #[cfg(feature = "redis")]
    {
        let backend = tower_usage_plans::RedisBackend::builder(url.as_str()).connect().await.unwrap_or_else(|e| {
            eprintln!("error: --redis: {e}");
            std::process::exit(1);
        });
        (built(builder.redis(backend.clone()).build()), Some(Redis(backend)))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (builder, url);
        eprintln!("error: --redis needs the redis feature: cargo run --features redis --example ...");
        std::process::exit(2);
    }
}

/// The Redis backend of [`layer`], to give its leases back at shutdown.
pub struct Redis(#[cfg(feature = "redis")] tower_usage_plans::RedisBackend);

impl Redis {
    /// Returns unused leases and writes pending usage.
    pub async fn shutdown(self) {
        #[cfg(feature = "redis")]
        if self.0.shutdown().await > 0 {
            eprintln!("warning: Redis unreachable at shutdown: some usage was not written");
        }
    }
}

/// Binds `addr`, or prints the error and exits with status 1.
pub async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("error: cannot listen on {addr}: {e}");
        std::process::exit(1);
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `--state-file PATH`: the store's keys and plans (with changes made through the admin API) and
/// its usage counts, restored at start and written every 5 s and at shutdown. One JSON file:
/// `{"version": 1, "config": <the configuration file format>, "usage": <a usage snapshot>}`. It
/// holds key values, like a configuration file: it is written readable by its owner only.
pub struct StateFile {
    path: std::path::PathBuf,
    saved: Option<Saved>,
    live: Option<(InMemoryKeyStore, tower_usage_plans::usage::Usage)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    config: serde_json::Value,
    usage: tower_usage_plans::usage::UsageSnapshot,
}

fn fail(path: &std::path::Path, e: impl std::fmt::Display) -> ! {
    eprintln!("error: --state-file {}: {e}", path.display());
    std::process::exit(1);
}

impl StateFile {
    /// Reads `--state-file` if given; exits with status 1 when it exists but cannot be read.
    pub fn read(args: &Args) -> Option<StateFile> {
        let path = args.state_file.clone()?;
        let saved = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Saved>(&bytes).unwrap_or_else(|e| fail(&path, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => fail(&path, e),
        };
        if saved.as_ref().is_some_and(|s| s.version != 1) {
            fail(&path, "written by a newer version (this one reads version 1)");
        }
        Some(StateFile { path, saved, live: None })
    }

    /// The store saved in the file, if any (it wins over `--config`: it holds later changes).
    pub fn store(&self) -> Option<InMemoryKeyStore> {
        let saved = self.saved.as_ref()?;
        let store = InMemoryKeyStore::from_json_str(&saved.config.to_string()).unwrap_or_else(|e| fail(&self.path, e));
        println!("keys and plans restored from {}", self.path.display());
        Some(store)
    }

    /// Restores the usage counts into `layer` and starts writing `store` and the counts every 5 s.
    pub async fn start(&mut self, store: &InMemoryKeyStore, layer: &tower_usage_plans::UsagePlanLayer) {
        let usage = layer.usage();
        match self.saved.take() {
            Some(saved) => {
                usage.restore(saved.usage).await.unwrap_or_else(|e| fail(&self.path, e));
                println!("usage counts restored from {}", self.path.display());
            }
            None => println!("no state file at {} yet: starting from zero", self.path.display()),
        }
        self.live = Some((store.clone(), usage));
        let periodic = StateFile { path: self.path.clone(), saved: None, live: self.live.clone() };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                periodic.save().await;
            }
        });
    }

    /// Writes the store and the counts now, atomically (a temporary file renamed over the old
    /// one: a crash mid-write keeps the previous state).
    pub async fn save(&self) {
        let Some((store, usage)) = &self.live else { return };
        if let Err(e) = write_state(&self.path, store, usage).await {
            eprintln!("warning: --state-file {}: {e}", self.path.display());
        }
    }
}

async fn write_state(
    path: &std::path::Path,
    store: &InMemoryKeyStore,
    usage: &tower_usage_plans::usage::Usage,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let usage = usage.snapshot().await?;
    let saved = Saved { version: 1, config: serde_json::from_str(&store.config().to_json_string())?, usage };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(&serde_json::to_vec(&saved)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

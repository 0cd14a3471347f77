//! What the examples share: command-line flags, secrets, the state file and a bounded server.
#![allow(dead_code, unreachable_pub)]

mod serve;
mod state;

#[allow(unused_imports)]
pub use serve::{serve, MAX_HEAD_BYTES};
#[allow(unused_imports)]
pub use state::{config_and_digest, KeysFrom, LiveState, StateFile};

use std::net::SocketAddr;
use std::time::Duration;
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
    /// The admin API's bearer token, from `USAGE_PLANS_ADMIN_TOKEN`, `--admin-token-file PATH`
    /// or `--admin-token TOKEN` (visible in `ps`: prefer the other two). With it, the admin API
    /// (API Gateway's wire format) is mounted under `/admin`.
    pub admin_token: Option<String>,
    /// `--admin-access-key ID` and the secret access key (`USAGE_PLANS_ADMIN_SECRET_KEY`,
    /// `--admin-secret-key-file PATH` or `--admin-secret-key SECRET`): SigV4 credentials the
    /// admin API also accepts (for boto3 and the aws CLI).
    pub admin_access_key: Option<String>,
    pub admin_secret_key: Option<String>,
    /// `--state-file PATH`: keys, plans and usage counts kept across restarts (see `state.rs`).
    pub state_file: Option<std::path::PathBuf>,
    /// `--state-lock-wait DURATION` (default `--drain-timeout` + 5 s): how long to wait for
    /// another process holding the state file (longer than its drain, for a rolling restart).
    pub state_lock_wait: Duration,
    /// `--state-interval DURATION` (default 5 s): how often the state file is written.
    pub state_interval: Duration,
    /// `--keys-from config|state`: which keys and plans win when both the configuration and the
    /// state file changed.
    pub keys_from: Option<KeysFrom>,
    /// `--header-read-timeout DURATION` (default 10 s): time a client has to send a request head.
    pub header_read_timeout: Duration,
    /// `--drain-timeout DURATION` (default 10 s): at shutdown, how long open connections may take
    /// to finish.
    pub drain_timeout: Duration,
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
        state_lock_wait: Duration::ZERO,
        state_interval: Duration::from_secs(5),
        keys_from: None,
        header_read_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(10),
    };
    let mut lock_wait = None;
    let mut token = Secret::new("--admin-token", "--admin-token-file", "USAGE_PLANS_ADMIN_TOKEN");
    let mut secret_key = Secret::new("--admin-secret-key", "--admin-secret-key-file", "USAGE_PLANS_ADMIN_SECRET_KEY");
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
            "--admin-token" => token.flag = Some(value("--admin-token")?),
            "--admin-token-file" => token.file = Some(value("--admin-token-file")?),
            "--admin-access-key" => args.admin_access_key = Some(value("--admin-access-key")?),
            "--admin-secret-key" => secret_key.flag = Some(value("--admin-secret-key")?),
            "--admin-secret-key-file" => secret_key.file = Some(value("--admin-secret-key-file")?),
            "--state-file" => args.state_file = Some(value("--state-file")?.into()),
            "--state-lock-wait" => lock_wait = Some(duration("--state-lock-wait", &value("--state-lock-wait")?)?),
            "--state-interval" => {
                args.state_interval = duration("--state-interval", &value("--state-interval")?)?;
                if args.state_interval.is_zero() {
                    return Err(String::from("--state-interval: must be more than 0"));
                }
            }
            "--keys-from" => {
                args.keys_from = Some(match value("--keys-from")?.as_str() {
                    "config" => KeysFrom::Config,
                    "state" => KeysFrom::State,
                    other => return Err(format!("--keys-from {other:?}: expected config or state")),
                });
            }
            "--header-read-timeout" => {
                args.header_read_timeout = duration("--header-read-timeout", &value("--header-read-timeout")?)?;
            }
            "--drain-timeout" => args.drain_timeout = duration("--drain-timeout", &value("--drain-timeout")?)?,
            "-h" | "--help" => {
                println!(
                    "usage: {name} [--config PATH.toml|PATH.json] [--addr HOST:PORT] [--no-layer] [--redis URL]\n\
                     \x20      [--database-url URL] [--admin-token-file PATH] [--admin-access-key ID --admin-secret-key-file PATH]\n\
                     \x20      [--state-file PATH [--state-lock-wait 15s] [--state-interval 5s] [--keys-from config|state]]\n\
                     \x20      [--header-read-timeout 10s] [--drain-timeout 10s]\n\
                     secrets: USAGE_PLANS_ADMIN_TOKEN or --admin-token-file (or --admin-token TOKEN, seen by ps);\n\
                     \x20        USAGE_PLANS_ADMIN_SECRET_KEY or --admin-secret-key-file (or --admin-secret-key SECRET)"
                );
                std::process::exit(0);
            }
            other => {
                // `--admin-token=SECRET` is not a form this parser takes; the value is not shown.
                let shown = other.split_once('=').map_or(other, |(flag, _)| flag);
                let rest = if shown.len() < other.len() { "=... (give the value as the next argument)" } else { "" };
                return Err(format!("unknown argument {shown:?}{rest} (try --help)"));
            }
        }
    }
    args.state_lock_wait = lock_wait.unwrap_or(args.drain_timeout + Duration::from_secs(5));
    args.admin_token = token.read()?;
    let explicit = secret_key.flag.is_some() || secret_key.file.is_some();
    args.admin_secret_key = secret_key.read()?;
    if args.admin_access_key.is_none() && !explicit {
        // USAGE_PLANS_ADMIN_SECRET_KEY alone configures nothing.
        args.admin_secret_key = None;
    }
    if args.keys_from.is_some() && args.state_file.is_none() {
        return Err(String::from("--keys-from chooses between --config and --state-file: give --state-file"));
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

/// `10s`, `500ms`, `2m`, `1h`, or a number of seconds.
fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    let bad = || format!("{flag} {text:?}: expected a duration such as 10s, 500ms, 2m or 1h");
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((text, ""), |i| text.split_at(i));
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    // Bounded, so that no deadline computed from it overflows.
    const MAX_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;
    if seconds > MAX_SECONDS {
        return Err(format!("{flag} {text:?}: at most 100 years"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// A secret given by a flag (seen by `ps`), a file or an environment variable.
struct Secret {
    flag_name: &'static str,
    file_flag: &'static str,
    env: &'static str,
    flag: Option<String>,
    file: Option<String>,
}

impl Secret {
    fn new(flag_name: &'static str, file_flag: &'static str, env: &'static str) -> Self {
        Self { flag_name, file_flag, env, flag: None, file: None }
    }

    /// The secret: from the flag or the file (not both), else from the environment.
    fn read(self) -> Result<Option<String>, String> {
        let value = match (self.flag, self.file) {
            (Some(_), Some(_)) => {
                return Err(format!("{} and {} both give the secret: give one", self.flag_name, self.file_flag))
            }
            (Some(value), None) => {
                eprintln!(
                    "warning: {} is visible to every user of this machine (ps); use {} or {} instead",
                    self.flag_name, self.env, self.file_flag
                );
                value
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{} {path}: {e}", self.file_flag))?;
                #[cfg(unix)]
                if let Ok(meta) = std::fs::metadata(&path) {
                    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
                        eprintln!("warning: {} {path}: readable by other users (chmod 600 it)", self.file_flag);
                    }
                }
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
            (None, None) => match std::env::var(self.env) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{}: not valid UTF-8", self.env)),
            },
        };
        if value.is_empty() {
            return Err(format!("the secret of {} is empty", self.flag_name));
        }
        Ok(Some(value))
    }
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
        for customer in config.customers() {
            store.put_customer(customer).await.unwrap_or_else(|e| fail("load the configuration", &e));
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

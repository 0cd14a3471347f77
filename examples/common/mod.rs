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
    let mut args =
        Args { config: None, addr: SocketAddr::from(([127, 0, 0, 1], default_port)), no_layer: false, redis: None };
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
            "-h" | "--help" => {
                println!("usage: {name} [--config PATH.toml|PATH.json] [--addr HOST:PORT] [--no-layer] [--redis URL]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// The store from `--config`, or the demo configuration; exits with status 2 on a bad file.
pub fn store(args: &Args) -> InMemoryKeyStore {
    let store = match &args.config {
        Some(path) => InMemoryKeyStore::from_path(path),
        None => InMemoryKeyStore::from_toml_str(DEMO_CONFIG),
    };
    store.unwrap_or_else(|e| {
        eprintln!("error: config: {e}");
        std::process::exit(2);
    })
}

/// The layer for `store`: counters in Redis with `--redis URL` (and the backend, to shut down
/// gracefully), in this process otherwise. Exits with status 2 when `--redis` is given to a
/// build without the `redis` feature, 1 when Redis cannot be set up.
pub async fn layer(args: &Args, store: InMemoryKeyStore) -> (tower_usage_plans::UsagePlanLayer, Option<Redis>) {
    let builder = tower_usage_plans::UsagePlanLayer::builder(store);
    let Some(url) = &args.redis else { return (builder.build(), None) };
    #[cfg(feature = "redis")]
    {
        let backend = tower_usage_plans::RedisBackend::builder(url.as_str()).connect().await.unwrap_or_else(|e| {
            eprintln!("error: --redis: {e}");
            std::process::exit(1);
        });
        (builder.redis(backend.clone()).build(), Some(Redis(backend)))
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

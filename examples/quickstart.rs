//! A petstore API behind usage plans.
//!
//! ```text
//! cargo run --example quickstart                      # built-in demo config, prints keys and curl lines
//! cargo run --example quickstart -- --config plans.toml --addr 127.0.0.1:8080
//! cargo run --features redis --example quickstart -- --redis redis://127.0.0.1:6379   # shared limits
//! cargo run --example quickstart -- --admin-token secret-token --state-file usage.json
//! # one replica of a deployment: keys and plans in PostgreSQL, counters and usage in Redis
//! cargo run --features sqlx,redis --example quickstart -- --addr 127.0.0.1:3001 \
//!     --database-url postgres://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379 --admin-token secret-token
//! ```
//!
//! `--database-url URL` keeps keys and plans in the SQL store: it migrates the schema, loads
//! `--config` (or the demo configuration) into an empty database at its first start, and keeps
//! the database as it is on later starts (saying that `--config` was not applied; the stage is
//! still read from it). Every process given the same `--database-url` and `--redis` behaves as one
//! deployment, admin API included.
//!
//! `--admin-token` mounts the admin API (API Gateway's REST wire format: boto3 and the aws CLI
//! work with `--endpoint-url http://127.0.0.1:3000/admin`) under `/admin`, answering that bearer
//! token, and SigV4 with `--admin-access-key ID --admin-secret-key SECRET`. `--state-file`
//! restores keys, plans (with the admin API's changes) and usage counts at start, and writes them
//! every 5 s and at shutdown (Ctrl-C, SIGTERM).

use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::usage::Usage;
use tower_usage_plans::ManagedKeyStore;

mod common;

const TRIAL_KEY: &str = "trial-0123456789abcdefghij";
const GOLD_KEY: &str = "acme-0123456789abcdefghij";
const FREE_KEY: &str = "free-0123456789abcdefghij";
const STAGING_KEY: &str = "staging-0123456789abcdefghij";

#[derive(Clone, Serialize, Deserialize)]
struct Pet {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct NewPet {
    name: String,
}

type Pets = Arc<Mutex<BTreeMap<u64, Pet>>>;

fn app(pets: Pets) -> Router {
    Router::new()
        .route("/", get(|| async { Json(serde_json::json!({ "service": "petstore", "stage": "prod" })) }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/pets",
            get(|State(pets): State<Pets>| async move { Json(pets.lock().unwrap().values().cloned().collect::<Vec<_>>()) }).post(
                |State(pets): State<Pets>, Json(new): Json<NewPet>| async move {
                    let mut pets = pets.lock().unwrap();
                    let id = pets.keys().next_back().map_or(1, |k| k + 1);
                    let pet = Pet { id, name: new.name };
                    pets.insert(id, pet.clone());
                    (StatusCode::CREATED, Json(pet))
                },
            ),
        )
        .route(
            "/pets/{petId}",
            get(|State(pets): State<Pets>, Path(id): Path<u64>| async move {
                pets.lock().unwrap().get(&id).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
            })
            .delete(|State(pets): State<Pets>, Path(id): Path<u64>| async move {
                match pets.lock().unwrap().remove(&id) {
                    Some(_) => StatusCode::NO_CONTENT,
                    None => StatusCode::NOT_FOUND,
                }
            }),
        )
        .with_state(pets)
}

#[tokio::main]
async fn main() {
    let args = common::args("quickstart", 3000);
    if let Some(url) = args.database_url.clone() {
        // One replica of a deployment: keys and plans in the database, shared by every process
        // given the same URL (changes reach them through PostgreSQL's LISTEN/NOTIFY).
        #[cfg(feature = "sqlx")]
        {
            let (store, stage) = common::sql_store(&args, &url).await;
            return serve(&args, store, Some(stage), None).await;
        }
        #[cfg(not(feature = "sqlx"))]
        {
            let _ = url;
            eprintln!("error: --database-url needs the sqlx feature: cargo run --features sqlx --example quickstart");
            std::process::exit(2);
        }
    }
    let state = common::StateFile::read(&args);
    let store = state.as_ref().and_then(common::StateFile::store).unwrap_or_else(|| common::store(&args));
    let state = state.map(|s| (s, store.clone()));
    serve(&args, store, None, state).await;
}

/// Serves the demo API over `store` (with `stage`, for a store that carries none) until Ctrl-C
/// or SIGTERM; `state` is the state file of an in-memory store.
async fn serve<S>(
    args: &common::Args,
    store: S,
    stage: Option<tower_usage_plans::Stage>,
    state: Option<(common::StateFile, tower_usage_plans::InMemoryKeyStore)>,
) where
    S: tower_usage_plans::KeyStore + ManagedKeyStore + Clone,
{
    let (layer, redis) = common::layer(args, store.clone(), stage).await;
    let state = match state {
        Some((mut state, memory)) => {
            state.start(&memory, &layer).await;
            Some(state)
        }
        None => None,
    };
    let usage = layer.usage();
    let app = if args.no_layer { app(Pets::default()) } else { app(Pets::default()).layer(layer) };
    let app = admin(args, app, store, usage);

    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound socket has an address");

    if args.config.is_none() && !args.no_layer {
        // The trial plan allows one request a day: spend it now, so the 429 line below answers
        // 429 from the first try.
        for _ in 0..2 {
            let req = Request::get("/pets").header("x-api-key", TRIAL_KEY).body(axum::body::Body::empty()).unwrap();
            let _ = app.clone().oneshot(req).await;
        }
        banner(args, &format!("http://{addr}"));
    }
    println!("listening on http://{addr}");

    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(common::shutdown_signal()).await {
        eprintln!("error: server: {e}");
        std::process::exit(1);
    }
    if let Some(state) = state {
        state.save().await;
        println!("keys, plans and usage counts written to the state file");
    }
    if let Some(redis) = redis {
        redis.shutdown().await;
    }
}

/// The demo keys and ready-to-paste curl lines (key values of the demo configuration only).
fn banner(args: &common::Args, base: &str) {
    println!("Demo usage plans for stage petstore/prod (see examples/plans.toml):");
    println!("  acme     (silver: 50 req/s, burst 100, 5000/month)  x-api-key: {GOLD_KEY}");
    println!("  free     (free: 1 req/s, burst 3, 100/day)           x-api-key: {FREE_KEY}");
    println!("  trial    (trial: 1 request/day, already used)        x-api-key: {TRIAL_KEY}");
    println!("  staging  (bound to petstore/staging only)            x-api-key: {STAGING_KEY}");
    println!();
    println!("Try:");
    println!("  # 200 OK");
    println!("  curl -i -H 'x-api-key: {GOLD_KEY}' {base}/pets");
    println!("  # 403 Forbidden: no API key");
    println!("  curl -i {base}/pets");
    println!("  # 429 Limit Exceeded: the trial key's daily quota is used up");
    println!("  curl -i -H 'x-api-key: {TRIAL_KEY}' {base}/pets");
    println!("  # 429 Too Many Requests after the free plan's burst of 3");
    println!("  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'x-api-key: {FREE_KEY}' {base}/pets; done");
    println!("  # 403: key bound to another stage; 200 without a key on the public health check");
    println!("  curl -i -H 'x-api-key: {STAGING_KEY}' {base}/pets");
    println!("  curl -i {base}/health");
    println!();
    if args.admin_token.is_some() {
        // The token itself is never printed: set ADMIN_TOKEN to the value given to --admin-token.
        println!("Admin API (API Gateway's wire format) under {base}/admin (ADMIN_TOKEN: your --admin-token):");
        println!("  curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" {base}/admin/usageplans");
        println!(
            "  curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" \\\n    \
             '{base}/admin/usageplans/silver/usage?keyId=k-acme&startDate=2026-11-01&endDate=2026-11-30'"
        );
    }
    if let (Some(id), Some(_)) = (&args.admin_access_key, &args.admin_secret_key) {
        println!("  AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY=... \\");
        println!("    aws apigateway get-usage-plans --endpoint-url {base}/admin --region us-east-1");
    }
    if args.admin_token.is_some() || args.admin_access_key.is_some() {
        println!();
    }
}

/// Mounts the admin API under `/admin` when `--admin-token` or SigV4 credentials are given
/// (outside the usage-plan layer: admin calls carry no API key).
fn admin(args: &common::Args, app: Router, store: impl ManagedKeyStore, usage: Usage) -> Router {
    if args.admin_token.is_none() && args.admin_access_key.is_none() {
        return app;
    }
    let mut auth = AdminAuth::new();
    if let Some(token) = &args.admin_token {
        auth = auth.bearer(token.as_str());
    }
    if let (Some(id), Some(secret)) = (&args.admin_access_key, &args.admin_secret_key) {
        auth = auth.sigv4(id.as_str(), secret.as_str());
    }

    app.nest("/admin", AdminRouter::new(store, auth).usage(usage).into_router())
}

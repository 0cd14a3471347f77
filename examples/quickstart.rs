//! A petstore API behind usage plans.
//!
//! ```text
//! cargo run --example quickstart                      # built-in demo config, prints keys and curl lines
//! cargo run --example quickstart -- --config plans.toml --addr 127.0.0.1:8080
//! cargo run --features redis --example quickstart -- --redis redis://127.0.0.1:6379   # shared limits
//! (umask 077; head -c 24 /dev/urandom | base64 > admin-token.txt)   # a secret only you can read
//! cargo run --example quickstart -- --admin-token-file admin-token.txt --state-file usage.json
//! # one replica of a deployment: keys and plans in PostgreSQL, counters and usage in Redis
//! USAGE_PLANS_ADMIN_TOKEN="$(cat admin-token.txt)" cargo run --features sqlx,redis --example quickstart -- \
//!     --addr 127.0.0.1:3001 --database-url postgres://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379
//! ```
//!
//! `--database-url URL` keeps keys and plans in the SQL store: it migrates the schema, loads
//! `--config` (or the demo configuration) into an empty database at its first start, and keeps
//! the database as it is on later starts (saying that `--config` was not applied; the stage is
//! still read from it). Every process given the same `--database-url` and `--redis` behaves as one
//! deployment, admin API included.
//!
//! An admin token (`USAGE_PLANS_ADMIN_TOKEN`, `--admin-token-file PATH`, or `--admin-token` which
//! `ps` shows; at least 16 characters) mounts the admin API (API Gateway's REST wire format:
//! boto3 and the aws CLI work with `--endpoint-url http://127.0.0.1:3000/admin`) under `/admin`,
//! answering that bearer token, and SigV4 with `--admin-access-key ID` and a secret key
//! (`USAGE_PLANS_ADMIN_SECRET_KEY` or `--admin-secret-key-file PATH`). No secret is ever printed.
//!
//! `--state-file PATH` keeps keys, plans (with the admin API's changes) and usage counts across
//! restarts: one process per file (a lock; a second waits `--state-lock-wait`, then refuses),
//! written atomically (0600) every `--state-interval` and at shutdown. Which keys and plans win
//! when `--config` was edited is printed at start, and settled by `--keys-from` when both changed
//! (`examples/common/state.rs` has the rule).
//!
//! The server gives a client `--header-read-timeout` (10 s) to send a request head, refuses heads
//! over 64 KiB (431), and at Ctrl-C or SIGTERM writes the state first, then lets open requests
//! finish for at most `--drain-timeout` (10 s).

use axum::extract::{Path, Query, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::usage::Usage;
use tower_usage_plans::{Caller, ManagedKeyStore};

mod common;

const TRIAL_KEY: &str = "trial-0123456789abcdefghij";
const GOLD_KEY: &str = "acme-0123456789abcdefghij";
const FREE_KEY: &str = "free-0123456789abcdefghij";
const STAGING_KEY: &str = "staging-0123456789abcdefghij";
const ACME_CI_KEY: &str = "acme-ci-0123456789abcdefghij";

/// The longest wait `GET /slow?ms=N` accepts.
const MAX_SLOW_MS: u64 = 10_000;

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

/// `GET /whoami`: the `Caller` the layer put in the request, as JSON (never the key value).
async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "keyId": caller.key_id(),
        "keyName": caller.key_name(),
        "planId": caller.plan_id(),
        "planName": caller.plan_name(),
        "customerId": caller.customer_id(),
        "api": caller.api(),
        "stage": caller.stage(),
        "tags": caller.tags(),
        "quotaRemaining": caller.quota_remaining(),
        "bucketRemaining": caller.bucket_remaining(),
    }))
}

/// `GET /slow?ms=N`: answers 200 after N milliseconds (at most 10,000), to show a concurrency cap.
async fn slow(Query(slow): Query<Slow>) -> Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)> {
    let ms = slow.ms.unwrap_or(1000);
    if ms > MAX_SLOW_MS {
        let message = format!("ms must be at most {MAX_SLOW_MS}, got {ms}");
        return Err((StatusCode::BAD_REQUEST, Json(serde_json::json!({ "message": message }))));
    }
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Ok(Json(serde_json::json!({ "sleptMs": ms })))
}

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
        .route("/whoami", get(whoami))
        .route("/slow", get(slow))
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
    // The lock first: a second process on the same state file waits here, before reading it.
    let state = common::StateFile::open(&args);
    let (config, digest) = common::config_and_digest(&args);
    let Some(state) = state else {
        return serve(&args, tower_usage_plans::InMemoryKeyStore::from_config(config), None, None).await;
    };
    let store = state.store(&args, &config, &digest);
    let kept = Kept { state, store: store.clone(), config, digest };
    serve(&args, store, None, Some(kept)).await;
}

/// The state file of an in-memory store, and what it compares the store with.
struct Kept {
    state: common::StateFile,
    store: tower_usage_plans::InMemoryKeyStore,
    config: tower_usage_plans::Config,
    digest: String,
}

/// Serves the demo API over `store` (with `stage`, for a store that carries none) until Ctrl-C
/// or SIGTERM; `state` is the state file of an in-memory store.
async fn serve<S>(args: &common::Args, store: S, stage: Option<tower_usage_plans::Stage>, kept: Option<Kept>)
where
    S: tower_usage_plans::KeyStore + ManagedKeyStore + Clone,
{
    let (layer, redis) = common::layer(args, store.clone(), stage).await;
    let live = match kept {
        Some(k) => Some(k.state.start(args, &k.store, &k.config, &k.digest, &layer).await),
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

    // The state is written as soon as the server stops accepting, before it waits on clients
    // (a supervisor's SIGKILL after its grace period then loses nothing counted so far), and
    // once more when the last connection closed.
    let stopped = {
        let live = live.clone();
        async move {
            if let Some(live) = live {
                live.save().await;
                println!("keys, plans and usage counts written to the state file");
            }
        }
    };
    common::serve(args, listener, app, stopped).await;
    if let Some(live) = live {
        live.save().await;
        println!("state file written again after the last request");
    }
    if let Some(redis) = redis {
        redis.shutdown().await;
    }
}

/// The demo keys and ready-to-paste curl lines (key values of the demo configuration only).
fn banner(args: &common::Args, base: &str) {
    println!("Demo usage plans for stage petstore/prod (see examples/plans.toml):");
    println!("  acme     (silver: 50 req/s, burst 100, 5000/month)  x-api-key: {GOLD_KEY}");
    println!("  acme-ci  (silver, its own 1 req/s, burst 2, 20000/month from the 15th; customer acme)");
    println!("                                                       x-api-key: {ACME_CI_KEY}");
    println!("  free     (free: 1 req/s, burst 3, 100/day)           x-api-key: {FREE_KEY}");
    println!("  customer acme: 100000/month and 2 requests in flight, shared by acme and acme-ci");
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
    println!("  # 200: who is calling (key, plan, customer, stage), as the handler sees it");
    println!("  curl -s -H 'x-api-key: {GOLD_KEY}' {base}/whoami");
    println!("  # acme-ci's own burst of 2 (not silver's 100); its RateLimit header counts to the 15th");
    println!("  for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'x-api-key: {ACME_CI_KEY}' {base}/pets; done");
    println!("  # 429 Too Many Requests (Retry-After: 1): customer acme allows 2 requests in flight");
    let slow = format!("curl -s -o /dev/null -H 'x-api-key: {GOLD_KEY}' '{base}/slow?ms=2000' &");
    println!(
        "  ({slow}); ({slow}); sleep 0.5; \\\n    \
         curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'x-api-key: {GOLD_KEY}' '{base}/slow?ms=10'"
    );
    println!();
    if args.admin_token.is_some() {
        // The token itself is never printed.
        println!("Admin API (API Gateway's wire format) under {base}/admin (set ADMIN_TOKEN to your admin token):");
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
        auth = auth.try_bearer(token.as_str()).unwrap_or_else(|e| {
            eprintln!("error: admin token: {e} (make one with: head -c 24 /dev/urandom | base64)");
            std::process::exit(2);
        });
    }
    if let (Some(id), Some(secret)) = (&args.admin_access_key, &args.admin_secret_key) {
        auth = auth.sigv4(id.as_str(), secret.as_str());
    }

    app.nest("/admin", AdminRouter::new(store, auth).usage(usage).into_router())
}

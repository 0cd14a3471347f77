//! Issue 13's acceptance: three quickstart processes on one PostgreSQL database (`DATABASE_URL`,
//! a fresh schema) and one `redis-server` this test spawns behave as one deployment, driven with
//! boto3 (`tests/replicas_boto3.py`). Skips loudly when PostgreSQL, redis-server, python3 with
//! boto3 or the quickstart binary is missing, unless `USAGE_PLANS_REQUIRE_SERVICES=1`.

mod common;

use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn require() -> bool {
    std::env::var("USAGE_PLANS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(!require(), "USAGE_PLANS_REQUIRE_SERVICES=1 but {why}");
    eprintln!("\n*** SKIPPED three_replicas_behave_as_one_deployment: {why} ***\n");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A redis-server of this test's own, killed on drop.
fn redis_server() -> Option<(common::Killed, String)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let killed = common::Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((killed, format!("redis://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A quickstart replica, started.
fn start_replica(database_url: &str, redis_url: &str) -> std::process::Child {
    Command::new(common::example_binary("quickstart"))
        .args(["--addr", "127.0.0.1:0", "--database-url", database_url, "--redis", redis_url])
        .args(["--admin-access-key", "AKIDREPLICAS"])
        .env("USAGE_PLANS_ADMIN_SECRET_KEY", "replicas-secret-access-key")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the quickstart example was built")
}

/// Waits until `child` listens; returns it with its base URL and what it said of the database.
fn listening(mut child: std::process::Child) -> (common::Killed, String, String) {
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let process = common::Killed(child);
    let mut database = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "quickstart exited early");
        if line.starts_with("database: ") {
            database = line.trim().to_owned();
        }
        if let Some(base) = line.trim().strip_prefix("listening on ") {
            // Keep reading its output, so that it never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return (process, base.to_owned(), database);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behave_as_one_deployment() {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else { return skip("DATABASE_URL is not set") };
    if !common::example_binary("quickstart").exists() {
        return skip("the quickstart example was not built");
    }
    let Some((_redis, redis_url)) = redis_server() else { return skip("redis-server could not be started") };
    // A fresh schema: the first replica finds the database empty and loads the demo config.
    let schema = format!("replicas_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.expect("PostgreSQL at DATABASE_URL");
    admin.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");

    // All three at the same moment against the empty database: one loads the demo config, the
    // others wait for it (an advisory lock) and keep what they find.
    let started: Vec<_> = (0..3).map(|_| start_replica(&url, &redis_url)).collect();
    let replicas: Vec<_> = started.into_iter().map(listening).collect();
    let said: Vec<&str> = replicas.iter().map(|(_, _, db)| db.as_str()).collect();
    let loaded = said.iter().filter(|s| s.starts_with("database: empty, loaded")).count();
    let kept = said.iter().filter(|s| s.contains("the demo configuration was not applied")).count();
    assert_eq!((loaded, kept), (1, 2), "{said:#?}");
    let plans: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.usage_plans_plans"))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let demo = tower_usage_plans::Config::from_path("examples/plans.toml").unwrap();
    assert_eq!(plans, demo.plans().len() as i64, "the demo's plans, loaded once");
    eprintln!("replicas started together: {said:?}; {plans} plans in the database");
    let mut python = tokio::process::Command::new("python3");
    python.arg("tests/replicas_boto3.py");
    for (i, (_, base, _)) in replicas.iter().enumerate() {
        python.env(format!("ADMIN_{}", i + 1), format!("{base}/admin")).env(format!("DATA_{}", i + 1), base);
    }
    python.env("AWS_ACCESS_KEY_ID", "AKIDREPLICAS").env("AWS_SECRET_ACCESS_KEY", "replicas-secret-access-key");
    let out = python.output().await.expect("python3 runs");
    if out.status.code() == Some(97) {
        return skip("python3 with boto3 is not installed (pip install boto3)");
    }
    assert!(out.status.success(), "the boto3 scenario failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("figures: {r}");
    let within = |name: &str, limit: f64| {
        let v = &r[name];
        let times: Vec<f64> = match v {
            Value::Array(a) => a.iter().map(|t| t.as_f64().unwrap_or(f64::INFINITY)).collect(),
            t => vec![t.as_f64().unwrap_or(f64::INFINITY)],
        };
        assert!(times.iter().all(|t| *t <= limit), "{name}: {v} (limit {limit} s)");
    };
    within("replica2_admits_after", 1.0);
    // One request of the quota went to the probe of replica 2.
    assert_eq!(r["admitted_of_60"], 29, "{r}");
    assert_eq!(r["refused_429_of_60"], 31, "{r}");
    assert_eq!(r["bodies_429"], serde_json::json!([r#"{"message":"Limit Exceeded"}"#]), "{r}");
    assert_eq!(r["usage_used"], 30, "{r}");
    within("usage_30_after", 2.0);
    assert_eq!(r["admitted_after_update"], 5, "{r}");
    // Every replica that had cached the spent quota serves the new one at once (each leases one
    // request at a time this close to the limit, so round-robin spreads them).
    let spread = |name: &str| r[name].as_array().unwrap().iter().all(|n| n.as_u64().unwrap_or(0) >= 1);
    assert!(spread("admitted_after_update_by_replica"), "{r}");
    // Leases held on every replica are given back before the second update sets the counter.
    assert_eq!(r["admitted_before_second_update"], 6, "{r}");
    assert_eq!(r["admitted_after_second_update"], 10, "{r}");
    within("disabled_403_after", 1.0);
    within("removed_403_after", 1.0);
    within("plan_deleted_403_after", 1.0);
    within("enabled_again_after", 2.0);
    within("added_again_after", 2.0);
    drop(replicas);
    admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
}

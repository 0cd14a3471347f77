//! A real axum server on a loopback port, driven by a real HTTP client; and the quickstart
//! example itself, driven by the curl lines it prints.

mod common;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};

const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"
public_methods = ["/health/GET"]

[[plans]]
id = "p"
throttle = { rate = 0.01, burst = 3 }
quota = { limit = 1000, period = "MONTH" }
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k"
value = "k-0123456789abcdefghij"
plans = ["p"]
"#;

async fn fetch(url: &str, key: Option<&str>) -> (u16, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut req = http::Request::get(url);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn axum_server_on_loopback() {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let app = axum::Router::new()
        .route("/pets", axum::routing::get(|| async { "[]" }))
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(UsagePlanLayer::new(store).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let k = Some("k-0123456789abcdefghij");

    let (status, headers, body) = fetch(&format!("{base}/pets"), k).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert!(headers.contains_key("ratelimit-policy"));
    let (status, headers, body) = fetch(&format!("{base}/pets"), None).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    assert_eq!(headers["x-amzn-errortype"], "ForbiddenException");
    assert_eq!(fetch(&format!("{base}/health"), None).await.0, 200);
    assert_eq!(fetch(&format!("{base}/pets"), k).await.0, 200);
    assert_eq!(fetch(&format!("{base}/pets"), k).await.0, 200);
    let (status, headers, body) = fetch(&format!("{base}/pets"), k).await;
    assert_eq!((status, body.as_str()), (429, r#"{"message":"Too Many Requests"}"#));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    server.abort();
}

fn have_curl() -> bool {
    Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn quickstart_prints_curl_lines_that_answer_as_printed() {
    let bin = common::example_binary("quickstart");
    if !bin.exists() || !have_curl() {
        let why =
            if bin.exists() { "curl is not installed".to_owned() } else { format!("{} was not built", bin.display()) };
        assert!(std::env::var("USAGE_PLANS_REQUIRE_SERVICES").as_deref() != Ok("1"), "required but {why}");
        eprintln!("SKIPPED quickstart_prints_curl_lines_that_answer_as_printed: {why}");
        return;
    }
    let child = Command::new(&bin).args(["--addr", "127.0.0.1:0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut child = common::Killed(child);
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "quickstart exited early; printed {lines:?}");
        if line.starts_with("listening on http://") {
            break;
        }
        lines.push(line.trim().to_owned());
        assert!(Instant::now() < deadline);
    }
    // Each "# <status> ..." comment is followed by the command(s) that produce it.
    let mut checked = Vec::new();
    for pair in lines.windows(2) {
        let (comment, cmd) = (&pair[0], &pair[1]);
        let Some(expect) = comment.strip_prefix("# ").and_then(|c| c.get(..3)) else { continue };
        if !cmd.starts_with("curl ") {
            continue;
        }
        let out =
            Command::new("sh").arg("-c").arg(format!("{cmd} -s -o /dev/null -w '%{{http_code}}'")).output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(got, expect, "{cmd}");
        checked.push(expect.to_owned());
    }
    assert!(
        checked.contains(&"200".to_owned())
            && checked.contains(&"403".to_owned())
            && checked.contains(&"429".to_owned()),
        "{checked:?}"
    );
    // The throttle loop: burst 3, then 429.
    let looped = lines.iter().find(|l| l.starts_with("for i in")).expect("a loop line");
    let out = Command::new("sh").arg("-c").arg(looped).output().unwrap();
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(codes, ["200", "200", "200", "429", "429"]);
    // Issue 16: a key's own burst of 2 (its plan's is 100), and a cap of one request in flight.
    let own = lines.iter().filter(|l| l.starts_with("for i in")).nth(1).expect("the override loop");
    let out = Command::new("sh").arg("-c").arg(own).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["200", "200", "429"], "{own}");
    let at = lines.iter().position(|l| l.starts_with("(curl") && l.contains("/slow")).expect("the concurrency line");
    let cmd = format!("{} {}", lines[at].trim_end_matches('\\'), lines[at + 1]);
    let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "429", "{cmd}");
    // /whoami answers the Caller as JSON.
    let who = lines.iter().find(|l| l.starts_with("curl") && l.contains("/whoami")).expect("the whoami line");
    let out = Command::new("sh").arg("-c").arg(who).output().unwrap();
    let caller: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&caller["keyId"], &caller["keyName"], &caller["planId"], &caller["customerId"], &caller["stage"]),
        (&"k-acme".into(), &"acme".into(), &"silver".into(), &"acme".into(), &"prod".into()),
        "{caller}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("0123456789abcdefghij"), "no key value in /whoami");
}

/// Starts the quickstart with `args` and returns it once it listens, with its base URL.
fn start_quickstart(args: &[&str]) -> Option<(common::Killed, String)> {
    let bin = common::example_binary("quickstart");
    if !bin.exists() {
        assert!(std::env::var("USAGE_PLANS_REQUIRE_SERVICES").as_deref() != Ok("1"), "{} was not built", bin.display());
        eprintln!("SKIPPED: {} was not built", bin.display());
        return None;
    }
    let child = Command::new(&bin).args(["--addr", "127.0.0.1:0"]).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut child = common::Killed(child);
    let mut reader = BufReader::new(child.0.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "quickstart exited early");
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            // Keep reading its output so that it never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return Some((child, addr.to_owned()));
        }
    }
}

/// `method` on the admin API (bearer token) with a JSON body; the JSON answer.
async fn admin(base: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{base}/admin{path}"))
        .header("authorization", "Bearer admin-secret-0123456789")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

async fn statuses_of(url: &str, key: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(fetch(url, Some(key)).await.0);
    }
    out
}

/// GetUsage through the admin API (bearer token): today's `[used, remaining]` of `key` in `plan`.
async fn used_today(base: &str, plan: &str, key: &str) -> (u64, u64) {
    let today = time::OffsetDateTime::now_utc().date();
    let day = format!("{:04}-{:02}-{:02}", today.year(), u8::from(today.month()), today.day());
    let url = format!("{base}/admin/usageplans/{plan}/usage?keyId={key}&startDate={day}&endDate={day}");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req =
        http::Request::get(url).header("authorization", "Bearer admin-secret-0123456789").body(Empty::new()).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let pair = &body["values"][key][0];
    (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap())
}

#[tokio::test]
async fn quickstart_keeps_every_counted_request_across_sigterm_and_restart() {
    let dir = std::env::temp_dir().join(format!("tup-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("usage.json");
    let state_arg = state.to_str().unwrap();
    let args = ["--admin-token", "admin-secret-0123456789", "--state-file", state_arg];
    let acme = Some("acme-0123456789abcdefghij");

    let Some((mut first, base)) = start_quickstart(&args) else { return };
    for _ in 0..25 {
        assert_eq!(fetch(&format!("{base}/pets"), acme).await.0, 200);
    }
    let (used, remaining) = used_today(&base, "silver", "k-acme").await;
    assert_eq!(used, 25);
    // A plan and a key made through the admin API, and used: they survive the restart too.
    let made = "made-0123456789abcdefghij";
    admin(
        &base,
        "POST",
        "/usageplans",
        r#"{"name": "Made", "apiStages": [{"apiId": "petstore", "stage": "prod"}],
        "quota": {"limit": 10, "period": "DAY"}}"#,
    )
    .await;
    let plans = admin(&base, "GET", "/usageplans?limit=500", "").await;
    let plan = plans["item"].as_array().unwrap().iter().find(|p| p["name"] == "Made").unwrap()["id"].clone();
    let plan = plan.as_str().unwrap();
    let key =
        admin(&base, "POST", "/apikeys", &format!(r#"{{"name": "made", "enabled": true, "value": "{made}"}}"#)).await;
    let key = key["id"].as_str().unwrap();
    admin(
        &base,
        "POST",
        &format!("/usageplans/{plan}/keys"),
        &format!(r#"{{"keyId": "{key}", "keyType": "API_KEY"}}"#),
    )
    .await;
    for _ in 0..4 {
        assert_eq!(fetch(&format!("{base}/pets"), Some(made)).await.0, 200);
    }
    // SIGTERM: a graceful shutdown writes the state file.
    let pid = first.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = first.0.wait().unwrap();
    assert!(status.success(), "quickstart exited with {status}");
    assert!(state.exists());

    let Some((_second, base)) = start_quickstart(&args) else { return };
    assert_eq!(used_today(&base, "silver", "k-acme").await, (25, remaining), "counts survive the restart");
    for _ in 0..5 {
        assert_eq!(fetch(&format!("{base}/pets"), acme).await.0, 200);
    }
    assert_eq!(used_today(&base, "silver", "k-acme").await, (30, remaining - 5));
    assert_eq!(used_today(&base, plan, key).await, (4, 6));
    let statuses: Vec<u16> = statuses_of(&format!("{base}/pets"), made, 7).await;
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429], "6 left of the 10");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A handler reads the `Caller` through the axum extractor (issue 16), on a real server; a route
/// without a key (a public method) gets `None` from `Option<Caller>`.
#[cfg(feature = "axum")]
#[tokio::test]
async fn an_axum_handler_reads_the_caller_through_the_extractor() {
    use tower_usage_plans::Caller;
    let store = InMemoryKeyStore::from_toml_str(
        &CONFIG.replace("id = \"k\"\n", "id = \"k\"\nname = \"Build bot\"\ncustomer_id = \"acme\"\n"),
    )
    .unwrap();
    let app = axum::Router::new()
        .route(
            "/pets",
            axum::routing::get(|caller: Caller| async move {
                format!(
                    "{}|{}|{}|{:?}|{}|{:?}",
                    caller.key_id(),
                    caller.key_name(),
                    caller.plan_id(),
                    caller.customer_id(),
                    caller.stage(),
                    caller.quota_remaining()
                )
            }),
        )
        .route("/health", axum::routing::get(|caller: Option<Caller>| async move { format!("{}", caller.is_some()) }))
        .layer(UsagePlanLayer::new(store).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let (status, _, body) = fetch(&format!("{base}/pets"), Some("k-0123456789abcdefghij")).await;
    assert_eq!((status, body.as_str()), (200, r#"k|Build bot|p|Some("acme")|prod|Some(999)"#));
    let (status, _, body) = fetch(&format!("{base}/health"), None).await;
    assert_eq!((status, body.as_str()), (200, "false"));
    server.abort();
}

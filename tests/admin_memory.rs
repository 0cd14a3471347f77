//! Memory the admin API holds for anonymous callers (issue 14, item 1), measured on a server in
//! a child process (this test binary, started again to serve the admin router with
//! `axum::serve`: HTTP/1.1, and HTTP/2 with prior knowledge) by its `VmRSS` and `VmHWM` in
//! `/proc/PID/status`:
//!
//! - 256 connections, each sending an anonymous `POST /admin/apikeys` with `Content-Length:
//!   1048576` and then 1 MiB - 1 byte of body; sampled while all of them are open, then the
//!   last bytes are sent;
//! - one HTTP/2 connection with 100 such requests at once, each sending its whole body.
//!
//! Growth is the peak (`VmHWM`) over the resident size before. Ignored (it takes a few seconds
//! and needs Linux): `cargo test --all-features --test admin_memory -- --ignored --nocapture`.
//! Asserts each growth is under 8 MiB. Figures are in BENCHMARKS.md.
#![cfg(all(feature = "admin", target_os = "linux"))]

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_usage_plans::admin::{AdminAuth, AdminRouter};
use tower_usage_plans::InMemoryKeyStore;

const TOKEN: &str = "adm_7Qx2Lr9TfKp4Wz8Nc3Vb6Hs1";
const BODY: usize = 1 << 20;
const CONNECTIONS: usize = 256;
const STREAMS: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;

/// The server, when started by [`anonymous_bodies_do_not_grow_the_server`].
#[test]
#[ignore = "the server of admin_memory, started by anonymous_bodies_do_not_grow_the_server"]
fn serve_for_measurement() {
    if std::env::var_os("ADMIN_MEMORY_SERVE").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = InMemoryKeyStore::from_toml_str("[stage]\napi = \"petstore\"\nname = \"prod\"").unwrap();
        let admin = AdminRouter::new(store, AdminAuth::new().bearer(TOKEN)).into_router();
        let app = axum::Router::new().nest("/admin", admin);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

/// A server in a child process, and its address.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start() -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["serve_for_measurement", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("ADMIN_MEMORY_SERVE", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Killed and waited for when dropped, whatever happens next.
        let mut server = Self { child, addr: String::new() };
        let mut reader = BufReader::new(server.child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the server exited early");
            // The harness prints `test serve_for_measurement ... ` on the same line.
            if let Some((_, addr)) = line.trim().split_once("listening on ") {
                server.addr = addr.to_owned();
                std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
                return server;
            }
        }
    }

    /// `VmRSS` and `VmHWM`, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints and returns the growth of the peak over `before` (bytes), and the resident growth.
fn report(what: &str, server: &Server, before: u64) -> f64 {
    let (rss, hwm) = server.memory();
    #[allow(clippy::cast_precision_loss)]
    let (peak, now) = ((hwm.saturating_sub(before)) as f64 / MIB, (rss.saturating_sub(before)) as f64 / MIB);
    #[allow(clippy::cast_precision_loss)]
    let base = before as f64 / MIB;
    println!("{what}: resident before {base:.1} MiB, peak growth {peak:.1} MiB, resident growth {now:.1} MiB");
    peak
}

async fn http1_connections(server: &Server) -> f64 {
    let (before, _) = server.memory();
    let head = format!(
        "POST /admin/apikeys HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {BODY}\r\n\r\n",
        server.addr
    );
    let body = Bytes::from(vec![b' '; BODY]);
    let mut open = Vec::new();
    for _ in 0..CONNECTIONS {
        let (addr, head, body) = (server.addr.clone(), head.clone(), body.clone());
        open.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // A refused caller may be disconnected: writes then fail, which is what we want.
            let sent = async {
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body[..BODY - 1]).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(20), sent).await;
            stream
        }));
    }
    let mut streams = Vec::new();
    for task in open {
        streams.push(task.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = report("HTTP/1.1, 256 connections, all open", server, before);
    for stream in &mut streams {
        let _ = stream.write_all(b" ").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = report("HTTP/1.1, 256 connections, bodies complete", server, before);
    held.max(done)
}

async fn http2_streams(server: &Server) -> f64 {
    let (before, _) = server.memory();
    let io = TokioIo::new(TcpStream::connect(&server.addr).await.unwrap());
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    let body = Bytes::from(vec![b' '; BODY]);
    let mut calls = Vec::new();
    for _ in 0..STREAMS {
        let mut sender = sender.clone();
        let request = http::Request::post(format!("http://{}/admin/apikeys", server.addr))
            .header("content-type", "application/json")
            .header("content-length", BODY.to_string())
            .body(http_body_util::Full::new(body.clone()))
            .unwrap();
        calls.push(tokio::spawn(async move {
            let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request)).await;
            response.ok().and_then(Result::ok).map(|r| r.status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    // 403, or 429 once the failed authentications are slowed down: refused either way.
    assert!(statuses.iter().all(|s| matches!(s, Some(403 | 429))), "every stream is refused: {statuses:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    report("HTTP/2, 1 connection, 100 streams", server, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn anonymous_bodies_do_not_grow_the_server() {
    let server = Server::start();
    let h1 = http1_connections(&server).await;
    drop(server);
    let server = Server::start();
    let h2 = http2_streams(&server).await;
    assert!(h1 < 8.0, "HTTP/1.1: the server grew by {h1:.1} MiB");
    assert!(h2 < 8.0, "HTTP/2: the server grew by {h2:.1} MiB");
}

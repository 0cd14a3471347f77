//! Serving an axum app with bounds a server on the network needs: a time limit on request heads,
//! a size limit on them, and a shutdown that does not wait forever for a client.

use super::Args;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest request head (request line and headers) accepted: a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` (HTTP/1.1 and HTTP/2 with prior knowledge) until Ctrl-C or
/// SIGTERM, then:
/// 1. stops accepting connections;
/// 2. runs `stopped` (e.g. writes the state file), before waiting on any client;
/// 3. lets open connections finish their requests for at most `--drain-timeout`, then cuts them.
///
/// A client gets `--header-read-timeout` to send its first bytes (the auto server reads them
/// to tell HTTP/1.1 from HTTP/2, without a timer of its own) and then each request head
/// (HTTP/1.1); heads larger than [`MAX_HEAD_BYTES`] are refused with 431. HTTP/2 connections
/// that stop answering pings for 20 s are closed. Connections still open at the drain deadline
/// are cut before this returns, so nothing is counted after the state's last write. Handlers
/// see the peer's address as axum's `ConnectInfo<SocketAddr>` (the admin API slows down failed
/// logins per address with it).
pub async fn serve(
    args: &Args,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopped: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(args.header_read_timeout).max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = std::sync::Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let signal = super::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // keep serving the others.
                    eprintln!("warning: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(app.clone(), request)
        });
        let (builder, watcher, within) = (builder.clone(), graceful.watcher(), args.header_read_timeout);
        connections.spawn(async move {
            if !first_bytes(&stream, within).await {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            // A client that goes away mid-request is not the server's error.
            let _ = watcher.watch(connection.into_owned()).await;
        });
        // Reap the tasks of closed connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    println!("shutting down: no new connections");
    stopped.await;
    let open = graceful.count();
    if open > 0 {
        println!("waiting up to {:?} for {open} open connection(s) to finish", args.drain_timeout);
    }
    if tokio::time::timeout(args.drain_timeout, graceful.shutdown()).await.is_err() {
        eprintln!("warning: --drain-timeout {:?} passed: open connections were cut", args.drain_timeout);
    }
    connections.shutdown().await;
}

/// Waits, at most `within`, until the client has sent enough to tell HTTP/1.1 from HTTP/2: the
/// 24 bytes of HTTP/2's preface, or bytes that cannot begin it. False if it sends nothing
/// more in time, or goes away.
async fn first_bytes(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && (n == PREFACE.len() || !PREFACE.starts_with(&buf[..n])) => return true,
            // Part of the preface: peek again shortly (it answers at once while bytes wait).
            Ok(Ok(n)) if n > 0 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return false,
        }
    }
}

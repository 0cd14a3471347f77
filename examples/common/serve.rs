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
/// A client gets `--header-read-timeout` to send a request head (HTTP/1.1), and heads larger
/// than [`MAX_HEAD_BYTES`] are refused with 431. Handlers see the peer's address as axum's
/// `ConnectInfo<SocketAddr>` (the admin API slows down failed logins per address with it).
pub async fn serve(
    args: &Args,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopped: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(args.header_read_timeout).max_buf_size(MAX_HEAD_BYTES);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEAD_BYTES as u32);
    let graceful = GracefulShutdown::new();
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
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's error.
            let _ = connection.await;
        });
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
}

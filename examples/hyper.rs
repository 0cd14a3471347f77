//! A bare hyper 1.x server behind usage plans, without axum.
//!
//! ```text
//! cargo run --example hyper -- --addr 127.0.0.1:3001
//! curl -i -H 'x-api-key: acme-0123456789abcdefghij' http://127.0.0.1:3001/pets
//! ```

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use tower::util::BoxCloneService;
use tower::ServiceBuilder;
use tower_usage_plans::UsagePlanLayer;

mod common;

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from(format!("hello from {}\n", req.uri().path())))))
}

type Svc = BoxCloneService<Request<Incoming>, Response<BoxBody<Bytes, Infallible>>, Infallible>;

fn boxed<B>(resp: Response<B>) -> Response<BoxBody<Bytes, Infallible>>
where
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    resp.map(BodyExt::boxed)
}

#[tokio::main]
async fn main() {
    let args = common::args("hyper", 3001);
    let layer = common::built(UsagePlanLayer::new(common::store(&args)));
    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound socket has an address");
    if args.config.is_none() {
        println!("Try: curl -i -H 'x-api-key: acme-0123456789abcdefghij' http://{addr}/pets");
    }
    println!("listening on http://{addr}");
    let shutdown = common::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("error: accept: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // `--no-layer` serves the bare app (for overhead measurements).
        let svc: Svc = if args.no_layer {
            BoxCloneService::new(ServiceBuilder::new().map_response(boxed).service_fn(hello))
        } else {
            BoxCloneService::new(ServiceBuilder::new().map_response(boxed).layer(layer.clone()).service_fn(hello))
        };
        let header_read_timeout = args.header_read_timeout;
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client gets a bounded time, and bounded room, for its request head.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(common::MAX_HEAD_BYTES);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

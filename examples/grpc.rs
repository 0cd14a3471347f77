//! A tonic gRPC service (`helloworld.Greeter/SayHello`) behind usage plans.
//!
//! ```text
//! cargo run --example grpc                       # demo config, prints keys and a grpcurl line
//! cargo run --example grpc -- --config plans.toml --addr 127.0.0.1:50051
//! ```
//!
//! Refused calls get gRPC status codes, never HTTP errors: UNAUTHENTICATED (16) without a valid
//! key, PERMISSION_DENIED (7) for a disabled key or one not in this stage, RESOURCE_EXHAUSTED (8)
//! over a throttle or the quota. Method throttles name the gRPC path with POST, e.g.
//! `"/helloworld.Greeter/SayHello/POST"`.

use tonic::{Request, Response, Status};
use tower_usage_plans::UsagePlanLayer;

mod common;

/// The generated protobuf and tonic code (see `examples/proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod helloworld {
    include!("proto/helloworld.rs");
}

use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};

#[derive(Debug, Default)]
struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello {}!", request.into_inner().name) }))
    }
}

#[tokio::main]
async fn main() {
    let args = common::args("grpc", 50051);
    let store = common::store(&args);
    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound socket has an address");
    if args.config.is_none() && !args.no_layer {
        println!("Demo keys (see examples/plans.toml): acme-0123456789abcdefghij (50/s), free-0123456789abcdefghij (1/s, burst 3)");
        println!("Try (grpcurl):");
        println!(
            "  grpcurl -plaintext -import-path examples/proto -proto helloworld.proto -H 'x-api-key: acme-0123456789abcdefghij' -d '{{\"name\":\"you\"}}' {addr} helloworld.Greeter/SayHello"
        );
        println!();
    }
    println!("listening on http://{addr}");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let served = if args.no_layer {
        tonic::transport::Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .serve_with_incoming_shutdown(incoming, common::shutdown_signal())
            .await
    } else {
        tonic::transport::Server::builder()
            .layer(common::built(UsagePlanLayer::new(store)))
            .add_service(GreeterServer::new(MyGreeter))
            .serve_with_incoming_shutdown(incoming, common::shutdown_signal())
            .await
    };
    if let Err(e) = served {
        eprintln!("error: server: {e}");
        std::process::exit(1);
    }
}

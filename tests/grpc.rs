//! gRPC: a real tonic client against tonic servers on loopback behind the layer, and one layer in
//! front of a router that mixes REST (axum) and gRPC (tonic).

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod helloworld {
    include!("../examples/proto/helloworld.rs");
}

use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use std::net::SocketAddr;
use tonic::{Code, Request, Response, Status};
use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};

#[derive(Debug, Default)]
struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello {}!", request.into_inner().name) }))
    }
}

const CONFIG: &str = r#"
[stage]
api = "greeter"
name = "prod"

[[plans]]
id = "burst2"
throttle = { rate = 0.001, burst = 2 }
stages = [{ api = "greeter", stage = "prod" }]

[[plans]]
id = "quota2"
quota = { limit = 2, period = "DAY" }
stages = [{ api = "greeter", stage = "prod" }]

[[plans]]
id = "per-method"
[[plans.stages]]
api = "greeter"
stage = "prod"
methods = { "/helloworld.Greeter/SayHello/POST" = { rate = 0.001, burst = 1 } }

[[plans]]
id = "elsewhere"
stages = [{ api = "greeter", stage = "beta" }]

[[keys]]
id = "k-burst"
value = "burst-0123456789abcdefghij"
plans = ["burst2"]

[[keys]]
id = "k-quota"
value = "quota-0123456789abcdefghij"
plans = ["quota2"]

[[keys]]
id = "k-method"
value = "method-0123456789abcdefghij"
plans = ["per-method"]

[[keys]]
id = "k-beta"
value = "beta-0123456789abcdefghij"
plans = ["elsewhere"]

[[keys]]
id = "k-off"
value = "off-0123456789abcdefghij"
enabled = false
plans = ["burst2"]
"#;

fn layer() -> UsagePlanLayer {
    UsagePlanLayer::new(InMemoryKeyStore::from_toml_str(CONFIG).unwrap()).unwrap()
}

async fn tonic_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer())
            .add_service(GreeterServer::new(MyGreeter))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

/// One SayHello call with `key` in the metadata (as a tonic client sends it).
async fn say(addr: SocketAddr, key: Option<&str>) -> Result<String, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let key = key.map(|k| k.parse::<tonic::metadata::MetadataValue<_>>().unwrap());
    let mut client = GreeterClient::with_interceptor(channel, move |mut req: Request<()>| {
        if let Some(k) = &key {
            req.metadata_mut().insert("x-api-key", k.clone());
        }
        Ok(req)
    });
    let reply = client.say_hello(HelloRequest { name: "you".into() }).await?;
    Ok(reply.into_inner().message)
}

fn code(r: Result<String, Status>) -> (Code, String) {
    match r {
        Ok(m) => (Code::Ok, m),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

#[tokio::test]
async fn tonic_clients_get_grpc_codes() {
    let addr = tonic_server().await;
    assert_eq!(say(addr, Some("burst-0123456789abcdefghij")).await.unwrap(), "Hello you!");
    assert_eq!(code(say(addr, None).await), (Code::Unauthenticated, "missing API key".into()));
    assert_eq!(
        code(say(addr, Some("nope-0123456789abcdefghij")).await),
        (Code::Unauthenticated, "invalid API key".into())
    );
    assert_eq!(code(say(addr, Some("off-0123456789abcdefghij")).await).0, Code::PermissionDenied);
    assert_eq!(code(say(addr, Some("beta-0123456789abcdefghij")).await).0, Code::PermissionDenied);

    // Throttle: burst 2, the first call above used one.
    assert_eq!(code(say(addr, Some("burst-0123456789abcdefghij")).await).0, Code::Ok);
    let refused = say(addr, Some("burst-0123456789abcdefghij")).await.unwrap_err();
    assert_eq!((refused.code(), refused.message()), (Code::ResourceExhausted, "rate limit exceeded"));
    let pushback: u64 = refused.metadata().get("grpc-retry-pushback-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!(pushback > 900_000, "{pushback} ms until the next token (one per 1000 s)");

    // Quota: 2 a day.
    for _ in 0..2 {
        assert_eq!(code(say(addr, Some("quota-0123456789abcdefghij")).await).0, Code::Ok);
    }
    assert_eq!(
        code(say(addr, Some("quota-0123456789abcdefghij")).await),
        (Code::ResourceExhausted, "quota exceeded".into())
    );

    // A method throttle keyed by the gRPC path.
    assert_eq!(code(say(addr, Some("method-0123456789abcdefghij")).await).0, Code::Ok);
    assert_eq!(code(say(addr, Some("method-0123456789abcdefghij")).await).0, Code::ResourceExhausted);
}

#[tokio::test]
async fn one_layer_in_front_of_rest_and_grpc() {
    let grpc = tonic::service::Routes::new(GreeterServer::new(MyGreeter)).into_axum_router();
    let app = axum::Router::new().route("/pets", axum::routing::get(|| async { "[]" })).merge(grpc).layer(layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // REST clients get HTTP answers.
    let (status, body) = http_get(addr, None).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    // gRPC clients get gRPC codes from the same layer and the same buckets.
    assert_eq!(code(say(addr, None).await).0, Code::Unauthenticated);
    assert_eq!(code(say(addr, Some("burst-0123456789abcdefghij")).await).0, Code::Ok);
    assert_eq!(http_get(addr, Some("burst-0123456789abcdefghij")).await.0, 200);
    let (status, body) = http_get(addr, Some("burst-0123456789abcdefghij")).await;
    assert_eq!((status, body.as_str()), (429, r#"{"message":"Too Many Requests"}"#));
    assert_eq!(code(say(addr, Some("burst-0123456789abcdefghij")).await).0, Code::ResourceExhausted);
}

/// A plain HTTP/1.1 GET /pets.
async fn http_get(addr: SocketAddr, key: Option<&str>) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}/pets"));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = client.request(req.body(http_body_util::Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The example binary cargo built next to this test.
fn example(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[tokio::test]
async fn the_grpc_example_serves_the_greeter_behind_the_layer() {
    use tokio::io::AsyncBufReadExt;
    let bin = example("grpc");
    if !bin.exists() {
        assert!(std::env::var("USAGE_PLANS_REQUIRE_SERVICES").as_deref() != Ok("1"), "{} was not built", bin.display());
        eprintln!("SKIPPED the_grpc_example_serves_the_greeter_behind_the_layer: {} was not built", bin.display());
        return;
    }
    let config = std::env::temp_dir().join(format!("grpc-example-{}.toml", std::process::id()));
    std::fs::write(&config, CONFIG).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args(["--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next_line().await.unwrap().expect("the example printed its address");
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.parse().unwrap();
        }
    };
    assert_eq!(say(addr, Some("burst-0123456789abcdefghij")).await.unwrap(), "Hello you!");
    assert_eq!(code(say(addr, None).await).0, Code::Unauthenticated);
    assert_eq!(code(say(addr, Some("burst-0123456789abcdefghij")).await).0, Code::Ok);
    assert_eq!(code(say(addr, Some("burst-0123456789abcdefghij")).await).0, Code::ResourceExhausted);
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(config);
}

/// A greeter that answers with who called, read from the request's extensions (issue 16).
#[derive(Debug, Default)]
struct WhoGreeter;

#[tonic::async_trait]
impl Greeter for WhoGreeter {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let caller =
            request.extensions().get::<tower_usage_plans::Caller>().ok_or_else(|| Status::internal("no caller"))?;
        Ok(Response::new(HelloReply {
            message: format!("{} {} {}/{}", caller.key_id(), caller.plan_id(), caller.api(), caller.stage()),
        }))
    }
}

#[tokio::test]
async fn a_tonic_handler_reads_the_caller_from_the_extensions() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer())
            .add_service(GreeterServer::new(WhoGreeter))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    assert_eq!(
        code(say(addr, Some("method-0123456789abcdefghij")).await),
        (Code::Ok, "k-method per-method greeter/prod".to_owned())
    );
}

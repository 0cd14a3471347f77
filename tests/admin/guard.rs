//! What the admin API does before a handler runs: credentials checked from the request's head
//! before one body byte is read, the body read within a time budget and a byte budget shared
//! by every admin request, failed authentications slowed down per client address, bearer
//! tokens of at least 16 characters, SigV4's signed `host` pinned.

use crate::{Backend, Harness, Reply, TOKEN};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceExt;

/// A request body that sends `chunks` chunks of `chunk` bytes, then ends; or, with
/// `chunks == usize::MAX`, one that never sends anything. Counts how often it is polled.
#[derive(Debug)]
struct Counted {
    polls: Arc<AtomicUsize>,
    chunk: usize,
    left: usize,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        match self.left {
            usize::MAX => Poll::Pending,
            0 => Poll::Ready(None),
            _ => {
                self.left -= 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; self.chunk])))))
            }
        }
    }
}

/// A body that never comes, and its poll counter.
fn pending() -> (Body, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    (Body::new(Counted { polls: Arc::clone(&polls), chunk: 0, left: usize::MAX }), polls)
}

/// `chunks` chunks of `chunk` spaces (whitespace: valid before any JSON), and its poll counter.
fn spaces(chunk: usize, chunks: usize) -> (Body, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    (Body::new(Counted { polls: Arc::clone(&polls), chunk, left: chunks }), polls)
}

/// Sends `request`, giving up (a hang) after 30 s of (paused, auto-advancing) time.
async fn send_within(h: &Harness, request: Request<Body>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(30), h.send(request)).await;
    response.expect("the admin API did not answer within 30 s")
}

#[tokio::test(start_paused = true)]
async fn a_caller_without_credentials_is_refused_before_its_body_arrives() {
    let h = Harness::new(Backend::Memory).await;
    for authorization in [None, Some("Bearer not-the-admin-token-at-all"), Some("Basic YWRtaW46YWRtaW4=")] {
        let (body, polls) = pending();
        let mut request = Request::post("/admin/apikeys").header("content-length", "1000");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let reply = send_within(&h, request.body(body).unwrap()).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{authorization:?}: {}", reply.body);
        assert_eq!(polls.load(Ordering::SeqCst), 0, "{authorization:?}: the body was polled");
    }
}

#[tokio::test]
async fn a_wrong_bearer_token_is_refused_without_reading_the_body() {
    let h = Harness::new(Backend::Memory).await;
    let (body, polls) = spaces(64 << 10, 16);
    let request = Request::post("/admin/usageplans")
        .header("authorization", "Bearer not-the-admin-token-at-all")
        .header("content-length", (1usize << 20).to_string())
        .body(body)
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.error_type.as_deref(), Some("UnrecognizedClientException"));
    assert_eq!(polls.load(Ordering::SeqCst), 0, "the body of a refused request was polled");
    // The right token: the body is read (and is not a plan).
    let (body, polls) = spaces(1 << 10, 4);
    let request =
        Request::post("/admin/usageplans").header("authorization", format!("Bearer {TOKEN}")).body(body).unwrap();
    assert_eq!(h.send(request).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(polls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    for (timeout, configured) in [(Duration::from_secs(10), false), (Duration::from_secs(2), true)] {
        let h = Harness::with(Backend::Memory, |r| if configured { r.body_timeout(timeout) } else { r }).await;
        let (body, polls) = pending();
        let request = Request::post("/admin/apikeys")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-length", "1000")
            .body(body)
            .unwrap();
        let start = tokio::time::Instant::now();
        let reply = send_within(&h, request).await;
        assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT, "{}", reply.body);
        assert_eq!(reply.error_type.as_deref(), Some("RequestTimeoutException"));
        assert_eq!(reply.message(), format!("The request body did not arrive within {} ms", timeout.as_millis()));
        assert_eq!(start.elapsed(), timeout, "answered when the timeout expired");
        assert!(polls.load(Ordering::SeqCst) > 0);
        // The router still serves.
        h.call("GET", "/usageplans", "").await.expect(200);
    }
}

#[tokio::test]
async fn body_bytes_held_by_all_requests_are_bounded() {
    let h = Harness::with(Backend::Memory, |r| r.max_buffered_bytes(1000)).await;
    let post = |length: Option<usize>, body: Body| {
        let mut request = Request::post("/admin/usageplans").header("authorization", format!("Bearer {TOKEN}"));
        if let Some(n) = length {
            request = request.header("content-length", n.to_string());
        }
        request.body(body).unwrap()
    };
    // A first request declares 800 bytes and holds them while its body does not come.
    let (body, first_polls) = pending();
    let first = tokio::spawn(h.app.clone().oneshot(post(Some(800), body)));
    while first_polls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // A second one declaring 800 does not fit: refused before its body is read.
    let (body, polls) = spaces(100, 8);
    let reply = h.send(post(Some(800), body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(reply.error_type.as_deref(), Some("ServiceUnavailableException"));
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    // Nor does a chunked one whose bytes pass the 200 left as they arrive.
    let (body, polls) = spaces(100, 3);
    let response = h.app.clone().oneshot(post(None, body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(polls.load(Ordering::SeqCst), 3, "refused at the third chunk");
    // One that fits is served meanwhile.
    let (body, _) = spaces(100, 2);
    assert_eq!(h.send(post(Some(200), body)).await.status, StatusCode::BAD_REQUEST, "read, and not a plan");
    // When the first one ends, its bytes are given back.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let (body, _) = spaces(100, 8);
    assert_eq!(h.send(post(Some(800), body)).await.status, StatusCode::BAD_REQUEST);
    let (body, _) = spaces(100, 8);
    assert_eq!(h.send(post(None, body)).await.status, StatusCode::BAD_REQUEST);
}

/// A GET of the plans from `ip` with `authorization`.
fn from(ip: [u8; 4], authorization: &str) -> Request<Body> {
    let mut request =
        Request::get("/admin/usageplans").header("authorization", authorization).body(Body::empty()).unwrap();
    let addr = std::net::SocketAddr::from((ip, 40_000));
    request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    request
}

#[tokio::test]
async fn failed_authentications_are_slowed_down_per_address() {
    let clock = tower_usage_plans::ManualClock::new(std::time::SystemTime::now());
    let h = Harness::with(Backend::Memory, |r| r.clock(clock.clone())).await;
    let (wrong, right) = ("Bearer not-the-admin-token-at-all", format!("Bearer {TOKEN}"));
    let a = [10, 0, 0, 1];
    for n in 0..10 {
        // A success costs nothing.
        assert_eq!(h.send(from(a, &right)).await.status, StatusCode::OK);
        assert_eq!(h.send(from(a, wrong)).await.status, StatusCode::FORBIDDEN, "failure {n}");
    }
    let throttled = |reply: &Reply| {
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
        assert_eq!(reply.error_type.as_deref(), Some("TooManyRequestsException"));
        assert_eq!(reply.body, serde_json::json!({"message": "Too Many Requests"}));
    };
    // The 11th failure is not heard, nor is the right token, until a failure is allowed again.
    throttled(&h.send(from(a, wrong)).await);
    let response = h.app.clone().oneshot(from(a, &right)).await.unwrap();
    assert_eq!(
        (response.status(), &response.headers()["retry-after"]),
        (StatusCode::TOO_MANY_REQUESTS, &"1".parse().unwrap())
    );
    // Another address is not affected.
    let b = [10, 0, 0, 2];
    assert_eq!(h.send(from(b, wrong)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.send(from(b, &right)).await.status, StatusCode::OK);
    // A second later, one more try.
    clock.advance(Duration::from_millis(999));
    throttled(&h.send(from(a, &right)).await);
    clock.advance(Duration::from_millis(1));
    assert_eq!(h.send(from(a, &right)).await.status, StatusCode::OK);
    assert_eq!(h.send(from(a, wrong)).await.status, StatusCode::FORBIDDEN);
    throttled(&h.send(from(a, &right)).await);
    // The table is bounded: 4,096 other addresses failing push `a` out (it failed first), and
    // it starts again with a full allowance.
    for n in 0..4096u32 {
        clock.advance(Duration::from_micros(1));
        let [_, x, y, z] = n.to_be_bytes();
        assert_eq!(h.send(from([172, x, y, z], wrong)).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(h.send(from(a, &right)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_failed_auth_limit_can_be_configured_or_turned_off() {
    let clock = tower_usage_plans::ManualClock::new(std::time::SystemTime::now());
    let h = Harness::with(Backend::Memory, |r| r.clock(clock.clone()).failed_auth_limit(2, 0.25)).await;
    let wrong = "Bearer not-the-admin-token-at-all";
    // Without ConnectInfo every caller shares one allowance.
    let anonymous = || Request::get("/admin/usageplans").header("authorization", wrong).body(Body::empty()).unwrap();
    assert_eq!(h.send(anonymous()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.send(anonymous()).await.status, StatusCode::FORBIDDEN);
    let response = h.app.clone().oneshot(anonymous()).await.unwrap();
    assert_eq!(
        (response.status(), &response.headers()["retry-after"]),
        (StatusCode::TOO_MANY_REQUESTS, &"4".parse().unwrap())
    );
    clock.advance(Duration::from_secs(4));
    assert_eq!(h.send(anonymous()).await.status, StatusCode::FORBIDDEN);

    let h = Harness::with(Backend::Memory, |r| r.no_failed_auth_limit()).await;
    for _ in 0..50 {
        assert_eq!(h.send(from([10, 0, 0, 1], wrong)).await.status, StatusCode::FORBIDDEN);
    }
}

#[test]
#[should_panic(expected = "AdminRouter::failed_auth_limit: burst must be at least 1")]
fn a_zero_burst_is_a_mistake() {
    let _ = tower_usage_plans::admin::AdminRouter::new(
        tower_usage_plans::InMemoryKeyStore::from_toml_str(crate::CONFIG).unwrap(),
        tower_usage_plans::admin::AdminAuth::new(),
    )
    .failed_auth_limit(0, 1.0);
}

/// `X-Amz-Date` for `at`.
fn amz_date(at: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    let (date, clock) = (t.date(), t.time());
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}

/// A SigV4 `Authorization` of `access_key_id` at `stamp` whose signature is wrong (zeros).
fn wrongly_signed(access_key_id: &str, stamp: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{}/us-east-1/apigateway/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}",
        &stamp[..8],
        "0".repeat(64)
    )
}

#[tokio::test(start_paused = true)]
async fn sigv4_with_an_unknown_access_key_id_is_refused_before_its_body_arrives() {
    let h = Harness::with(Backend::Memory, |r| r).await;
    let stamp = amz_date(std::time::SystemTime::now());
    let authorization = wrongly_signed("AKIDNOBODY", &stamp);
    let (body, polls) = pending();
    let request = Request::post("/admin/apikeys")
        .header("host", "127.0.0.1:8080")
        .header("x-amz-date", &stamp)
        .header("authorization", authorization)
        .header("content-length", "1000")
        .body(body)
        .unwrap();
    let reply = send_within(&h, request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.error_type.as_deref(), Some("UnrecognizedClientException"));
    assert_eq!(polls.load(Ordering::SeqCst), 0);
}

/// A caller that knows an access key id (not a secret: the quickstart prints it) but not its
/// secret cannot hold body budget for free: until its signature is checked over the body, its
/// request counts as a failure of its address, also when the body never comes.
#[tokio::test(start_paused = true)]
async fn sigv4_requests_count_as_failures_until_their_signature_is_checked() {
    let start = std::time::SystemTime::now();
    let clock = tower_usage_plans::ManualClock::new(start);
    let store = tower_usage_plans::InMemoryKeyStore::from_toml_str(crate::CONFIG).unwrap();
    let auth = tower_usage_plans::admin::AdminAuth::new().sigv4("AKIDKNOWN", "known-secret-access-key");
    let admin = tower_usage_plans::admin::AdminRouter::new(store, auth)
        .clock(clock.clone())
        .body_timeout(Duration::from_secs(2))
        .failed_auth_limit(3, 1.0)
        .into_router();
    let app = axum::Router::new().nest("/admin", admin);
    let stamp = amz_date(start);
    let request = |body: Body, ip: [u8; 4]| {
        let mut request = Request::post("/admin/apikeys")
            .header("host", "127.0.0.1:8080")
            .header("x-amz-date", &stamp)
            .header("authorization", wrongly_signed("AKIDKNOWN", &stamp))
            .header("content-length", "1000")
            .body(body)
            .unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((ip, 40_000))));
        request
    };
    let a = [10, 0, 0, 7];
    // Three requests are let in at once (the burst), and their bodies never come.
    let waiting: Vec<_> = (0..3).map(|_| tokio::spawn(app.clone().oneshot(request(pending().0, a)))).collect();
    tokio::task::yield_now().await;
    // A fourth is not heard while the three are in flight, nor after they time out.
    let (body, polls) = pending();
    let fourth = app.clone().oneshot(request(body, a)).await.unwrap();
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    for waiting in waiting {
        assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::REQUEST_TIMEOUT);
    }
    assert_eq!(app.clone().oneshot(request(pending().0, a)).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // A body that comes, with a wrong signature, is a failure too.
    let b = [10, 0, 0, 8];
    for expected in [StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS]
    {
        let reply = app.clone().oneshot(request(Body::from(vec![b' '; 1000]), b)).await.unwrap();
        assert_eq!(reply.status(), expected);
    }
}

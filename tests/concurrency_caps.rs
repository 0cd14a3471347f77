//! Concurrency caps (issue 16): at most N requests of a key (its plan's or its own cap) or of a
//! customer in the inner service at once; a slot frees when the response body ends or is
//! dropped, when the request is cancelled, and when the inner service panics.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_usage_plans::{UsagePlanBody, UsagePlanLayer};

const PLANS: &str = r#"
[[plans]]
id = "three"
concurrency = 3
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k"
value = "k-0123456789abcdefghij"
plans = ["three"]

[[keys]]
id = "k-one"
value = "one-0123456789abcdefghij"
plans = ["three"]
concurrency = 1

[[keys]]
id = "k-a"
value = "a-0123456789abcdefghij"
customer_id = "acme"
plans = ["three"]

[[keys]]
id = "k-b"
value = "b-0123456789abcdefghij"
customer_id = "acme"
plans = ["three"]

[[customers]]
id = "acme"
concurrency = 2
"#;

/// A body that ends when its sender fires (or is dropped).
struct Gated(oneshot::Receiver<()>);

impl Body for Gated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll(cx).map(|_| None)
    }
}

use std::future::Future;

/// The inner service: counts requests that entered, waits for a permit of `gate`, then answers;
/// `/panic` panics once inside; `/stream` answers at once with a body that ends when told.
#[derive(Clone)]
struct Inner {
    entered: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    bodies: Arc<parking_lot::Mutex<Vec<oneshot::Sender<()>>>>,
}

type Resp = Response<UsagePlanBody<http_body_util::Either<String, Gated>>>;

impl Inner {
    fn new() -> Self {
        Self { entered: Arc::default(), gate: Arc::new(Semaphore::new(0)), bodies: Arc::default() }
    }

    fn layer(
        &self,
    ) -> impl Service<Request<String>, Response = Resp, Error = Infallible, Future: Send> + Clone + Send + 'static {
        let me = self.clone();
        let inner = service_fn(move |req: Request<String>| {
            let me = me.clone();
            async move {
                me.entered.fetch_add(1, Ordering::SeqCst);
                if req.uri().path() == "/stream" {
                    let (tx, rx) = oneshot::channel();
                    me.bodies.lock().push(tx);
                    return Ok::<_, Infallible>(Response::new(http_body_util::Either::Right(Gated(rx))));
                }
                if req.uri().path() == "/panic" {
                    panic!("the inner service panicked (on purpose)");
                }
                me.gate.acquire().await.unwrap().forget();
                Ok(Response::new(http_body_util::Either::Left(String::from("ok"))))
            }
        });
        let clock = clock();
        builder(PLANS, &clock).build().unwrap().layer(inner)
    }
}

fn req(path: &str, value: &str) -> Request<String> {
    Request::get(path).header("x-api-key", value).body(String::new()).unwrap()
}

async fn until(what: &str, f: impl Fn() -> bool) {
    // The runtime is single-threaded: yielding lets the spawned requests run.
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("timed out waiting for {what}");
}

/// Spawns a request and returns its task.
fn spawn<S>(svc: &S, path: &str, value: &str) -> tokio::task::JoinHandle<(StatusCode, http::HeaderMap)>
where
    S: Service<Request<String>, Response = Resp, Error = Infallible, Future: Send> + Clone + Send + 'static,
{
    let (svc, r) = (svc.clone(), req(path, value));
    tokio::spawn(async move {
        let resp = svc.oneshot(r).await.unwrap();
        (resp.status(), resp.headers().clone())
    })
}

fn assert_cap_refusal(status: StatusCode, headers: &http::HeaderMap) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["x-amzn-errortype"], "TooManyRequestsException");
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn a_cap_of_3_admits_exactly_3_concurrent_requests_and_frees_a_slot_on_completion() {
    let inner = Inner::new();
    let svc = inner.layer();
    let admitted: Vec<_> = (0..3).map(|_| spawn(&svc, "/slow", &key("k"))).collect();
    until("3 requests inside", || inner.entered.load(Ordering::SeqCst) == 3).await;
    for _ in 0..4 {
        let (status, headers) = spawn(&svc, "/slow", &key("k")).await.unwrap();
        assert_cap_refusal(status, &headers);
    }
    assert_eq!(inner.entered.load(Ordering::SeqCst), 3, "no fourth request reached the inner service");
    // One completes: one more may go in, and only one.
    inner.gate.add_permits(1);
    until("one request done", || admitted.iter().any(|t| t.is_finished())).await;
    let (finished, mut waiting): (Vec<_>, Vec<_>) = admitted.into_iter().partition(|t| t.is_finished());
    assert_eq!(finished.len(), 1);
    for t in finished {
        assert_eq!(t.await.unwrap().0, 200);
    }
    let next = spawn(&svc, "/slow", &key("k"));
    until("the next request inside", || inner.entered.load(Ordering::SeqCst) == 4).await;
    let (status, headers) = spawn(&svc, "/slow", &key("k")).await.unwrap();
    assert_cap_refusal(status, &headers);
    inner.gate.add_permits(10);
    assert_eq!(next.await.unwrap().0, 200);
    for t in waiting.drain(..) {
        assert_eq!(t.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn a_cancelled_request_frees_its_slot() {
    let inner = Inner::new();
    let svc = inner.layer();
    let held: Vec<_> = (0..3).map(|_| spawn(&svc, "/slow", &key("k"))).collect();
    until("3 requests inside", || inner.entered.load(Ordering::SeqCst) == 3).await;
    assert_cap_refusal(
        spawn(&svc, "/slow", &key("k")).await.unwrap().0,
        &spawn(&svc, "/slow", &key("k")).await.unwrap().1,
    );
    held[0].abort();
    assert!(
        held[0].is_finished()
            || tokio::time::timeout(Duration::from_secs(5), async {
                while !held[0].is_finished() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .is_ok()
    );
    let next = spawn(&svc, "/slow", &key("k"));
    until("a request in the cancelled one's slot", || inner.entered.load(Ordering::SeqCst) == 4).await;
    inner.gate.add_permits(10);
    assert_eq!(next.await.unwrap().0, 200);
}

#[tokio::test]
async fn a_panic_in_the_inner_service_frees_its_slot() {
    let inner = Inner::new();
    let svc = inner.layer();
    let held: Vec<_> = (0..2).map(|_| spawn(&svc, "/slow", &key("k"))).collect();
    until("2 requests inside", || inner.entered.load(Ordering::SeqCst) == 2).await;
    let panicked = spawn(&svc, "/panic", &key("k")).await;
    assert!(panicked.unwrap_err().is_panic());
    // The panicked request's slot is free: a third may go in, not a fourth.
    let third = spawn(&svc, "/slow", &key("k"));
    until("a request in the panicked one's slot", || inner.entered.load(Ordering::SeqCst) == 4).await;
    let (status, headers) = spawn(&svc, "/slow", &key("k")).await.unwrap();
    assert_cap_refusal(status, &headers);
    inner.gate.add_permits(10);
    assert_eq!(third.await.unwrap().0, 200);
    for t in held {
        assert_eq!(t.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn a_slot_is_held_until_the_response_body_ends_or_is_dropped() {
    let inner = Inner::new();
    let svc = inner.layer();
    // One-slot key: a response whose body has not ended still holds the slot.
    let resp = svc.clone().oneshot(req("/stream", &key("one"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let refused = svc.clone().oneshot(req("/stream", &key("one"))).await.unwrap();
    assert_cap_refusal(refused.status(), refused.headers());
    // The body ends: the slot is free.
    let tx = inner.bodies.lock().pop().unwrap();
    tx.send(()).unwrap();
    let collected = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    assert!(collected.to_bytes().is_empty());
    let resp = svc.clone().oneshot(req("/stream", &key("one"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    // A body dropped before its end frees the slot too.
    drop(resp);
    assert_eq!(svc.clone().oneshot(req("/stream", &key("one"))).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_customer_cap_is_shared_by_its_keys() {
    let inner = Inner::new();
    let svc = inner.layer();
    let a = spawn(&svc, "/slow", &key("a"));
    let b = spawn(&svc, "/slow", &key("b"));
    until("2 requests inside", || inner.entered.load(Ordering::SeqCst) == 2).await;
    // Five refusals by the customer's cap for k-a: had they kept k-a's own slots (3), k-a could
    // not run two requests below.
    for v in [key("a"), key("a"), key("a"), key("a"), key("a"), key("b")] {
        let (status, headers) = spawn(&svc, "/slow", &v).await.unwrap();
        assert_cap_refusal(status, &headers);
    }
    inner.gate.add_permits(10);
    assert_eq!((a.await.unwrap().0, b.await.unwrap().0), (StatusCode::OK, StatusCode::OK));
    // And a refusal by the customer's cap gave the key's slot back: k-a alone may have 2 again.
    let before = inner.entered.load(Ordering::SeqCst);
    inner.gate.forget_permits(100);
    let x = spawn(&svc, "/slow", &key("a"));
    let y = spawn(&svc, "/slow", &key("a"));
    until("k-a's 2 requests inside", || inner.entered.load(Ordering::SeqCst) == before + 2).await;
    inner.gate.add_permits(10);
    assert_eq!((x.await.unwrap().0, y.await.unwrap().0), (StatusCode::OK, StatusCode::OK));
}

#[test]
fn layer_type_is_usable() {
    let _ = UsagePlanLayer::new(store(PLANS)).unwrap();
}

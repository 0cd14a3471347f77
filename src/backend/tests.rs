//! The seam works without changing the service: a backend that answers later (as a
//! distributed one will) gives the same answers through the real layer.

use super::InProcess;
use crate::engine::CompiledPlan;
use crate::engine::{Check, CounterBackend, KeyState, Verdict};
use crate::{InMemoryKeyStore, ManualClock, Rejection, RejectionKind, UsagePlanLayer};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tower::{Layer, ServiceExt};

/// Answers through [`Verdict::Pending`] after yielding once, with the in-process answer, and
/// records the key ids it was asked about.
#[derive(Debug)]
struct Deferred {
    inner: InProcess,
    pending: AtomicUsize,
    seen_key: parking_lot::Mutex<Option<String>>,
}

impl CounterBackend for Deferred {
    fn key_state(
        &self,
        id: &Arc<str>,
        plan: &Arc<CompiledPlan>,
        previous: Option<&KeyState>,
        now: crate::Now,
    ) -> KeyState {
        self.inner.key_state(id, plan, previous, now)
    }

    fn customer_state(
        &self,
        rule: &Arc<crate::engine::CompiledCustomer>,
        previous: Option<&crate::engine::CustomerState>,
        now: crate::Now,
    ) -> crate::engine::CustomerState {
        self.inner.customer_state(rule, previous, now)
    }

    fn check(&self, check: &Check<'_>) -> Verdict {
        if let Some(k) = check.key {
            *self.seen_key.lock() = Some(k.id.to_string());
        }
        let Verdict::Ready(outcome) = self.inner.check(check) else { unreachable!("in-process answers at once") };
        self.pending.fetch_add(1, Ordering::SeqCst);
        Verdict::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            outcome
        }))
    }
}

const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"
methods = { "/health/GET" = { rate = 0.001, burst = 1 } }
public_methods = ["/health/GET"]
[[plans]]
id = "p"
throttle = { rate = 0.001, burst = 3 }
quota = { limit = 2, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]
[[keys]]
id = "k-1"
value = "k-0123456789abcdefghij"
plans = ["p"]
"#;

#[tokio::test]
async fn a_pending_backend_gives_the_same_answers() {
    let store = InMemoryKeyStore::from_toml_str(CONFIG).unwrap();
    let backend = Arc::new(Deferred {
        inner: InProcess::new(&crate::KeyStore::stage(&store).unwrap(), 90),
        pending: AtomicUsize::new(0),
        seen_key: parking_lot::Mutex::new(None),
    });
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_795_435_200));
    let layer = UsagePlanLayer::builder(store)
        .clock(clock)
        .backend(Arc::clone(&backend) as Arc<dyn CounterBackend>)
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|_r: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    }));
    let call = |path: &'static str, key: Option<&'static str>| {
        let svc = svc.clone();
        async move {
            let mut req = Request::get(path);
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let resp = svc.oneshot(req.body(String::new()).unwrap()).await.unwrap();
            let status = resp.status();
            let kind = resp.extensions().get::<Rejection>().map(Rejection::kind);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, kind, body)
        }
    };
    let key = Some("k-0123456789abcdefghij");
    assert_eq!(call("/pets", key).await.0, StatusCode::OK);
    assert_eq!(call("/pets", key).await.0, StatusCode::OK);
    let (status, kind, body) = call("/pets", key).await;
    assert_eq!((status, kind), (StatusCode::TOO_MANY_REQUESTS, Some(RejectionKind::QuotaExceeded)));
    assert_eq!(&body[..], br#"{"message":"Limit Exceeded"}"#);
    assert_eq!(call("/health", None).await.0, StatusCode::OK);
    assert_eq!(call("/health", None).await.1, Some(RejectionKind::Throttled));
    assert_eq!(call("/pets", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(backend.pending.load(Ordering::SeqCst), 5, "every check went through the pending path");
    assert_eq!(backend.seen_key.lock().as_deref(), Some("k-1"));
}

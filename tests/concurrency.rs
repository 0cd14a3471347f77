//! Exactness under concurrency: 8 tasks on a multi-threaded runtime hammer one key while the
//! manual clock stands still; never more than `burst`, never more than the quota.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn hammer(svc: Svc, k: String, tasks: usize, per_task: usize) -> (usize, usize, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicUsize::new(0));
    let quota = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (svc, k, ok, throttled, quota) = (svc.clone(), k.clone(), ok.clone(), throttled.clone(), quota.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let r = get(&svc, "/pets", Some(&k)).await;
                match (r.status.as_u16(), r.body.as_str()) {
                    (200, _) => ok.fetch_add(1, Ordering::Relaxed),
                    (429, r#"{"message":"Too Many Requests"}"#) => throttled.fetch_add(1, Ordering::Relaxed),
                    (429, r#"{"message":"Limit Exceeded"}"#) => quota.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other:?}"),
                };
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), throttled.load(Ordering::Relaxed), quota.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_never_get_more_than_burst() {
    let clock = clock();
    let text = &one_key(
        r#"
"#,
        r#"
throttle = { rate = 0.5, burst = 37 }
"#,
    );
    let svc = service(&builder(text, &clock).build().unwrap());
    let (ok, throttled, quota) = hammer(svc.clone(), key("k"), 8, 250).await;
    assert_eq!((ok, throttled, quota), (37, 8 * 250 - 37, 0));
    // 10 s later: exactly 5 more tokens.
    clock.advance(Duration::from_secs(10));
    let (ok, _, _) = hammer(svc, key("k"), 8, 50).await;
    assert_eq!(ok, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_never_get_more_than_the_quota() {
    let clock = clock();
    let text = &one_key(
        r#"
"#,
        r#"
throttle = { rate = 1000.0, burst = 10000 }
quota = { limit = 523, period = "MONTH" }
"#,
    );
    let svc = service(&builder(text, &clock).build().unwrap());
    let (ok, throttled, quota) = hammer(svc, key("k"), 8, 200).await;
    assert_eq!((ok, throttled, quota), (523, 0, 8 * 200 - 523));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_or_nothing_buckets_under_contention() {
    // Key bucket (burst 50) and stage bucket (burst 30): the stage bucket refuses some requests
    // the key bucket admitted; those must give their key token back, so that after the stage
    // refills, the key still has exactly 50 - 30 = 20 tokens.
    let clock = clock();
    let text = &one_key(
        r#"
throttle = { rate = 0.001, burst = 30 }
"#,
        r#"
throttle = { rate = 0.001, burst = 50 }
"#,
    );
    let svc = service(&builder(text, &clock).build().unwrap());
    let (ok, _, _) = hammer(svc.clone(), key("k"), 8, 100).await;
    assert_eq!(ok, 30);
    // The stage bucket refills completely in 30 000 s; the key bucket gains 30 tokens too, so
    // it holds min(50, 20 + 30) = 50, and the stage bucket (30) is the limit again.
    clock.advance(Duration::from_secs(30_000));
    let (ok, _, _) = hammer(svc, key("k"), 8, 100).await;
    assert_eq!(ok, 30);
}

//! Verified drain: a slow request on the old upstream finishes; drain reports only after it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use slipway_proxy::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_slow_request_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;

    let mut slow_conn = KeepAlive::connect(addr).await;
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let r = slow_conn.get("/slow/700").await;
        (r, Instant::now())
    });
    // Let the slow request reach A, then switch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        proxy
            .client
            .stats("web")
            .await
            .unwrap()
            .upstream("a")
            .unwrap()
            .in_flight,
        1
    );
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();
    let mut fresh = KeepAlive::connect(addr).await;
    assert_eq!(fresh.get("/").await.unwrap().1, "b");

    let report = proxy
        .client
        .drain("web", "a", Duration::from_secs(5))
        .await
        .unwrap();
    let drain_done = Instant::now();
    let (slow_result, slow_done) = slow.await.unwrap();
    assert_eq!(slow_result.unwrap(), (StatusCode::OK, "a".into()));
    assert!(report.drained, "{report:?}");
    assert_eq!(report.cut, 0);
    // The backend answers the slow request 700 ms after it arrived, so a drain that waited
    // for it cannot report sooner. (The client task's own clock is no measure: it may be
    // scheduled after the drain answer arrives.)
    assert!(
        drain_done.duration_since(started) >= Duration::from_millis(700),
        "drain reported {:?} after the slow request started, before it completed",
        drain_done.duration_since(started)
    );
    assert!(slow_done.duration_since(started) >= Duration::from_millis(700));

    // Old upstream's stats stay readable after the swap, until forgotten.
    let stats = proxy.client.stats("web").await.unwrap();
    let old = stats.upstream("a").unwrap();
    assert_eq!(
        (old.in_flight, old.requests.success, old.current),
        (0, 1, false)
    );
    assert!(old.latency.max_ms >= 600.0, "{:?}", old.latency);
    proxy.client.forget_upstream("web", "a").await.unwrap();
    assert!(proxy
        .client
        .stats("web")
        .await
        .unwrap()
        .upstream("a")
        .is_none());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;
    let mut slow_conn = KeepAlive::connect(addr).await;
    let slow = tokio::spawn(async move { slow_conn.get("/slow/5000").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();

    let t = Instant::now();
    let report = proxy
        .client
        .drain("web", "a", Duration::from_millis(200))
        .await
        .unwrap();
    assert!(!report.drained);
    assert_eq!(report.cut, 1);
    assert!(report.waited >= Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(3));
    // The cut request did not get A's answer.
    let r = tokio::time::timeout(TIMEOUT, slow).await.unwrap().unwrap();
    assert!(!matches!(r, Ok((StatusCode::OK, _))), "{r:?}");
    let old = proxy.client.stats("web").await.unwrap();
    let old = old.upstream("a").unwrap();
    assert_eq!((old.in_flight, old.cut), (0, 1));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_current_and_unknown_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let a = Backend::start("a").await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let e = proxy
        .client
        .drain("web", "a", Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("still takes traffic"), "{e}");
    let e = proxy
        .client
        .drain("web", "zzz", Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = proxy.client.stats("nope").await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("nope"), "{e}");
    proxy.stop().await;
}

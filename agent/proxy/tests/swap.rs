//! Atomic swap under load: zero failed requests, keep-alive clients move at once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use slipway_proxy::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_moves_to_new_upstream_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let prev = proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    assert_eq!(prev, None);
    let mut conn = KeepAlive::connect(proxy.app_addr("web").await).await;
    assert_eq!(conn.get("/").await.unwrap(), (StatusCode::OK, "a".into()));

    let prev = proxy
        .client
        .set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();
    assert_eq!(prev, Some(a.upstream()));
    // Same TCP connection, next request: the new upstream.
    assert_eq!(conn.get("/").await.unwrap(), (StatusCode::OK, "b".into()));
    assert!(!conn.is_closed());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_fail_no_request() {
    const CLIENTS: usize = 4;
    const MAX_REQUESTS_PER_CLIENT: usize = 20_000;
    const SWAPS: usize = 40;

    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, seen_a, seen_b) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut conn = KeepAlive::connect(addr).await;
        let (stop, ok, failed, seen_a, seen_b) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            seen_a.clone(),
            seen_b.clone(),
        );
        clients.push(tokio::spawn(async move {
            for _ in 0..MAX_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match conn.get("/").await {
                    Ok((StatusCode::OK, body)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        match body.as_str() {
                            "a" => seen_a.fetch_add(1, Ordering::Relaxed),
                            "b" => seen_b.fetch_add(1, Ordering::Relaxed),
                            other => panic!("unexpected body {other}"),
                        };
                    }
                    other => {
                        eprintln!("failed request: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            conn
        }));
    }

    for i in 0..SWAPS {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let next = if i % 2 == 0 { &b } else { &a };
        proxy
            .client
            .set_upstream("web", 0, Protocol::Http, next.upstream())
            .await
            .unwrap();
    }
    // SWAPS is even: A is current again. Let the clients run on it, then stop them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let mut conns = Vec::new();
    for c in clients {
        conns.push(tokio::time::timeout(TIMEOUT, c).await.unwrap().unwrap());
    }

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "requests ok={ok} failed={failed} a={} b={}",
        seen_a.load(Ordering::Relaxed),
        seen_b.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0, "no request may fail during swaps");
    assert!(ok > 100, "the load loop ran ({ok} requests)");
    assert!(seen_a.load(Ordering::Relaxed) > 0 && seen_b.load(Ordering::Relaxed) > 0);

    // After the last swap, the same keep-alive connections reach B at once.
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();
    for c in &mut conns {
        assert_eq!(c.get("/").await.unwrap(), (StatusCode::OK, "b".into()));
    }

    // Stats add up: every response is counted against the upstream that served it.
    let stats = proxy.client.stats("web").await.unwrap();
    assert_eq!(stats.current.as_deref(), Some("b"));
    let total: u64 = stats.upstreams.iter().map(|u| u.requests.success).sum();
    assert_eq!(total, ok + CLIENTS as u64);
    assert!(stats.upstreams.iter().all(|u| u.requests.server_error == 0));
    assert!(stats.upstreams.iter().all(|u| u.in_flight == 0));
    proxy.stop().await;
}

//! Pause and maintenance: paused requests are held and released on resume (or 503 after
//! their timeout); stopped apps answer a 503 page; both survive a proxy restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use slipway_proxy::{Mode, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_requests_stop_serves_a_page_and_both_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = Backend::start("a").await;
    let proxy = Proxy::start(dir.path()).await;
    let c = &proxy.client;
    c.set_upstream("web", port, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/whoami");

    c.set_mode("web", &Mode::Paused { timeout_ms: 10_000 })
        .await
        .unwrap();
    let u = url.clone();
    let held = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let (code, body, _) = curl(&[&u]);
        (code, body, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "a paused request is held");
    c.set_mode("web", &Mode::Running).await.unwrap();
    let (code, body, waited) = held.await.unwrap();
    assert_eq!((code, body.as_str()), (200, "a /whoami"));
    assert!(waited >= Duration::from_millis(450), "{waited:?}");

    c.set_mode("web", &Mode::Paused { timeout_ms: 200 })
        .await
        .unwrap();
    let u = url.clone();
    let (code, body, _) = tokio::task::spawn_blocking(move || curl(&[&u]))
        .await
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("paused"), "{body}");

    let page = "Back at 10:00 UTC\n".to_string();
    c.set_mode(
        "web",
        &Mode::Stopped {
            message: page.clone(),
        },
    )
    .await
    .unwrap();
    let u = url.clone();
    let (code, body, _) = tokio::task::spawn_blocking(move || curl(&[&u]))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (503, page.as_str()));

    // A restart keeps the app stopped.
    proxy.stop().await;
    let proxy = Proxy::start(dir.path()).await;
    let routes = proxy.client.routes().await.unwrap();
    assert_eq!(
        routes[0].mode,
        Mode::Stopped {
            message: page.clone()
        }
    );
    let u = url.clone();
    let (code, body, _) = tokio::task::spawn_blocking(move || curl(&[&u]))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (503, page.as_str()));
    proxy.client.set_mode("web", &Mode::Running).await.unwrap();
    let (code, body, _) = tokio::task::spawn_blocking(move || curl(&[&url]))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "a /whoami"));
    assert!(proxy
        .client
        .set_mode("nope", &Mode::Running)
        .await
        .unwrap_err()
        .is_not_found());
    proxy.stop().await;
}

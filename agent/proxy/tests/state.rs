//! The routing table survives proxy restarts; a corrupt one is kept aside, never emptied.

mod common;

use common::*;
use hyper::StatusCode;
use slipway_proxy::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_restored_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (web_port, tcp_port) = (free_port(), free_port());
    let proxy = Proxy::start(dir.path()).await;
    proxy
        .client
        .set_upstream("web", web_port, Protocol::Http, a.upstream())
        .await
        .unwrap();
    proxy
        .client
        .set_upstream("web", web_port, Protocol::Http, b.upstream())
        .await
        .unwrap();
    proxy
        .client
        .set_upstream("db", tcp_port, Protocol::Tcp, a.upstream())
        .await
        .unwrap();
    proxy.client.remove_app("db").await.unwrap();
    let before = proxy.client.routes().await.unwrap();
    proxy.stop().await;
    assert!(
        !dir.path().join("proxy.sock").exists(),
        "socket removed on stop"
    );

    let proxy = Proxy::start(dir.path()).await;
    let after = proxy.client.routes().await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].upstream, Some(b.upstream()));
    assert_eq!(after[0].listen, web_port);
    assert_eq!(before[0].upstream, after[0].upstream);
    let addr = format!("127.0.0.1:{web_port}").parse().unwrap();
    let mut c = KeepAlive::connect(addr).await;
    assert_eq!(c.get("/").await.unwrap(), (StatusCode::OK, "b".into()));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_table_is_kept_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let garbage = b"{\"version\":1,\"routes\":[{\"app\":\"web\",\"listen\":80";
    std::fs::write(state_dir.join("routes.json"), garbage).unwrap();

    let proxy = Proxy::start(dir.path()).await;
    assert!(proxy.client.routes().await.unwrap().is_empty());
    let kept: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("routes.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "corrupt file kept aside");
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        garbage,
        "its bytes untouched"
    );
    assert!(!state_dir.join("routes.json").exists());

    // The proxy works, and the next change writes a fresh, valid table.
    let a = Backend::start("a").await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let text = std::fs::read_to_string(state_dir.join("routes.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["routes"][0]["upstream"]["id"], "a");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let proxy = Proxy::start(dir.path()).await;
    let a = Backend::start("a").await;
    let e = proxy
        .client
        .set_upstream("web", port, Protocol::Http, a.upstream())
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(proxy.client.routes().await.unwrap().is_empty());
    assert!(!proxy.state.exists());
    let e = proxy
        .client
        .set_upstream("Bad Name", 0, Protocol::Http, a.upstream())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("app `Bad Name` is invalid"), "{e}");
    proxy.stop().await;
}

//! L4: routed per connection; drain waits for open connections and cuts them at timeout.

mod common;

use std::time::Duration;

use common::*;
use slipway_proxy::Protocol;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_routed_per_connection_and_drained() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (TcpBackend::start("a").await, TcpBackend::start("b").await);
    proxy
        .client
        .set_upstream("db", 0, Protocol::Tcp, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("db").await;

    let mut old = TcpStream::connect(addr).await.unwrap();
    assert_eq!(tcp_roundtrip(&mut old, "hello").await.unwrap(), "a:hello");
    proxy
        .client
        .set_upstream("db", 0, Protocol::Tcp, b.upstream())
        .await
        .unwrap();
    // The open connection stays on A; a new one goes to B.
    assert_eq!(tcp_roundtrip(&mut old, "again").await.unwrap(), "a:again");
    let mut new = TcpStream::connect(addr).await.unwrap();
    assert_eq!(tcp_roundtrip(&mut new, "x").await.unwrap(), "b:x");

    let stats = proxy.client.stats("db").await.unwrap();
    assert_eq!(stats.upstream("a").unwrap().in_flight, 1);
    assert_eq!(stats.upstream("a").unwrap().connections, 1);

    // A connection closed by its client drains on its own...
    let mut short = {
        proxy
            .client
            .set_upstream("db", 0, Protocol::Tcp, a.upstream())
            .await
            .unwrap();
        let s = TcpStream::connect(addr).await.unwrap();
        proxy
            .client
            .set_upstream("db", 0, Protocol::Tcp, b.upstream())
            .await
            .unwrap();
        s
    };
    assert_eq!(tcp_roundtrip(&mut short, "s").await.unwrap(), "a:s");
    drop(short);
    // ...but `old` is still open: a short drain cuts it.
    let report = proxy
        .client
        .drain("db", "a", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(!report.drained);
    assert_eq!(report.cut, 1, "{report:?}");
    assert!(
        tcp_roundtrip(&mut old, "gone?").await.is_err(),
        "cut connection is closed"
    );
    assert_eq!(tcp_roundtrip(&mut new, "still").await.unwrap(), "b:still");
    let stats = proxy.client.stats("db").await.unwrap();
    let a_stats = stats.upstream("a").unwrap();
    assert_eq!((a_stats.in_flight, a_stats.cut), (0, 1));
    assert!(a_stats.bytes_in >= "hello".len() as u64);
    // Open TCP connections hold a graceful stop for up to SHUTDOWN_GRACE: close ours first.
    drop((old, new));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_tcp_upstream_counts_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let dead = slipway_proxy::Upstream {
        id: "dead".parse().unwrap(),
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    proxy
        .client
        .set_upstream("db", 0, Protocol::Tcp, dead)
        .await
        .unwrap();
    let mut s = TcpStream::connect(proxy.app_addr("db").await)
        .await
        .unwrap();
    assert!(tcp_roundtrip(&mut s, "x").await.is_err());
    let stats = proxy.client.stats("db").await.unwrap();
    assert_eq!(stats.upstream("dead").unwrap().connect_errors, 1);
    proxy.stop().await;
}

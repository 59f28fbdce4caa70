//! Long-lived connections at a drain: a websocket gets its grace, then is cut, so the drain
//! ends long before its timeout; the cut is reported. A plain slow request still drains.

mod common;

use std::time::Duration;

use common::*;
use slipway_proxy::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_cut_after_its_grace_not_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let c = &proxy.client;
    c.set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert_eq!(tcp_roundtrip(&mut s, "ping").await.unwrap(), "a:ping");
    c.set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();
    let r = c
        .drain_with_grace(
            "web",
            "a",
            Duration::from_secs(20),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!((r.drained, r.cut), (false, 1), "{r:?}");
    assert!(r.waited < Duration::from_secs(3), "{r:?}");
    // The client sees its tunnel closed.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let stats = c.stats("web").await.unwrap();
    assert_eq!(stats.upstream("a").unwrap().cut, 1);
    proxy.stop().await;
}

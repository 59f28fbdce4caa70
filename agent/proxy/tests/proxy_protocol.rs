//! PROXY protocol: accepted on the listeners (the client address it names is the one
//! forwarded), required when configured, and sent (v1) to TCP upstreams that ask for it.

mod common;

use common::*;
use slipway_proto::EdgeSpec;
use slipway_proxy::{EdgeConfig, Protocol, RouteSpec, Upstream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeConfig {
        proxy_protocol: true,
        ..test_edge()
    };
    let proxy = Proxy::start_with(dir.path(), edge).await;
    let a = Backend::start("a").await;
    let c = &proxy.client;
    c.set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;

    // v1 header, then the request: the upstream sees the client it names.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\nGET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("x-forwarded-for: 203.0.113.7\n"), "{out}");

    // v2 (binary) header.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&80u16.to_be_bytes());
    v2.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&v2).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("x-forwarded-for: 198.51.100.9\n"), "{out}");

    // No header: refused.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(out.is_empty(), "{out}");

    // A TCP app that asks for it gets a v1 line first.
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let route = RouteSpec {
        listen: 0,
        protocol: Protocol::Tcp,
        edge: EdgeSpec {
            send_proxy_protocol: true,
            ..EdgeSpec::default()
        },
    };
    c.set_route(
        "db",
        &route,
        Upstream {
            id: "db-1".parse().expect("container id"),
            addr: up_addr,
        },
    )
    .await
    .unwrap();
    let db = proxy.app_addr("db").await;
    let mut client = TcpStream::connect(db).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.5 127.0.0.1 1234 5432\r\nhello\n")
        .await
        .unwrap();
    let (server, _) = up.accept().await.unwrap();
    let mut lines = BufReader::new(server).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(
        first.starts_with("PROXY TCP4 192.0.2.5 127.0.0.1 1234 "),
        "{first}"
    );
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello");
    drop((client, lines));
    proxy.stop().await;
}

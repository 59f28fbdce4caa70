//! Production limits and forwarded headers: 504 on a silent upstream, 413 on a large body
//! (declared or chunked), client header timeout, X-Forwarded-* from untrusted clients replaced.
//! The proxy's own pages never name a container or its address.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use slipway_proto::EdgeSpec;
use slipway_proxy::{EdgeConfig, Limits, Protocol, RouteSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limited() -> EdgeConfig {
    EdgeConfig {
        limits: Limits {
            response_header_timeout: Duration::from_millis(300),
            max_request_body: 1024,
            client_header_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..test_edge()
    }
}

fn host_route(host: &str) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: vec![host.to_owned()],
            ..EdgeSpec::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_504_and_large_body_413() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with(dir.path(), limited()).await;
    let a = Backend::start("secret-container-id").await;
    let addr_text = a.addr.to_string();
    proxy
        .client
        .set_route("web", &host_route("web.example.com"), a.upstream())
        .await
        .unwrap();
    let http = proxy.client.edge().await.unwrap().http.unwrap();
    let big = dir.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .write_all(&vec![b'x'; 4096])
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let r = resolve("web.example.com", http);
        let url = |p: &str| format!("http://web.example.com:{}{p}", http.port());
        let (code, body, _) = curl(&["--resolve", &r, &url("/slow/2000")]);
        assert_eq!(code, 504);
        assert!(body.contains("504 Gateway Timeout"), "{body}");
        assert!(
            !body.contains("secret-container-id") && !body.contains(&addr_text),
            "{body}"
        );
        let data = format!("@{}", big.display());
        let (code, _, _) = curl(&["--resolve", &r, "--data-binary", &data, &url("/")]);
        assert_eq!(code, 413, "declared length over the limit");
        let (code, _, _) = curl(&[
            "--resolve",
            &r,
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
            &url("/"),
        ]);
        assert_eq!(code, 413, "chunked body over the limit");
        let (code, body, _) = curl(&["--resolve", &r, "--data-binary", "small", &url("/")]);
        assert_eq!((code, body.as_str()), (200, "secret-container-id"));
    })
    .await
    .unwrap();
    let stats = proxy.client.stats("web").await.unwrap();
    let u = stats.upstream("secret-container-id").unwrap();
    assert!(
        u.requests.server_error >= 1,
        "504 counted: {:?}",
        u.requests
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_headers_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with(dir.path(), limited()).await;
    let a = Backend::start("a").await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(proxy.app_addr("web").await)
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header timeout"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_untrusted_clients_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let a = Backend::start("a").await;
    proxy
        .client
        .set_route("web", &host_route("web.example.com"), a.upstream())
        .await
        .unwrap();
    let http = proxy.client.edge().await.unwrap().http.unwrap();
    let text = tokio::task::spawn_blocking(move || {
        let url = format!("http://web.example.com:{}/headers", http.port());
        let (_, body, _) = curl(&[
            "--resolve",
            &resolve("web.example.com", http),
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Forwarded-Proto: https",
            "-H",
            "X-Forwarded-Host: evil.example",
            &url,
        ]);
        body
    })
    .await
    .unwrap();
    assert!(text.contains("x-forwarded-for: 127.0.0.1\n"), "{text}");
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
    assert!(
        text.contains(&format!(
            "x-forwarded-host: web.example.com:{}\n",
            http.port()
        )),
        "{text}"
    );
    assert!(
        !text.contains("203.0.113.9") && !text.contains("evil"),
        "{text}"
    );
    proxy.stop().await;
}

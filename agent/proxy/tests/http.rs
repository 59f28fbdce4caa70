//! L7 transparency: forwarded headers, hop-by-hop removal, 502 on a dead upstream,
//! upgrades passed through, metrics exposed, app removal.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_proxy::{EdgeConfig, Protocol, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_added_and_hop_by_hop_removed() {
    let dir = tempfile::tempdir().unwrap();
    // The client (127.0.0.1) is a trusted proxy: its X-Forwarded-For is extended.
    let edge = EdgeConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..test_edge()
    };
    let proxy = Proxy::start_with(dir.path(), edge).await;
    let a = Backend::start("a").await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let s = TcpStream::connect(proxy.app_addr("web").await)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/headers")
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("host: shop.example\n"), "{text}");
    assert!(
        text.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
    assert!(text.contains("x-request-id: "), "{text}");
    assert!(text.contains("x-custom: kept\n"), "{text}");
    assert!(!text.contains("x-private"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_answers_502_and_counts_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let a = Backend::start("a").await;
    let dead = Upstream {
        id: "dead".parse().unwrap(),
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let mut c = KeepAlive::connect(proxy.app_addr("web").await).await;
    assert_eq!(
        c.get("/fail").await.unwrap().0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let before = proxy.client.stats("web").await.unwrap();
    let dead_addr = dead.addr.to_string();
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, dead)
        .await
        .unwrap();
    for _ in 0..3 {
        let (status, body) = c.get("/").await.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        // The page names neither the container nor its address.
        assert!(body.contains("502 Bad Gateway"), "{body}");
        assert!(
            !body.contains("dead") && !body.contains(&dead_addr),
            "{body}"
        );
    }
    let after = proxy.client.stats("web").await.unwrap();
    let d = after.upstream("dead").unwrap();
    assert_eq!((d.requests.server_error, d.connect_errors), (3, 3));
    assert_eq!(d.requests.server_error_rate(), Some(1.0));
    // A's counters are untouched by the dead upstream's failures.
    let a_then = before.upstream("a").unwrap().requests;
    assert_eq!(after.upstream("a").unwrap().requests, a_then);
    assert_eq!(a_then.server_error, 1);

    let text = proxy.client.metrics().await.unwrap();
    assert!(
        text.contains(r#"slipway_proxy_requests_total{app="web",upstream="dead",class="5xx"} 3"#),
        "{text}"
    );
    assert!(
        text.contains("slipway_proxy_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains(r#"slipway_proxy_upstream_current{app="web",upstream="dead"} 1"#));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through_and_counted_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let mut s = TcpStream::connect(proxy.app_addr("web").await)
        .await
        .unwrap();
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
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert_eq!(tcp_roundtrip(&mut s, "ping").await.unwrap(), "a:ping");

    // The tunnel keeps A in flight across a swap; draining cuts it at the timeout.
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, b.upstream())
        .await
        .unwrap();
    assert_eq!(tcp_roundtrip(&mut s, "still").await.unwrap(), "a:still");
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
    let r = proxy
        .client
        .drain("web", "a", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!((r.drained, r.cut), (false, 1));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_app_closes_its_listener() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let a = Backend::start("a").await;
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let addr = proxy.app_addr("web").await;
    proxy.client.remove_app("web").await.unwrap();
    proxy.client.remove_app("web").await.unwrap(); // idempotent
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    assert!(proxy.client.routes().await.unwrap().is_empty());
    proxy.stop().await;
}

/// An upstream that answers one request per connection with keep-alive, then hangs up while
/// the connection is idle in the proxy's pool (as an upstream's idle timeout does). Echoes
/// the request body; counts connections.
async fn hang_up_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let head_end = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "proxy closed before sending a request");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = &buf[head_end..head_end + len];
                let mut resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                    body.len() + 5
                )
                .into_bytes();
                resp.extend_from_slice(b"echo:");
                resp.extend_from_slice(body);
                s.write_all(&resp).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hanging_up_idle_connections_costs_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (addr, accepted) = hang_up_upstream().await;
    let up = Upstream {
        id: "flaky".parse().unwrap(),
        addr,
    };
    proxy
        .client
        .set_upstream("web", 0, Protocol::Http, up)
        .await
        .unwrap();
    let s = TcpStream::connect(proxy.app_addr("web").await)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    use http_body_util::BodyExt;
    for i in 0..5 {
        // Let the upstream hang up the pooled connection before the next request.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let body = format!("request {i}");
        let req = Request::post("/echo")
            .header("host", "x")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, format!("echo:{body}").as_bytes());
    }
    // Each request needed a fresh upstream connection: the closed ones were never used.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    let stats = proxy.client.stats("web").await.unwrap();
    let s = stats.upstream("flaky").unwrap();
    assert_eq!((s.requests.success, s.requests.server_error), (5, 0));
    proxy.stop().await;
}

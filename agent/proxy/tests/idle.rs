//! Idle client connections are closed after `client_idle_timeout` (HTTP/2 with a GOAWAY,
//! HTTP/1.1 keep-alive by closing), never while a request is in flight; TLS clients without
//! SNI get the `default_tls_host`'s certificate.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_proto::{EdgeSpec, TlsSpec};
use slipway_proxy::{EdgeConfig, Limits, Protocol, RouteSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_millis(700);

fn idle_edge() -> EdgeConfig {
    EdgeConfig {
        limits: Limits {
            client_idle_timeout: IDLE,
            ..Limits::default()
        },
        ..test_edge()
    }
}

fn route(hosts: &[&str]) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..EdgeSpec::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_busy_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with(dir.path(), idle_edge()).await;
    let app = Backend::start("web").await;
    proxy
        .client
        .set_route("web", &route(&["web.example.com"]), app.upstream())
        .await
        .unwrap();
    let http = proxy.client.edge().await.unwrap().http.unwrap();

    // HTTP/2 (h2c, prior knowledge): a request slower than the idle timeout is answered on
    // the same connection; once nothing is in flight the proxy ends the connection.
    let stream = TcpStream::connect(http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        Request::get(format!("http://web.example.com{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = send.send_request(get("/slow/1500")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"web");
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the proxy closes an idle HTTP/2 connection")
        .unwrap()
        .expect("closed gracefully (GOAWAY), not reset");
    assert!(idle_from.elapsed() >= IDLE - Duration::from_millis(100));

    // HTTP/1.1 keep-alive: answered, then closed once idle (well before the 60 s header
    // timeout).
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read.is_ok(), "idle HTTP/1.1 connection left open: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("web"), "{text}");
    proxy.stop().await;
}

/// A self-signed certificate for `name`, as PEM files.
fn cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_owned());
    let c = p.self_signed(&key).unwrap();
    let (cp, kp) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cp, c.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    (cp, kp)
}

/// The subject of the certificate served to a client that sends no SNI, or None when the
/// handshake fails.
fn served_without_sni(addr: std::net::SocketAddr) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-noservername", "-connect"])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_sni_get_the_default_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (shop_c, shop_k) = cert(d, "shop.example.com");
    let (blog_c, blog_k) = cert(d, "blog.example.com");
    let tls_route = |host: &str, c: &Path, k: &Path| RouteSpec {
        edge: EdgeSpec {
            tls: Some(TlsSpec {
                cert: Some(c.to_owned()),
                key: Some(k.to_owned()),
                acme: false,
            }),
            ..route(&[host]).edge
        },
        ..route(&[host])
    };
    for default in [None, Some("Blog.Example.com")] {
        let sub = d.join(format!("{default:?}"));
        std::fs::create_dir_all(&sub).unwrap();
        let edge = EdgeConfig {
            default_tls_host: default.map(str::to_owned),
            ..test_edge()
        };
        let proxy = Proxy::start_with(&sub, edge).await;
        let (shop, blog) = (Backend::start("shop").await, Backend::start("blog").await);
        let c = &proxy.client;
        c.set_route(
            "shop",
            &tls_route("shop.example.com", &shop_c, &shop_k),
            shop.upstream(),
        )
        .await
        .unwrap();
        c.set_route(
            "blog",
            &tls_route("blog.example.com", &blog_c, &blog_k),
            blog.upstream(),
        )
        .await
        .unwrap();
        let tls = c.edge().await.unwrap().https.unwrap();
        let subject = tokio::task::spawn_blocking(move || served_without_sni(tls))
            .await
            .unwrap();
        match default {
            None => assert_eq!(subject, None, "no SNI and no default: handshake fails"),
            Some(_) => {
                let s = subject.expect("a certificate is served without SNI");
                assert!(s.contains("blog.example.com"), "{s}");
                // Routing still goes by Host.
                let url = format!("https://127.0.0.1:{}/whoami", tls.port());
                let (code, body, _) = tokio::task::spawn_blocking(move || {
                    curl(&["-k", "-H", "Host: shop.example.com", &url])
                })
                .await
                .unwrap();
                assert_eq!((code, body.as_str()), (200, "shop /whoami"));
            }
        }
        proxy.stop().await;
    }
}

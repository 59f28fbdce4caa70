//! Restarts with zero failed requests: a new proxy takes the listening sockets over from the
//! running one (SCM_RIGHTS over `<control>.takeover`), the old one finishes in-flight
//! requests and exits. 10 restarts under keep-alive load (a port-routed app and a
//! host-routed one): not one request fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use slipway_proto::EdgeSpec;
use slipway_proxy::{EdgeConfig, Protocol, ProxyClient, ProxyConfig, RouteSpec};
use tokio::task::JoinHandle;

fn config(dir: &Path, http_port: u16) -> ProxyConfig {
    ProxyConfig {
        control_socket: dir.join("proxy.sock"),
        state_file: dir.join("state/routes.json"),
        bind: "127.0.0.1".parse().unwrap(),
        metrics_listen: None,
        http_workers: 2,
        edge: EdgeConfig {
            http_port,
            ..test_edge()
        },
    }
}

/// Starts a proxy that runs until it is replaced (or the test ends).
fn start(cfg: ProxyConfig) -> JoinHandle<Result<(), slipway_proxy::ProxyError>> {
    tokio::spawn(slipway_proxy::serve(cfg, std::future::pending()))
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
}

/// A keep-alive client sending GETs until `stop`; a connection the proxy closes (after a
/// `Connection: close` answer) is replaced, as any HTTP client does.
async fn load(
    addr: SocketAddr,
    host: &'static str,
    want: &'static str,
    c: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    'outer: while !stop.load(Relaxed) {
        let Ok(s) = tokio::net::TcpStream::connect(addr).await else {
            c.failed.fetch_add(1, Relaxed);
            eprintln!("connect to {addr} refused");
            continue;
        };
        let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await
        else {
            c.failed.fetch_add(1, Relaxed);
            continue;
        };
        tokio::spawn(conn);
        c.reconnects.fetch_add(1, Relaxed);
        while !stop.load(Relaxed) {
            if send.ready().await.is_err() {
                continue 'outer; // closed by the server between requests: nothing sent
            }
            let req = Request::get("/whoami")
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .unwrap();
            match send.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                    match body {
                        Ok(b) if status == 200 && b.starts_with(want.as_bytes()) => {
                            c.ok.fetch_add(1, Relaxed);
                        }
                        other => {
                            c.failed.fetch_add(1, Relaxed);
                            eprintln!("{host}: {status} {other:?}");
                        }
                    }
                }
                Err(e) => {
                    c.failed.fetch_add(1, Relaxed);
                    eprintln!("{host}: request failed: {e}");
                    continue 'outer;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_restarts_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (app_port, http_port) = (free_port(), free_port());
    let cfg = config(dir.path(), http_port);
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut current = start(cfg.clone());
    let client = ProxyClient::new(&cfg.control_socket);
    client.wait_ready(TIMEOUT).await.unwrap();
    client
        .set_upstream("web", app_port, Protocol::Http, a.upstream())
        .await
        .unwrap();
    let shop = RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: vec!["shop.example.com".into()],
            ..EdgeSpec::default()
        },
    };
    client.set_route("shop", &shop, b.upstream()).await.unwrap();

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (addr, host, want) = if i % 2 == 0 {
            (
                SocketAddr::from(([127, 0, 0, 1], app_port)),
                "web.example.com",
                "a",
            )
        } else {
            (
                SocketAddr::from(([127, 0, 0, 1], http_port)),
                "shop.example.com",
                "b",
            )
        };
        clients.push(tokio::spawn(load(
            addr,
            host,
            want,
            counts.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        let before = counts.ok.load(Relaxed);
        let next = start(cfg.clone());
        // The old proxy hands over, drains and returns.
        tokio::time::timeout(Duration::from_secs(15), &mut current)
            .await
            .unwrap_or_else(|_| panic!("restart {i}: old proxy did not exit"))
            .unwrap()
            .unwrap();
        current = next;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            counts.ok.load(Relaxed) > before,
            "restart {i}: traffic flows"
        );
        let routes = client.routes().await.unwrap();
        assert_eq!(routes.len(), 2, "restart {i}: routes restored");
    }
    stop.store(true, Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (counts.ok.load(Relaxed), counts.failed.load(Relaxed));
    eprintln!(
        "{ok} requests, {failed} failed, {} connections",
        counts.reconnects.load(Relaxed)
    );
    assert_eq!(failed, 0);
    assert!(ok > 500, "{ok}");
    current.abort();
}

//! Upgrades fail no HTTP/2 request: a browser-like h2 client (`common/h2load.rs`: several
//! TLS connections with concurrent streams, reconnecting on GOAWAY and resending only what
//! the server did not process) runs through several socket takeovers. The old proxy shuts
//! each connection down with the two-step GOAWAY and answers every stream it accepted.

mod common;
#[path = "common/h2load.rs"]
mod h2load;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use slipway_proto::{EdgeSpec, TlsSpec};
use slipway_proxy::{Protocol, ProxyClient, ProxyConfig, RouteSpec};
use tokio::task::JoinHandle;

const HOST: &str = "shop.example.com";
const TAKEOVERS: usize = 5;
const CONNECTIONS: usize = 4;

fn config(dir: &Path, https_port: u16) -> ProxyConfig {
    ProxyConfig {
        control_socket: dir.join("proxy.sock"),
        state_file: dir.join("state/routes.json"),
        bind: "127.0.0.1".parse().unwrap(),
        metrics_listen: None,
        http_workers: 2,
        edge: slipway_proxy::EdgeConfig {
            https_port,
            ..test_edge()
        },
    }
}

fn start(cfg: ProxyConfig) -> JoinHandle<Result<(), slipway_proxy::ProxyError>> {
    tokio::spawn(slipway_proxy::serve(cfg, std::future::pending()))
}

/// A self-signed certificate for HOST; answers the PEM files and the certificate's PEM.
fn cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let c = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cp, kp) = (dir.join("shop.pem"), dir.join("shop.key"));
    std::fs::write(&cp, c.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    (cp, kp, c.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_see_no_failed_request_across_takeovers() {
    let dir = tempfile::tempdir().unwrap();
    let https_port = free_port();
    let cfg = config(dir.path(), https_port);
    let (cert_file, key_file, pem) = cert(dir.path());
    let backend = Backend::start("b").await;
    let mut current = start(cfg.clone());
    let client = ProxyClient::new(&cfg.control_socket);
    client.wait_ready(TIMEOUT).await.unwrap();
    let route = RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: vec![HOST.into()],
            tls: Some(TlsSpec {
                cert: Some(cert_file),
                key: Some(key_file),
                acme: false,
            }),
            ..EdgeSpec::default()
        },
    };
    client
        .set_route("shop", &route, backend.upstream())
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(h2load::run(h2load::Load {
        addr: ([127, 0, 0, 1], https_port).into(),
        host: HOST.into(),
        path: "/whoami".into(),
        tls: h2load::tls_trusting(pem.as_bytes()),
        connections: CONNECTIONS,
        streams: 8,
        requests: u64::MAX,
        stop: stop.clone(),
        expect: Some(Bytes::from_static(b"b /whoami")),
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..TAKEOVERS {
        let next = start(cfg.clone());
        // The old proxy hands over, drains (GOAWAY, its streams answered) and returns.
        tokio::time::timeout(Duration::from_secs(15), &mut current)
            .await
            .unwrap_or_else(|_| panic!("takeover {i}: old proxy did not exit"))
            .unwrap()
            .unwrap();
        current = next;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Relaxed);
    let r = load.await.unwrap();
    eprintln!(
        "{} ok, {} failed, {} retried, {} connections, p99 {:?}",
        r.ok,
        r.failed,
        r.retried,
        r.connections,
        r.percentile(0.99)
    );
    assert_eq!(r.failed, 0, "failed requests: {:?}", r.errors);
    assert!(r.ok > 1000, "{} requests answered", r.ok);
    // Each takeover moved every client connection to the new proxy.
    assert!(
        r.connections >= (CONNECTIONS * (TAKEOVERS + 1)) as u64,
        "{} connections",
        r.connections
    );
    current.abort();
}

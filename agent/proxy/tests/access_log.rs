//! The access log: one JSON line per request with the documented fields, rotated by size,
//! reopened on SIGHUP after an external rotation.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use slipway_proto::EdgeSpec;
use slipway_proxy::{AccessLogConfig, EdgeConfig, Protocol, RouteSpec};

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn wait_lines(p: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = lines(p);
        if l.len() >= n {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, want {n}",
            p.display(),
            l.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request_rotated_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/access.log");
    let edge = EdgeConfig {
        access_log: Some(AccessLogConfig {
            max_bytes: 2000,
            keep: 2,
            ..AccessLogConfig::file(&log)
        }),
        ..test_edge()
    };
    let proxy = Proxy::start_with(dir.path(), edge).await;
    let a = Backend::start("a").await;
    let route = RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: vec!["shop.example.com".into()],
            ..EdgeSpec::default()
        },
    };
    proxy
        .client
        .set_route("shop", &route, a.upstream())
        .await
        .unwrap();
    let http = proxy.client.edge().await.unwrap().http.unwrap();
    let log2 = log.clone();
    tokio::task::spawn_blocking(move || {
        let r = resolve("shop.example.com", http);
        let url = |h: &str, p: &str| format!("http://{h}:{}{p}", http.port());
        curl(&["--resolve", &r, &url("shop.example.com", "/x/whoami?q=1")]);
        let unknown = resolve("nobody.example.com", http);
        curl(&["--resolve", &unknown, &url("nobody.example.com", "/")]);
        let l = wait_lines(&log2, 2);
        let ok = &l[0];
        assert_eq!(ok["app"], "shop");
        assert_eq!(ok["host"], format!("shop.example.com:{}", http.port()));
        assert_eq!(ok["method"], "GET");
        assert_eq!(ok["path"], "/x/whoami");
        assert_eq!(ok["status"], 200);
        assert_eq!(ok["bytes"], "a /x/whoami?q=1".len());
        assert_eq!(ok["upstream"], "a");
        assert!(ok["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(ok["time"].as_str().unwrap().ends_with('Z'), "{ok}");
        assert_eq!(ok["request_id"].as_str().unwrap().len(), 21, "{ok}");
        let nf = &l[1];
        assert_eq!(nf["status"], 404);
        assert!(nf["app"].is_null() && nf["upstream"].is_null(), "{nf}");
        // Past 2000 bytes the file is rotated to access.log.1.
        for _ in 0..20 {
            curl(&["--resolve", &r, &url("shop.example.com", "/whoami")]);
        }
    })
    .await
    .unwrap();
    let rotated = dir.path().join("logs/access.log.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rotated.exists() {
        assert!(Instant::now() < deadline, "never rotated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An external rotation (mv) then SIGHUP: the proxy writes to a new file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = dir.path().join("logs/moved.log");
    std::fs::rename(&log, &moved).unwrap();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log3 = log.clone();
    tokio::task::spawn_blocking(move || {
        let r = resolve("shop.example.com", http);
        let url = format!("http://shop.example.com:{}/after-hup/whoami", http.port());
        curl(&["--resolve", &r, &url]);
        let l = wait_lines(&log3, 1);
        assert_eq!(l.last().unwrap()["path"], "/after-hup/whoami");
    })
    .await
    .unwrap();
    proxy.stop().await;
}

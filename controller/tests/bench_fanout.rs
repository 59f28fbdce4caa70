//! Benchmark, not a test (run with `--ignored --nocapture`): publish-to-notified latency with
//! N long-polling simulated agents against a real `slipway-controller` process, and its RSS.
//! `SLIPWAY_BENCH_AGENTS` sets N (default 1000). Goal: all notified within 500 ms, RSS < 200 MB.

mod support;

use serde_json::{json, Value};
use slipway_tests::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo test -p slipway-controller --test bench_fanout -- --ignored --nocapture"]
async fn bench_publish_to_notified_with_many_long_polls() {
    let n: usize = std::env::var("SLIPWAY_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = setup_process_dir(dir.path(), "");
    let admin = offline_token(&config, "admin", "admin");
    let controller = ControllerProcess::start(&config);
    let url = controller.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n + 10)
        .build()
        .unwrap();
    let post = |path: String, token: String, body: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(format!("{url}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    let r = http
        .post(format!("{url}/v1/apps"))
        .bearer_auth(&admin)
        .header("content-type", "application/toml")
        .body(app_toml(&v1.repository))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // N agents: a token and a registration each, then the first (immediate) poll.
    let setup = Instant::now();
    let mut agents = Vec::new();
    for i in 0..n {
        let host = format!("h{i}");
        let t = post(
            "/v1/tokens".into(),
            admin.clone(),
            json!({"name": format!("agent-{host}"), "role": "agent", "host": host}),
        )
        .await;
        agents.push((host, t["token"].as_str().unwrap().to_string()));
    }
    let mut versions = Vec::new();
    for (host, token) in &agents {
        post(
            format!("/v1/hosts/{host}/register"),
            token.clone(),
            json!({}),
        )
        .await;
        let r = http
            .get(format!("{url}/v1/hosts/{host}/desired"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        versions.push(
            r.json::<Value>().await.unwrap()["version"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    eprintln!("setup of {n} agents: {:?}", setup.elapsed());
    let rss_idle = rss_kib(controller.child.id());

    let done = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for ((host, token), version) in agents.iter().zip(&versions) {
        let (http, url, done) = (http.clone(), url.clone(), done.clone());
        let (host, token, version) = (host.clone(), token.clone(), version.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(format!(
                    "{url}/v1/hosts/{host}/desired?version={version}&wait=50s"
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            done.lock().unwrap().push(Instant::now());
        }));
    }
    // Let every poll reach the controller and park.
    let waiting = |text: &str| -> usize {
        text.lines()
            .find_map(|l| l.strip_prefix("slipway_controller_long_polls "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let parked = Instant::now();
    loop {
        let m = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if waiting(&m) >= n {
            break;
        }
        assert!(
            parked.elapsed() < Duration::from_secs(60),
            "only {} parked",
            waiting(&m)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_parked = rss_kib(controller.child.id());

    let t0 = Instant::now();
    post(
        "/v1/apps/web/releases".into(),
        admin.clone(),
        json!({"image": v1.image_ref()}),
    )
    .await;
    let published = t0.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat: Vec<Duration> = done
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(t0))
        .collect();
    lat.sort();
    let rss_peak = rss_kib(controller.child.id());
    eprintln!(
        "agents={n} release_call={published:?} notified (from the release call): first={:?} p50={:?} p99={:?} all={:?}",
        lat[0],
        lat[n / 2],
        lat[n * 99 / 100],
        lat[n - 1]
    );
    eprintln!(
        "controller RSS: idle {} MiB, {n} parked polls {} MiB, after fan-out {} MiB",
        rss_idle / 1024,
        rss_parked / 1024,
        rss_peak / 1024
    );
}

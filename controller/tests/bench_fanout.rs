//! Benchmarks, not tests (run with `--release --ignored --nocapture`): publish-to-notified
//! latency with N long-polling simulated agents, and the controllers' RSS and CPU.
//!
//! - `bench_publish_to_notified_with_many_long_polls`: one `slipway-controller` process on
//!   SQLite.
//! - `bench_publish_to_notified_two_controllers_on_postgres`: two processes on one private
//!   PostgreSQL database, agents split between them; the release is made on the first, so
//!   half the agents are woken through LISTEN/NOTIFY.
//!
//! - `bench_join_with_one_token_then_release`: N simulated agents join one `slipway-controller`
//!   (SQLite) with a single join token (`uses = N`), long-poll, and get a release; prints the
//!   time from the first join to the last host notified (goal: 1,000 agents in < 10 s).
//!
//! `SLIPWAY_BENCH_AGENTS` sets N (default 1000; the figure is 10000). The app's rollout
//! is `canary = 0`, `batch_size = "100%"`: every host gets the release at once (the default
//! canary-then-one-by-one plan would measure the rollout, not the fan-out).
//! Goal: all notified within 2 s, RSS under 1 GiB per controller.
//!
//! 2026-12-04, 10,000 agents, SQLite, 2 shared cores; RSS with every poll parked, time from the
//! release call to the last agent notified:
//! - `48af882` (`axum::serve`, glibc malloc): 249, 248 MiB; 368, 275 ms.
//! - own connection loop, 8 KiB read buffers: 204, 208 MiB; 338, 279 ms.
//! - and jemalloc (untouched pages of the 8 KiB buffers stay out of RSS): 129, 133, 136 MiB;
//!   349, 385, 309 ms.
//!
//! Since then each simulated agent holds one keep-alive connection for its whole life, as a
//! real agent does (before, setup shared 64 pooled connections and the long-polls opened
//! 10,000 fresh ones, whose buffers had never been written). Same day, same machine:
//! - jemalloc's defaults: 198-209 MiB parked; 318-397 ms. About 55 MiB of that was pages
//!   freed by the registrations that jemalloc keeps for 10 s before giving them back.
//! - `background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0` (the controller's
//!   `malloc_conf`): 148-156 MiB parked; 341-430 ms (within the runs' noise).

mod support;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use slipway_tests::postgres::Postgres;
use slipway_tests::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// Setup requests (tokens, registrations, first polls) in flight at once.
const SETUP_CONCURRENCY: usize = 64;
/// Every rollout wave at once: the whole fleet is notified by one publish.
const FANOUT_ROLLOUT: &str = "[rollout]\ncanary = 0\nbatch_size = \"100%\"\n";

fn agents_wanted() -> usize {
    std::env::var("SLIPWAY_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// One simulated agent's HTTP/1.1 keep-alive connection to its controller.
struct AgentConn {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    authority: String,
}

impl AgentConn {
    async fn open(url: &str) -> Self {
        let authority = url
            .strip_prefix("http://")
            .expect("an http:// URL")
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        AgentConn { send, authority }
    }

    /// Sends one request and answers the response body, which must come with `status`.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: u16,
    ) -> bytes::Bytes {
        use http_body_util::BodyExt;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                bytes::Bytes::from(serde_json::to_vec(&b).unwrap())
            }
            None => bytes::Bytes::new(),
        };
        self.send.ready().await.unwrap();
        let r = self
            .send
            .send_request(req.body(http_body_util::Full::new(body)).unwrap())
            .await
            .unwrap();
        let got = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            got.as_u16(),
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }
}

/// User + system CPU time a process used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// Clock ticks per second in `/proc/PID/stat` (fixed by the Linux ABI).
const USER_HZ: u64 = 100;

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let r = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json::<Value>().await.unwrap_or(Value::Null)
}

fn parked(metrics: &str) -> usize {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("slipway_controller_long_polls "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the fan-out against `controllers` (the release is made on the first); agent `i` polls
/// controller `i % len`.
async fn fan_out(
    label: &str,
    n: usize,
    controllers: &[ControllerProcess],
    admin: &str,
    join: bool,
) {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let urls: Vec<String> = controllers.iter().map(|c| c.url.clone()).collect();
    let pids: Vec<u32> = controllers.iter().map(|c| c.child.id()).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n + 10)
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/v1/apps", urls[0]))
        .bearer_auth(admin)
        .header("content-type", "application/toml")
        .body(format!("{}{FANOUT_ROLLOUT}", app_toml(&v1.repository)))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // One join token for every agent (join mode).
    let join_secret = if join {
        let t = post(
            &http,
            format!("{}/v1/join-tokens", urls[0]),
            admin,
            json!({"labels": {"fleet": "bench"}, "ttl": "1h", "uses": n}),
        )
        .await;
        Some(t["secret"].as_str().unwrap().to_string())
    } else {
        None
    };

    // N agents: a token and a registration (or a join), and the first (immediate) poll each,
    // each agent on its own keep-alive connection, which it keeps for its long-poll (as a
    // real agent does: one connection, reused for every call).
    let setup = Instant::now();
    let agents: Vec<(AgentConn, String, String, String)> = stream::iter(0..n)
        .map(|i| {
            let (http, urls) = (http.clone(), urls.clone());
            let admin = admin.to_string();
            let join_secret = join_secret.clone();
            async move {
                let host = format!("h{i}");
                let url = urls[i % urls.len()].clone();
                let mut conn = AgentConn::open(&url).await;
                let token = match join_secret {
                    Some(secret) => {
                        let a = conn
                            .call(
                                "POST",
                                "/v1/join",
                                None,
                                Some(json!({"secret": secret, "host": host})),
                                201,
                            )
                            .await;
                        let a: Value = serde_json::from_slice(&a).unwrap();
                        a["agent_token"].as_str().unwrap().to_string()
                    }
                    None => {
                        let t = post(
                            &http,
                            format!("{}/v1/tokens", urls[0]),
                            &admin,
                            json!({"name": format!("agent-{host}"), "role": "agent", "host": host}),
                        )
                        .await;
                        let token = t["token"].as_str().unwrap().to_string();
                        let path = format!("/v1/hosts/{host}/register");
                        conn.call("POST", &path, Some(&token), Some(json!({})), 200)
                            .await;
                        token
                    }
                };
                let path = format!("/v1/hosts/{host}/desired");
                let first = conn.call("GET", &path, Some(&token), None, 200).await;
                let version = serde_json::from_slice::<Value>(&first).unwrap()["version"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (conn, host, token, version)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let joined = setup.elapsed();
    eprintln!("[{label}] setup of {n} agents: {joined:?}");
    let rss_idle: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();

    let done = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for (mut conn, host, token, version) in agents {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/v1/hosts/{host}/desired?version={version}&wait=50s");
            let body = conn.call("GET", &path, Some(&token), None, 200).await;
            assert!(
                body.windows(5).any(|w| w == b"\"web\""),
                "{host} got the release"
            );
            done.lock().unwrap().push(Instant::now());
        }));
    }
    // Let every poll reach its controller and park.
    let start = Instant::now();
    loop {
        let mut total = 0;
        for u in &urls {
            let m = http
                .get(format!("{u}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += parked(&m);
        }
        if total >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {total} parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_parked: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let cpu0: Vec<Duration> = pids.iter().map(|p| cpu_time(*p)).collect();

    let t0 = Instant::now();
    post(
        &http,
        format!("{}/v1/apps/web/releases", urls[0]),
        admin,
        json!({"image": v1.image_ref()}),
    )
    .await;
    let published = t0.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let all = t0.elapsed();
    let cpu: Vec<Duration> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c)| cpu_time(*p) - *c)
        .collect();
    let mut lat: Vec<Duration> = done
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(t0))
        .collect();
    lat.sort();
    let rss_after: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let mib = |v: &[u64]| {
        v.iter()
            .map(|k| format!("{}", k / 1024))
            .collect::<Vec<_>>()
            .join("+")
    };
    eprintln!(
        "[{label}] agents={n} controllers={} release_call={published:?} notified (from the \
         release call): first={:?} p50={:?} p99={:?} all={all:?}",
        urls.len(),
        lat[0],
        lat[n / 2],
        lat[n * 99 / 100],
    );
    if join {
        eprintln!(
            "[{label}] {n} agents joined with one join token in {joined:?}; joined and \
             received the release (setup + publish to all notified) in {:?}",
            joined + all
        );
    }
    eprintln!(
        "[{label}] controller RSS MiB: idle {}, {n} parked polls {}, after fan-out {}; \
         controller CPU from release to all notified: {cpu:?}",
        mib(&rss_idle),
        mib(&rss_parked),
        mib(&rss_after),
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo test --release -p slipway-controller --test bench_fanout -- --ignored --nocapture"]
async fn bench_publish_to_notified_with_many_long_polls() {
    let n = agents_wanted();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = setup_process_dir(dir.path(), "");
    let admin = offline_token(&config, "admin", "admin");
    let controller = ControllerProcess::start(&config);
    fan_out("sqlite", n, &[controller], &admin, false).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo test --release -p slipway-controller --test bench_fanout -- --ignored --nocapture"]
async fn bench_publish_to_notified_two_controllers_on_postgres() {
    let n = agents_wanted();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("fanout").unwrap();
    let extra = format!("database_url = \"{url}\"");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (config_a, _) = setup_process_dir(a.path(), &extra);
    let (config_b, _) = setup_process_dir(b.path(), &extra);
    let admin = offline_token(&config_a, "admin", "admin");
    let controllers = [
        ControllerProcess::start(&config_a),
        ControllerProcess::start(&config_b),
    ];
    fan_out("postgres", n, &controllers, &admin, false).await;
    drop(controllers);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo test --release -p slipway-controller --test bench_fanout -- --ignored --nocapture"]
async fn bench_join_with_one_token_then_release() {
    let n = agents_wanted();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = setup_process_dir(dir.path(), "");
    let admin = offline_token(&config, "admin", "admin");
    let controller = ControllerProcess::start(&config);
    fan_out("join", n, &[controller], &admin, true).await;
}

//! `[[notify]]`: a rollout's events reach a local receiver as signed JSON POSTs, filtered by
//! kind; a receiver that answers 500 gets retries, one that hangs is given up, and neither
//! holds up the rollout.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as Code};
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::Role;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    /// Answers 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Code {
    r.hits.fetch_add(1, Ordering::SeqCst);
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Code::INTERNAL_SERVER_ERROR;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    // The signature over "<timestamp>.<body>", checked as a receiver would.
    if let Some(sig) = headers.get("x-slipway-signature") {
        let ts = headers["x-slipway-timestamp"].to_str().unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        let mut msg = format!("{ts}.").into_bytes();
        msg.extend_from_slice(&body);
        let hexsig = sig.to_str().unwrap().strip_prefix("sha256=").unwrap();
        ring::hmac::verify(&key, &msg, &hex::decode(hexsig).unwrap()).expect("signature");
    }
    r.got.lock().unwrap().push((headers, v));
    Code::NO_CONTENT
}

async fn hang() -> Code {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Code::OK
}

async fn serve(r: Receiver) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/slow", post(hang))
        .with_state(r);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn kinds(r: &Receiver) -> Vec<String> {
    let got = r.got.lock().unwrap();
    got.iter()
        .map(|(_, v)| v["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn rollout_events_are_posted_signed_filtered_and_retried_without_blocking() {
    let (signed, flaky) = (Receiver::default(), Receiver::default());
    flaky.fail_first.store(2, Ordering::SeqCst);
    let (a, b) = (serve(signed.clone()).await, serve(flaky.clone()).await);
    let extra = format!(
        "[[notify]]\nurl = \"http://{a}/hook\"\nevents = [\"rollout.*\", \"release.created\"]\n\
         secret = \"s3cret\"\n\
         [[notify]]\nurl = \"http://{b}/hook\"\nevents = [\"*\"]\nbackoff = \"100ms\"\n\
         [[notify]]\nurl = \"http://{a}/slow\"\nevents = [\"*\"]\ntimeout = \"200ms\"\n\
         attempts = 2\nbackoff = \"50ms\"\n"
    );
    let registry = slipway_tests::registry::Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start_with(&extra).await;
    h.apply(&format!(
        "{}[rollout]\ncanary = 0\nbatch_size = \"100%\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.post("/v1/hosts/h1/register", &agent, &json!({})).await;
    let started = std::time::Instant::now();
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert!(
        wait_until_async(|| async {
            h.get("/v1/apps/web/rollout", &h.admin).await.0 == StatusCode::OK
        })
        .await
    );
    let (s, _) = h
        .post(
            "/v1/hosts/h1/status",
            &agent,
            &json!({"app": "web", "seq": 1, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        wait_until_async(|| async {
            h.get("/v1/apps/web/rollout", &h.admin).await.1["state"] == "done"
        })
        .await,
        "rollout never done"
    );
    // The hanging receiver (200ms timeout, 2 attempts per event) did not hold it up.
    assert!(started.elapsed() < Duration::from_secs(10));

    // Filtered and in order; signed; a text line for chat webhooks.
    assert!(wait_until_async(|| async { kinds(&signed).len() >= 2 }).await);
    assert_eq!(kinds(&signed), ["release.created", "rollout.done"]);
    {
        let got = signed.got.lock().unwrap();
        let (hd, done) = &got[1];
        assert_eq!(hd["x-slipway-event"], "rollout.done");
        assert!(hd["x-slipway-signature"]
            .to_str()
            .unwrap()
            .starts_with("sha256="));
        assert_eq!(
            (done["app"].as_str(), done["seq"].as_u64()),
            (Some("web"), Some(1))
        );
        assert_eq!(done["text"], "slipway: web release 1 live everywhere");
        assert!(got[0].1["text"]
            .as_str()
            .unwrap()
            .starts_with("slipway: web release 1 created: "));
    }

    // The flaky one answered 500 twice and still got every event, unsigned.
    assert!(
        wait_until_async(|| async { kinds(&flaky).contains(&"rollout.done".to_string()) }).await
    );
    assert_eq!(
        kinds(&flaky),
        [
            "host.joined",
            "release.created",
            "wave.started",
            "host.phase",
            "rollout.done"
        ]
    );
    assert!(flaky.got.lock().unwrap()[0]
        .0
        .get("x-slipway-signature")
        .is_none());

    // Counted: retries of the flaky target; the hanging one given up.
    let metrics = wait_for_metrics(&h, |m| {
        metric(m, "slipway_controller_notifications_failed_total") >= 1.0
    })
    .await;
    assert!(metric(&metrics, "slipway_controller_notification_retries_total") >= 2.0);
    assert!(metric(&metrics, "slipway_controller_notifications_sent_total") >= 7.0);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_for_metrics(h: &Harness, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = h
            .http
            .get(format!("{}/metrics", h.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metrics never matched:\n{last}");
}

#[test]
fn a_bad_target_is_refused_naming_it() {
    let e = slipway_controller::config::Config::parse(
        "data_dir = \"/x\"\nsigning_key = \"/k\"\n[[notify]]\nurl = \"http://127.0.0.1:1/\"\n\
         events = [\"rollout.halt\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[[notify]] http://127.0.0.1:1/")
            && e.contains("unknown event \"rollout.halt\""),
        "{e}"
    );
}

//! `slipway release --wait` and `slipway rollout --watch` end to end: the real `slipway`
//! binary follows a real controller while the test plays the agent of host h1. The exit
//! code says how the rollout ended: 0 live everywhere, 2 halted / rolled back, 3 timed out.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::Role;
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::AsyncReadExt;

const SLIPWAY: &str = env!("CARGO_BIN_EXE_slipway");

/// Starts `slipway ARGS` against the harness as admin; stdout is a pipe (not a terminal).
fn slipway(h: &Harness, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(SLIPWAY)
        .args(args)
        .env("SLIPWAY_URL", &h.url)
        .env("SLIPWAY_TOKEN", &h.admin)
        .env_remove("SLIPWAY_TOKEN_FILE")
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits (at most 60 s) for the process; its exit code, stdout and stderr.
async fn finish(mut child: tokio::process::Child) -> (i32, String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
        a.unwrap();
        b.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("slipway did not finish within 60 s");
    (status.code().unwrap_or(-1), out, err)
}

/// Waits until release `seq` of web exists (the CLI made it).
async fn released(h: &Harness, seq: u64) {
    let ok = wait_until_async(|| async {
        let (s, _) = h
            .get(&format!("/v1/apps/web/releases/{seq}"), &h.admin)
            .await;
        s == StatusCode::OK
    })
    .await;
    assert!(ok, "release {seq} was never made");
}

async fn report(h: &Harness, agent: &str, seq: u64, phase: serde_json::Value) {
    let (s, v) = h
        .post(
            "/v1/hosts/h1/status",
            agent,
            &json!({"app": "web", "seq": seq, "phase": phase}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

#[tokio::test]
async fn wait_and_watch_exit_0_when_live_2_when_halted_3_on_timeout() {
    let (_registry, [v1, v2], h) = web_app(["v1", "v2"]).await;
    h.apply(&format!(
        "{}[rollout]\ncanary = 0\nbatch_size = \"100%\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.post("/v1/hosts/h1/register", &agent, &json!({})).await;

    // Seq 1: h1 pulls, then goes live -> exit 0 with each phase on its own line.
    let child = slipway(
        &h,
        &["release", "web", "--image", &v1.image_ref(), "--wait"],
    );
    released(&h, 1).await;
    report(&h, &agent, 1, json!("pulling")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    report(&h, &agent, 1, json!("live")).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("wave 1/1 started: h1"), "{out}");
    assert!(out.contains("h1 (wave 1): pulling"), "{out}");
    assert!(out.contains("h1 (wave 1): live"), "{out}");
    assert!(
        out.contains("summary: web seq 1 is live everywhere: 1/1 hosts live, 0 failed"),
        "{out}"
    );

    // Seq 2: h1 fails its health check -> halted, rolled back -> exit 2, naming the host.
    let child = slipway(
        &h,
        &["release", "web", "--image", &v2.image_ref(), "--wait"],
    );
    released(&h, 2).await;
    report(&h, &agent, 2, json!({"failed": {"reason": "unhealthy"}})).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("h1 (wave 1): failed: unhealthy"), "{out}");
    assert!(out.contains("summary: web seq 2 halted"), "{out}");
    assert!(out.contains("0/1 hosts live, 1 failed"), "{out}");
    assert!(out.contains("  failed: h1: unhealthy"), "{out}");
    assert!(out.contains("  rolled back as seq 3"), "{out}");
    assert!(err.contains("error: rollout of web seq 2 halted"), "{err}");

    // The automatic rollback (seq 3) and h1 stays silent; a short --timeout -> exit 3.
    let child = slipway(&h, &["rollout", "web", "--watch", "--timeout", "2s"]);
    let (code, out, err) = finish(child).await;
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("following web seq 3 (rollback)"), "{out}");
    assert!(
        out.contains("summary: web seq 3 not finished within --timeout 2s: 0/1 hosts live"),
        "{out}"
    );

    // `rollout --watch` follows the rollback to the end once h1 reports it live.
    let child = slipway(&h, &["rollout", "web", "--watch"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    report(&h, &agent, 3, json!("live")).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("summary: web seq 3 is live everywhere: 1/1 hosts live"),
        "{out}"
    );
}

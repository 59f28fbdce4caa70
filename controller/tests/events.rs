//! The event log: `GET /v1/events` lists a rollout's events in order, `since=` resumes after
//! an id, an SSE stream delivers a new event live, and `slipway events -f` prints it.

mod support;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::Role;
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::AsyncBufReadExt;

const SLIPWAY: &str = env!("CARGO_BIN_EXE_slipway");

fn kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_of_a_rollout_in_order_resume_with_since_and_stream_live() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    h.apply(&format!(
        "{}[rollout]\ncanary = 0\nbatch_size = \"100%\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let ro = h.token("viewer", Role::ReadOnly, None).await;
    h.post("/v1/hosts/h1/register", &agent, &json!({})).await;
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    // The rollout is planned (its first wave started) before the host reports.
    let planned = wait_until_async(|| async {
        h.get("/v1/apps/web/rollout", &h.admin).await.0 == StatusCode::OK
    })
    .await;
    assert!(planned);
    let (s, _) = h
        .post(
            "/v1/hosts/h1/status",
            &agent,
            &json!({"app": "web", "seq": 1, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let done = wait_until_async(|| async {
        h.get("/v1/apps/web/rollout", &h.admin).await.1["state"] == "done"
    })
    .await;
    assert!(done, "rollout never done");

    // In order, readable with a read-only token; not with an agent's.
    let (s, all) = h.get("/v1/events", &ro).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(
        kinds(&all),
        [
            "host.joined",
            "release.created",
            "wave.started",
            "host.phase",
            "rollout.done"
        ],
        "{all}"
    );
    assert_eq!(all[0]["detail"]["host"], "h1");
    assert_eq!(all[1]["detail"]["seq"], 1);
    assert_eq!(all[3]["detail"]["phase"], "live");
    let (s, _) = h.get("/v1/events", &agent).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // `since` resumes after an id; `app` leaves out fleet events.
    let created = all[1]["id"].as_u64().unwrap();
    let (_, rest) = h.get(&format!("/v1/events?since={created}"), &ro).await;
    assert_eq!(
        kinds(&rest),
        ["wave.started", "host.phase", "rollout.done"],
        "{rest}"
    );
    let (_, web) = h.get("/v1/events?app=web", &ro).await;
    assert_eq!(kinds(&web)[0], "release.created", "{web}");
    let last = all[4]["id"].as_u64().unwrap();

    // An SSE stream from the last id, and `slipway events -f`, both see a host join live.
    let resp = h
        .http
        .get(format!("{}/v1/events?since={last}", h.url))
        .bearer_auth(&ro)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut cli = tokio::process::Command::new(SLIPWAY)
        .args(["events", "-f", "--since", &last.to_string()])
        .env("SLIPWAY_URL", &h.url)
        .env("SLIPWAY_TOKEN", &ro)
        .env_remove("SLIPWAY_TOKEN_FILE")
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent2 = h.token("agent-h2", Role::Agent, Some("h2")).await;
    h.post("/v1/hosts/h2/register", &agent2, &json!({})).await;

    let mut text = String::new();
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        while !text.contains("\n\n") {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text.clone()
    })
    .await
    .expect("no event on the stream within 10 s");
    assert!(frame.contains(&format!("id: {}\n", last + 1)), "{frame:?}");
    assert!(frame.contains("event: host.joined\n"), "{frame:?}");
    assert!(frame.contains("\"host\":\"h2\""), "{frame:?}");

    let mut lines = tokio::io::BufReader::new(cli.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("slipway events -f printed nothing within 10 s")
        .unwrap()
        .unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[0], (last + 1).to_string(), "{line}");
    assert!(
        line.contains("host.joined") && line.contains("host=h2"),
        "{line}"
    );
    cli.kill().await.unwrap();
}

//! The controller's side of `slipway logs`, with a scripted agent: a log request reaches the
//! host's log long-poll, the upload is relayed tagged with the host, nobody else may upload
//! for it, and a request nobody answers ends with a clear error, in bounded time.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::logs::{LogFrame, LogRequests, LogStream};
use slipway_proto::api::Role;
use std::time::{Duration, Instant};
use support::*;

/// The reader's NDJSON frames, keep-alives left out, until the stream ends.
async fn frames(resp: reqwest::Response) -> Vec<LogFrame> {
    let text = resp.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<LogFrame>(l).unwrap())
        .filter(|f| !f.is_keep_alive())
        .collect()
}

fn logs(h: &Harness, token: &str, query: &str) -> reqwest::RequestBuilder {
    h.http
        .get(format!("{}/v1/apps/web/logs?{query}", h.url))
        .bearer_auth(token)
}

#[tokio::test]
async fn log_requests_reach_the_agent_and_its_upload_reaches_the_reader() {
    let (_registry, _, h) = web_app(["v1"]).await;
    let admin = h.token("ops", Role::Admin, None).await;
    let agent1 = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let agent2 = h.token("agent-h2", Role::Agent, Some("h2")).await;
    for (host, t) in [("h1", &agent1), ("h2", &agent2)] {
        let (s, v) = h
            .post(&format!("/v1/hosts/{host}/register"), t, &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    // Agent tokens may not read logs, not even their own host's.
    let (s, v) = h.get("/v1/apps/web/logs?host=h1", &agent1).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("may not read logs"),
        "{v}"
    );

    // No log long-poll open: the host is up but not listening, said at once.
    let got = frames(logs(&h, &admin, "host=h1").send().await.unwrap()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let e = got[0].error.as_deref().unwrap();
    assert!(e.contains("not listening for log requests"), "{e}");

    // The agent polls; the reader's request wakes it.
    let poll = |token: String| {
        let (http, url) = (h.http.clone(), h.url.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("{url}/v1/hosts/h1/log-requests?wait=20s"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<LogRequests>().await.unwrap().requests
        })
    };
    let polled = poll(agent1.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reader = tokio::spawn(logs(&h, &admin, "host=h1&tail=5&since=10m").send());
    let reqs = polled.await.unwrap();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let req = &reqs[0];
    assert_eq!(
        (req.app.as_str(), req.tail, req.follow),
        ("web", Some(5), false)
    );
    assert!(req.since.is_some());

    // Another host may not upload for it; the host itself may, once.
    let upload = |token: &str, host: &str, id: &str, body: String| {
        h.http
            .post(format!("{}/v1/hosts/{host}/logs/{id}", h.url))
            .bearer_auth(token)
            .body(body)
            .send()
    };
    let r = upload(&agent2, "h1", &req.id, String::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = upload(&agent2, "h2", &req.id, String::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "h1's request, not h2's");
    let body = [
        LogFrame::line(LogStream::Stdout, "hello".into()),
        LogFrame::default(),
        LogFrame::line(LogStream::Stderr, "oops".into()),
    ]
    .iter()
    .map(|f| String::from_utf8(f.to_ndjson()).unwrap())
    .collect::<String>();
    let r = upload(&agent1, "h1", &req.id, body.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = upload(&agent1, "h1", &req.id, body).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an id serves one upload");
    let got = frames(reader.await.unwrap().unwrap()).await;
    let lines: Vec<_> = got
        .iter()
        .map(|f| (f.host.as_deref(), f.stream, f.line.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            (Some("h1"), Some(LogStream::Stdout), Some("hello")),
            (Some("h1"), Some(LogStream::Stderr), Some("oops"))
        ]
    );

    // A request the agent takes but never answers: a clear error, in bounded time.
    let polled = poll(agent1.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let reader = tokio::spawn(logs(&h, &admin, "host=h1").send());
    assert_eq!(polled.await.unwrap().len(), 1);
    let got = frames(reader.await.unwrap().unwrap()).await;
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(got.len(), 1, "{got:?}");
    let e = got[0].error.as_deref().unwrap();
    assert!(
        e.contains("host h1 did not answer the log request within 10s") && e.contains("last seen"),
        "{e}"
    );

    // Bad input: a `since` that is neither a duration nor a time; an unknown host.
    let (s, v) = h.get("/v1/apps/web/logs?since=yesterday", &admin).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("RFC 3339"), "{v}");
    let (s, v) = h.get("/v1/apps/web/logs?host=nope", &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = h.get("/v1/apps/web/logs", &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no host runs app `web`"),
        "{v}"
    );
}

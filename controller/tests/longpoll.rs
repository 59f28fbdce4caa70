//! Agents' long-poll of their desired set, host selection by labels, and re-signing.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::Role;
use slipway_tests::registry::Registry;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test]
async fn long_poll_answers_at_once_on_a_new_version_waits_otherwise_and_is_woken_by_a_publish() {
    let (_registry, [v1, v2], h) = web_app(["v1", "v2"]).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;

    let (s, v) = h.get("/v1/hosts/h1/desired", &agent).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "unregistered host: {v}");
    let (s, _) = h
        .post(
            "/v1/hosts/h1/register",
            &agent,
            &json!({"labels": {"role": "web"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // No version held: answers at once, empty set.
    let t = Instant::now();
    let (s, empty) = h.get("/v1/hosts/h1/desired", &agent).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(empty["releases"], json!({}));
    let version = empty["version"].as_str().unwrap().to_string();

    // Holding the current version: waits for `wait`, then 304.
    let t = Instant::now();
    let (s, _) = h
        .get(
            &format!("/v1/hosts/h1/desired?version={version}&wait=700ms"),
            &agent,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "{:?}",
        t.elapsed()
    );

    // A publish wakes a waiting poll well before its wait ends.
    let (http, url, tok, ver) = (
        h.http.clone(),
        h.url.clone(),
        agent.clone(),
        version.clone(),
    );
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let r = http
            .get(format!("{url}/v1/hosts/h1/desired?version={ver}&wait=30s"))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        let (s, v) = decode(r).await;
        (s, v, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, set, waited) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert_ne!(set["version"], version);
    let v = verify(&h, &set["releases"]["web"]);
    assert_eq!((v.release.seq, &v.image.digest), (1, &v1.digest));

    // A stale version gets the current set at once.
    let (s, now) = h
        .get(
            &format!("/v1/hosts/h1/desired?version={version}&wait=30s"),
            &agent,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(now, set);

    // v2 then reaches the host too.
    h.post(
        "/v1/apps/web/releases",
        &h.admin,
        &json!({"image": format!("{}:v2", v2.repository)}),
    )
    .await;
    let (_, set2) = h
        .get(
            &format!(
                "/v1/hosts/h1/desired?version={}&wait=5s",
                set["version"].as_str().unwrap()
            ),
            &agent,
        )
        .await;
    assert_eq!(verify(&h, &set2["releases"]["web"]).image.digest, v2.digest);
}

#[tokio::test]
async fn hosts_get_only_the_apps_whose_selector_matches_their_labels() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&format!(
        "{}[rollout]\nselector = {{ role = \"web\" }}\n",
        app_toml(&v1.repository)
    ))
    .await;
    let web = h.token("agent-web", Role::Agent, Some("web-1")).await;
    let db = h.token("agent-db", Role::Agent, Some("db-1")).await;
    h.post(
        "/v1/hosts/web-1/register",
        &web,
        &json!({"labels": {"role": "web", "zone": "a"}}),
    )
    .await;
    h.post(
        "/v1/hosts/db-1/register",
        &db,
        &json!({"labels": {"role": "db"}}),
    )
    .await;
    h.post(
        "/v1/apps/web/releases",
        &h.admin,
        &json!({"image": v1.image_ref()}),
    )
    .await;
    let (_, w) = h.get("/v1/hosts/web-1/desired", &web).await;
    let (_, d) = h.get("/v1/hosts/db-1/desired", &db).await;
    assert!(w["releases"].get("web").is_some(), "{w}");
    assert_eq!(d["releases"], json!({}));
}

#[tokio::test]
async fn shutdown_answers_waiting_long_polls_promptly() {
    let mut h = Harness::start().await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.post("/v1/hosts/h1/register", &agent, &json!({})).await;
    let (_, set) = h.get("/v1/hosts/h1/desired", &agent).await;
    let (http, url, version) = (
        h.http.clone(),
        h.url.clone(),
        set["version"].as_str().unwrap().to_string(),
    );
    let poll = tokio::spawn(async move {
        http.get(format!(
            "{url}/v1/hosts/h1/desired?version={version}&wait=50s"
        ))
        .bearer_auth(agent)
        .send()
        .await
        .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    h.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    let status = poll.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn releases_are_resigned_before_they_expire_with_the_same_seq_and_image() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    // Valid 30 s, re-signed once less than 28 s remain: about every 2 s.
    let h = Harness::start_with(
        "release_validity = \"30s\"\nresign_before = \"28s\"\nresign_interval = \"200ms\"",
    )
    .await;
    h.apply(&app_toml(&v1.repository)).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.post("/v1/hosts/h1/register", &agent, &json!({})).await;
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let first = verify(&h, &r["envelope"]);
    let (_, set) = h.get("/v1/hosts/h1/desired", &agent).await;

    // The held version changes when the re-signed envelope is published.
    let (s, next) = h
        .get(
            &format!(
                "/v1/hosts/h1/desired?version={}&wait=10s",
                set["version"].as_str().unwrap()
            ),
            &agent,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let again = verify(&h, &next["releases"]["web"]);
    assert_eq!(again.release.seq, first.release.seq);
    assert_eq!(again.image, first.image);
    assert!(again.release.expires > first.release.expires);

    let (_, log) = h.get("/v1/audit", &h.admin).await;
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "release.resign" && e["object"] == "release/web/1"));
    let (_, rel) = h.get("/v1/apps/web/releases/1", &h.admin).await;
    // Listed with its newest signature (possibly re-signed once more since).
    assert!(verify(&h, &rel["envelope"]).release.expires >= again.release.expires);
}

//! Who may do what through the controller's API, and what it remembers: tokens and roles,
//! the audit log, a restart, and the endpoints that need no token.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::Role;
use support::*;

#[tokio::test]
async fn tokens_are_checked_and_nothing_is_written_without_the_right_one() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    let reader = h.token("reader", Role::ReadOnly, None).await;
    let agent1 = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let agent2 = h.token("agent-h2", Role::Agent, Some("h2")).await;
    let audit_before = h.audit_len().await;
    let release = json!({"image": format!("{}:v1", v1.repository)});

    // Missing, malformed and unknown tokens: 401.
    let (s, v) = h
        .post_raw(
            "/v1/apps",
            None,
            "application/toml",
            &app_toml(&v1.repository),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = h.get("/v1/apps", "swt_not-a-token").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Read-only operators read but cannot write.
    let (s, _) = h.get("/v1/apps", &reader).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h.post("/v1/apps/web/releases", &reader, &release).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("admin token is required"),
        "{v}"
    );
    let (s, _) = h
        .post_raw(
            "/v1/apps",
            Some(&reader),
            "application/toml",
            &app_toml(&v1.repository),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.post("/v1/apps/web/rollback", &reader, &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .post(
            "/v1/tokens",
            &reader,
            &json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.get("/v1/hosts/h1/desired?wait=0s", &reader).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Agents: only their own host, and nothing operators do.
    let (s, _) = h
        .post("/v1/hosts/h1/register", &agent1, &json!({"labels": {}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h
        .post("/v1/hosts/h2/register", &agent2, &json!({"labels": {}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let audit_before = audit_before + 2;
    let (s, _) = h.get("/v1/hosts/h1/desired?wait=0s", &agent1).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h.get("/v1/hosts/h2/desired?wait=0s", &agent1).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("host `h2`"), "{v}");
    let (s, _) = h
        .post(
            "/v1/hosts/h2/status",
            &agent1,
            &json!({"app": "web", "seq": 1, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.post("/v1/hosts/h2/register", &agent1, &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.post("/v1/apps/web/releases", &agent1, &release).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.get("/v1/apps", &agent1).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        h.audit_len().await,
        audit_before,
        "refused requests wrote nothing"
    );
    let (_, hosts) = h.get("/v1/hosts", &reader).await;
    assert_eq!(hosts.as_array().unwrap().len(), 2);

    // A revoked token stops working at once.
    let (s, created) = h
        .post(
            "/v1/tokens",
            &h.admin,
            &json!({"name": "temp", "role": "read-only"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let temp = created["token"].as_str().unwrap().to_string();
    assert_eq!(h.get("/v1/apps", &temp).await.0, StatusCode::OK);
    let r = h
        .http
        .delete(format!("{}/v1/tokens/temp", h.url))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.get("/v1/apps", &temp).await.0, StatusCode::UNAUTHORIZED);
    // Tokens are stored hashed: the secret is nowhere in the database file.
    let db = std::fs::read(h.dir.path().join("data/controller.db")).unwrap();
    let needle = agent1.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn the_audit_log_records_every_write_with_who_and_what() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let (s, _) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    h.post("/v1/apps/web/rollback", &h.admin, &json!({"to_seq": 1}))
        .await;
    h.post(
        "/v1/hosts/h1/register",
        &agent,
        &json!({"labels": {"role": "web"}}),
    )
    .await;
    let (s, _) = h
        .post(
            "/v1/hosts/h1/status",
            &agent,
            &json!({"app": "web", "seq": 2, "phase": {"failed": {"reason": "health check timed out"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.post(
        "/v1/tokens",
        &h.admin,
        &json!({"name": "ci", "role": "admin"}),
    )
    .await;

    let (_, log) = h.get("/v1/audit", &h.admin).await;
    let rows: Vec<(String, String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["object"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("admin", "app.apply", "app/web"),
        ("admin", "release.create", "release/web/1"),
        ("admin", "release.rollback", "release/web/2"),
        ("agent-h1", "host.register", "host/h1"),
        ("admin", "token.create", "token/ci"),
    ];
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, want);
    assert!(log[0]["at"].as_str().unwrap().ends_with('Z'));

    // The phase report is in the status history (events), not the audit log.
    let (_, events) = h.get("/v1/events?app=web", &h.admin).await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "host.phase"
                && e["detail"]["host"] == "h1"
                && e["detail"]["phase"] == "failed: health check timed out"),
        "{events}"
    );

    // Filters: by app, by actor, by time; a bad one is refused.
    let actions = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = h.get("/v1/audit?app=web", &h.admin).await;
    assert_eq!(
        actions(&v),
        ["app.apply", "release.create", "release.rollback"]
    );
    let (_, v) = h.get("/v1/audit?actor=agent-h1", &h.admin).await;
    assert_eq!(actions(&v), ["host.register"]);
    let (_, v) = h.get("/v1/audit?app=nope", &h.admin).await;
    assert_eq!(actions(&v), Vec::<String>::new());
    let (_, v) = h.get("/v1/audit?since=1h&actor=admin", &h.admin).await;
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
    let (_, v) = h
        .get("/v1/audit?since=2999-01-01T00:00:00Z", &h.admin)
        .await;
    assert_eq!(actions(&v), Vec::<String>::new());
    let (s, v) = h.get("/v1/audit?since=yesterday", &h.admin).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("`yesterday`"), "{v}");
    let (s, _) = h.get("/v1/audit?app=Bad_App", &h.admin).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (_, status) = h.get("/v1/status?app=web", &h.admin).await;
    assert_eq!(status[0]["host"], "h1");
    assert_eq!(
        status[0]["phase"]["failed"]["reason"],
        "health check timed out"
    );
}

#[tokio::test]
async fn a_restarted_controller_keeps_releases_seqs_hosts_and_tokens() {
    let (_registry, [v1], mut h) = web_app(["v1"]).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.post(
        "/v1/hosts/h1/register",
        &agent,
        &json!({"labels": {"role": "web"}}),
    )
    .await;
    let (s, _) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, before) = h.get("/v1/hosts/h1/desired?wait=0s", &agent).await;

    h.restart().await;
    let (s, after) = h.get("/v1/hosts/h1/desired?wait=0s", &agent).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(before, after, "the same desired set, same version");
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    assert_eq!(hosts[0]["labels"]["role"], "web");
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!((s, r["seq"].as_u64()), (StatusCode::CREATED, Some(2)));
}

#[tokio::test]
async fn healthz_and_metrics_answer_without_a_token() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("slipway_controller_releases_total"), "{text}");
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431_and_the_api_keeps_answering() {
    let h = Harness::start().await;
    let big = "x".repeat(slipway_controller::defaults::MAX_REQUEST_HEAD + 1);
    let r = h
        .http
        .get(format!("{}/v1/apps", h.url))
        .header("x-padding", big)
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let (s, _) = h.get("/v1/apps", &h.admin).await;
    assert_eq!(s, StatusCode::OK);
}

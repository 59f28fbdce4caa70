//! Host lifecycle through the API: cordon, drain, uncordon and remove change what a host is
//! told; bad requests (unknown host, unknown action, a read-only token, the only canary of a
//! rollout in progress) are refused with a clear error and change nothing; a removed host's
//! token and secret key are gone, so nothing issued after is sealed to it.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::Role;
use slipway_proto::seal::HostSecretKey;
use support::*;

async fn register(h: &Harness, host: &str, labels: Value) -> (String, HostSecretKey) {
    let token = h
        .token(&format!("agent-{host}"), Role::Agent, Some(host))
        .await;
    let key = HostSecretKey::generate().unwrap();
    let (s, v) = h
        .post(
            &format!("/v1/hosts/{host}/register"),
            &token,
            &json!({"labels": labels, "secret_key": key.public().to_base64()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (token, key)
}

async fn lifecycle(h: &Harness, host: &str) -> Value {
    let (_, v) = h.get("/v1/hosts", &h.admin).await;
    v.as_array()
        .unwrap()
        .iter()
        .find(|x| x["host"] == host)
        .map(|x| x["lifecycle"].clone())
        .unwrap_or(Value::Null)
}

async fn seq_for(h: &Harness, host: &str, token: &str) -> Option<u64> {
    let body = h.desired(host, token).await;
    body.releases.get("web").map(|env| {
        let rel = verify(h, &serde_json::to_value(env).unwrap());
        rel.release.seq
    })
}

#[tokio::test]
async fn the_only_canary_of_a_rollout_in_progress_stays_and_bad_requests_change_nothing() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    let (t1, _) = register(&h, "h1", json!({"slipway.canary": "true"})).await;
    let (t2, _) = register(&h, "h2", json!({})).await;
    let (t3, _) = register(&h, "h3", json!({})).await;
    let (s, v) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The rollout is planned a moment after the release.
    assert!(
        wait_until_async(|| async {
            h.get("/v1/apps/web/rollout", &h.admin).await.0 == StatusCode::OK
        })
        .await
    );
    let audit = h.audit_len().await;

    // h1 is the canary and not live yet: it cannot be cordoned, drained or removed.
    for action in ["cordon", "drain"] {
        let (s, v) = h
            .post(&format!("/v1/hosts/h1/{action}"), &h.admin, &json!({}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("only canary of app `web`") && e.contains("nothing changed"),
            "{e}"
        );
    }
    let (s, v) = h.delete("/v1/hosts/h1", &h.admin).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Unknown host, unknown action, read-only token.
    let (s, v) = h.post("/v1/hosts/nope/cordon", &h.admin, &json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("`nope` is not registered"),
        "{v}"
    );
    let (s, v) = h.delete("/v1/hosts/nope", &h.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = h.post("/v1/hosts/h2/freeze", &h.admin, &json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown host action `freeze`"),
        "{v}"
    );
    let reader = h.token("reader", Role::ReadOnly, None).await;
    let (s, _) = h.post("/v1/hosts/h2/cordon", &reader, &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.delete("/v1/hosts/h2", &t2).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an agent cannot remove hosts");
    assert_eq!(h.audit_len().await, audit, "nothing recorded");
    for host in ["h1", "h2", "h3"] {
        assert_eq!(lifecycle(&h, host).await, "active", "{host} unchanged");
    }

    // Drain empties a host's desired set; uncordon gives it the release back.
    assert_eq!(seq_for(&h, "h1", &t1).await, Some(1));
    let (s, v) = h.post("/v1/hosts/h3/drain", &h.admin, &json!({})).await;
    assert_eq!(
        (s, &v["lifecycle"]),
        (StatusCode::OK, &json!("drained")),
        "{v}"
    );
    assert!(
        wait_until_async(|| async { h.desired("h3", &t3).await.releases.is_empty() }).await,
        "a drained host's desired set is empty"
    );
    // Once the canary is live it may be cordoned.
    let (s, v) = h
        .post(
            "/v1/hosts/h1/status",
            &t1,
            &json!({"app": "web", "seq": 1, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(
        wait_until_async(|| async {
            h.post("/v1/hosts/h1/cordon", &h.admin, &json!({})).await.0 == StatusCode::OK
        })
        .await,
        "a live canary may be cordoned"
    );
    assert_eq!(lifecycle(&h, "h1").await, "cordoned");
    let (s, _) = h.post("/v1/hosts/h3/uncordon", &h.admin, &json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lifecycle(&h, "h3").await, "active");
}

#[tokio::test]
async fn a_removed_host_is_forgotten_its_token_revoked_and_nothing_is_sealed_to_it_after() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    h.apply(&format!(
        "{}[secrets]\nDB_PASSWORD = \"db-password\"\n[rollout]\ncanary = 0\nbatch_size = \"100%\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    let (t1, _) = register(&h, "h1", json!({})).await;
    let (t2, _) = register(&h, "h2", json!({})).await;
    let put = |value: &'static str| {
        let h = &h;
        async move {
            let r = h
                .http
                .put(format!("{}/v1/apps/web/secrets/db-password", h.url))
                .bearer_auth(&h.admin)
                .body(value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    let release = json!({"image": format!("{}:v1", v1.repository)});
    put("first-9a8b7c6d").await;
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(h.desired("h1", &t1).await.secrets.contains_key("web"));

    let (s, v) = h.delete("/v1/hosts/h1", &h.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked_tokens"], json!(["agent-h1"]));
    let store = &h.running().state.store;
    assert!(store.host("h1").await.unwrap().is_none());
    assert!(store.host_secret_key("h1").await.unwrap().is_none());
    assert!(store
        .statuses(None)
        .await
        .unwrap()
        .iter()
        .all(|s| s.host != "h1"));
    assert!(lifecycle(&h, "h1").await.is_null(), "not listed");

    // A secret version set after removal is sealed to the remaining host only.
    put("second-1f2e3d4c").await;
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let body = h.desired("h2", &t2).await;
    assert_eq!(body.secrets["web"]["db-password"].version, 2);
    let (s, v) = h.get("/v1/hosts/h1/desired", &t1).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = h.get("/v1/hosts/h1/desired", &h.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = h
        .post("/v1/hosts/h1/register", &t1, &json!({"labels": {}}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a revoked token cannot register again"
    );
    let (_, log) = h.get("/v1/audit", &h.admin).await;
    assert!(log.to_string().contains("host.removed"), "{log}");
}

#[tokio::test]
async fn a_joined_or_relabelled_host_keeps_the_controllers_labels() {
    let (_registry, _, h) = web_app(["v1"]).await;
    let (s, t) = h
        .post(
            "/v1/join-tokens",
            &h.admin,
            &json!({"labels": {"role": "web"}, "ttl": "1h", "uses": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    for bad in [
        json!({"labels": {}, "ttl": "1h", "uses": 0}),
        json!({"labels": {}, "ttl": "0s", "uses": 1}),
    ] {
        let (s, v) = h.post("/v1/join-tokens", &h.admin, &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, v) = h
        .post(
            "/v1/join",
            "",
            &json!({"secret": t["secret"], "host": "j1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let agent = v["agent_token"].as_str().unwrap().to_string();
    // The agent may repeat the labels it has, but not add or change one.
    let (s, v) = h
        .post(
            "/v1/hosts/j1/register",
            &agent,
            &json!({"labels": {"role": "web"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h
        .post(
            "/v1/hosts/j1/register",
            &agent,
            &json!({"labels": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("may not set label `tier=gold`"),
        "{v}"
    );
    // An agent-registered host becomes managed once an admin relabels it.
    let (t2, _) = register(&h, "h2", json!({"role": "web"})).await;
    let r = h
        .http
        .put(format!("{}/v1/hosts/h2/labels", h.url))
        .bearer_auth(&h.admin)
        .json(&json!({"labels": {"role": "db"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = h
        .post(
            "/v1/hosts/h2/register",
            &t2,
            &json!({"labels": {"role": "web"}}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the agent cannot take its old label back"
    );
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    let h2 = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["host"] == "h2")
        .unwrap();
    assert_eq!(h2["labels"], json!({"role": "db"}));
}

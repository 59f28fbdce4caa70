//! The controller's API against a real `docker-registry`: apps, releases, rollback, auth,
//! audit. Each test runs its own controller on 127.0.0.1 with its own data dir.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::Role;
use slipway_tests::image::{ImageBuilder, Index};
use slipway_tests::registry::Registry;
use support::*;

#[tokio::test]
async fn apps_apply_versions_specs_and_rejects_invalid_ones_with_the_key_path() {
    let h = Harness::start().await;
    let v = h.apply(&app_toml("127.0.0.1:5999/demo/web")).await;
    assert_eq!(v["version"], 1);
    assert_eq!(v["spec"]["listen"], 8080);
    // Same spec again: no new version.
    assert_eq!(
        h.apply(&app_toml("127.0.0.1:5999/demo/web")).await["version"],
        1
    );
    let changed = app_toml("127.0.0.1:5999/demo/web").replace("8080", "8081");
    assert_eq!(h.apply(&changed).await["version"], 2);

    let bad = app_toml("127.0.0.1:5999/demo/web").replace("listen = 8080", "listen = 0");
    let (s, v) = h
        .post_raw("/v1/apps", Some(&h.admin), "application/toml", &bad)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"].as_str().unwrap().contains("key `listen`"), "{v}");

    let bad = format!(
        "{}[health]\nintervall = \"1s\"\n",
        app_toml("r.example/web")
    );
    let (s, v) = h
        .post_raw("/v1/apps", Some(&h.admin), "application/toml", &bad)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("intervall") && msg.contains("health"), "{msg}");

    // JSON specs are checked the same way, naming the field.
    let (s, v) = h
        .post(
            "/v1/apps",
            &h.admin,
            &json!({"name": "api", "image": "r.example/api", "listen": 80, "container_port": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("container_port"),
        "{v}"
    );
    let (s, v) = h
        .post_raw("/v1/apps", Some(&h.admin), "application/json", "{nope")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let (s, v) = h.get("/v1/apps/web", &h.admin).await;
    assert_eq!((s, v["version"].as_u64()), (StatusCode::OK, Some(2)));
    let (s, _) = h.get("/v1/apps/nope", &h.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn release_by_tag_pins_the_registry_digest_signs_it_and_increments_seq() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;

    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository), "annotations": {"commit": "abc"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["seq"], 1);
    assert_eq!(r["image"], v1.image_ref());
    let verified = verify(&h, &r["envelope"]);
    assert_eq!(verified.image.digest, v1.digest);
    assert_eq!(verified.release.seq, 1);
    assert_eq!(verified.release.annotations["commit"], "abc");
    assert_eq!(
        verified.release.annotations["slipway.requested"],
        format!("{}:v1", v1.repository)
    );

    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v2", v2.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["seq"], 2);
    assert_eq!(verify(&h, &r["envelope"]).image.digest, v2.digest);

    // By digest: checked to exist, taken as is.
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!(
        (s, r["seq"].as_u64()),
        (StatusCode::CREATED, Some(3)),
        "{r}"
    );
    assert_eq!(r["image"], v1.image_ref());

    let (_, list) = h.get("/v1/apps/web/releases", &h.admin).await;
    let seqs: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[tokio::test]
async fn an_index_resolves_to_its_linux_amd64_child() {
    let registry = Registry::start().unwrap();
    let amd = ImageBuilder::new()
        .layer_from_files(&[("a", b"amd64")])
        .platform("linux", "amd64")
        .build();
    let arm = ImageBuilder::new()
        .layer_from_files(&[("a", b"arm64")])
        .platform("linux", "arm64")
        .build();
    let pushed = Index::new()
        .image(arm)
        .image(amd.clone())
        .push(registry.addr(), "demo/web", "multi")
        .unwrap();
    let h = Harness::start().await;
    h.apply(&app_toml(&pushed.repository)).await;
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:multi", pushed.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let v = verify(&h, &r["envelope"]);
    assert_eq!(v.image.digest, amd.manifest_digest);
    assert_eq!(
        v.release.annotations["slipway.index"],
        pushed.digest.to_string()
    );
}

#[tokio::test]
async fn images_that_do_not_exist_or_cannot_be_reached_are_refused_and_nothing_is_stored() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
    let audit_before = h.audit_len().await;

    let cases = [
        (
            format!("{}:nope", v1.repository),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not exist",
        ),
        (
            format!("{}@sha256:{}", v1.repository, "0".repeat(64)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not exist",
        ),
        (
            format!("{}/other:v1", registry.addr()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not from the app's repository",
        ),
        (
            format!("{}@sha256:xyz", v1.repository),
            StatusCode::BAD_REQUEST,
            "not a valid reference",
        ),
    ];
    for (image, status, words) in cases {
        let (s, v) = h
            .post("/v1/apps/web/releases", &h.admin, &json!({"image": image}))
            .await;
        assert_eq!(s, status, "{image}: {v}");
        assert!(v["error"].as_str().unwrap().contains(words), "{image}: {v}");
    }
    let (s, v) = h
        .post(
            "/v1/apps/nope/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown app `nope`"));
    let (s, v) = h
        .post("/v1/apps/web/releases", &h.admin, &json!({"image": 1}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("`image`"), "{v}");

    // Registry down at release time: 502, named.
    let addr = registry.addr().to_string();
    drop(registry);
    let (s, v) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{addr}/demo/web:v1")}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{v}"
    );

    let (_, list) = h.get("/v1/apps/web/releases", &h.admin).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(h.audit_len().await, audit_before);
}

#[tokio::test]
async fn rollback_is_a_new_higher_seq_pointing_at_the_old_digest() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
    let (s, v) = h.post("/v1/apps/web/rollback", &h.admin, &json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    for tag in ["v1", "v2"] {
        let (s, _) = h
            .post(
                "/v1/apps/web/releases",
                &h.admin,
                &json!({"image": format!("{}:{tag}", v1.repository)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, r) = h
        .post("/v1/apps/web/rollback", &h.admin, &json!({"to_seq": 1}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["seq"], 3);
    assert_eq!(r["rollback_of"], 1);
    let v = verify(&h, &r["envelope"]);
    assert_eq!((v.release.seq, &v.image.digest), (3, &v1.digest));
    assert_eq!(v.release.annotations["slipway.rollback-of"], "1");

    // Without to_seq: the one before the latest (seq 3 -> seq 2, which is v2).
    let (s, r) = h.post("/v1/apps/web/rollback", &h.admin, &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        (r["seq"].as_u64(), r["image"].as_str()),
        (Some(4), Some(v2.image_ref().as_str()))
    );

    let (s, v) = h
        .post("/v1/apps/web/rollback", &h.admin, &json!({"to_seq": 99}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"].as_str().unwrap().contains("no release seq 99"),
        "{v}"
    );
}

#[tokio::test]
async fn concurrent_releases_of_one_app_get_unique_gapless_seqs() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, token, image) = (
            h.http.clone(),
            h.url.clone(),
            h.admin.clone(),
            format!("{}:v1", v1.repository),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/v1/apps/web/releases"))
                .bearer_auth(token)
                .json(&json!({ "image": image }))
                .send()
                .await
                .unwrap();
            let (s, v) = decode(r).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["seq"].as_u64().unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn tokens_are_checked_and_nothing_is_written_without_the_right_one() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
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
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
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
        ("agent-h1", "host.status", "host/h1/web"),
        ("admin", "token.create", "token/ci"),
    ];
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, want);
    assert!(log[0]["at"].as_str().unwrap().ends_with('Z'));

    let (_, status) = h.get("/v1/status?app=web", &h.admin).await;
    assert_eq!(status[0]["host"], "h1");
    assert_eq!(
        status[0]["phase"]["failed"]["reason"],
        "health check timed out"
    );
}

#[tokio::test]
async fn a_restarted_controller_keeps_releases_seqs_hosts_and_tokens() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let mut h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
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

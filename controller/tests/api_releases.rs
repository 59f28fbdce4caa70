//! The controller's release API against a real `docker-registry`: apps applied and
//! versioned, releases pinned to the registry's digest and signed, indexes, missing images,
//! rollbacks and concurrent releases. Each test runs its own controller on 127.0.0.1 with its
//! own data dir.

mod support;

use reqwest::StatusCode;
use serde_json::json;
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
    let (_registry, [v1, v2], h) = web_app(["v1", "v2"]).await;

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
    let (registry, [v1], h) = web_app(["v1"]).await;
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
    let (_registry, [v1, v2], h) = web_app(["v1", "v2"]).await;
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
    let (_registry, [v1], h) = web_app(["v1"]).await;
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
async fn a_rollback_re_signs_the_old_release_whole_not_todays_spec() {
    let (_registry, [v1, _v2], h) = web_app(["v1", "v2"]).await;
    let spec = |greeting: &str| {
        format!(
            "{}[env]\nGREETING = \"{greeting}\"\n",
            app_toml(&v1.repository)
        )
    };
    h.apply(&spec("good")).await;
    let release = |tag: &str| json!({"image": format!("{}:{tag}", v1.repository)});
    let (s, r) = h
        .post("/v1/apps/web/releases", &h.admin, &release("v1"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    // A bad `app apply`, released with a new image.
    h.apply(&spec("bad")).await;
    let (s, r) = h
        .post("/v1/apps/web/releases", &h.admin, &release("v2"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        verify(&h, &r["envelope"]).release.spec.env["GREETING"],
        "bad"
    );

    let (s, r) = h
        .post("/v1/apps/web/rollback", &h.admin, &json!({"to_seq": 1}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let v = verify(&h, &r["envelope"]);
    assert_eq!((v.release.seq, &v.image.digest), (3, &v1.digest));
    assert_eq!(v.release.spec.env["GREETING"], "good");
    assert_eq!(
        r["spec_version"], 2,
        "the spec version seq 1 was signed with"
    );
    assert!(!v.release.annotations.contains_key("slipway.rollout"));

    // `--now`: marked to go out in one wave.
    let (s, r) = h
        .post(
            "/v1/apps/web/rollback",
            &h.admin,
            &json!({"to_seq": 1, "now": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let v = verify(&h, &r["envelope"]);
    assert_eq!(v.release.annotations["slipway.rollout"], "one-wave");
    assert_eq!(v.release.spec.env["GREETING"], "good");
}

//! GitOps webhooks against a real git repository and registry: GitHub's signed pushes
//! (verified, deduplicated, filtered by branch, capped) and GitLab's token, and no webhooks
//! without GitOps.

mod support;

use reqwest::StatusCode;
use slipway_tests::registry::Registry;
use std::time::Duration;
use support::gitops::*;
use support::Harness;

#[tokio::test]
async fn github_webhooks_are_verified_deduplicated_filtered_and_capped() {
    let registry = Registry::start().unwrap();
    let v1 = push(&registry, "demo/web", "v1", "web v1");
    let v2 = push(&registry, "demo/web", "v2", "web v2");
    let repo = GitRepo::new();
    repo.write("apps/web/app.toml", &app_toml("web", &v1.repository, 8080));
    repo.write("apps/web/image", "v1");
    let c1 = repo.commit("Alice", "v1");
    // Polls only hourly: after the first sync, only webhooks sync.
    let h = controller(&repo, "1h").await;
    wait_synced(&h, &c1, |v| !v["apps"].as_array().unwrap().is_empty()).await;
    let attempts = sync_status(&h).await["attempts"].as_u64().unwrap();
    repo.write("apps/web/image", "v2");
    let c2 = repo.commit("Bob", "v2");

    // GitHub's published test vector: accepted (a ping asks for nothing).
    let (s, v) = github(
        &h,
        "ping",
        Some("vector-1"),
        Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        b"Hello, World!",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sync"], false);

    let body = push_body("refs/heads/main");
    // Wrong secret, missing signature, malformed signature, tampered body: 401.
    for sig in [
        Some(sign("It's a Secret to Nobody", &body)),
        None,
        Some("sha256=nothex".to_string()),
        Some(sign(SECRET, b"another body")),
    ] {
        let (s, v) = github(&h, "push", Some("bad-1"), sig.as_deref(), &body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{sig:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("X-Hub-Signature-256"),
            "{v}"
        );
    }
    // Push to another branch: ignored.
    let other = push_body("refs/heads/feature");
    let (s, v) = github(
        &h,
        "push",
        Some("other-1"),
        Some(&sign(SECRET, &other)),
        &other,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sync"], false);
    assert!(v["reason"].as_str().unwrap().contains("refs/heads/feature"));
    // Huge body: refused before anything is read.
    let huge = vec![b' '; 2 * 1024 * 1024];
    let (s, _) = github(
        &h,
        "push",
        Some("huge-1"),
        Some(&sign(SECRET, &huge)),
        &huge,
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // A missing delivery id.
    let (s, _) = github(&h, "push", None, Some(&sign(SECRET, &body)), &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = sync_status(&h).await;
    assert_eq!(
        st["attempts"].as_u64().unwrap(),
        attempts,
        "nothing synced: {st:#}"
    );
    assert_eq!(st["commit"], c1);
    assert_eq!(releases(&h, "web").await.len(), 1);

    // A valid push to main: sync now.
    let (s, v) = github(
        &h,
        "push",
        Some("push-1"),
        Some(&sign(SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["sync"], true);
    wait_synced(&h, &c2, |v| app(v, "web")["seq"] == 2).await;
    assert_eq!(releases(&h, "web").await[1]["image"], v2.image_ref());
    let attempts = sync_status(&h).await["attempts"].as_u64().unwrap();

    // The same delivery again: a replay, refused, nothing synced; also after a restart.
    let (s, v) = github(
        &h,
        "push",
        Some("push-1"),
        Some(&sign(SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("push-1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sync_status(&h).await["attempts"].as_u64().unwrap(),
        attempts
    );
    let mut h = h;
    h.restart().await;
    let (s, _) = github(
        &h,
        "push",
        Some("push-1"),
        Some(&sign(SECRET, &body)),
        &body,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn gitlab_webhooks_need_the_token_and_the_branch() {
    let registry = Registry::start().unwrap();
    let v1 = push(&registry, "demo/web", "v1", "web v1");
    let v2 = push(&registry, "demo/web", "v2", "web v2");
    let repo = GitRepo::new();
    repo.write("apps/web/app.toml", &app_toml("web", &v1.repository, 8080));
    repo.write("apps/web/image", "v1");
    let c1 = repo.commit("Alice", "v1");
    let h = controller(&repo, "1h").await;
    wait_synced(&h, &c1, |v| !v["apps"].as_array().unwrap().is_empty()).await;
    let attempts = sync_status(&h).await["attempts"].as_u64().unwrap();
    repo.write("apps/web/image", "v2");
    let c2 = repo.commit("Bob", "v2");

    let send = |token: Option<&'static str>, git_ref: &str, uuid: &'static str| {
        let mut req = h
            .http
            .post(format!("{}/v1/webhooks/gitlab", h.url))
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-event-uuid", uuid)
            .body(push_body(git_ref));
        if let Some(t) = token {
            req = req.header("x-gitlab-token", t);
        }
        async move { support::decode(req.send().await.unwrap()).await }
    };
    for token in [None, Some("glpat-wrong"), Some("")] {
        let (s, v) = send(token, "refs/heads/main", "u-bad").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}: {v}");
    }
    let (s, v) = send(Some(GITLAB_TOKEN), "refs/heads/other", "u-other").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sync"], false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sync_status(&h).await["attempts"].as_u64().unwrap(),
        attempts
    );
    assert_eq!(releases(&h, "web").await.len(), 1);

    let (s, v) = send(Some(GITLAB_TOKEN), "refs/heads/main", "u-main").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    wait_synced(&h, &c2, |v| app(v, "web")["seq"] == 2).await;
    assert_eq!(releases(&h, "web").await[1]["image"], v2.image_ref());
    let (s, _) = send(Some(GITLAB_TOKEN), "refs/heads/main", "u-main").await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn webhooks_without_gitops_are_not_found() {
    let h = Harness::start().await;
    let body = push_body("refs/heads/main");
    let (s, v) = github(&h, "push", Some("x"), Some(&sign(SECRET, &body)), &body).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("[gitops]"));
    let (s, _) = h.get("/v1/gitops", &h.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

//! GitOps syncing against real git repositories and a real registry: what a commit, a
//! broken file, a force-push and an unreachable repository lead to.

mod support;

use slipway_tests::registry::Registry;
use std::time::Duration;
use support::gitops::*;
use support::verify;

#[tokio::test]
async fn a_commit_releases_changed_apps_only_with_commit_and_author() {
    let registry = Registry::start().unwrap();
    let web1 = push(&registry, "demo/web", "v1", "web v1");
    let web2 = push(&registry, "demo/web", "v2", "web v2");
    let api1 = push(&registry, "demo/api", "v1", "api v1");
    let repo = GitRepo::new();
    repo.write(
        "apps/web/app.toml",
        &app_toml("web", &web1.repository, 8080),
    );
    repo.write("apps/web/image", "v1\n");
    repo.write(
        "apps/api/app.toml",
        &app_toml("api", &api1.repository, 8081),
    );
    repo.write("apps/api/image", &format!("{}:v1\n", api1.repository));
    repo.write("apps/README.md", "not an app\n");
    let c1 = repo.commit("Alice", "web and api v1");
    let h = controller(&repo, "200ms").await;

    let st = wait_synced(&h, &c1, |v| {
        v["apps"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(app(&st, "web")["state"], "released", "{st:#}");
    assert_eq!(app(&st, "api")["state"], "released", "{st:#}");
    let web = releases(&h, "web").await;
    assert_eq!(web.len(), 1);
    assert_eq!(web[0]["image"], web1.image_ref());
    assert_eq!(web[0]["created_by"], "gitops");
    let ann = annotations(&h, &web[0]);
    assert_eq!(ann["slipway.git.commit"], c1);
    assert_eq!(ann["slipway.git.change"], c1);
    assert_eq!(ann["slipway.git.author"], "Alice <alice@example.com>");
    assert_eq!(ann["slipway.requested"], format!("{}:v1", web1.repository));
    assert_eq!(releases(&h, "api").await[0]["image"], api1.image_ref());

    // Bob moves web to v2 and only reformats api's spec: web gets seq 2, api nothing.
    repo.write("apps/web/image", "# bumped by Bob\nv2\n");
    repo.write(
        "apps/api/app.toml",
        &format!("# the api\n{}", app_toml("api", &api1.repository, 8081)),
    );
    let c2 = repo.commit("Bob", "web v2");
    let st = wait_synced(&h, &c2, |_| true).await;
    assert_eq!(app(&st, "web")["state"], "released");
    assert_eq!(app(&st, "web")["seq"], 2);
    assert_eq!(app(&st, "api")["state"], "unchanged");
    let web = releases(&h, "web").await;
    assert_eq!(web.len(), 2);
    assert_eq!(web[1]["image"], web2.image_ref());
    let ann = annotations(&h, &web[1]);
    assert_eq!(ann["slipway.git.commit"], c2);
    assert_eq!(ann["slipway.git.author"], "Bob <bob@example.com>");
    assert_eq!(releases(&h, "api").await.len(), 1);

    // Carol changes only api: api's release names her, web stays at seq 2.
    repo.write(
        "apps/api/app.toml",
        &app_toml("api", &api1.repository, 8082),
    );
    let c3 = repo.commit("Carol", "api listens on 8082");
    let st = wait_synced(&h, &c3, |_| true).await;
    assert_eq!(app(&st, "api")["state"], "released");
    assert_eq!(app(&st, "web")["state"], "unchanged");
    let api = releases(&h, "api").await;
    assert_eq!(api.len(), 2);
    assert_eq!(verify(&h, &api[1]["envelope"]).release.spec.listen, 8082);
    assert_eq!(
        annotations(&h, &api[1])["slipway.git.author"],
        "Carol <carol@example.com>"
    );
    assert_eq!(releases(&h, "web").await.len(), 2);

    // A restarted controller re-reads the same commit and releases nothing again.
    let mut h = h;
    h.restart().await;
    wait_synced(&h, &c3, |_| true).await;
    assert_eq!(releases(&h, "web").await.len(), 2);
    assert_eq!(releases(&h, "api").await.len(), 2);
}

#[tokio::test]
async fn an_invalid_file_errors_for_its_app_only_and_shows_in_status() {
    let registry = Registry::start().unwrap();
    let web1 = push(&registry, "demo/web", "v1", "web v1");
    let web2 = push(&registry, "demo/web", "v2", "web v2");
    let api1 = push(&registry, "demo/api", "v1", "api v1");
    let api2 = push(&registry, "demo/api", "v2", "api v2");
    let repo = GitRepo::new();
    repo.write(
        "apps/web/app.toml",
        &app_toml("web", &web1.repository, 8080),
    );
    repo.write("apps/web/image", "v1");
    repo.write(
        "apps/api/app.toml",
        &app_toml("api", &api1.repository, 8081),
    );
    repo.write("apps/api/image", "v1");
    let c1 = repo.commit("Alice", "v1");
    let h = controller(&repo, "200ms").await;
    wait_synced(&h, &c1, |v| {
        v["apps"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;

    // web's spec gains an unknown key (and a new image); api moves to v2.
    repo.write(
        "apps/web/app.toml",
        &format!("{}replicas = 3\n", app_toml("web", &web1.repository, 8080)),
    );
    repo.write("apps/web/image", "v2");
    repo.write("apps/api/image", "v2");
    // Broken in other ways: a wrong name, an image from another repository, no image file.
    repo.write(
        "apps/misnamed/app.toml",
        &app_toml("other", &web1.repository, 8090),
    );
    repo.write("apps/misnamed/image", "v1");
    repo.write(
        "apps/foreign/app.toml",
        &app_toml("foreign", &web1.repository, 8091),
    );
    repo.write("apps/foreign/image", &format!("{}:v1", api1.repository));
    repo.write(
        "apps/noimage/app.toml",
        &app_toml("noimage", &web1.repository, 8092),
    );
    let c2 = repo.commit("Mallory", "break web");
    let st = wait_synced(&h, &c2, |_| true).await;
    let web = app(&st, "web");
    assert_eq!(web["state"], "invalid", "{st:#}");
    let err = web["error"].as_str().unwrap();
    assert!(
        err.contains("apps/web/app.toml") && err.contains("replicas"),
        "{err}"
    );
    assert!(app(&st, "misnamed")["error"]
        .as_str()
        .unwrap()
        .contains("differs from its directory"));
    assert!(app(&st, "foreign")["error"]
        .as_str()
        .unwrap()
        .contains("not from the app's repository"));
    assert!(app(&st, "noimage")["error"]
        .as_str()
        .unwrap()
        .contains("apps/noimage/image is missing"));
    assert_eq!(app(&st, "api")["state"], "released");
    assert_eq!(releases(&h, "api").await[1]["image"], api2.image_ref());
    let web_rel = releases(&h, "web").await;
    assert_eq!(web_rel.len(), 1, "nothing released for the invalid app");
    assert_eq!(web_rel[0]["image"], web1.image_ref());
    assert!(releases(&h, "misnamed").await.is_empty());

    // `slipway status` shows the reason.
    // (tokio's Command: the controller answering it runs on this test's runtime.)
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("status")
        .env("SLIPWAY_URL", &h.url)
        .env("SLIPWAY_TOKEN", &h.admin)
        .env("HOME", "/nonexistent")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("invalid") && text.contains("replicas"),
        "{text}"
    );

    // Fixed in the next commit: released, with the v2 image.
    repo.write(
        "apps/web/app.toml",
        &app_toml("web", &web1.repository, 8080),
    );
    let c3 = repo.commit("Alice", "fix web");
    let st = wait_synced(&h, &c3, |_| true).await;
    assert_eq!(app(&st, "web")["state"], "released");
    assert_eq!(releases(&h, "web").await[1]["image"], web2.image_ref());
}

#[tokio::test]
async fn a_force_push_rewinding_history_becomes_a_new_higher_release() {
    let registry = Registry::start().unwrap();
    let v1 = push(&registry, "demo/web", "v1", "web v1");
    let v2 = push(&registry, "demo/web", "v2", "web v2");
    let repo = GitRepo::new();
    repo.write("apps/web/app.toml", &app_toml("web", &v1.repository, 8080));
    repo.write("apps/web/image", "v1");
    let a = repo.commit("Alice", "v1");
    let h = controller(&repo, "200ms").await;
    wait_synced(&h, &a, |v| !v["apps"].as_array().unwrap().is_empty()).await;
    repo.write("apps/web/image", "v2");
    let b = repo.commit("Bob", "v2");
    wait_synced(&h, &b, |v| app(v, "web")["seq"] == 2).await;

    repo.force_push(&a);
    let st = wait_synced(&h, &a, |_| true).await;
    assert_eq!(app(&st, "web")["state"], "released");
    let rel = releases(&h, "web").await;
    let seqs: Vec<u64> = rel.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(rel[2]["image"], v1.image_ref());
    assert_eq!(rel[1]["image"], v2.image_ref());
    let ann = annotations(&h, &rel[2]);
    assert_eq!(ann["slipway.git.commit"], a);
    assert_eq!(ann["slipway.git.author"], "Alice <alice@example.com>");
}

#[tokio::test]
async fn an_unreachable_repository_is_retried_and_releases_stay() {
    let registry = Registry::start().unwrap();
    let v1 = push(&registry, "demo/web", "v1", "web v1");
    let v2 = push(&registry, "demo/web", "v2", "web v2");
    let repo = GitRepo::new();
    repo.write("apps/web/app.toml", &app_toml("web", &v1.repository, 8080));
    repo.write("apps/web/image", "v1");
    let c1 = repo.commit("Alice", "v1");
    let h = controller(&repo, "200ms").await;
    wait_synced(&h, &c1, |v| !v["apps"].as_array().unwrap().is_empty()).await;

    let away = repo.dir.path().join("origin-away.git");
    std::fs::rename(repo.origin(), &away).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = sync_status(&h).await;
        if st["failures"].as_u64().unwrap() >= 2 {
            break st;
        }
        assert!(std::time::Instant::now() < end, "no failed retries: {st:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(st["error"].as_str().unwrap().contains("fetch"), "{st:#}");
    assert_eq!(st["commit"], c1, "the last good commit stays");
    assert_eq!(app(&st, "web")["seq"], 1);
    let rel = releases(&h, "web").await;
    assert_eq!(rel.len(), 1);
    assert_eq!(rel[0]["image"], v1.image_ref());

    // Reachable again with a new commit: retried without any webhook, released.
    std::fs::rename(&away, repo.origin()).unwrap();
    repo.write("apps/web/image", "v2");
    let c2 = repo.commit("Bob", "v2");
    let st = wait_synced(&h, &c2, |_| true).await;
    assert!(st.get("error").is_none(), "{st:#}");
    assert_eq!(st["failures"], 0);
    assert_eq!(releases(&h, "web").await[1]["image"], v2.image_ref());
}

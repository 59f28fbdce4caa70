//! GitOps against real git repositories (a bare "origin" and a work clone per test, made with
//! the git CLI; only repo-level config, never the user's) and a real registry: what a commit,
//! a broken file, a force-push, an unreachable repository and every kind of webhook lead to.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use slipway_tests::image::{ImageBuilder, Pushed};
use slipway_tests::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{verify, Harness};

const SECRET: &str = "It's a Secret to Everybody";
const GITLAB_TOKEN: &str = "glpat-test-token";

/// A bare origin and a work clone whose commits are pushed to it.
struct GitRepo {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Ignore the user's and the system's git config; write only repo config.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl GitRepo {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("slipway-gitops-repo-")
            .tempdir()
            .unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        let r = GitRepo { dir };
        git(
            &r.work(),
            &["remote", "add", "origin", r.origin().to_str().unwrap()],
        );
        r
    }

    fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.work().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commits everything as `author` and pushes `main`; returns the commit id.
    fn commit(&self, author: &str, message: &str) -> String {
        let w = self.work();
        git(&w, &["config", "user.name", author]);
        git(
            &w,
            &[
                "config",
                "user.email",
                &format!("{}@example.com", author.to_lowercase()),
            ],
        );
        git(&w, &["add", "-A"]);
        git(&w, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&w, &["push", "-q", "origin", "main"]);
        git(&w, &["rev-parse", "HEAD"])
    }

    /// Points origin's `main` at `commit` (a rewind), as `git push --force` does.
    fn force_push(&self, commit: &str) {
        let w = self.work();
        git(&w, &["reset", "-q", "--hard", commit]);
        git(&w, &["push", "-q", "--force", "origin", "main"]);
    }
}

fn app_toml(name: &str, repository: &str, listen: u16) -> String {
    format!("name = \"{name}\"\nimage = \"{repository}\"\nlisten = {listen}\ncontainer_port = 80\n")
}

fn push(registry: &Registry, repo: &str, tag: &str, text: &str) -> Pushed {
    ImageBuilder::new()
        .layer_from_files(&[("www/index.html", text.as_bytes())])
        .build()
        .push(registry.addr(), repo, tag)
        .unwrap()
}

/// A controller syncing `repo`; `poll` decides whether only webhooks (and the start) sync.
async fn controller(repo: &GitRepo, poll: &str) -> Harness {
    let secrets = repo.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("github"), format!("{SECRET}\n")).unwrap();
    std::fs::write(secrets.join("gitlab"), GITLAB_TOKEN).unwrap();
    Harness::start_with(&format!(
        "[gitops]\nurl = \"{}\"\nbranch = \"main\"\npath = \"apps\"\npoll_interval = \"{poll}\"\n\
         github_secret_file = \"{}\"\ngitlab_token_file = \"{}\"\n",
        repo.origin().display(),
        secrets.join("github").display(),
        secrets.join("gitlab").display(),
    ))
    .await
}

async fn sync_status(h: &Harness) -> Value {
    let (s, v) = h.get("/v1/gitops", &h.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Waits until the controller has read `commit` (and `more` holds on its status).
async fn wait_synced(h: &Harness, commit: &str, more: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = sync_status(h).await;
        // A failed release (not an invalid file) is retried soon: wait for its outcome.
        let settled = v["apps"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["state"] != "failed"));
        if v["commit"] == commit && settled && more(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "not synced to {commit}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn app<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {status:#}"))
}

async fn releases(h: &Harness, app: &str) -> Vec<Value> {
    let (s, v) = h.get(&format!("/v1/apps/{app}/releases"), &h.admin).await;
    if s == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

fn annotations(h: &Harness, rel: &Value) -> std::collections::BTreeMap<String, String> {
    verify(h, &rel["envelope"]).release.annotations
}

fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

async fn github(
    h: &Harness,
    event: &str,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = h
        .http
        .post(format!("{}/v1/webhooks/github", h.url))
        .header("x-github-event", event)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(d) = delivery {
        req = req.header("x-github-delivery", d);
    }
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    support::decode(req.send().await.unwrap()).await
}

fn push_body(git_ref: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "after": "0000000000000000000000000000000000000000",
        "commits": [{"message": "content from the body is never used"}]})
    .to_string()
    .into_bytes()
}

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

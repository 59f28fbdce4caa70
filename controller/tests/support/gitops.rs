//! GitOps test support: real git repositories (a bare "origin" and a work clone per test,
//! made with the git CLI; only repo-level config, never the user's), a controller syncing
//! one, and webhook requests signed as GitHub and GitLab sign them.

use super::{verify, Harness};
use reqwest::StatusCode;
use serde_json::Value;
use slipway_tests::image::{ImageBuilder, Pushed};
use slipway_tests::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const SECRET: &str = "It's a Secret to Everybody";
pub const GITLAB_TOKEN: &str = "glpat-test-token";

/// A bare origin and a work clone whose commits are pushed to it.
pub struct GitRepo {
    pub dir: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
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
    pub fn new() -> Self {
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

    pub fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.work().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commits everything as `author` and pushes `main`; returns the commit id.
    pub fn commit(&self, author: &str, message: &str) -> String {
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
    pub fn force_push(&self, commit: &str) {
        let w = self.work();
        git(&w, &["reset", "-q", "--hard", commit]);
        git(&w, &["push", "-q", "--force", "origin", "main"]);
    }
}

pub fn app_toml(name: &str, repository: &str, listen: u16) -> String {
    format!("name = \"{name}\"\nimage = \"{repository}\"\nlisten = {listen}\ncontainer_port = 80\n")
}

pub fn push(registry: &Registry, repo: &str, tag: &str, text: &str) -> Pushed {
    ImageBuilder::new()
        .layer_from_files(&[("www/index.html", text.as_bytes())])
        .build()
        .push(registry.addr(), repo, tag)
        .unwrap()
}

/// A controller syncing `repo`; `poll` decides whether only webhooks (and the start) sync.
pub async fn controller(repo: &GitRepo, poll: &str) -> Harness {
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

pub async fn sync_status(h: &Harness) -> Value {
    let (s, v) = h.get("/v1/gitops", &h.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Waits until the controller has read `commit` (and `more` holds on its status).
pub async fn wait_synced(h: &Harness, commit: &str, more: impl Fn(&Value) -> bool) -> Value {
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

pub fn app<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {status:#}"))
}

pub async fn releases(h: &Harness, app: &str) -> Vec<Value> {
    let (s, v) = h.get(&format!("/v1/apps/{app}/releases"), &h.admin).await;
    if s == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

pub fn annotations(h: &Harness, rel: &Value) -> std::collections::BTreeMap<String, String> {
    verify(h, &rel["envelope"]).release.annotations
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

pub async fn github(
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
    super::decode(req.send().await.unwrap()).await
}

pub fn push_body(git_ref: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "after": "0000000000000000000000000000000000000000",
        "commits": [{"message": "content from the body is never used"}]})
    .to_string()
    .into_bytes()
}

//! Two controllers (in process) on one PostgreSQL database: a release published through one
//! wakes long-polls waiting on the other, and exactly one of them drives rollouts.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_controller::auth;
use slipway_controller::config::Config;
use slipway_controller::server::{self, Running};
use slipway_proto::api::Role;
use slipway_proto::SigningKey;
use slipway_tests::postgres::Postgres;
use slipway_tests::registry::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::gitops::{self, GitRepo};
use support::{app_toml, decode, push_image};

/// Starts a controller named `name` under `dir` on the database at `url`.
async fn replica(dir: &Path, name: &str, url: &str) -> Running {
    replica_with(dir, name, url, "", "").await
}

/// The same, with top-level keys `top` and config sections `sections`.
async fn replica_with(dir: &Path, name: &str, url: &str, top: &str, sections: &str) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key_path = dir.join("release.key");
    if !key_path.exists() {
        std::fs::write(&key_path, SigningKey::generate().unwrap().to_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nsigning_key = \"{}\"\n\
         database_url = \"{url}\"\nlong_poll_max_wait = \"30s\"\n{top}\n\
         [rollout]\nsilent_after = \"40s\"\ntick = \"100ms\"\n{sections}",
        dir.join(format!("{name}-data")).display(),
        key_path.display()
    );
    server::start(&Config::parse(&cfg).unwrap()).await.unwrap()
}

async fn token(c: &Running, name: &str, role: Role, host: Option<&str>) -> String {
    auth::create_token(c.state.store.as_ref(), name, role, host)
        .await
        .unwrap()
        .0
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    decode(req.send().await.unwrap()).await
}

/// Whether each replica leads now (asking its store, as its driver does).
async fn leaders(rs: &[&Running]) -> Vec<bool> {
    let mut out = Vec::new();
    for r in rs {
        out.push(r.state.store.try_lead().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_long_polls_on_the_other_and_one_replica_leads() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("replicas").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("slipway-pg-replicas-")
        .tempdir()
        .unwrap();
    let a = replica(dir.path(), "a", &url).await;
    let b = replica(dir.path(), "b", &url).await;
    let http = reqwest::Client::new();
    let admin = token(&a, "admin", Role::Admin, None).await;
    let agent = token(&b, "agent-h1", Role::Agent, Some("h1")).await;

    // Exactly one leads (whichever asked first), and keeps leading.
    let mut lead = leaders(&[&a, &b]).await;
    for _ in 0..20 {
        if lead.iter().filter(|l| **l).count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        lead = leaders(&[&a, &b]).await;
    }
    assert_eq!(lead.iter().filter(|l| **l).count(), 1, "{lead:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leaders(&[&a, &b]).await, lead, "the lead is stable");

    // The app is applied on A; the host registers and polls on B.
    let r = http
        .post(format!("{}/v1/apps", a.url()))
        .bearer_auth(&admin)
        .header("content-type", "application/toml")
        .body(app_toml(&v1.repository))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (s, v) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/hosts/h1/register", b.url()),
        &agent,
        Some(json!({"labels": {}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, empty) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/v1/hosts/h1/desired", b.url()),
        &agent,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(empty["releases"], json!({}));
    let version = empty["version"].as_str().unwrap().to_string();

    let poll = {
        let (http, url, agent) = (http.clone(), b.url(), agent.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = call(
                &http,
                reqwest::Method::GET,
                format!("{url}/v1/hosts/h1/desired?version={version}&wait=25s"),
                &agent,
                None,
            )
            .await;
            (r, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let (s, rel) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/apps/web/releases", a.url()),
        &admin,
        Some(json!({"image": v1.image_ref()})),
    )
    .await;
    assert!(s.is_success(), "{s}: {rel}");
    let ((s, desired), waited) = poll.await.unwrap();
    let woke = t.elapsed();
    assert_eq!(s, StatusCode::OK, "{desired}");
    assert!(
        desired["releases"]["web"].is_object(),
        "B serves the release made on A: {desired}"
    );
    assert!(
        woke < Duration::from_secs(5) && waited < Duration::from_secs(10),
        "woken by A's publish, not by the wait ending: {woke:?}"
    );
    eprintln!("release on A -> long-poll on B answered in {woke:?}");

    // Whichever replica leads drives the rollout; the other answers from the stored state.
    let (s, ra) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/v1/apps/web/rollout", a.url()),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ra}");
    let (_, rb) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/v1/apps/web/rollout", b.url()),
        &admin,
        None,
    )
    .await;
    assert_eq!((&ra["seq"], &ra["waves"]), (&rb["seq"], &rb["waves"]));

    // The leader stops: the other takes the lead.
    let (leader, follower) = if lead[0] { (a, b) } else { (b, a) };
    leader.shutdown().await;
    let mut took = false;
    for _ in 0..50 {
        if follower.state.store.try_lead().await.unwrap() {
            took = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(took, "the remaining replica takes the lead");
    follower.shutdown().await;
}

/// The replica leading now, and the other one, once exactly one leads.
async fn lead_and_follower(a: Running, b: Running) -> (Running, Running) {
    for _ in 0..100 {
        match (a.state.rollouts.leading(), b.state.rollouts.leading()) {
            (true, false) => return (a, b),
            (false, true) => return (b, a),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no single lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lead_syncs_gitops_and_re_signs_and_a_webhook_to_any_replica_reaches_it() {
    let registry = Registry::start().unwrap();
    let v1 = gitops::push(&registry, "demo/web", "v1", "web v1");
    let repo = GitRepo::new();
    repo.write(
        "apps/web/app.toml",
        &gitops::app_toml("web", &v1.repository, 8080),
    );
    repo.write("apps/web/image", "v1");
    let c1 = repo.commit("Alice", "v1");
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("replicas_gitops").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("slipway-pg-gitops-")
        .tempdir()
        .unwrap();
    let secret = dir.path().join("github-secret");
    std::fs::write(&secret, gitops::SECRET).unwrap();
    // Every pass re-signs what is a second old (resign_before close to the validity), every
    // 200ms;
    // GitOps polls only hourly, so after the first sync only webhooks sync.
    let top = "release_validity = \"1h\"\nresign_before = \"3599s\"\nresign_interval = \"200ms\"";
    let extra = format!(
        "[gitops]\nurl = \"{}\"\nbranch = \"main\"\npath = \"apps\"\npoll_interval = \"1h\"\n\
         github_secret_file = \"{}\"\n",
        repo.origin().display(),
        secret.display()
    );
    let a = replica_with(dir.path(), "a", &url, top, &extra).await;
    let b = replica_with(dir.path(), "b", &url, top, &extra).await;
    let (lead, follower) = lead_and_follower(a, b).await;
    let http = reqwest::Client::new();
    let admin = token(&lead, "admin", Role::Admin, None).await;
    let get = |r: &Running, path: &'static str| {
        let (http, url, admin) = (http.clone(), r.url(), admin.clone());
        async move {
            let (s, v) = call(
                &http,
                reqwest::Method::GET,
                format!("{url}{path}"),
                &admin,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let status = |r: &Running| get(r, "/v1/gitops");
    let releases = || async {
        let v = get(&lead, "/v1/apps/web/releases").await;
        v.as_array().cloned().unwrap_or_default()
    };
    let end = Instant::now() + Duration::from_secs(30);
    while status(&lead).await["commit"] != c1.as_str() || releases().await.is_empty() {
        assert!(Instant::now() < end, "the lead never synced {c1}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let f = status(&follower).await;
    assert_eq!(
        (f["leading"].as_bool(), f["attempts"].as_u64()),
        (Some(false), Some(0)),
        "{f}"
    );
    assert_eq!(status(&lead).await["leading"], true);

    // Re-signing runs on the lead only.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(lead.state.metrics.resigns.get() > 0, "the lead re-signs");
    assert_eq!(
        follower.state.metrics.resigns.get(),
        0,
        "the follower never re-signs"
    );

    // A push, announced to the follower: it accepts the webhook and the lead syncs it.
    let v2 = gitops::push(&registry, "demo/web", "v2", "web v2");
    repo.write("apps/web/image", "v2");
    let c2 = repo.commit("Bob", "v2");
    let body = gitops::push_body("refs/heads/main");
    let r = http
        .post(format!("{}/v1/webhooks/github", follower.url()))
        .header("x-github-event", "push")
        .header("x-github-delivery", "delivery-1")
        .header("x-hub-signature-256", gitops::sign(gitops::SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let (s, v) = decode(r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("from the lead"),
        "{v}"
    );
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let rels = releases().await;
        if status(&lead).await["commit"] == c2.as_str()
            && rels.last().is_some_and(|r| r["image"] == v2.image_ref())
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the lead did not act on the follower's webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(&follower).await["attempts"],
        0,
        "the follower never synced"
    );
    lead.shutdown().await;
    follower.shutdown().await;
}

//! Secrets reach hosts sealed: a release pins each secret's version and digest in its signed
//! spec; a host's desired set carries them sealed to that host's key alone; a changed secret
//! is a new release and a rollback brings the old version back; a host whose key was
//! forgotten gets nothing sealed after.

mod support;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::{DesiredSetBody, Role};
use slipway_proto::seal::{open, secret_digest, HostSecretKey, SealContext};
use slipway_proto::Release;
use support::*;

async fn put_secret(h: &Harness, value: &str) {
    let r = h
        .http
        .put(format!("{}/v1/apps/web/secrets/db-password", h.url))
        .bearer_auth(&h.admin)
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    let (s, v) = decode(r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn release_in(body: &DesiredSetBody) -> Release {
    let env = &body.releases["web"];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn opened(body: &DesiredSetBody, key: &HostSecretKey, host: &str) -> (u64, String) {
    let s = &body.secrets["web"]["db-password"];
    let ctx = SealContext {
        app: "web",
        name: "db-password",
        version: s.version,
        host,
    };
    let v = open(key, &s.sealed, &ctx).unwrap();
    (s.version, String::from_utf8(v).unwrap())
}

#[tokio::test]
async fn releases_pin_secrets_and_hosts_get_them_sealed_to_their_own_key() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    h.apply(&format!(
        "{}[secrets]\nDB_PASSWORD = \"db-password\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    let release = json!({"image": format!("{}:v1", v1.repository)});

    // A release whose secret is not set is refused, naming it.
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("secret `db-password`, which is not set"),
        "{v}"
    );

    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let key = HostSecretKey::generate().unwrap();
    let (s, v) = h
        .post(
            "/v1/hosts/h1/register",
            &agent,
            &json!({"labels": {}, "secret_key": key.public().to_base64()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    put_secret(&h, "first-value-7f3a").await;
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let body = h.desired("h1", &agent).await;
    let rel = release_in(&body);
    assert_eq!(rel.seq, 1);
    let pin = &rel.spec.secret_versions["db-password"];
    assert_eq!(pin.version, 1);
    assert_eq!(pin.digest, secret_digest(b"first-value-7f3a"));
    assert_eq!(opened(&body, &key, "h1"), (1, "first-value-7f3a".into()));
    // Sealed to h1 alone: another key, or the same box read as another host's, fails.
    let other = HostSecretKey::generate().unwrap();
    let s = &body.secrets["web"]["db-password"];
    let ctx = |host| SealContext {
        app: "web",
        name: "db-password",
        version: 1,
        host,
    };
    assert!(open(&other, &s.sealed, &ctx("h1")).is_err());
    assert!(open(&key, &s.sealed, &ctx("h2")).is_err());
    let answer = serde_json::to_string(&body).unwrap();
    assert!(!answer.contains("first-value-7f3a"));

    // A rotation is a new release; a rollback restores the old version.
    put_secret(&h, "second-value-1b2c").await;
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let body = h.desired("h1", &agent).await;
    assert_eq!(release_in(&body).seq, 2);
    assert_eq!(opened(&body, &key, "h1"), (2, "second-value-1b2c".into()));
    let (s, v) = h
        .post(
            "/v1/apps/web/rollback",
            &h.admin,
            &json!({"to_seq": 1, "now": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let body = h.desired("h1", &agent).await;
    let rel = release_in(&body);
    assert_eq!(rel.seq, 3);
    assert_eq!(rel.spec.secret_versions["db-password"].version, 1);
    assert_eq!(opened(&body, &key, "h1"), (1, "first-value-7f3a".into()));

    // A host whose key is forgotten gets nothing sealed after.
    let reader = h.token("reader", Role::ReadOnly, None).await;
    let r = h
        .http
        .delete(format!("{}/v1/hosts/h1/secret-key", h.url))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = h
        .http
        .delete(format!("{}/v1/hosts/h1/secret-key", h.url))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    put_secret(&h, "third-value-9d8e").await;
    let (s, v) = h.post("/v1/apps/web/releases", &h.admin, &release).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let body = h.desired("h1", &agent).await;
    assert_eq!(release_in(&body).seq, 4);
    assert!(body.secrets.is_empty(), "{:?}", body.secrets);

    // No value in any release envelope or answer, for any role.
    let mut all = String::new();
    for token in [&h.admin, &reader] {
        for p in [
            "/v1/apps/web/releases",
            "/v1/apps",
            "/v1/audit?limit=1000",
            "/v1/events",
        ] {
            let (_, v): (_, Value) = h.get(p, token).await;
            all.push_str(&v.to_string());
        }
    }
    for value in ["first-value-7f3a", "second-value-1b2c", "third-value-9d8e"] {
        assert!(!all.contains(value), "{value} leaked");
    }
}

#[tokio::test]
async fn an_unusable_secret_of_one_app_leaves_the_hosts_other_apps_served() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    h.apply(&format!(
        "{}[secrets]\nDB_PASSWORD = \"db-password\"\n",
        app_toml(&v1.repository)
    ))
    .await;
    h.apply(
        &app_toml(&v1.repository)
            .replace("\"web\"", "\"api\"")
            .replace("8080", "8081"),
    )
    .await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let key = HostSecretKey::generate().unwrap();
    let (s, v) = h
        .post(
            "/v1/hosts/h1/register",
            &agent,
            &json!({"labels": {}, "secret_key": key.public().to_base64()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    put_secret(&h, "value-4e5f").await;
    let image = json!({"image": format!("{}:v1", v1.repository)});
    for app in ["web", "api"] {
        let (s, v) = h
            .post(&format!("/v1/apps/{app}/releases"), &h.admin, &image)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let body = h.desired("h1", &agent).await;
    assert_eq!(opened(&body, &key, "h1"), (1, "value-4e5f".into()));

    // The stored ciphertext of web's secret is damaged behind the controller's back.
    let db = h.dir.path().join("data/controller.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n = sqlx::query(
        "UPDATE secrets SET value_enc = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE app = 'web'",
    )
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1);
    pool.close().await;

    // The host still gets both releases; only web's secrets are left out (the agent refuses
    // that release by the secret's name and keeps what runs).
    let body = h.desired("h1", &agent).await;
    assert!(body.releases.contains_key("api") && body.releases.contains_key("web"));
    assert!(!body.secrets.contains_key("web"), "{:?}", body.secrets);
}

//! `/v1/apps/{app}/secrets` and host keys: admins set and remove, read-only tokens see names
//! only, agents nothing; bad input changes nothing; the value appears in no answer and not
//! in the database files; the master key file is made at 0600; a host's key is recorded.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::Role;
use slipway_proto::seal::HostSecretKey;
use std::os::unix::fs::PermissionsExt;
use support::*;

const VALUE: &str = "s3cr3t-Value-9c1e0f";

async fn put(h: &Harness, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
    let r = h
        .http
        .put(format!("{}{path}", h.url))
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    decode(r).await
}

#[tokio::test]
async fn secrets_are_set_listed_and_removed_by_role_and_never_shown() {
    let h = Harness::start().await;
    let reader = h.token("reader", Role::ReadOnly, None).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    h.apply(&format!(
        "{}[secrets]\nDB_PASSWORD = \"db-password\"\n",
        app_toml("127.0.0.1:5000/web")
    ))
    .await;
    let path = "/v1/apps/web/secrets/db-password";

    let (s, v) = put(&h, path, &h.admin, VALUE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["set_by"], "admin");
    let (_, v) = put(&h, path, &h.admin, &format!("{VALUE}-2")).await;
    assert_eq!(v["version"], 2);

    // Refusals name the object and change nothing.
    let (s, v) = put(&h, path, &reader, VALUE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = put(&h, "/v1/apps/web/secrets/Bad_Name", &h.admin, VALUE).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("secret `Bad_Name` of app `web`"),
        "{v}"
    );
    let (s, v) = put(&h, "/v1/apps/nope/secrets/db-password", &h.admin, VALUE).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("unknown app `nope`"),
        "{v}"
    );
    let (s, v) = put(&h, path, &h.admin, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = h.get("/v1/apps/web/secrets", &agent).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, v) = h.get("/v1/apps/web/secrets", &h.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["name"], "db-password");
    assert_eq!(v[0]["version"], 2);
    assert_eq!(v[0]["set_by"], "admin");
    assert!(v[0]["set_at"].is_string());
    let (_, v) = h.get("/v1/apps/web/secrets", &reader).await;
    assert_eq!(v, json!([{"name": "db-password"}]));

    // A host's key is recorded when it registers.
    let key = HostSecretKey::generate().unwrap();
    let (s, v) = h
        .post(
            "/v1/hosts/h1/register",
            &agent,
            &json!({"labels": {}, "secret_key": key.public().to_base64()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stored = h.running().state.store.host_secret_key("h1").await.unwrap();
    assert_eq!(stored, Some(key.public().to_base64()));

    // The value is in no answer, for any role, nor in the database files.
    let mut answers = String::new();
    for token in [&h.admin, &reader] {
        for p in [
            "/v1/apps",
            "/v1/apps/web",
            "/v1/apps/web/secrets",
            "/v1/audit?limit=1000",
            "/v1/events",
            "/v1/hosts",
        ] {
            answers.push_str(&h.get(p, token).await.1.to_string());
        }
    }
    assert!(answers.contains("db-password"));
    assert!(
        !answers.contains(VALUE),
        "a secret value leaked into an API answer"
    );
    let data = h.dir.path().join("data");
    let key_file = data.join("secrets-master.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(VALUE),
                "plaintext in {}",
                p.display()
            );
        }
    }

    let (s, v) = h.delete(path, &reader).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = h.delete(path, &h.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h.delete(path, &h.admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("has no secret `db-password`"),
        "{v}"
    );
    let (_, v) = h.get("/v1/apps/web/secrets", &h.admin).await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn rotating_the_master_key_re_encrypts_every_version() {
    let mut h = Harness::start().await;
    h.apply(&app_toml("127.0.0.1:5000/web")).await;
    for v in ["one", "two"] {
        let (s, body) = put(
            &h,
            "/v1/apps/web/secrets/db",
            &h.admin,
            &format!("{VALUE}-{v}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    h.stop().await;
    let key_path = h.config.secrets_master_key_path();
    let before = std::fs::read_to_string(&key_path).unwrap();
    let store = slipway_controller::store::open(&h.config.database_url())
        .await
        .unwrap();
    let n = slipway_controller::secrets::rotate_master_key(store.as_ref(), &key_path)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let after = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let old = slipway_proto::seal::MasterKey::parse(&before).unwrap();
    let new = slipway_proto::seal::MasterKey::parse(&after).unwrap();
    let rec = store.secret("web", "db", 2).await.unwrap().unwrap();
    assert_eq!(
        new.decrypt("web/db/2", &rec.value_enc).unwrap(),
        format!("{VALUE}-two").as_bytes()
    );
    assert!(old.decrypt("web/db/2", &rec.value_enc).is_err());

    // A wrong key file changes nothing.
    std::fs::write(&key_path, old.to_base64()).unwrap();
    let e = slipway_controller::secrets::rotate_master_key(store.as_ref(), &key_path)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("nothing was changed"), "{e:#}");
    let same = store.secret("web", "db", 2).await.unwrap().unwrap();
    assert_eq!(same.value_enc, rec.value_enc);
}

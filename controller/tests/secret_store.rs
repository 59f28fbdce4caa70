//! The secret store on both backends: host public keys kept and forgotten, secret versions
//! numbered per name, listed, rewrapped and removed; the value never stored in plaintext.

use slipway_controller::store::{self, Store};
use slipway_proto::seal::{secret_digest, MasterKey};
use slipway_tests::postgres::Postgres;
use std::time::{Duration, UNIX_EPOCH};

const VALUE: &[u8] = b"correct-horse-battery-staple";

async fn check_secrets(s: &dyn Store) {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(s.host_secret_key("h1").await.unwrap(), None);
    s.set_host_secret_key("h1", "a2V5MQ==", now).await.unwrap();
    s.set_host_secret_key("h1", "a2V5Mg==", now).await.unwrap();
    assert_eq!(
        s.host_secret_key("h1").await.unwrap().as_deref(),
        Some("a2V5Mg==")
    );
    assert!(s.remove_host_secret_key("h1").await.unwrap());
    assert!(!s.remove_host_secret_key("h1").await.unwrap());
    assert_eq!(s.host_secret_key("h1").await.unwrap(), None);

    let mk = MasterKey::generate().unwrap();
    let enc = mk.encrypt("web/db/1", VALUE).unwrap();
    let d = secret_digest(VALUE);
    assert_eq!(
        s.put_secret("web", "db", &enc, &d, "admin", now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.put_secret("web", "db", &enc, &d, "ops", now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.put_secret("web", "tls", &enc, &d, "admin", now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.put_secret("api", "db", &enc, &d, "admin", now)
            .await
            .unwrap(),
        1
    );

    let web = s.secret_versions(Some("web")).await.unwrap();
    let names: Vec<(&str, u64, &str)> = web
        .iter()
        .map(|r| (r.name.as_str(), r.version, r.set_by.as_str()))
        .collect();
    assert_eq!(
        names,
        [("db", 1, "admin"), ("db", 2, "ops"), ("tls", 1, "admin")]
    );
    assert_eq!(web[0].set_at, now);
    assert_eq!(web[0].digest, d);
    assert_eq!(s.secret_versions(None).await.unwrap().len(), 4);

    let v1 = s.secret("web", "db", 1).await.unwrap().unwrap();
    assert_eq!(mk.decrypt("web/db/1", &v1.value_enc).unwrap(), VALUE);
    assert!(s.secret("web", "db", 3).await.unwrap().is_none());

    let mk2 = MasterKey::generate().unwrap();
    let re = mk2.encrypt("web/db/1", VALUE).unwrap();
    s.rewrap_secret("web", "db", 1, &re).await.unwrap();
    let v1 = s.secret("web", "db", 1).await.unwrap().unwrap();
    assert_eq!(mk2.decrypt("web/db/1", &v1.value_enc).unwrap(), VALUE);
    assert!(mk.decrypt("web/db/1", &v1.value_enc).is_err());

    assert_eq!(s.remove_secret("web", "db").await.unwrap(), 2);
    assert_eq!(s.remove_secret("web", "db").await.unwrap(), 0);
    assert_eq!(s.secret_versions(Some("web")).await.unwrap().len(), 1);
    // A name set again after removal starts over.
    assert_eq!(
        s.put_secret("web", "db", &enc, &d, "admin", now)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn secrets_on_sqlite_never_hold_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.db");
    let s = store::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    check_secrets(s.as_ref()).await;
    drop(s);
    let needle = String::from_utf8_lossy(VALUE).to_string();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&needle),
            "plaintext found in the database files"
        );
    }
}

#[tokio::test]
async fn secrets_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("secrets").unwrap();
    let s = store::open(&url).await.unwrap();
    check_secrets(s.as_ref()).await;
}

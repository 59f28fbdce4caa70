use super::*;
use slipway_proto::seal::{seal, HostSecretKey};
use slipway_proto::{AppSpec, SecretPin};
use std::time::{Duration, SystemTime};

const VALUE: &[u8] = b"pa55-word-42";

fn release() -> Release {
    let mut spec = AppSpec::from_toml(
        "name = \"web\"\nimage = \"127.0.0.1:5000/web\"\nlisten = 8080\ncontainer_port = 80\n[secrets]\nDB = \"db\"\n",
    )
    .unwrap();
    spec.secret_versions.insert(
        "db".into(),
        SecretPin {
            version: 2,
            digest: secret_digest(VALUE),
        },
    );
    let now = SystemTime::now();
    Release {
        app: "web".parse().unwrap(),
        seq: 7,
        image: format!("127.0.0.1:5000/web@sha256:{}", "ab".repeat(32)),
        spec,
        issued_at: now,
        expires: now + Duration::from_secs(60),
        key_set_version: 1,
        annotations: Default::default(),
    }
}

fn delivered(
    key: &HostSecretKey,
    host: &str,
    version: u64,
    value: &[u8],
) -> BTreeMap<String, HostSecret> {
    let ctx = SealContext {
        app: "web",
        name: "db",
        version,
        host,
    };
    BTreeMap::from([(
        "db".to_string(),
        HostSecret {
            version,
            sealed: seal(&key.public(), &ctx, value).unwrap(),
        },
    )])
}

#[test]
fn opens_pinned_secrets_into_env_and_debug_hides_values() {
    let key = HostSecretKey::generate().unwrap();
    let rel = release();
    let d = delivered(&key, "h1", 2, VALUE);
    let opened = open_release(&key, "h1", &rel, Some(&d)).unwrap();
    let dbg = format!("{opened:?}");
    assert_eq!(dbg, "{\"db\": 2}");
    let c = opened.into_container(&rel);
    assert_eq!(c.env.len(), 1);
    assert_eq!(
        (c.env[0].var.as_str(), c.env[0].value.as_slice()),
        ("DB", VALUE)
    );
    assert!(c.files.is_empty());
    assert!(!format!("{c:?}").contains("pa55"));
}

#[test]
fn tampered_missing_stale_or_foreign_secrets_are_refused_with_the_reason() {
    let key = HostSecretKey::generate().unwrap();
    let rel = release();

    let mut d = delivered(&key, "h1", 2, VALUE);
    let s = d.get_mut("db").unwrap();
    let mut ct = s.sealed.ct.clone().into_bytes();
    ct[3] = if ct[3] == b'A' { b'B' } else { b'A' };
    s.sealed.ct = String::from_utf8(ct).unwrap();
    let e = open_release(&key, "h1", &rel, Some(&d))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("release web seq 7") && e.contains("does not open"),
        "{e}"
    );
    assert!(e.contains("running container is kept"), "{e}");

    let e = open_release(&key, "h1", &rel, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("secret `db` v2 was not delivered"), "{e}");

    let d = delivered(&key, "h1", 1, VALUE);
    let e = open_release(&key, "h1", &rel, Some(&d)).unwrap_err();
    assert!(
        matches!(
            e,
            SecretError::WrongVersion {
                got: 1,
                want: 2,
                ..
            }
        ),
        "{e}"
    );

    let d = delivered(&key, "h2", 2, VALUE);
    assert!(open_release(&key, "h1", &rel, Some(&d)).is_err());

    let d = delivered(&key, "h1", 2, b"another value");
    let e = open_release(&key, "h1", &rel, Some(&d)).unwrap_err();
    assert!(matches!(e, SecretError::Digest { .. }), "{e}");
}

//! `slipway-agent join` end to end, with the real binaries: a join token made with
//! `slipway token create --role join` registers a new host with the token's labels, gives it
//! its own agent token (0600), a trust file holding the controller's release key and the
//! `[controller]` section of agent.toml; over TLS it pins the controller's CA. Bad input
//! (a label the token does not grant, a used-up or expired token, a token for another
//! controller, a fingerprint mismatch) is refused with a clear error and changes nothing.

use slipway_proto::join::JoinToken;
use slipway_tests::bins::bin;
use slipway_tests::controller::{ok, Controller};
use slipway_tests::pki::TestCa;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn join(dir: &Path, token: &str, host: &str, extra: &[&str]) -> Output {
    Command::new(bin("slipway-agent"))
        .arg("join")
        .arg(token)
        .args(["--host-id", host, "--config"])
        .arg(dir.join("agent.toml"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(extra)
        .output()
        .unwrap()
}

fn refused(out: &Output, want: &str) {
    assert!(!out.status.success(), "join should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "`{want}` not in: {err}");
}

/// Nothing written but the base config and the local host key.
fn untouched(dir: &Path, base: &str) {
    for f in ["agent.token", "trust.toml", "controller-ca.pem"] {
        assert!(!dir.join(f).exists(), "{f} was written");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("agent.toml")).unwrap(),
        base
    );
}

fn join_token(c: &Controller, admin: &str, args: &[&str]) -> String {
    let mut a = vec!["token", "create", "--role", "join"];
    a.extend_from_slice(args);
    ok(c.slipway(admin, &a)).trim().to_string()
}

fn host_labels(c: &Controller, admin: &str, host: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(c.slipway(admin, &["--json", "hosts"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .map(|h| h["labels"].clone())
}

const BASE: &str = "state_dir = \"/var/lib/slipway-test-join\"\nkeep_releases = 2\n";

#[test]
fn join_registers_with_the_tokens_labels_and_refuses_bad_tokens() {
    let (mut c, key) = Controller::prepare("");
    c.start();
    let admin = c.token("admin", "admin", None);
    let work = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let d = work.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("agent.toml"), BASE).unwrap();
        d
    };
    let token = join_token(
        &c,
        &admin,
        &["--labels", "role=web,zone=a", "--ttl", "24h", "--uses", "2"],
    );
    let decoded = JoinToken::decode(&token).unwrap();
    assert_eq!(decoded.url, c.url);
    assert_eq!(decoded.key_id, key.public_key().id().to_string());
    assert_eq!(decoded.ca_sha256, None, "plain HTTP: no CA to pin");

    // A label the token does not grant.
    let d = fresh("widen");
    refused(
        &join(&d, &token, "j0", &["--labels", "zone=b"]),
        "does not grant label `zone=b` (it grants role=web,zone=a)",
    );
    untouched(&d, BASE);
    assert_eq!(host_labels(&c, &admin, "j0"), None);

    // A good join: the host gets the token's labels and its own token; files are written.
    let d = fresh("j1");
    let out = join(&d, &token, "j1", &["--labels", "role=web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        host_labels(&c, &admin, "j1"),
        Some(serde_json::json!({"role": "web", "zone": "a"}))
    );
    let meta = std::fs::metadata(d.join("agent.token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let agent_token = std::fs::read_to_string(d.join("agent.token")).unwrap();
    let trust = slipway_proto::TrustFile::from_toml(
        &std::fs::read_to_string(d.join("trust.toml")).unwrap(),
    )
    .unwrap();
    assert!(trust.to_toml().contains(&key.public_key().id().to_string()));
    let cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("agent.toml")).unwrap()).unwrap();
    assert_eq!(
        cfg["keep_releases"].as_integer(),
        Some(2),
        "other keys kept"
    );
    assert_eq!(cfg["controller"]["url"].as_str(), Some(c.url.as_str()));
    assert_eq!(cfg["controller"]["host_id"].as_str(), Some("j1"));
    assert!(cfg["controller"].get("labels").is_none());
    assert!(
        agent_token.trim().starts_with("swt_"),
        "its own agent token"
    );
    // An admin relabels it.
    ok(c.slipway(&admin, &["hosts", "label", "j1", "role=db", "zone=b"]));
    assert_eq!(
        host_labels(&c, &admin, "j1"),
        Some(serde_json::json!({"role": "db", "zone": "b"}))
    );
    // The same host id cannot join twice.
    let d = fresh("again");
    refused(
        &join(&d, &token, "j1", &[]),
        "host `j1` is registered already",
    );
    untouched(&d, BASE);

    // Used up: two uses, then refused.
    let d = fresh("j2");
    assert!(join(&d, &token, "j2", &[]).status.success());
    let d = fresh("j3");
    refused(
        &join(&d, &token, "j3", &[]),
        "is used up (2 of 2 hosts joined)",
    );
    untouched(&d, BASE);
    assert_eq!(host_labels(&c, &admin, "j3"), None);

    // Expired.
    let short = join_token(&c, &admin, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let d = fresh("late");
    refused(&join(&d, &short, "late", &[]), "expired at");
    untouched(&d, BASE);

    // A token for another controller: that controller signs with another key.
    let (mut other, _) = Controller::prepare("");
    other.start();
    let d = fresh("other");
    refused(
        &join(&d, &token, "x1", &["--url", &other.url]),
        "release key mismatch",
    );
    untouched(&d, BASE);
    // A damaged token.
    refused(
        &join(&d, "slipway-join-v1.abc", "x1", &[]),
        "join token is damaged",
    );
    refused(&join(&d, "swt_whatever", "x1", &[]), "not a join token");
    untouched(&d, BASE);
    let tokens = ok(c.slipway(&admin, &["token", "list"]));
    assert!(tokens.contains("2/2"), "{tokens}");
}

#[test]
fn join_over_tls_pins_the_controllers_ca() {
    let ca = TestCa::new("slipway-join").unwrap();
    let (mut c, _) = Controller::prepare(&format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        ca.server_cert().display(),
        ca.server_key().display(),
        ca.ca_file().display()
    ));
    c.url = c.url.replace("http://", "https://");
    c.start();
    let admin = c.token("admin", "admin", None);
    let work = tempfile::tempdir().unwrap();
    let ca_file = ca.ca_file();
    let slipway = |args: &[&str]| {
        Command::new(bin("slipway"))
            .args(args)
            .env("SLIPWAY_URL", &c.url)
            .env("SLIPWAY_TOKEN", &admin)
            .env("SLIPWAY_CA_CERT", &ca_file)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    let token = ok(slipway(&[
        "token", "create", "--role", "join", "--labels", "role=web",
    ]))
    .trim()
    .to_string();
    let t = JoinToken::decode(&token).unwrap();
    assert!(t.url.starts_with("https://"), "{}", t.url);
    assert_eq!(t.ca_sha256.as_deref().map(str::len), Some(64));

    // A token pinning another CA is refused before anything is sent or written.
    let tampered = JoinToken {
        ca_sha256: Some("00".repeat(32)),
        ..t.clone()
    }
    .encode();
    let d = work.path().join("bad");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("agent.toml"), BASE).unwrap();
    refused(&join(&d, &tampered, "t0", &[]), "TLS fingerprint mismatch");
    untouched(&d, BASE);

    let d = work.path().join("good");
    std::fs::create_dir_all(&d).unwrap();
    let out = join(&d, &token, "t1", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = std::fs::read_to_string(d.join("controller-ca.pem")).unwrap();
    assert_eq!(
        pinned.split_whitespace().collect::<String>(),
        std::fs::read_to_string(ca.ca_file())
            .unwrap()
            .split_whitespace()
            .collect::<String>()
    );
    let cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("agent.toml")).unwrap()).unwrap();
    assert_eq!(
        cfg["controller"]["ca_cert"].as_str(),
        Some(d.join("controller-ca.pem").to_str().unwrap())
    );
    let listed = ok(slipway(&["hosts"]));
    assert!(
        listed.contains("t1") && listed.contains("role=web"),
        "{listed}"
    );
}

//! Offline trust chain through the real binaries: keygen -> trust init -> release sign ->
//! verify, then tampering, a wrong key, a replayed seq and a tag are each refused with the reason.

use slipway_tests::bins::bin;
use std::path::Path;
use std::process::{Command, Output};

const DIGEST: &str = "sha256:4f2a1c8e0b7d6f5a4e3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6";

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(bin(cmd)).args(args).output().expect("spawn")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(needle), "stderr lacks `{needle}`: {err}");
}

fn write_spec(dir: &Path) -> String {
    let p = dir.join("app.toml");
    std::fs::write(
        &p,
        "name = \"web\"\nimage = \"127.0.0.1:5000/demo/web\"\nlisten = 8080\ncontainer_port = 80\n",
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn keygen_sign_verify_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let keys = d.join("keys");
    let keys_s = keys.to_str().unwrap();
    let id = ok(&run("slipway", &["keygen", "--out", keys_s]));
    assert_eq!(id.trim().len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys.join("release.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Refuses to overwrite.
    fails_with(
        &run("slipway", &["keygen", "--out", keys_s]),
        "refusing to overwrite",
    );

    let trust = d.join("trust.toml");
    let pubkey = keys.join("release.pub");
    let listed = ok(&run(
        "slipway",
        &[
            "trust",
            "init",
            "--key",
            pubkey.to_str().unwrap(),
            "--out",
            trust.to_str().unwrap(),
        ],
    ));
    assert_eq!(listed.trim(), id.trim());

    let spec = write_spec(d);
    let image = format!("127.0.0.1:5000/demo/web@{DIGEST}");
    let key = keys.join("release.key");
    let signed = ok(&run(
        "slipway",
        &[
            "release",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--app-spec",
            &spec,
            "--image",
            &image,
            "--seq",
            "3",
            "--expires",
            "1h",
        ],
    ));
    let rel = d.join("release.json");
    std::fs::write(&rel, &signed).unwrap();
    let (t, r) = (trust.to_str().unwrap(), rel.to_str().unwrap());

    let out = ok(&run("slipway-agent", &["verify", "--trust", t, r]));
    assert!(out.contains("app web"), "{out}");
    assert!(out.contains("seq 3"), "{out}");
    assert!(out.contains(&image), "{out}");
    ok(&run(
        "slipway-agent",
        &["verify", "--trust", t, "--last-seq", "2", r],
    ));

    // Replay: seq not above the last applied.
    fails_with(
        &run(
            "slipway-agent",
            &["verify", "--trust", t, "--last-seq", "3", r],
        ),
        "seq must be greater than 3",
    );

    // Tamper with the body: change the seq inside the signed payload.
    let mut env: serde_json::Value = serde_json::from_str(&signed).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let body = String::from_utf8(body)
        .unwrap()
        .replace("\"seq\":3", "\"seq\":99");
    env["payload"] = b64.encode(body).into();
    let tampered = d.join("tampered.json");
    std::fs::write(&tampered, env.to_string()).unwrap();
    fails_with(
        &run(
            "slipway-agent",
            &["verify", "--trust", t, tampered.to_str().unwrap()],
        ),
        "bad signature",
    );

    // A key the trust file does not list.
    let other = d.join("other");
    ok(&run(
        "slipway",
        &["keygen", "--out", other.to_str().unwrap()],
    ));
    let foreign = ok(&run(
        "slipway",
        &[
            "release",
            "sign",
            "--key",
            other.join("release.key").to_str().unwrap(),
            "--app-spec",
            &spec,
            "--image",
            &image,
            "--seq",
            "4",
        ],
    ));
    let foreign_p = d.join("foreign.json");
    std::fs::write(&foreign_p, foreign).unwrap();
    fails_with(
        &run(
            "slipway-agent",
            &["verify", "--trust", t, foreign_p.to_str().unwrap()],
        ),
        "no signature is by a trusted key",
    );

    // A tag is refused at signing time.
    fails_with(
        &run(
            "slipway",
            &[
                "release",
                "sign",
                "--key",
                key.to_str().unwrap(),
                "--app-spec",
                &spec,
                "--image",
                "127.0.0.1:5000/demo/web:v2",
                "--seq",
                "5",
            ],
        ),
        "names a tag, not a digest",
    );
    // Garbage instead of an envelope.
    let junk = d.join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    fails_with(
        &run(
            "slipway-agent",
            &["verify", "--trust", t, junk.to_str().unwrap()],
        ),
        "not a signed Slipway document",
    );
}

#[test]
fn expired_release_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let keys = d.join("k");
    ok(&run(
        "slipway",
        &["keygen", "--out", keys.to_str().unwrap()],
    ));
    let trust = d.join("trust.toml");
    ok(&run(
        "slipway",
        &[
            "trust",
            "init",
            "--key",
            keys.join("release.pub").to_str().unwrap(),
            "--out",
            trust.to_str().unwrap(),
        ],
    ));
    let spec = write_spec(d);
    let image = format!("127.0.0.1:5000/demo/web@{DIGEST}");
    let signed = ok(&run(
        "slipway",
        &[
            "release",
            "sign",
            "--key",
            keys.join("release.key").to_str().unwrap(),
            "--app-spec",
            &spec,
            "--image",
            &image,
            "--seq",
            "1",
            "--expires",
            "1s",
        ],
    ));
    let rel = d.join("r.json");
    std::fs::write(&rel, signed).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    fails_with(
        &run(
            "slipway-agent",
            &[
                "verify",
                "--trust",
                trust.to_str().unwrap(),
                rel.to_str().unwrap(),
            ],
        ),
        "expired at",
    );
}

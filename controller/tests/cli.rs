//! The `slipway` CLI end to end against the real `slipway-controller serve` process on
//! 127.0.0.1 and a real `docker-registry`.

mod support;

use serde_json::{json, Value};
use slipway_proto::{SigningKey, TrustFile};
use slipway_tests::registry::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{app_toml, base_config, push_image, ControllerProcess, CONTROLLER};

const SLIPWAY: &str = env!("CARGO_BIN_EXE_slipway");

fn setup(dir: &Path) -> (PathBuf, TrustFile) {
    std::fs::create_dir(dir.join("keys")).unwrap();
    let key = SigningKey::generate().unwrap();
    let key_path = dir.join("keys/release.key");
    std::fs::write(&key_path, key.to_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("controller.toml");
    std::fs::write(&config, base_config(dir, "")).unwrap();
    (
        config,
        TrustFile::new(vec![key.public_key()], 1, 1).unwrap(),
    )
}

fn slipway(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(SLIPWAY)
        .args(args)
        .env("SLIPWAY_URL", url)
        .env("SLIPWAY_TOKEN", token)
        .env_remove("SLIPWAY_TOKEN_FILE")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "expected failure: {:?}", out);
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn cli_applies_releases_rolls_back_and_reports_against_a_running_controller() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    let dir = tempfile::tempdir().unwrap();
    let (config, trust) = setup(dir.path());

    // The first admin token is made offline, straight into the store.
    let out = Command::new(CONTROLLER)
        .args([
            "token-create",
            "--name",
            "admin",
            "--role",
            "admin",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let admin = ok(out).trim().to_string();
    assert!(admin.starts_with("swt_"));

    let mut controller = ControllerProcess::start(&config);
    let url = controller.url.clone();
    let app = dir.path().join("app.toml");
    std::fs::write(&app, app_toml(&v1.repository)).unwrap();
    let apply = ok(slipway(
        &url,
        &admin,
        &["app", "apply", "-f", app.to_str().unwrap()],
    ));
    assert_eq!(apply.trim(), "app web spec version 1");

    let out = ok(slipway(
        &url,
        &admin,
        &[
            "release",
            "web",
            "--image",
            &format!("{}:v1", v1.repository),
        ],
    ));
    assert_eq!(
        out.trim(),
        format!("released web seq 1: {}", v1.image_ref())
    );
    let out = ok(slipway(
        &url,
        &admin,
        &[
            "--json",
            "release",
            "web",
            "--image",
            &format!("{}:v2", v2.repository),
            "--annotation",
            "commit=abc",
        ],
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["seq"].as_u64(), r["image"].as_str()),
        (Some(2), Some(v2.image_ref().as_str()))
    );
    let env = slipway_proto::Envelope::from_json(r["envelope"].to_string().as_bytes()).unwrap();
    let verified = env
        .verify_release(&trust, std::time::SystemTime::now())
        .unwrap();
    assert_eq!(verified.release.annotations["commit"], "abc");

    let out = ok(slipway(&url, &admin, &["rollback", "web", "--to", "1"]));
    assert_eq!(
        out.trim(),
        format!("released web seq 3: {} (rollback to seq 1)", v1.image_ref())
    );

    // An agent token made through the CLI; the agent registers and reports over HTTP.
    let agent = ok(slipway(
        &url,
        &admin,
        &[
            "token", "create", "--name", "agent-h1", "--role", "agent", "--host", "h1",
        ],
    ));
    let agent = agent.trim();
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{url}/v1/hosts/h1/register"))
        .bearer_auth(agent)
        .json(&json!({"labels": {"role": "web"}, "agent_version": "0.1.0"}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = http
        .post(format!("{url}/v1/hosts/h1/status"))
        .bearer_auth(agent)
        .json(&json!({"app": "web", "seq": 3, "image": v1.image_ref(), "phase": "live"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let status = ok(slipway(&url, &admin, &["status", "web"]));
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{status}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cells[..4], ["h1", "web", "3", "live"], "{status}");
    // Digests shortened, times as ages; `-o wide` shows them in full.
    let full = v1.image_ref();
    let (repo, hex) = full.split_once("@sha256:").unwrap();
    assert_eq!(
        cells[4],
        format!("{repo}@sha256:{}", &hex[..12]),
        "{status}"
    );
    assert!(status.trim_end().ends_with(" ago"), "{status}");
    let wide = ok(slipway(&url, &admin, &["status", "web", "-o", "wide"]));
    assert!(wide.contains(&full) && !wide.contains(" ago"), "{wide}");
    let hosts = ok(slipway(&url, &admin, &["hosts"]));
    assert!(
        hosts.contains("h1") && hosts.contains("role=web") && hosts.contains("0.1.0"),
        "{hosts}"
    );
    let history = ok(slipway(&url, &admin, &["history", "web"]));
    let seqs: Vec<&str> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(seqs, ["3", "2", "1"], "{history}");
    let audit = ok(slipway(&url, &admin, &["audit"]));
    assert!(
        audit.contains("release.rollback") && audit.contains("token.create"),
        "{audit}"
    );
    let apps = ok(slipway(&url, &admin, &["app", "list"]));
    assert!(apps.contains(&v1.repository), "{apps}");

    // Errors come back as the user needs them.
    let err = fails(slipway(
        &url,
        &admin,
        &[
            "release",
            "web",
            "--image",
            &format!("{}:nope", v1.repository),
        ],
    ));
    assert!(
        err.contains("does not exist") && err.contains("HTTP 422"),
        "{err}"
    );
    let err = fails(slipway(&url, "swt_wrong", &["status"]));
    assert!(err.contains("HTTP 401") && err.contains("--token"), "{err}");
    let reader = ok(slipway(
        &url,
        &admin,
        &["token", "create", "--name", "ro", "--role", "read-only"],
    ));
    let err = fails(slipway(&url, reader.trim(), &["rollback", "web"]));
    assert!(err.contains("HTTP 403"), "{err}");
    let err = fails(slipway(
        &url,
        &admin,
        &["release", "nope", "--image", &v1.image_ref()],
    ));
    assert!(err.contains("unknown app `nope`"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        app_toml(&v1.repository).replace("container_port = 80", "container_port = 0"),
    )
    .unwrap();
    let err = fails(slipway(
        &url,
        &admin,
        &["app", "apply", "-f", bad.to_str().unwrap()],
    ));
    assert!(err.contains("key `container_port`"), "{err}");

    // URL and token from a CLI config file instead of the environment.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{admin}\n")).unwrap();
    let cli_config = dir.path().join("cli.toml");
    std::fs::write(
        &cli_config,
        format!(
            "url = \"{url}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(SLIPWAY)
        .args([
            "--cli-config",
            cli_config.to_str().unwrap(),
            "--json",
            "hosts",
        ])
        .env_remove("SLIPWAY_URL")
        .env_remove("SLIPWAY_TOKEN")
        .output()
        .unwrap();
    let hosts: Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(hosts[0]["host"], "h1");

    // The offline signer still works beside the online command.
    let out = Command::new(SLIPWAY)
        .args(["release", "sign", "--key"])
        .arg(dir.path().join("keys/release.key"))
        .args([
            "--app-spec",
            app.to_str().unwrap(),
            "--image",
            &v2.image_ref(),
            "--seq",
            "9",
        ])
        .output()
        .unwrap();
    let env = slipway_proto::Envelope::from_json(ok(out).as_bytes()).unwrap();
    assert_eq!(
        env.verify_release(&trust, std::time::SystemTime::now())
            .unwrap()
            .release
            .seq,
        9
    );

    // A changed spec: without --release it only says how to roll it out (no terminal here);
    // with --release it goes out with the live image (seq 3 runs v1).
    let apply_env = |greeting: &str, more: &[&str]| {
        std::fs::write(
            &app,
            format!(
                "{}[env]\nGREETING = \"{greeting}\"\n",
                app_toml(&v1.repository)
            ),
        )
        .unwrap();
        let file = app.to_str().unwrap();
        ok(slipway(
            &url,
            &admin,
            &[&["app", "apply", "-f", file], more].concat(),
        ))
    };
    let out = apply_env("hi", &[]);
    assert!(
        out.contains("spec version 2 is not running anywhere yet") && out.contains("--release"),
        "{out}"
    );
    let history: Value =
        serde_json::from_str(&ok(slipway(&url, &admin, &["--json", "history", "web"]))).unwrap();
    let seqs: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.iter().max(), Some(&3), "no release without --release");
    let out = apply_env("hey", &["--release"]);
    assert!(
        out.contains(&format!(
            "released web seq 4: {} with spec version 3",
            v1.image_ref()
        )),
        "{out}"
    );
    // The same spec again changes nothing and releases nothing.
    let out = ok(slipway(
        &url,
        &admin,
        &["app", "apply", "-f", app.to_str().unwrap(), "--release"],
    ));
    assert_eq!(out.trim(), "app web spec version 3");

    let (status, took) = controller.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[test]
fn controller_refuses_a_bad_config_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = setup(dir.path());
    std::fs::write(
        &config,
        base_config(dir.path(), "").replace("127.0.0.1:0", "0.0.0.0:0"),
    )
    .unwrap();
    let out = Command::new(CONTROLLER)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = fails(out);
    assert!(
        err.contains("not a loopback address") && err.contains("[tls]"),
        "{err}"
    );
    std::fs::set_permissions(
        dir.path().join("keys/release.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&config, base_config(dir.path(), "")).unwrap();
    let out = Command::new(CONTROLLER)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = fails(out);
    assert!(err.contains("chmod 600"), "{err}");
}

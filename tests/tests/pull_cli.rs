//! `slipway-agent pull` end to end against a real `docker-registry`.

use slipway_tests::bins::bin;
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::process::Command;

fn pull(args: &[&str]) -> std::process::Output {
    Command::new(bin("slipway-agent"))
        .arg("pull")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn pull_prints_fetched_then_cached() {
    let reg = Registry::start().unwrap();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let pushed = busybox_httpd_image("cli")
        .push(reg.addr(), "demo/web", "v1")
        .unwrap();
    let image = pushed.image_ref();

    let out = pull(&[&image, "--store", s, "--insecure-registry", reg.addr()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("layers: 2 fetched, 0 cached"), "{stdout}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("downloading"),
        "no progress bars when piped"
    );

    let out = pull(&[
        &image,
        "--store",
        s,
        "--insecure-registry",
        reg.addr(),
        "--json",
    ]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report"]["layers_fetched"], 0);
    assert_eq!(report["report"]["layers_cached"], 2);
    assert_eq!(report["report"]["bytes_fetched"], 0);
    assert_eq!(report["manifest_digest"], pushed.digest.to_string());
    let dirs = report["layer_dirs"].as_array().unwrap();
    let page = std::path::Path::new(dirs[1].as_str().unwrap()).join("www/index.html");
    assert_eq!(std::fs::read_to_string(page).unwrap(), "cli");
}

#[test]
fn pull_refuses_a_tag() {
    let store = tempfile::tempdir().unwrap();
    let out = pull(&[
        "127.0.0.1:1/demo/web:v1",
        "--store",
        store.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names a tag, not a digest"), "{err}");
    assert_eq!(
        std::fs::read_dir(store.path()).unwrap().count(),
        0,
        "store untouched"
    );
}

#[test]
fn pull_reports_a_missing_image() {
    let reg = Registry::start().unwrap();
    let store = tempfile::tempdir().unwrap();
    let image = format!("{}/demo/none@sha256:{}", reg.addr(), "ab".repeat(32));
    let out = pull(&[
        &image,
        "--store",
        store.path().to_str().unwrap(),
        "--insecure-registry",
        reg.addr(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("manifest sha256:{}", "ab".repeat(32)))
            && err.to_lowercase().contains("unknown"),
        "{err}"
    );
}

/// `slipway-agent pull --config agent.toml` against a private registry (htpasswd over TLS
/// with a test CA), credentials from a `docker-credential-*` helper named in config.json.
#[test]
fn pull_with_credentials_from_a_helper_over_tls() {
    use slipway_tests::pki::TestCa;
    use std::os::unix::fs::PermissionsExt;

    let ca = TestCa::new("cli").unwrap();
    let plain = Registry::start().unwrap();
    let pushed = busybox_httpd_image("cli private")
        .push(plain.addr(), "private/web", "v1")
        .unwrap();
    let private = Registry::locked(&plain, &ca, "ci", "helper-secret").unwrap();
    let addr = private.addr();
    let image = format!("{addr}/private/web@{}", pushed.digest);

    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let helper = bin_dir.join("docker-credential-slipwaytest");
    let asked = dir.path().join("asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread url\necho \"$url\" > {}\n\
             echo '{{\"ServerURL\":\"'$url'\",\"Username\":\"ci\",\"Secret\":\"'${{SECRET:-helper-secret}}'\"}}'\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker_config = dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(r#"{{"credHelpers":{{"{addr}":"slipwaytest"}}}}"#),
    )
    .unwrap();
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "[registry]\ndocker_config = \"{}\"\n[registry.tls.\"{addr}\"]\nca_file = \"{}\"\n",
            docker_config.display(),
            ca.ca_file().display()
        ),
    )
    .unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let store = dir.path().join("store");
    let run = |secret: &str| {
        Command::new(bin("slipway-agent"))
            .args([
                "pull",
                &image,
                "--store",
                store.to_str().unwrap(),
                "--config",
            ])
            .arg(&agent_toml)
            .env("PATH", &path)
            .env("SECRET", secret)
            .output()
            .unwrap()
    };

    let out = run("wrong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(
        stderr.contains(addr) && stderr.contains("private/web"),
        "{stderr}"
    );

    let out = run("helper-secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("layers: 2 fetched, 0 cached"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap().trim(), addr);
}

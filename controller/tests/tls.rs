//! The controller over TLS (rustls, ring provider) with a self-signed certificate made by
//! `openssl`, reached by the `slipway` CLI with `--ca-cert`.

mod support;

use std::process::Command;
use support::*;

#[tokio::test]
async fn controller_serves_https_and_the_cli_trusts_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        ["req", "-x509"]
            .iter()
            .chain(&ec)
            .chain(&["-days", "1", "-subj", "/CN=slipway-test-ca"])
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                d.join("ca.key").display().to_string(),
                "-out".into(),
                ca.display().to_string(),
            ])
            .collect(),
        ["req"]
            .iter()
            .chain(&ec)
            .chain(&["-subj", "/CN=127.0.0.1"])
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                key.display().to_string(),
                "-out".into(),
                d.join("leaf.csr").display().to_string(),
            ])
            .collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-in".into(),
                d.join("leaf.csr").display().to_string(),
                "-CA".into(),
                ca.display().to_string(),
                "-CAkey".into(),
                d.join("ca.key").display().to_string(),
                "-extfile".into(),
                d.join("leaf.ext").display().to_string(),
                "-out".into(),
                cert.display().to_string(),
            ])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h = Harness::start_with(&format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    assert!(h.url.starts_with("https://127.0.0.1:"), "{}", h.url);

    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let r = https
        .get(format!("{}/v1/apps", h.url))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without trusting the CA, or in plain HTTP: no answer.
    assert!(reqwest::Client::new()
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .is_err());
    let plain = h.url.replace("https://", "http://");
    assert!(reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_err());

    let url = h.url.clone();
    let admin = h.admin.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["--ca-cert", ca.to_str().unwrap(), "--url", &url, "hosts"])
            .env("SLIPWAY_TOKEN", admin)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HOST"));
}

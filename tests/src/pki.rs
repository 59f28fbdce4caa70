//! A throwaway certificate authority for tests, made with the `openssl` CLI: a CA, a server
//! certificate for 127.0.0.1/localhost and a client certificate, all in one temp dir.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Days the test certificates are valid.
const DAYS: &str = "2";

/// A CA with a server and a client certificate signed by it.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes a CA named `name` and its certificates (EC P-256, quick to generate).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-pki-")
            .tempdir()
            .context("creating the PKI temp dir")?;
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    DAYS,
                    "-subj",
                    &format!("/CN={name} test CA"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        for (who, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
            ),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            openssl(
                d,
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{who}.key"),
                        "-out",
                        &format!("{who}.csr"),
                        "-subj",
                        &format!("/CN=slipway test {who}"),
                    ],
                ]
                .concat(),
            )?;
            std::fs::write(d.join(format!("{who}.ext")), ext)?;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{who}.pem"),
                    "-days",
                    DAYS,
                    "-extfile",
                    &format!("{who}.ext"),
                ],
            )?;
        }
        Ok(TestCa { dir })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (apt-get install -y openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

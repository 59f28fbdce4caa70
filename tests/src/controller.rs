//! A real `slipway-controller serve` process for end-to-end tests: its config, signing key
//! and tokens in a temp dir, started and stopped at will, killed on drop.

use crate::bins::bin;
use crate::host::{free_port, wait_until};
use slipway_proto::SigningKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

pub struct Controller {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub url: String,
    child: Option<Child>,
}

impl Controller {
    /// Writes a config (loopback listener, data dir, a fresh signing key with mode 0600, plus
    /// `extra` TOML) without starting the controller. Returns the signing key for agents'
    /// trust files.
    pub fn prepare(extra: &str) -> (Controller, SigningKey) {
        let dir = tempfile::Builder::new()
            .prefix("slipway-ctl-")
            .tempdir()
            .unwrap();
        let key = SigningKey::generate().unwrap();
        let key_path = dir.path().join("release.key");
        std::fs::write(&key_path, key.to_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let config = dir.path().join("controller.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nsigning_key = \"{}\"\n{extra}",
                dir.path().join("data").display(),
                key_path.display()
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        (
            Controller {
                dir,
                config,
                port,
                url,
                child: None,
            },
            key,
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `slipway-controller token-create`: a token of `role` (bound to `host` for agents).
    pub fn token(&self, name: &str, role: &str, host: Option<&str>) -> String {
        let mut cmd = Command::new(bin("slipway-controller"));
        cmd.args(["token-create", "--name", name, "--role", role, "--config"])
            .arg(&self.config);
        if let Some(h) = host {
            cmd.args(["--host", h]);
        }
        ok(cmd.output().unwrap()).trim().to_string()
    }

    /// An agent token for `host` written to a file; returns the file's path.
    pub fn agent_token_file(&self, host: &str) -> PathBuf {
        let path = self.path().join(format!("{host}.token"));
        std::fs::write(&path, self.token(host, "agent", Some(host))).unwrap();
        path
    }

    /// The `[controller]` section of an agent config for `host` with `labels` (TOML inline table).
    pub fn agent_section(&self, host: &str, labels: &str) -> String {
        format!(
            "\n[controller]\nurl = \"{}\"\nhost_id = \"{host}\"\nlabels = {labels}\ntoken_file = \"{}\"\ncache_dir = \"{}\"\n",
            self.url,
            self.agent_token_file(host).display(),
            self.path().join(format!("{host}-cache")).display()
        )
    }

    /// Starts `slipway-controller serve` (log in `controller.log`) and waits for its port.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("controller.log"))
            .unwrap();
        self.child = Some(
            Command::new(bin("slipway-controller"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .stderr(log)
                .spawn()
                .expect("slipway-controller"),
        );
        let port = self.port;
        wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("controller listening");
    }

    /// SIGKILLs the controller.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs the `slipway` CLI against this controller with `token`.
    pub fn slipway(&self, token: &str, args: &[&str]) -> Output {
        Command::new(bin("slipway"))
            .args(args)
            .env("SLIPWAY_URL", &self.url)
            .env("SLIPWAY_TOKEN", token)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stdout of a command that must have succeeded; otherwise panics with its output.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

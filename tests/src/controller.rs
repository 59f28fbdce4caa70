//! A real `slipway-controller serve` process for end-to-end tests: its config, data and log in
//! a temp dir of its own or in a fleet's, started and stopped (SIGKILL) at will, killed on
//! drop.

use crate::bins::bin;
use crate::host::{free_port, wait_until};
use slipway_proto::SigningKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub struct Controller {
    /// Owned when the controller made its own temp dir ([`Controller::prepare`]).
    dir: Option<tempfile::TempDir>,
    base: PathBuf,
    name: String,
    pub config: PathBuf,
    pub port: u16,
    pub url: String,
    /// `IP:PORT` it listens on.
    pub addr: String,
    child: Option<Child>,
}

/// What the controllers log in tests.
const LOG: &str = "debug,hyper=info,hyper_util=info,reqwest=info,oci_client=info,h2=info,sqlx=warn";

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
        let mut c = Controller::configure(dir.path(), "controller", "127.0.0.1", &key_path, extra);
        c.dir = Some(dir);
        (c, key)
    }

    /// Writes `NAME.toml` (data in `NAME-data`, log in `NAME.log`) under `base`, listening on
    /// `ip`, signing with the key at `key`, plus `extra` TOML; does not start it.
    pub fn configure(base: &Path, name: &str, ip: &str, key: &Path, extra: &str) -> Controller {
        let port = free_port();
        let config = base.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"{ip}:{port}\"\ndata_dir = \"{}\"\nsigning_key = \"{}\"\n{extra}\n",
                base.join(format!("{name}-data")).display(),
                key.display()
            ),
        )
        .unwrap();
        Controller {
            dir: None,
            base: base.to_path_buf(),
            name: name.to_string(),
            config,
            port,
            url: format!("http://{ip}:{port}"),
            addr: format!("{ip}:{port}"),
            child: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.base
    }

    pub fn log_path(&self) -> PathBuf {
        self.base.join(format!("{}.log", self.name))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
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

    /// Starts `slipway-controller serve` (log in `NAME.log`) and waits for its port.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        self.child = Some(
            Command::new(bin("slipway-controller"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("SLIPWAY_LOG", LOG)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("slipway-controller"),
        );
        let addr = self.addr.clone();
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_ok()
        })
        .unwrap_or_else(|_| panic!("controller never listened:\n{}", self.log_tail(30)));
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

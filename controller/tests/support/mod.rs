//! Test support: an in-process controller on 127.0.0.1 with its own key, data dir and tokens,
//! a real `docker-registry`, and a small HTTP client.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::Value;
use slipway_controller::auth;
use slipway_controller::config::Config;
use slipway_controller::server::{self, Running};
use slipway_proto::api::Role;
use slipway_proto::{SigningKey, TrustFile};
use slipway_tests::image::{ImageBuilder, Pushed};
use slipway_tests::registry::Registry;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod gitops;
pub mod store;

pub const CONTROLLER: &str = env!("CARGO_BIN_EXE_slipway-controller");

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
    pub controller: Option<Running>,
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub admin: String,
    pub trust: TrustFile,
    pub http: reqwest::Client,
}

/// Extra `controller.toml` lines a test wants.
pub fn base_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nsigning_key = \"{}\"\n{extra}\n",
        dir.join("data").display(),
        dir.join("keys/release.key").display()
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("slipway-controller-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let key = SigningKey::generate().unwrap();
        let key_path = dir.path().join("keys/release.key");
        std::fs::write(&key_path, key.to_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("keys/release.pub"),
            key.public_key().to_pem(),
        )
        .unwrap();
        let trust = TrustFile::new(vec![key.public_key()], 1, 1).unwrap();
        std::fs::write(dir.path().join("trust.toml"), trust.to_toml()).unwrap();
        let config_path = dir.path().join("controller.toml");
        std::fs::write(&config_path, base_config(dir.path(), extra)).unwrap();
        let config = Config::load(&config_path).unwrap();
        let controller = server::start(&config).await.unwrap();
        let url = controller.url();
        let addr = controller.addr;
        let (admin, _) =
            auth::create_token(controller.state.store.as_ref(), "admin", Role::Admin, None)
                .await
                .unwrap();
        Harness {
            dir,
            config_path,
            config,
            controller: Some(controller),
            url,
            addr,
            admin,
            trust,
            http: reqwest::Client::new(),
        }
    }

    pub fn running(&self) -> &Running {
        self.controller.as_ref().expect("controller running")
    }

    /// Stops the controller (graceful, when running) and starts it again on the same data dir
    /// and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut cfg = self.config.clone();
        cfg.listen = self.addr;
        self.controller = Some(server::start(&cfg).await.unwrap());
    }

    pub async fn stop(&mut self) {
        if let Some(c) = self.controller.take() {
            c.shutdown().await;
        }
    }

    pub async fn token(&self, name: &str, role: Role, host: Option<&str>) -> String {
        auth::create_token(self.running().state.store.as_ref(), name, role, host)
            .await
            .unwrap()
            .0
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    /// `host`'s desired set now (200 expected).
    pub async fn desired(&self, host: &str, token: &str) -> slipway_proto::api::DesiredSetBody {
        let (s, v) = self.get(&format!("/v1/hosts/{host}/desired"), token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        serde_json::from_value(v).unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await.unwrap()).await
    }

    /// Applies an app spec (TOML) as admin; panics unless accepted.
    pub async fn apply(&self, toml: &str) -> Value {
        let (s, v) = self
            .post_raw("/v1/apps", Some(&self.admin), "application/toml", toml)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn audit_len(&self) -> usize {
        let (s, v) = self.get("/v1/audit?limit=10000", &self.admin).await;
        assert_eq!(s, StatusCode::OK);
        v.as_array().unwrap().len()
    }
}

pub async fn decode(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, v)
}

/// An app spec for `web` from `repository`.
pub fn app_toml(repository: &str) -> String {
    format!("name = \"web\"\nimage = \"{repository}\"\nlisten = 8080\ncontainer_port = 80\n")
}

/// Pushes a one-file image whose page says `text`, as `demo/web:tag`.
pub fn push_image(registry: &Registry, tag: &str, text: &str) -> Pushed {
    ImageBuilder::new()
        .layer_from_files(&[("www/index.html", text.as_bytes())])
        .build()
        .push(registry.addr(), "demo/web", tag)
        .unwrap()
}

/// The set-up most API tests share: a registry holding `demo/web` at each of `tags` (at
/// least one; each image's page says its tag) and a controller with app `web` applied from
/// that repository. Keep the registry alive for the test.
pub async fn web_app<const N: usize>(tags: [&str; N]) -> (Registry, [Pushed; N], Harness) {
    let registry = Registry::start().unwrap();
    let pushed = tags.map(|t| push_image(&registry, t, t));
    let h = Harness::start().await;
    h.apply(&app_toml(&pushed[0].repository)).await;
    (registry, pushed, h)
}

/// Verifies a signed envelope (JSON value) against the harness's trust file.
pub fn verify(h: &Harness, envelope: &Value) -> slipway_proto::VerifiedRelease {
    let env = slipway_proto::Envelope::from_json(envelope.to_string().as_bytes()).unwrap();
    env.verify_release(&h.trust, std::time::SystemTime::now())
        .unwrap()
}

/// A `slipway-controller serve` process, SIGTERMed on drop.
pub struct ControllerProcess {
    pub child: Child,
    pub url: String,
}

impl ControllerProcess {
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(CONTROLLER)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, url }
    }

    /// SIGTERM; returns the exit status and how long the shutdown took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        (self.child.wait().unwrap(), t.elapsed())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a signing key (0600) and a `controller.toml` under `dir`; returns the config path
/// and the trust file agents would use.
pub fn setup_process_dir(dir: &Path, extra: &str) -> (PathBuf, TrustFile) {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let key = SigningKey::generate().unwrap();
    let key_path = dir.join("keys/release.key");
    std::fs::write(&key_path, key.to_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("controller.toml");
    std::fs::write(&config, base_config(dir, extra)).unwrap();
    (
        config,
        TrustFile::new(vec![key.public_key()], 1, 1).unwrap(),
    )
}

/// `slipway-controller token-create`: the secret of a new token.
pub fn offline_token(config: &Path, name: &str, role: &str) -> String {
    let out = Command::new(CONTROLLER)
        .args(["token-create", "--name", name, "--role", role, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `f` holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Polls `f` every 100ms for up to 30s; whether it ever held.
pub async fn wait_until_async<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

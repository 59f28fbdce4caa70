//! A real OCI registry for tests: `docker-registry serve` (CNCF distribution 2.8) on a free
//! loopback port with its own storage directory, stopped and removed on drop.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `docker-registry` package installs the binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// How long a fresh registry may take to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at finding a free port (another process may grab the one we picked).
const START_ATTEMPTS: usize = 5;

/// A running `docker-registry` on `IP:PORT` (loopback unless a test LAN asks otherwise).
pub struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> anyhow::Result<Registry> {
        Self::start_on("127.0.0.1")
    }

    /// Like [`Registry::start`] on a local address `ip` (e.g. a test LAN's gateway).
    pub fn start_on(ip: &str) -> anyhow::Result<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            bail!("{REGISTRY_BIN} not found: install it with `apt-get install -y docker-registry`");
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(ip) {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn start_once(ip: &str) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-registry-")
            .tempdir()
            .context("creating the registry's temp dir")?;
        let port = free_port()?;
        let addr = format!("{ip}:{port}");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage)?;
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&storage, &addr))?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {REGISTRY_BIN}"))?;
        let mut reg = Registry { child, addr, dir };
        reg.wait_ready()?;
        Ok(reg)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry on {} exited early ({status}): {}",
                    self.addr,
                    self.log()
                );
            }
            if v2_answers(&self.addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry on {} did not answer GET /v2/ within {START_TIMEOUT:?}: {}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `IP:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's storage directory (for tests that corrupt blobs behind its back).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `self.dir` (TempDir) removes the storage and config afterwards.
    }
}

fn config_yaml(storage: &Path, addr: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n",
        storage.display()
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn v2_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

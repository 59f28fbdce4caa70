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
    storage: PathBuf,
}

/// How a private registry is locked: htpasswd users, TLS, client certificates.
#[derive(Debug, Clone, Default)]
pub struct Private {
    /// Serve this storage dir (e.g. another registry's, where images were pushed).
    pub storage: Option<PathBuf>,
    /// One htpasswd user (bcrypt, made with `htpasswd -B`).
    pub user: Option<(String, String)>,
    /// Server certificate and key (PEM): serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// Token auth (`auth.token`): the registry trusts JWTs signed under this root.
    pub token: Option<TokenAuth>,
}

/// The distribution token-auth settings: where clients get tokens and whose they are.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificate(s) whose keys sign the tokens.
    pub rootcertbundle: PathBuf,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> anyhow::Result<Registry> {
        Self::start_on("127.0.0.1")
    }

    /// Like [`Registry::start`] on a local address `ip` (e.g. a test LAN's gateway).
    pub fn start_on(ip: &str) -> anyhow::Result<Registry> {
        Self::start_private(ip, &Private::default())
    }

    /// Serves `plain`'s storage on loopback behind one htpasswd user over TLS, with `ca`'s
    /// server certificate: push to `plain` over HTTP, then pull from this one.
    pub fn locked(
        plain: &Registry,
        ca: &crate::pki::TestCa,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Registry> {
        Self::start_private(
            "127.0.0.1",
            &Private {
                storage: Some(plain.storage_dir()),
                user: Some((user.into(), password.into())),
                tls: Some((ca.server_cert(), ca.server_key())),
                ..Private::default()
            },
        )
    }

    /// A registry on `ip` locked as `private` says (HTTPS, htpasswd, client certificates).
    pub fn start_private(ip: &str, private: &Private) -> anyhow::Result<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            bail!("{REGISTRY_BIN} not found: install it with `apt-get install -y docker-registry`");
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(ip, private) {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn start_once(ip: &str, private: &Private) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-registry-")
            .tempdir()
            .context("creating the registry's temp dir")?;
        let port = free_port()?;
        let addr = format!("{ip}:{port}");
        let storage = match &private.storage {
            Some(s) => s.clone(),
            None => {
                let s = dir.path().join("storage");
                std::fs::create_dir(&s)?;
                s
            }
        };
        let config = dir.path().join("config.yml");
        let mut yaml = config_yaml(&storage, &addr);
        yaml.push_str(&private_yaml(dir.path(), private)?);
        std::fs::write(&config, yaml)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {REGISTRY_BIN}"))?;
        let mut reg = Registry {
            child,
            addr,
            dir,
            storage,
        };
        reg.wait_ready(private.tls.is_some() || private.user.is_some() || private.token.is_some())?;
        Ok(reg)
    }

    fn wait_ready(&mut self, locked: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry on {} exited early ({status}): {}",
                    self.addr,
                    self.log()
                );
            }
            // A locked registry does not answer a plain anonymous GET: listening is enough.
            if (locked && TcpStream::connect(&self.addr).is_ok()) || v2_answers(&self.addr) {
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
        self.storage.clone()
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

/// The `auth:` and `http.tls:` parts of a private registry's config (after `http.addr`).
fn private_yaml(dir: &Path, private: &Private) -> anyhow::Result<String> {
    let mut y = String::new();
    if let Some((cert, key)) = &private.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
        if let Some(ca) = &private.client_ca {
            y.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
        }
    }
    if let Some(t) = &private.token {
        y.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            t.realm,
            t.service,
            t.issuer,
            t.rootcertbundle.display()
        ));
    }
    if let Some((user, password)) = &private.user {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .context("running htpasswd (apt-get install -y apache2-utils)")?;
        if !out.status.success() {
            bail!("htpasswd: {}", String::from_utf8_lossy(&out.stderr));
        }
        let file = dir.join("htpasswd");
        std::fs::write(&file, &out.stdout)?;
        y.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n",
            file.display()
        ));
    }
    Ok(y)
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

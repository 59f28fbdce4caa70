//! A test host: the real `slipway-agent proxy` and `slipway-agent run` as separate processes,
//! with their own state dir, runc root, CNI bridge and subnet, fed signed release files.
//! Everything it made is removed on drop, even when the test failed.

use crate::bins::bin;
use anyhow::{bail, Context};
use slipway_proto::{AppSpec, Envelope, Release, SigningKey, TrustFile};
use slipway_runtime::network::{netns_name, NETNS_DIR};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    pub registry: String,
    pub bridge: String,
    pub subnet: String,
    /// The agent serves `GET /metrics` on 127.0.0.1 at this port.
    pub metrics_port: u16,
    proxy: Option<Child>,
    agent: Option<Child>,
}

/// A free loopback port (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestHost {
    /// Starts a proxy and an agent that trust a fresh key and pull from `registry`.
    pub fn start(registry: &str) -> anyhow::Result<TestHost> {
        Self::start_with(registry, SigningKey::generate()?, "")
    }

    /// Like [`TestHost::start`], trusting `key`, with extra TOML appended to `agent.toml`
    /// (e.g. a `[controller]` section).
    pub fn start_with(
        registry: &str,
        key: SigningKey,
        extra_agent_toml: &str,
    ) -> anyhow::Result<TestHost> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new().prefix("slipway-host-").tempdir()?;
        let trust = TrustFile::new(vec![key.public_key()], 1, 1)?;
        std::fs::write(dir.path().join("trust.toml"), trust.to_toml())?;
        std::fs::create_dir_all(dir.path().join("releases"))?;
        let bridge = format!("swt{}x{}", pid % 100000, n);
        let subnet = format!(
            "10.{}.{}.0/24",
            100 + (pid % 100),
            (n * 7 + pid / 100) % 250
        );
        let d = dir.path().display();
        let metrics_port = free_port();
        std::fs::write(
            dir.path().join("agent.toml"),
            format!(
                "state_dir = \"{d}/state\"\ntrust = \"{d}/trust.toml\"\nreleases_dir = \"{d}/releases\"\nproxy_socket = \"{d}/proxy.sock\"\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\n\n[registry]\ninsecure = [\"{registry}\"]\n\n[runtime]\nstate_dir = \"{d}/state/containers\"\nrunc_root = \"{d}/runc\"\n\n[runtime.cni]\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\n{extra_agent_toml}"
            ),
        )?;
        let mut host = TestHost {
            dir,
            key,
            registry: registry.to_string(),
            bridge,
            subnet,
            metrics_port,
            proxy: None,
            agent: None,
        };
        host.start_proxy()?;
        host.start_agent()?;
        Ok(host)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn agent_config(&self) -> PathBuf {
        self.path().join("agent.toml")
    }

    pub fn start_proxy(&mut self) -> anyhow::Result<()> {
        let sock = self.path().join("proxy.sock");
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("proxy.log"))?;
        let child = Command::new(bin("slipway-agent"))
            .args(["proxy", "--control-socket"])
            .arg(&sock)
            .arg("--state")
            .arg(self.path().join("routes.json"))
            .args(["--bind", "127.0.0.1"])
            .env(
                "SLIPWAY_LOG",
                "debug,hyper=info,hyper_util=info,reqwest=info,oci_client=info,h2=info",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting slipway-agent proxy")?;
        self.proxy = Some(child);
        wait_until(Duration::from_secs(10), || sock.exists())
            .context("proxy control socket never appeared")?;
        Ok(())
    }

    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("agent.log"))?;
        let child = Command::new(bin("slipway-agent"))
            .arg("run")
            .arg("--config")
            .arg(self.agent_config())
            .env(
                "SLIPWAY_LOG",
                "debug,hyper=info,hyper_util=info,reqwest=info,oci_client=info,h2=info",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting slipway-agent run")?;
        self.agent = Some(child);
        Ok(())
    }

    /// SIGKILLs the agent (the proxy and containers keep running).
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs the proxy.
    pub fn kill_proxy(&mut self) {
        if let Some(mut c) = self.proxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An app spec with the given name and ports plus extra TOML (sections at the end).
    pub fn spec(&self, app: &str, listen: u16, extra: &str) -> AppSpec {
        let text = format!(
            "name = \"{app}\"\nimage = \"{}/{app}\"\nlisten = {listen}\ncontainer_port = 80\n{extra}",
            self.registry
        );
        AppSpec::from_toml(&text).unwrap_or_else(|e| panic!("test spec: {e}\n{text}"))
    }

    /// Signs a release and drops it into the release directory atomically.
    pub fn release(&self, spec: &AppSpec, seq: u64, image: &str) -> anyhow::Result<()> {
        let env = self.sign(spec, seq, image, Duration::from_secs(3600));
        self.write_release(&spec.name, env.to_json().as_bytes())
    }

    pub fn sign(&self, spec: &AppSpec, seq: u64, image: &str, validity: Duration) -> Envelope {
        let now = SystemTime::now();
        let rel = Release {
            app: spec.name.clone(),
            seq,
            image: image.to_string(),
            spec: spec.clone(),
            issued_at: now,
            expires: now + validity,
            key_set_version: 1,
            annotations: BTreeMap::new(),
        };
        Envelope::sign_release(&rel, &[&self.key])
    }

    /// Writes raw bytes as the app's release file (temp + rename).
    pub fn write_release(&self, app: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let dir = self.path().join("releases");
        let tmp = dir.join(format!(".{app}.json.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(format!("{app}.json")))?;
        Ok(())
    }

    pub fn remove_release(&self, app: &str) {
        let _ = std::fs::remove_file(self.path().join("releases").join(format!("{app}.json")));
    }

    /// `slipway-agent status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(bin("slipway-agent"))
            .args(["status", "--json", "--config"])
            .arg(self.agent_config())
            .output()
            .expect("slipway-agent status");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Network namespaces (under /run/netns) of this host's containers of `app`, named as
    /// the runtime names them.
    pub fn netns_of(&self, app: &str) -> Vec<String> {
        let root = self.path().join("runc");
        std::fs::read_dir(self.path().join("state/containers"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|id| id.strip_prefix(app).is_some_and(|r| r.starts_with('-')))
                    .map(|id| netns_name(&root, &id))
                    .filter(|ns| Path::new(NETNS_DIR).join(ns).exists())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Container ids `runc list` shows under this host's runc root.
    pub fn runc_list(&self) -> Vec<String> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.path().join("runc"))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Waits until GET / on the app's listen port answers 2xx with `text` in the body.
    pub fn wait_for_body(
        &self,
        listen: u16,
        text: &str,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match get(listen) {
                Ok((200, body)) if body.contains(text) => return Ok(start.elapsed()),
                Ok((code, body)) => last = format!("HTTP {code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "127.0.0.1:{listen} never served `{text}` within {timeout:?}; last: {last}\n--- agent log tail:\n{}",
            self.log_tail("agent.log", 40)
        )
    }

    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path().join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn addr(listen: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], listen))
    }
}

/// One GET / on 127.0.0.1:`port` with a fresh connection: (status, body).
pub fn get(port: u16) -> anyhow::Result<(u16, String)> {
    get_at(TestHost::addr(port))
}

/// One GET / on `addr` with a fresh connection: (status, body).
pub fn get_at(addr: SocketAddr) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((code, body))
}

/// Removes the CNI egress NAT rule and chain of the container CNI knows as `cni_id` (its
/// netns name), for containers a failed test left without a CNI DEL.
pub fn remove_cni_masquerade(cni_id: &str) {
    let Ok(out) = Command::new("iptables").args(["-t", "nat", "-S"]).output() else {
        return;
    };
    let tag = format!("id: \\\"{cni_id}\\\"");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let (Some(rule), Some(chain)) = (
            line.strip_prefix("-A POSTROUTING ")
                .filter(|_| line.contains(&tag)),
            line.split_whitespace().last(),
        ) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -t nat -D POSTROUTING {rule} && iptables -t nat -F {chain} && iptables -t nat -X {chain}"))
                .output();
        }
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("condition not met within {timeout:?}")
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Ask the agent to remove every app, so discard runs its real path.
        if self.agent.is_some() {
            if let Ok(entries) = std::fs::read_dir(self.path().join("releases")) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = wait_until(Duration::from_secs(20), || self.runc_list().is_empty());
        }
        self.kill_agent();
        self.kill_proxy();
        // Whatever is left (a failed test): force it away.
        let root = self.path().join("runc");
        for id in self.runc_list() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .output();
        }
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let base = self.path().to_string_lossy().to_string();
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&base))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = Command::new("umount").args(["-l", t]).output();
            }
        }
        // This host's netns, for every container it ever recorded (also those a controller
        // started).
        if let Ok(dirs) = std::fs::read_dir(self.path().join("state/containers")) {
            for d in dirs.flatten() {
                let ns = netns_name(&root, &d.file_name().to_string_lossy());
                remove_cni_masquerade(&ns);
                if Path::new(NETNS_DIR).join(&ns).exists() {
                    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let table = slipway_runtime::nat::table_name(&self.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .output();
    }
}

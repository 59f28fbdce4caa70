//! A fleet on one machine: a controller (`slipway-controller serve`, a real process) or two,
//! a registry, and N hosts. Each host is a network namespace of its own on a test LAN
//! (`crate::lan`), with its own address, and runs the real `slipway-agent proxy` and
//! `slipway-agent run` processes inside it, each with its own state dir and runc root. Every
//! host uses the agent's default CNI bridge and subnet, as identical VMs would; the containers'
//! network namespaces live in a private `/run/netns` of the agent's own mount namespace
//! (their names depend on app, seq and digest: the same on every host of a fleet). The
//! controllers and the registry listen on the LAN's gateway address.
//!
//! A killed agent loses its mount namespace and with it the names of its containers' network
//! namespaces: restarting an agent is not supported here (the single-host tests cover agent
//! restarts).

use crate::bins::bin;
use crate::host::wait_until;
use crate::lan::{HostNet, Lan};
use anyhow::Context;
use slipway_proto::{SigningKey, TrustFile};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const LOG: &str = "debug,hyper=info,hyper_util=info,reqwest=info,oci_client=info,h2=info,sqlx=warn";

pub use crate::controller::{ok, Controller};

/// A fleet's controller: on the LAN's gateway `ip`, signing with the fleet's key, speaking
/// plain HTTP to the fleet's `registries` and to agents (the LAN never leaves the machine).
fn controller(
    dir: &Path,
    i: usize,
    ip: &str,
    key: &Path,
    registries: &[&str],
    extra: &str,
) -> Controller {
    let extra =
        format!("allow_plain_http = true\n{extra}\n[registry]\nplain_http = {registries:?}\n");
    Controller::configure(dir, &format!("controller{i}"), ip, key, &extra)
}

/// Runs `slipway ARGS` against `url` with `token`.
pub fn slipway(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("slipway"))
        .args(args)
        .env("SLIPWAY_URL", url)
        .env("SLIPWAY_TOKEN", token)
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

/// One host: its own network namespace on the LAN, with a proxy and an agent inside.
pub struct FleetHost {
    pub id: String,
    /// The host's LAN address: the proxy serves the app's `listen` port there.
    pub ip: String,
    pub dir: tempfile::TempDir,
    proxy: Option<Child>,
    agent: Option<Child>,
    /// Last field: dropped after the processes and containers are gone.
    pub net: HostNet,
}

/// A host's own part of agent.toml (state, proxy socket, registries, runtime dirs under
/// `dir`): what every host has, whether it registers with a token or joins.
fn local_settings(dir: &std::path::Path, insecure: &[&str]) -> String {
    let d = dir.display();
    format!(
        "state_dir = \"{d}/state\"\nreleases_dir = \"{d}/releases\"\n\
         proxy_socket = \"{d}/proxy.sock\"\n\n[registry]\ninsecure = {insecure:?}\n\n\
         [runtime]\nstate_dir = \"{d}/state/containers\"\nrunc_root = \"{d}/runc\"\n"
    )
}

impl FleetHost {
    /// Starts a host on `lan` registering as `id` with `labels` at the controller(s) `url`.
    pub fn start(
        lan: &Lan,
        insecure: &[&str],
        trust: &TrustFile,
        url: &str,
        token: &str,
        id: &str,
        labels: &str,
    ) -> anyhow::Result<FleetHost> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-fleet-")
            .tempdir()?;
        let net = lan.host()?;
        let d = dir.path().display();
        std::fs::write(dir.path().join("trust.toml"), trust.to_toml())?;
        std::fs::write(dir.path().join("agent.token"), token)?;
        std::fs::write(
            dir.path().join("agent.toml"),
            format!(
                "trust = \"{d}/trust.toml\"\n{}\n\
                 [controller]\nurl = \"{url}\"\nhost_id = \"{id}\"\nlabels = {labels}\n\
                 token_file = \"{d}/agent.token\"\ncache_dir = \"{d}/controller-cache\"\n",
                local_settings(dir.path(), insecure)
            ),
        )?;
        Self::launch(id, dir, net)
    }

    /// The processes of host `id` whose agent.toml is in `dir`: its proxy, then its agent.
    fn launch(id: &str, dir: tempfile::TempDir, net: HostNet) -> anyhow::Result<FleetHost> {
        let mut h = FleetHost {
            id: id.to_string(),
            ip: net.ip.clone(),
            dir,
            proxy: None,
            agent: None,
            net,
        };
        h.start_proxy()?;
        h.start_agent()?;
        Ok(h)
    }

    /// Starts a host on `lan` that joins with `join_token` as `id` (`slipway-agent join`,
    /// run in the host's network namespace, writes its token, trust file and `[controller]`
    /// into an agent.toml holding only the host's local settings). Errs with the join's
    /// stderr when the join is refused; nothing is started then.
    pub fn join(
        lan: &Lan,
        insecure: &[&str],
        join_token: &str,
        id: &str,
    ) -> anyhow::Result<FleetHost> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-fleet-")
            .tempdir()?;
        let net = lan.host()?;
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, local_settings(dir.path(), insecure))?;
        let out = net
            .command(bin("slipway-agent"))
            .args(["join", join_token, "--host-id", id, "--config"])
            .arg(&config)
            .arg("--cache-dir")
            .arg(dir.path().join("controller-cache"))
            .output()
            .context("running slipway-agent join")?;
        if !out.status.success() {
            anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Self::launch(id, dir, net)
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))?)
    }

    fn start_proxy(&mut self) -> anyhow::Result<()> {
        let sock = self.dir.path().join("proxy.sock");
        let child = self
            .net
            .command(bin("slipway-agent"))
            .args(["proxy", "--control-socket"])
            .arg(&sock)
            .arg("--state")
            .arg(self.dir.path().join("routes.json"))
            .args(["--bind", &self.ip])
            .env("SLIPWAY_LOG", LOG)
            .stdout(Stdio::null())
            .stderr(self.log("proxy.log")?)
            .spawn()
            .context("starting slipway-agent proxy")?;
        self.proxy = Some(child);
        wait_until(Duration::from_secs(10), || sock.exists())
            .context("proxy control socket never appeared")
    }

    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        // In the host's network namespace, in a mount namespace of its own with a private
        // /run/netns: container network namespaces are named after app, seq and digest, the
        // same on every host of a fleet.
        let child = self
            .net
            .command("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs fleet-netns /run/netns && exec \"$0\" run --config \"$1\"")
            .arg(bin("slipway-agent"))
            .arg(self.dir.path().join("agent.toml"))
            .env("SLIPWAY_LOG", LOG)
            .stdout(Stdio::null())
            .stderr(self.log("agent.log")?)
            .spawn()
            .context("starting slipway-agent run")?;
        self.agent = Some(child);
        Ok(())
    }

    /// Pulls the host's network cable: it vanishes for the controller and for clients (its
    /// processes keep running, cut off).
    pub fn unplug(&self) {
        self.net.unplug().expect("unplugging a host");
    }

    /// Resident memory (KiB) of the agent and of the proxy.
    pub fn rss_kib(&self) -> (u64, u64) {
        let rss = |c: &Option<Child>| c.as_ref().map_or(0, |c| rss_kib(c.id()));
        (rss(&self.agent), rss(&self.proxy))
    }

    /// Plugs the cable back in.
    pub fn plug(&self) {
        self.net.plug().expect("plugging a host back in");
    }

    /// SIGKILL the agent (the proxy and containers keep serving).
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.ip).parse().unwrap()
    }

    /// One `GET /` on this host's app port: (status, body).
    pub fn get(&self, port: u16) -> anyhow::Result<(u16, String)> {
        crate::host::get_at(self.addr(port))
    }

    /// The body this host serves on `port`, or an empty string.
    pub fn body(&self, port: u16) -> String {
        match self.get(port) {
            Ok((200, b)) => b,
            _ => String::new(),
        }
    }

    /// Whether the agent's image store holds blob `digest` (verified and renamed into place).
    pub fn has_blob(&self, digest: &slipway_proto::Digest) -> bool {
        self.dir
            .path()
            .join("state/images/blobs/sha256")
            .join(digest.hex())
            .exists()
    }

    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The ids of the containers runc knows under this host's runc root.
    /// `(id, status)` of every container runc knows on this host (`created`, `running`...).
    pub fn runc_states(&self) -> Vec<(String, String)> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.dir.path().join("runc"))
            .args(["list", "-f", "json"])
            .output();
        let Ok(out) = out else { return Vec::new() };
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.iter()
            .map(|c| {
                let f = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (f("id"), f("status"))
            })
            .collect()
    }

    pub fn runc_list(&self) -> Vec<String> {
        self.runc_states().into_iter().map(|(id, _)| id).collect()
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        self.kill_agent();
        if let Some(mut c) = self.proxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let root = self.dir.path().join("runc");
        for id in self.runc_list() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .output();
        }
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let base = self.dir.path().to_string_lossy().to_string();
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
        // `self.net` goes next: deleting the namespace deletes the host's bridge and cable.
    }
}

/// `VmRSS` of process `pid` in KiB (0 when it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A LAN, a registry, one signing key, controllers sharing it, and hosts.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub key_path: PathBuf,
    pub trust: TrustFile,
    pub registry: crate::registry::Registry,
    /// A second registry on the LAN: hosts reach it only if they list it as `insecure`.
    pub spare_registry: crate::registry::Registry,
    pub controllers: Vec<Controller>,
    pub hosts: Vec<FleetHost>,
    pub admin: String,
    /// Last field: dropped after everything on it.
    pub lan: Lan,
}

impl Fleet {
    /// A LAN, a registry and `controllers` controllers (started), all with `extra` config.
    pub fn start(controllers: usize, extra: &str) -> Fleet {
        let lan = Lan::create().expect("creating the test LAN");
        let registry = Self::registry_on(&lan);
        let spare_registry = Self::registry_on(&lan);
        let registries = [registry.addr(), spare_registry.addr()];
        let dir = tempfile::Builder::new()
            .prefix("slipway-fleet-ctl-")
            .tempdir()
            .unwrap();
        let key = SigningKey::generate().unwrap();
        let key_path = dir.path().join("release.key");
        std::fs::write(&key_path, key.to_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let trust = TrustFile::new(vec![key.public_key()], 1, 1).unwrap();
        let mut cs: Vec<Controller> = (0..controllers)
            .map(|i| controller(dir.path(), i, &lan.gateway, &key_path, &registries, extra))
            .collect();
        let admin = cs[0].token("admin", "admin", None);
        for c in &mut cs {
            c.start();
        }
        Fleet {
            dir,
            key_path,
            trust,
            registry,
            spare_registry,
            controllers: cs,
            hosts: Vec::new(),
            admin,
            lan,
        }
    }

    fn registry_on(lan: &Lan) -> crate::registry::Registry {
        crate::registry::Registry::start_on(&lan.gateway).expect("starting a registry on the LAN")
    }

    /// Starts `n` hosts `{prefix}-00`.. with `labels` (a TOML inline table), polling
    /// controller `via`.
    pub fn add_hosts(&mut self, prefix: &str, n: usize, labels: &str, via: usize) {
        let registry = self.registry.addr().to_string();
        self.add_hosts_with(prefix, 0..n, labels, via, &[&registry]);
    }

    /// Like [`Fleet::add_hosts`] for host numbers `range`, trusting only the `insecure`
    /// (plain-HTTP) registries: a host left without one cannot pull from it.
    pub fn add_hosts_with(
        &mut self,
        prefix: &str,
        range: std::ops::Range<usize>,
        labels: &str,
        via: usize,
        insecure: &[&str],
    ) {
        for i in range {
            let id = format!("{prefix}-{i:02}");
            let token = self.controllers[0].token(&format!("agent-{id}"), "agent", Some(&id));
            let h = FleetHost::start(
                &self.lan,
                insecure,
                &self.trust,
                &self.controllers[via].url,
                &token,
                &id,
                labels,
            )
            .unwrap();
            self.hosts.push(h);
        }
    }

    /// Starts hosts `{prefix}-NN` for `range` that join with `join_token` (made with `slipway
    /// token create --role join` against a controller on the LAN); a refused join panics.
    pub fn join_hosts(&mut self, prefix: &str, range: std::ops::Range<usize>, join_token: &str) {
        let registry = self.registry.addr().to_string();
        for i in range {
            let id = format!("{prefix}-{i:02}");
            let h = FleetHost::join(&self.lan, &[&registry], join_token, &id)
                .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"));
            self.hosts.push(h);
        }
    }

    /// Waits until every started host has registered with the controllers.
    pub fn wait_registered(&self) {
        let want = self.hosts.len();
        wait_until(Duration::from_secs(30), || {
            let out = self.slipway(0, &["--json", "hosts"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                == Some(want)
        })
        .expect("every host registers");
    }

    pub fn host(&self, id: &str) -> &FleetHost {
        self.hosts.iter().find(|h| h.id == id).unwrap()
    }

    pub fn host_mut(&mut self, id: &str) -> &mut FleetHost {
        self.hosts.iter_mut().find(|h| h.id == id).unwrap()
    }

    /// `slipway ARGS` as admin against controller `i`.
    pub fn slipway(&self, i: usize, args: &[&str]) -> Output {
        slipway(&self.controllers[i].url, &self.admin, args)
    }

    /// Applies an app spec (TOML) through controller 0.
    pub fn apply(&self, name: &str, toml: &str) {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        ok(self.slipway(0, &["app", "apply", "-f", path.to_str().unwrap()]));
    }

    /// `slipway --json rollout APP` through controller `i`.
    pub fn rollout(&self, i: usize, app: &str) -> serde_json::Value {
        let out = self.slipway(i, &["--json", "rollout", app]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until the rollout of `app` satisfies `f`; panics with the rollout and logs.
    pub fn wait_rollout(
        &self,
        app: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let ok = wait_until(timeout, || {
            for i in 0..self.controllers.len() {
                if self.controllers[i].is_running() {
                    last = self.rollout(i, app);
                    return f(&last);
                }
            }
            false
        });
        if ok.is_err() {
            let logs: Vec<String> = self
                .hosts
                .iter()
                .map(|h| format!("--- {} agent.log:\n{}", h.id, h.log_tail("agent.log", 15)))
                .collect();
            panic!(
                "rollout of {app} never got there in {timeout:?}; last:\n{}\n{}\n--- controller:\n{}",
                serde_json::to_string_pretty(&last).unwrap(),
                logs.join("\n"),
                self.controllers[0].log_tail(30)
            );
        }
        last
    }
}

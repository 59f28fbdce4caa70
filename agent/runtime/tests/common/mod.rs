//! Test harness: a private runtime (own state dir, runc root, bridge and /24 subnet), busybox
//! layer dirs, releases, and a guard that removes everything even when a test fails.
#![allow(dead_code)]

use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use slipway_proto::{AppSpec, Release};
use slipway_runtime::network::{netns_name, NETNS_DIR};
use slipway_runtime::{CniConfig, Runtime, RuntimeConfig};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

static N: AtomicU32 = AtomicU32::new(0);

/// One test's world. Dropping it deletes containers, netns, mounts and the bridge.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cfg: RuntimeConfig,
    pub tag: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}{n}", pid % 0xfffff);
        let dir = tempfile::Builder::new()
            .prefix("slipway-rt-")
            .tempdir()
            .unwrap();
        // 10.213.X.0/24 with X from pid and counter: distinct across parallel tests.
        let x = (pid as u32 * 7 + n) % 250 + 1;
        let cfg = RuntimeConfig {
            state_dir: dir.path().join("containers"),
            runc_root: dir.path().join("runc"),
            runc: "runc".into(),
            cni: CniConfig {
                plugin_dir: "/usr/lib/cni".into(),
                bridge: format!("swt{tag}"),
                subnet: format!("10.213.{x}.0/24"),
                ..CniConfig::default()
            },
            ..RuntimeConfig::default()
        };
        Fixture { dir, cfg, tag }
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.cfg.clone()).expect("runtime")
    }

    /// Layer dirs of the test image: busybox + passwd (base), then `/www/index.html`.
    pub fn layers(&self, page: &str) -> Vec<PathBuf> {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let base = self.dir.path().join(format!("layers/{n}/base"));
        let top = self.dir.path().join(format!("layers/{n}/top"));
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
        for l in [
            "sh", "sleep", "cat", "echo", "ps", "id", "pwd", "unshare", "mount", "ping",
            "hostname", "touch", "ls", "stat", "grep", "mkdir", "wget", "httpd",
        ] {
            std::os::unix::fs::symlink("busybox", base.join("bin").join(l)).unwrap();
        }
        std::fs::write(
            base.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(base.join("etc/group"), "root:x:0:\nwww:x:33:\n").unwrap();
        std::fs::create_dir_all(top.join("www")).unwrap();
        std::fs::write(top.join("www/index.html"), page).unwrap();
        vec![base, top]
    }

    /// Unique per fixture and seq, so ids never collide between tests.
    pub fn release(&self, app: &str, seq: u64, extra_toml: &str) -> Release {
        let spec = AppSpec::from_toml(&format!(
            "name = \"{app}\"\nimage = \"registry.test/{app}\"\nlisten = 8080\ncontainer_port = 80\n{extra_toml}"
        ))
        .unwrap();
        let digest = slipway_proto::Digest::of(format!("{}-{app}-{seq}", self.tag).as_bytes());
        Release {
            app: app.parse().unwrap(),
            seq,
            image: format!("registry.test/{app}@{digest}"),
            spec,
            issued_at: SystemTime::now(),
            expires: SystemTime::now() + Duration::from_secs(3600),
            key_set_version: 1,
            annotations: Default::default(),
        }
    }

    pub fn netns_exists(&self, id: &str) -> bool {
        Path::new(NETNS_DIR)
            .join(netns_name(&self.cfg.runc_root, id))
            .exists()
    }

    /// veths attached to this fixture's bridge.
    pub fn veths(&self) -> String {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.cfg.cni.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_str().unwrap().to_string();
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .map(str::to_string)
            .collect()
    }

    /// The status runc itself reports for container `id` (`created`, `running`, ...).
    pub fn runc_status(&self, id: &str) -> String {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&self.cfg.runc_root)
            .args(["state", id])
            .output()
            .unwrap();
        let state: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("runc state {id}: {e}: {out:?}"));
        state["status"].as_str().unwrap().to_string()
    }

    pub fn runc_list(&self) -> Vec<String> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&self.cfg.runc_root)
            .args(["list", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn veth_count(&self) -> usize {
        self.veths().lines().count()
    }

    /// Nothing of container `id` is left: no netns, veth, mount, cgroup or runc entry.
    pub fn assert_clean(&self, id: &str) {
        assert!(!self.netns_exists(id), "netns of {id} leaked");
        assert_eq!(self.veths(), "", "veth leaked on {}", self.cfg.cni.bridge);
        self.assert_gone(id);
    }

    /// Like [`Fixture::assert_clean`] for one container while others still run.
    pub fn assert_gone(&self, id: &str) {
        assert!(!self.netns_exists(id), "netns of {id} leaked");
        assert!(
            !self.mounts().iter().any(|m| m.contains(id)),
            "mount of {id} leaked: {:?}",
            self.mounts()
        );
        assert!(
            !self.runc_list().contains(&id.to_string()),
            "runc entry {id} leaked"
        );
        for c in ["memory", "cpu", "pids"] {
            assert!(
                cgroup_dir(c, id).is_none(),
                "cgroup {c}/slipway/*-{id} leaked"
            );
        }
        let dir = self.cfg.state_dir.join(id);
        for d in ["rootfs", "upper", "work", "config.json", "netconf.json"] {
            assert!(!dir.join(d).exists(), "{d} of {id} leaked");
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.runc_list() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.cfg.runc_root)
                .args(["delete", "--force", &id])
                .output();
        }
        for m in self.mounts().iter().rev() {
            if let Some(target) = m.split_whitespace().nth(1) {
                let _ = Command::new("umount").args(["-l", target]).output();
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.cfg.state_dir) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                remove_masquerade(&id);
                let name = netns_name(&self.cfg.runc_root, &id);
                if Path::new(NETNS_DIR).join(&name).exists() {
                    let _ = Command::new("ip").args(["netns", "delete", &name]).output();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.cfg.cni.bridge])
            .output();
        remove_nat(&self.cfg.cni.bridge);
    }
}

/// Removes the runtime's egress NAT table of `bridge`, if a test made one.
pub fn remove_nat(bridge: &str) {
    let table = slipway_runtime::nat::table_name(bridge);
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .output();
}

/// Removes the CNI masquerade rule and chain of container `id` (a failed test skipped its
/// CNI DEL; once the netns is gone, the plugin cannot find them). CNI knows the container by
/// its netns name, which ends in the id.
pub fn remove_masquerade(id: &str) {
    let Ok(out) = Command::new("iptables").args(["-t", "nat", "-S"]).output() else {
        return;
    };
    let tag = format!("-{id}\\\"");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with("-A POSTROUTING") || !line.contains(&tag) {
            continue;
        }
        if let Some(chain) = line.split_whitespace().last() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "iptables -t nat -D {} && iptables -t nat -F {chain} && iptables -t nat -X {chain}",
                    &line[3..]
                ))
                .output();
        }
    }
}

/// The busybox httpd image config.
/// The spec of release `r`'s container (no secrets).
pub fn spec<'a>(
    r: &'a Release,
    image: &'a ImageConfiguration,
    layers: &'a [PathBuf],
) -> slipway_runtime::ContainerSpec<'a> {
    slipway_runtime::ContainerSpec {
        id: r.container_id().unwrap(),
        release: r,
        image_config: image,
        layer_dirs: layers,
        secrets: None,
    }
}

pub fn image_config(f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .config(
            f(ConfigBuilder::default()
                .cmd(vec![
                    "/bin/busybox".to_string(),
                    "httpd".into(),
                    "-f".into(),
                    "-p".into(),
                    "80".into(),
                    "-h".into(),
                    "/www".into(),
                ])
                .env(vec!["PATH=/bin".to_string()]))
            .build()
            .unwrap(),
        )
        .build()
        .unwrap()
}

/// GET / from `addr:80` until it answers (or `timeout`); returns the body.
pub fn get(addr: IpAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match try_get(addr) {
            Ok(body) => return Ok(body),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no answer from {addr}:80 within {timeout:?}: {last}"
    ))
}

pub fn try_get(addr: IpAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(addr, 80), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// Waits for `f` to be true.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn read_cgroup(controller: &str, id: &str, file: &str) -> String {
    let dir = cgroup_dir(controller, id)
        .unwrap_or_else(|| panic!("no cgroup {controller}/slipway/*-{id}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("cgroup {}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// The cgroup dir of container `id`: `/sys/fs/cgroup/<controller>/slipway/<runtime tag>-<id>`.
pub fn cgroup_dir(controller: &str, id: &str) -> Option<std::path::PathBuf> {
    let parent = Path::new("/sys/fs/cgroup").join(controller).join("slipway");
    let suffix = format!("-{id}");
    std::fs::read_dir(&parent)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix) && n.len() == 6 + suffix.len())
        })
}

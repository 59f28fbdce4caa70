//! A fleet's network on one machine. The "LAN" is a bridge in the machine's network namespace
//! whose gateway address carries the controllers and the registry; every host is a network
//! namespace of its own, joined to the LAN by a veth pair, with one address on it. The LAN has
//! no uplink and nothing routes it anywhere: every byte stays on this machine.
//!
//! Names carry the test process id and a counter, so fleets of tests running in parallel do
//! not meet; everything is deleted on drop, even when the test failed.

use anyhow::{bail, Context};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`; an error names the command and what `ip` said.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The bridge all hosts of a fleet hang off, with the gateway address `10.A.B.1/24`.
pub struct Lan {
    pub bridge: String,
    /// The machine's address on the LAN: controllers and registries bind it.
    pub gateway: String,
    net: String,
    tag: String,
    next_host: AtomicU32,
}

impl Lan {
    pub fn create() -> anyhow::Result<Lan> {
        let n = NEXT_LAN.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100000, n);
        let net = format!("10.{}.{}", 250 + pid % 5, (pid / 5 + n * 41) % 256);
        let lan = Lan {
            bridge: format!("swl{tag}"),
            gateway: format!("{net}.1"),
            net,
            tag,
            next_host: AtomicU32::new(0),
        };
        ip(&["link", "add", &lan.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.gateway),
            "dev",
            &lan.bridge,
        ])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        Ok(lan)
    }

    /// A new host namespace on this LAN, `lo` and `eth0` up, default route via the gateway.
    pub fn host(&self) -> anyhow::Result<HostNet> {
        let k = self.next_host.fetch_add(1, Ordering::SeqCst);
        if k >= 240 {
            bail!("a test LAN holds at most 240 hosts");
        }
        let net = HostNet {
            ns: format!("swh{}h{k}", self.tag),
            ip: format!("{}.{}", self.net, 10 + k),
            veth: format!("swv{}h{k}", self.tag),
        };
        ip(&["netns", "add", &net.ns])?;
        // From here on, drop deletes what was made.
        ip(&[
            "link", "add", &net.veth, "type", "veth", "peer", "name", "eth0", "netns", &net.ns,
        ])?;
        ip(&["link", "set", &net.veth, "master", &self.bridge, "up"])?;
        let cidr = format!("{}/24", net.ip);
        ip(&["-n", &net.ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &net.ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &net.ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &net.ns,
            "route",
            "add",
            "default",
            "via",
            &self.gateway,
        ])?;
        Ok(net)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// One host's network namespace and its address on the LAN.
pub struct HostNet {
    /// Name under `/run/netns`.
    pub ns: String,
    pub ip: String,
    /// The LAN-side end of the host's cable.
    veth: String,
}

impl HostNet {
    /// `PROGRAM` run inside this host's network namespace. `nsenter`, not `ip netns exec`:
    /// the latter remounts `/sys`, and runc then finds no cgroup mount.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(program);
        c
    }

    /// Pulls the host's cable: it vanishes from the network as a powered-off machine would
    /// (its connections are not closed, they just stop answering).
    pub fn unplug(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth, "down"])
    }

    pub fn plug(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth, "up"])
    }
}

impl Drop for HostNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes `eth0` and with it the LAN end of the pair.
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", &self.veth]);
    }
}

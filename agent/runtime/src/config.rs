//! Runtime configuration, a section of the agent config.

use crate::defaults;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the runtime keeps its state and how it reaches runc and CNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Per-container records, bundles, upper dirs and logs.
    pub state_dir: PathBuf,
    /// runc's private `--root`, so `runc list` shows only Slipway's containers.
    pub runc_root: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
    /// Per-container tmpfs mounts holding secrets and the config.json of containers that
    /// have any; default: `secrets/` beside `runc_root` (`/run/slipway/secrets`).
    pub secrets_dir: Option<PathBuf>,
    /// Named volumes; default: `volumes/` beside `state_dir`.
    pub volumes_dir: Option<PathBuf>,
    pub cni: CniConfig,
    /// Resolvers of every container (an app spec's `dns` overrides each list).
    pub dns: DnsConfig,
}

/// `[runtime.dns]`: what goes into each container's `/etc/resolv.conf`. Every empty list
/// falls back to the host's resolv.conf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub servers: Vec<std::net::IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// The host resolv.conf to copy.
    pub host_resolv_conf: PathBuf,
    /// Upstream servers of systemd-resolved, used when the host file names its stub.
    pub resolved_resolv_conf: PathBuf,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            search: Vec::new(),
            options: Vec::new(),
            host_resolv_conf: defaults::HOST_RESOLV_CONF.into(),
            resolved_resolv_conf: defaults::RESOLVED_RESOLV_CONF.into(),
        }
    }
}

/// CNI plugins and the default bridge network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Where the `bridge`, `host-local` and `loopback` plugins live.
    pub plugin_dir: PathBuf,
    /// Bridge of the default network.
    pub bridge: String,
    /// Subnet host-local allocates container addresses from.
    pub subnet: String,
    /// A CNI network config (or config list) to use instead of the default bridge network.
    pub netconf: Option<PathBuf>,
    /// Masquerade container traffic leaving the subnet (egress NAT), so containers reach
    /// hosts that have no route back to the subnet.
    pub masquerade: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            state_dir: defaults::STATE_DIR.into(),
            runc_root: defaults::RUNC_ROOT.into(),
            runc: defaults::RUNC.into(),
            secrets_dir: None,
            volumes_dir: None,
            cni: CniConfig::default(),
            dns: DnsConfig::default(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            plugin_dir: defaults::CNI_PLUGIN_DIR.into(),
            bridge: defaults::CNI_BRIDGE.into(),
            subnet: defaults::CNI_SUBNET.into(),
            netconf: None,
            masquerade: defaults::CNI_MASQUERADE,
        }
    }
}

impl RuntimeConfig {
    /// Where secrets tmpfs mounts go: `secrets_dir`, or `secrets/` beside the runc root.
    pub fn secrets_dir(&self) -> PathBuf {
        self.secrets_dir.clone().unwrap_or_else(|| {
            self.runc_root
                .parent()
                .unwrap_or(&self.runc_root)
                .join("secrets")
        })
    }

    /// Where named volumes live: `volumes_dir`, or `volumes/` beside the state dir.
    pub fn volumes_dir(&self) -> PathBuf {
        self.volumes_dir.clone().unwrap_or_else(|| {
            self.state_dir
                .parent()
                .unwrap_or(&self.state_dir)
                .join("volumes")
        })
    }
}

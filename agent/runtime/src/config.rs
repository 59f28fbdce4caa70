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
    /// Cap of each container log file (stdout, stderr), e.g. `"10MiB"`: past it the file is
    /// rotated into `<name>.1`, so a stream takes at most about twice this on disk.
    pub log_max_size: ByteSize,
}

/// A size in bytes, written `"10MiB"`, `"512KiB"`, `"1GiB"`, `"10MB"`, `"4096"` or `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit_bytes: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            u => {
                return Err(format!(
                    "size `{s}`: unknown unit `{u}` (use B, KiB, MiB, GiB, KB, MB or GB)"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("size `{s}` must be a whole number with a unit, e.g. `10MiB`"))?;
        n.checked_mul(unit_bytes)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let size = match Raw::deserialize(d)? {
            Raw::Int(n) => ByteSize(n),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom)?,
        };
        if size.0 < defaults::LOG_MIN_BYTES {
            return Err(serde::de::Error::custom(format!(
                "log_max_size {size} is below the least allowed, {}: a smaller cap would \
                 rotate the logs nonstop",
                ByteSize(defaults::LOG_MIN_BYTES)
            )));
        }
        Ok(size)
    }
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
            log_max_size: ByteSize(defaults::LOG_MAX_BYTES),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_max_size_reads_units_and_refuses_nonsense() {
        let read = |v: &str| toml::from_str::<RuntimeConfig>(&format!("log_max_size = {v}"));
        assert_eq!(read("\"10MiB\"").unwrap().log_max_size, ByteSize(10 << 20));
        assert_eq!(
            read("\"512KiB\"").unwrap().log_max_size,
            ByteSize(512 << 10)
        );
        assert_eq!(read("\"2MB\"").unwrap().log_max_size, ByteSize(2_000_000));
        assert_eq!(read("1048576").unwrap().log_max_size, ByteSize(1 << 20));
        let e = read("\"10 parsecs\"").unwrap_err().to_string();
        assert!(e.contains("unknown unit `parsecs`"), "{e}");
        let e = read("\"1KiB\"").unwrap_err().to_string();
        assert!(e.contains("below the least allowed"), "{e}");
        assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
        assert_eq!(
            RuntimeConfig::default().log_max_size,
            ByteSize(defaults::LOG_MAX_BYTES)
        );
    }
}

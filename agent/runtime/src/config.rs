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
    pub cni: CniConfig,
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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            state_dir: defaults::STATE_DIR.into(),
            runc_root: defaults::RUNC_ROOT.into(),
            runc: defaults::RUNC.into(),
            cni: CniConfig::default(),
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
        }
    }
}

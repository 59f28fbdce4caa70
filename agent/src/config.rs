//! `agent.toml`: where the agent keeps state, which keys it trusts, where releases come from,
//! how it reaches registries, the runtime and the proxy. Every key has a default.

use crate::defaults;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Root of the agent's state: `apps.json`, `images/`, `containers/`.
    #[serde(default = "d_state_dir")]
    pub state_dir: PathBuf,
    /// Trust file: keys allowed to sign releases and the threshold.
    #[serde(default = "d_trust")]
    pub trust: PathBuf,
    /// Directory of signed release files (`*.json`), one per app; a removed file removes the app.
    #[serde(default = "d_releases_dir")]
    pub releases_dir: PathBuf,
    /// Control socket of `slipway-agent proxy`.
    #[serde(default = "d_proxy_socket")]
    pub proxy_socket: PathBuf,
    /// Releases per app whose images stay cached for rollback.
    #[serde(default = "d_keep")]
    pub keep_releases: usize,
    #[serde(default)]
    pub registry: slipway_image::RegistryConfig,
    #[serde(default)]
    pub runtime: Option<slipway_runtime::RuntimeConfig>,
    /// When set, desired state comes from the controller instead of `releases_dir`.
    #[serde(default)]
    pub controller: Option<crate::source::controller::ControllerSourceConfig>,
    /// Where `GET /metrics` (Prometheus) is served; loopback by default.
    #[serde(default = "d_metrics_addr")]
    pub metrics_addr: std::net::SocketAddr,
}

fn d_state_dir() -> PathBuf {
    defaults::STATE_DIR.into()
}
fn d_trust() -> PathBuf {
    defaults::TRUST_FILE.into()
}
fn d_releases_dir() -> PathBuf {
    defaults::RELEASES_DIR.into()
}
fn d_proxy_socket() -> PathBuf {
    defaults::PROXY_SOCKET.into()
}
fn d_metrics_addr() -> std::net::SocketAddr {
    defaults::METRICS_ADDR
        .parse()
        .expect("default metrics address parses")
}
fn d_keep() -> usize {
    defaults::KEEP_RELEASES
}

impl AgentConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading agent config {}: {e}", path.display()))?;
        let cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("agent config {}: {e}", path.display()))?;
        if cfg.keep_releases == 0 {
            anyhow::bail!(
                "agent config {}: keep_releases must be at least 1",
                path.display()
            );
        }
        Ok(cfg)
    }

    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Runtime settings; when absent, containers live under the state dir.
    pub fn runtime_config(&self) -> slipway_runtime::RuntimeConfig {
        self.runtime
            .clone()
            .unwrap_or_else(|| slipway_runtime::RuntimeConfig {
                state_dir: self.state_dir.join("containers"),
                volumes_dir: Some(self.state_dir.join("volumes")),
                ..Default::default()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_and_registry_sections_parse() {
        let example = include_str!("../../deploy/examples/agent.toml");
        let cfg: AgentConfig = toml::from_str(example).unwrap();
        assert_eq!(cfg.registry.insecure, ["127.0.0.1:5000"]);
        // The commented registry examples, uncommented.
        let uncommented: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg: AgentConfig = toml::from_str(&uncommented).unwrap();
        assert!(cfg.registry.docker_config.is_some());
        assert_eq!(cfg.registry.auth.len(), 2);
        let tls = cfg.registry.tls_for("registry.example.com").unwrap();
        assert!(tls.ca_file.is_some() && tls.cert_file.is_some() && tls.key_file.is_some());
    }
}

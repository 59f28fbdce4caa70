//! `slipway-agent ps`: the containers this host runs, as the runtime sees them.

use slipway_runtime::{ContainerInfo, ContainerStatus, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    settings: Settings,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.settings.runtime_config()?;
    let containers = if cfg.state_dir.exists() {
        let rt = Runtime::new(cfg)?;
        let mut list = rt.list().await?;
        list.sort_by(|a, b| (&a.app, a.seq).cmp(&(&b.app, b.seq)));
        list
    } else {
        Vec::new()
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&containers)?);
        return Ok(());
    }
    print!("{}", table(&containers, SystemTime::now()));
    Ok(())
}

/// One line per container: app, seq, digest, address, state, uptime.
fn table(containers: &[ContainerInfo], now: SystemTime) -> String {
    let mut out = format!(
        "{:<20} {:>6} {:<14} {:<16} {:<12} {}\n",
        "APP", "SEQ", "DIGEST", "ADDRESS", "STATE", "UPTIME"
    );
    for c in containers {
        let digest = c
            .image
            .rsplit_once("@sha256:")
            .map(|(_, h)| &h[..h.len().min(12)])
            .unwrap_or("-");
        let state = match (c.status, c.exit_code) {
            (ContainerStatus::Stopped, Some(code)) => format!("exited({code})"),
            (s, _) => status_name(s).to_string(),
        };
        let uptime = match c.status {
            ContainerStatus::Running => now
                .duration_since(c.started_at)
                .map(|d| {
                    humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                        .to_string()
                })
                .unwrap_or_else(|_| "0s".into()),
            _ => "-".into(),
        };
        let address = if c.address.is_unspecified() {
            "-".to_string()
        } else {
            c.address.to_string()
        };
        out.push_str(&format!(
            "{:<20} {:>6} {:<14} {:<16} {:<12} {}\n",
            c.app, c.seq, digest, address, state, uptime
        ));
    }
    out
}

/// Where `ps` and `logs` find the runtime: the `[runtime]` section (or `state_dir`) of the
/// agent config, or `--containers-dir` / `--runc-root` given directly.
#[derive(clap::Args)]
pub struct Settings {
    /// Agent configuration (TOML); read for `state_dir` and `[runtime]` when it exists.
    #[arg(long, short, default_value = "/etc/slipway/agent.toml")]
    config: PathBuf,
    /// The runtime's state dir (overrides the config), e.g. /var/lib/slipway/containers.
    #[arg(long)]
    containers_dir: Option<PathBuf>,
    /// runc's private root (overrides the config).
    #[arg(long)]
    runc_root: Option<PathBuf>,
}

impl Settings {
    pub fn runtime_config(&self) -> anyhow::Result<RuntimeConfig> {
        let mut cfg = RuntimeConfig {
            state_dir: PathBuf::from(slipway_agent::defaults::STATE_DIR).join("containers"),
            ..RuntimeConfig::default()
        };
        if self.config.exists() {
            let text = std::fs::read_to_string(&self.config).map_err(|e| {
                anyhow::anyhow!("reading agent config {}: {e}", self.config.display())
            })?;
            let doc: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("agent config {}: {e}", self.config.display()))?;
            if let Some(rt) = doc.get("runtime") {
                cfg = rt.clone().try_into().map_err(|e| {
                    anyhow::anyhow!("agent config {}: [runtime]: {e}", self.config.display())
                })?;
            } else if let Some(dir) = doc.get("state_dir").and_then(|v| v.as_str()) {
                cfg.state_dir = PathBuf::from(dir).join("containers");
            }
        }
        if let Some(d) = &self.containers_dir {
            cfg.state_dir = d.clone();
        }
        if let Some(r) = &self.runc_root {
            cfg.runc_root = r.clone();
        }
        Ok(cfg)
    }
}

pub fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Preparing => "preparing",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Discarding => "discarding",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_shows_app_seq_digest_address_state_uptime() {
        let now = SystemTime::now();
        let c = ContainerInfo {
            id: "web-3-0123456789ab".parse().unwrap(),
            app: "web".parse().unwrap(),
            seq: 3,
            image: format!("r.example/web@sha256:{}", "0123456789ab".repeat(5) + "cdef"),
            address: "10.88.0.7".parse().unwrap(),
            pid: Some(42),
            status: ContainerStatus::Running,
            started_at: now - Duration::from_secs(125),
            exit_code: None,
        };
        let mut stopped = c.clone();
        stopped.seq = 2;
        stopped.status = ContainerStatus::Stopped;
        stopped.exit_code = Some(137);
        let t = table(&[stopped, c], now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("APP"));
        assert!(lines[1].contains("exited(137)") && lines[1].trim_end().ends_with('-'));
        let l = lines[2];
        for want in [
            "web",
            " 3 ",
            "0123456789ab",
            "10.88.0.7",
            "running",
            "2m 5s",
        ] {
            assert!(l.contains(want), "{want} missing in {l}");
        }
    }
}

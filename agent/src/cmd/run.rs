//! `slipway-agent run`: the agent daemon.

use anyhow::Context;
use slipway_agent::agent::Agent;
use slipway_agent::config::AgentConfig;
use slipway_agent::reconcile::Source;
use slipway_agent::source::controller::ControllerSource;
use slipway_agent::source::dir::DirSource;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Agent configuration (TOML); see deploy/examples/agent.toml.
    #[arg(long, short, default_value = "/etc/slipway/agent.toml")]
    config: PathBuf,
}

impl Args {
    /// `run --config PATH` (for `join --start`).
    pub fn with_config(config: PathBuf) -> Self {
        Self { config }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = AgentConfig::load(&args.config)?;
    let controller = cfg.controller.clone();
    let agent = Arc::new(Agent::open(cfg).context("starting the agent")?);
    // Logs runc's version and warns of known escapes it lacks fixes for.
    if let Err(e) = agent.parts.check_runtime().await {
        tracing::warn!(error = %e, "cannot ask runc for its version");
    }
    tokio::spawn(slipway_agent::expiry::run(agent.clone()));
    // Metrics are an aid: a taken address is logged loudly and the agent deploys on.
    match slipway_agent::metrics::bind(agent.cfg.metrics_addr).await {
        Ok(l) => {
            tracing::info!(addr = %agent.cfg.metrics_addr, "serving /metrics");
            tokio::spawn(slipway_agent::metrics::serve(agent.clone(), l));
        }
        Err(e) => tracing::error!("{e:#}; serving no metrics"),
    }
    let source = match controller {
        Some(c) => {
            tracing::info!(config = %args.config.display(), controller = %c.url, host = %c.host_id, "agent starting; desired state from the controller");
            let reporter = ControllerSource::new(c.clone()).context("controller source")?;
            tokio::spawn(slipway_agent::report::run(agent.clone(), reporter));
            // `slipway logs` through the controller, over a long-poll: no port opened here.
            tokio::spawn(slipway_agent::logs::remote::run(
                c.clone(),
                agent.cfg.runtime_config().state_dir,
            ));
            Source::Controller(Box::new(
                ControllerSource::new(c).context("controller source")?,
            ))
        }
        None => {
            tracing::info!(config = %args.config.display(), releases = %agent.cfg.releases_dir.display(), "agent starting; desired state from the release directory");
            Source::Dir(DirSource::new(agent.cfg.releases_dir.clone()))
        }
    };
    slipway_agent::reconcile::run(agent, source, shutdown_signal()).await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

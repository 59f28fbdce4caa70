//! `slipway-agent proxy`: the data plane, in its own process so it outlives agent restarts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use slipway_proxy::{defaults, Cidr, EdgeConfig, ProxyConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Unix socket of the control API (the agent connects here).
    #[arg(long, default_value = defaults::CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// Routing table; restored on start, rewritten atomically on every change.
    #[arg(long, default_value = defaults::STATE_FILE)]
    state: PathBuf,
    /// Address the apps' public listeners bind.
    #[arg(long, default_value = defaults::BIND)]
    bind: IpAddr,
    /// Also serve GET /metrics (Prometheus) on this TCP address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// HTTP worker threads, each with its own event loop; 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    http_workers: usize,
    /// Port of the shared plain-HTTP listener of host-routed apps (`edge.hosts`).
    #[arg(long, default_value_t = defaults::HTTP_PORT)]
    http_port: u16,
    /// Port of the shared HTTPS listener of apps with `edge.tls`.
    #[arg(long, default_value_t = defaults::HTTPS_PORT)]
    https_port: u16,
    /// A network (CIDR) whose X-Forwarded-* headers are believed; repeat for more.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<Cidr>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ProxyConfig {
        control_socket: args.control_socket,
        state_file: args.state,
        bind: args.bind,
        metrics_listen: args.metrics_listen,
        http_workers: args.http_workers,
        edge: EdgeConfig {
            http_port: args.http_port,
            https_port: args.https_port,
            trusted_proxies: args.trusted_proxies,
        },
    };
    let socket = cfg.control_socket.clone();
    slipway_proxy::serve(cfg, shutdown_signal())
        .await
        .with_context(|| format!("proxy on control socket {}", socket.display()))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

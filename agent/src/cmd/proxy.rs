//! `slipway-agent proxy`: the data plane, in its own process so it outlives agent restarts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use slipway_proxy::{
    defaults, AccessLogConfig, AccessLogTarget, AcmeChallenge, AcmeConfig, Cidr, EdgeConfig,
    ProxyConfig,
};

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
    /// ACME directory URL for apps with `tls = { acme = true }` (e.g. Let's Encrypt's).
    #[arg(long)]
    acme_directory: Option<String>,
    /// Where the ACME account, certificates and keys are kept (mode 0600).
    #[arg(long, default_value = defaults::ACME_DIR)]
    acme_dir: PathBuf,
    /// PEM root to trust for the ACME directory's HTTPS (a private or test CA).
    #[arg(long)]
    acme_ca_root: Option<PathBuf>,
    /// Contact for the ACME account, e.g. mailto:ops@example.com; repeat for more.
    #[arg(long)]
    acme_contact: Vec<String>,
    /// ACME challenge answered: http-01 (port 80) or tls-alpn-01 (port 443).
    #[arg(long, default_value = "http-01")]
    acme_challenge: AcmeChallenge,
    /// Access log: one JSON line per request, to this file (`-` for stdout).
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// Rotate the access log file past this many bytes (0: only reopen on SIGHUP).
    #[arg(long, default_value_t = defaults::ACCESS_LOG_MAX_BYTES)]
    access_log_max_bytes: u64,
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
            acme: args.acme_directory.map(|url| AcmeConfig {
                ca_root: args.acme_ca_root,
                contact: args.acme_contact,
                challenge: args.acme_challenge,
                ..AcmeConfig::new(url, args.acme_dir)
            }),
            limits: Default::default(),
            access_log: args.access_log.map(|p| AccessLogConfig {
                target: if p.as_os_str() == "-" {
                    AccessLogTarget::Stdout
                } else {
                    AccessLogTarget::File(p)
                },
                max_bytes: args.access_log_max_bytes,
                keep: defaults::ACCESS_LOG_KEEP,
            }),
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

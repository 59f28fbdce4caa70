//! `slipway-agent proxy`: the data plane, in its own process so it outlives agent restarts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use slipway_proxy::{
    defaults, AccessLogConfig, AccessLogTarget, AcmeChallenge, AcmeConfig, Cidr, EdgeConfig, Mode,
    ProxyConfig,
};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct Args {
    /// Without an action, run the proxy.
    #[command(subcommand)]
    action: Option<Action>,
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
    /// Every public listener expects a PROXY protocol v1/v2 header (behind a load balancer).
    #[arg(long)]
    accept_proxy_protocol: bool,
    /// An upstream that sends no response headers within this gets a 504.
    #[arg(long, default_value = "60s")]
    response_header_timeout: humantime::Duration,
    /// Request bodies larger than this many bytes get a 413 (default 64 MiB).
    #[arg(long, default_value_t = defaults::MAX_REQUEST_BODY)]
    max_request_body: u64,
    /// A client must send a request's headers within this (also closes idle HTTP/1.1
    /// keep-alive connections).
    #[arg(long, default_value = "60s")]
    client_header_timeout: humantime::Duration,
    /// A client connection with no request in flight this long is closed (HTTP/2: GOAWAY).
    #[arg(long, default_value = "180s")]
    client_idle_timeout: humantime::Duration,
    /// Certificate for TLS clients that send no SNI (e.g. reached by IP): the one of this
    /// routed host. Without it such handshakes fail.
    #[arg(long)]
    default_tls_host: Option<String>,
}

/// Operator actions on a running proxy (over its control socket).
#[derive(clap::Subcommand)]
enum Action {
    /// Hold new requests of APP (e.g. during a migration) until `resume`; each waits at
    /// most --timeout, then gets a 503. Survives a proxy restart.
    Pause {
        app: String,
        #[arg(long, default_value = "30s")]
        timeout: humantime::Duration,
    },
    /// Answer APP's requests with a 503 maintenance page. Survives a proxy restart.
    Stop {
        app: String,
        /// Page text (default: "down for maintenance").
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Route APP's requests again after `pause` or `stop`.
    Resume { app: String },
}

async fn act(socket: PathBuf, action: Action) -> anyhow::Result<()> {
    let client = slipway_proxy::ProxyClient::new(socket);
    let (app, mode) = match action {
        Action::Pause { app, timeout } => (
            app,
            Mode::Paused {
                timeout_ms: timeout.as_millis() as u64,
            },
        ),
        Action::Stop { app, message } => (app, Mode::Stopped { message }),
        Action::Resume { app } => (app, Mode::Running),
    };
    client
        .set_mode(&app, &mode)
        .await
        .with_context(|| format!("{app}: set mode {mode:?}"))?;
    println!("{app}: {mode:?}");
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(action) = args.action {
        return act(args.control_socket, action).await;
    }
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
            limits: slipway_proxy::Limits {
                response_header_timeout: args.response_header_timeout.into(),
                max_request_body: args.max_request_body,
                client_header_timeout: args.client_header_timeout.into(),
                client_idle_timeout: args.client_idle_timeout.into(),
            },
            default_tls_host: args.default_tls_host,
            access_log: args.access_log.map(|p| AccessLogConfig {
                target: if p.as_os_str() == "-" {
                    AccessLogTarget::Stdout
                } else {
                    AccessLogTarget::File(p)
                },
                max_bytes: args.access_log_max_bytes,
                keep: defaults::ACCESS_LOG_KEEP,
            }),
            proxy_protocol: args.accept_proxy_protocol,
        },
    };
    let socket = cfg.control_socket.clone();
    slipway_proxy::serve(cfg, shutdown_signal())
        .await
        .with_context(|| format!("proxy on control socket {}", socket.display()))
}

/// Resolves on SIGTERM or SIGINT. On SIGUSR2 (`systemctl reload`), starts a successor: the
/// same command line (so an upgraded binary at the same path), which takes this proxy's
/// sockets over; this one then drains and exits by itself.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler installs");
    loop {
        tokio::select! {
            _ = term.recv() => return tracing::info!("SIGTERM received"),
            _ = int.recv() => return tracing::info!("SIGINT received"),
            _ = usr2.recv() => spawn_successor(),
        }
    }
}

fn spawn_successor() {
    let mut argv = std::env::args_os();
    let Some(program) = argv.next() else { return };
    match std::process::Command::new(&program).args(argv).spawn() {
        Ok(child) => tracing::info!(
            pid = child.id(),
            program = %std::path::Path::new(&program).display(),
            "SIGUSR2: started a successor; it takes the sockets over"
        ),
        Err(e) => tracing::error!(error = %e, "SIGUSR2: cannot start a successor; still serving"),
    }
}

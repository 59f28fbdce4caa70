//! Slipway data plane: HTTP/TCP proxy with atomic upstream swap, verified drain, metrics.
//!
//! `serve` runs the proxy (`slipway-agent proxy` is a thin wrapper); `ProxyClient` drives it
//! over its unix socket. Routes persist in a state file and are restored on start.
#![forbid(unsafe_code)]

mod api;
mod client;
mod client_io;
mod control;
pub mod defaults;
mod drain;
mod error;
mod http;
mod metrics;
mod pool;
mod router;
mod table;
mod tcp;
mod upstream;
mod workers;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

pub use api::{AppStats, RouteInfo, UpstreamStats};
pub use client::ProxyClient;
pub use drain::DrainReport;
pub use error::ProxyError;
pub use metrics::{LatencySummary, StatusCounts};
pub use slipway_proto::Protocol;
pub use upstream::Upstream;

/// Where the proxy listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Unix socket of the control API (the agent's side).
    pub control_socket: PathBuf,
    /// Routing table, restored on start.
    pub state_file: PathBuf,
    /// Address the public listeners bind (port from each app's route).
    pub bind: IpAddr,
    /// Optional TCP address serving only GET /metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// HTTP worker threads (each client connection stays on one); 0 = one per CPU.
    pub http_workers: usize,
}

/// Runs the proxy until `shutdown` resolves, then stops accepting, lets open connections
/// finish (up to [`defaults::SHUTDOWN_GRACE`]) and returns.
pub async fn serve(cfg: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    // Refuse early if another proxy serves this socket, before touching its ports.
    control::check_not_running(&cfg.control_socket)?;
    let workers = workers::Workers::start(cfg.http_workers)?;
    let router = Arc::new(router::Router::new(
        cfg.bind,
        cfg.state_file.clone(),
        workers,
    ));
    match table::load(&cfg.state_file)? {
        table::Loaded::Missing => {
            info!(state = %cfg.state_file.display(), "no routing table yet; starting with no routes")
        }
        table::Loaded::Table(t) => {
            info!(state = %cfg.state_file.display(), routes = t.routes.len(), "routing table restored");
            router.restore(t).await;
        }
        table::Loaded::Corrupt { reason, moved_to } => error!(
            state = %cfg.state_file.display(), moved_to = %moved_to.display(), %reason,
            "ROUTING TABLE CORRUPT: kept aside, starting with NO ROUTES; \
             the agent must set every app's upstream again"
        ),
    }
    // The socket appears only once the routes are live, so waiting for it is enough.
    let control = control::bind(&cfg.control_socket)?;
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(metrics::ProxyCollector(router.clone())));
    let registry = Arc::new(registry);

    let metrics_task = match cfg.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::MetricsBind { addr, source })?;
            info!(%addr, "serving /metrics");
            Some(tokio::spawn(control::serve_metrics(
                l,
                router.clone(),
                registry.clone(),
            )))
        }
        None => None,
    };
    info!(socket = %cfg.control_socket.display(), bind = %cfg.bind, "proxy ready");
    tokio::select! {
        _ = control::serve_unix(control, router.clone(), registry) => {}
        _ = shutdown => {}
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    info!("shutting down: listeners closed, letting open connections finish");
    let left = router.shutdown(defaults::SHUTDOWN_GRACE).await;
    if left > 0 {
        warn!(
            connections = left,
            "shutdown grace over; closing connections still open"
        );
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    info!("proxy stopped");
    Ok(())
}

//! Slipway data plane: HTTP/TCP proxy with atomic upstream swap, verified drain, metrics.
//!
//! `serve` runs the proxy (`slipway-agent proxy` is a thin wrapper); `ProxyClient` drives it
//! over its unix socket. Routes persist in a state file and are restored on start.
#![forbid(unsafe_code)]

mod access_log;
mod acme;
mod api;
mod app;
mod body;
mod client;
mod client_io;
mod config;
mod conn;
mod control;
pub mod defaults;
mod drain;
mod edge;
mod error;
mod h2c;
mod headers;
mod hosts;
mod http;
mod metrics;
mod pages;
mod pool;
mod router;
mod table;
mod tcp;
mod tls;
mod upstream;
mod workers;

use std::future::Future;
use std::sync::Arc;

use tracing::{error, info, warn};

pub use access_log::{AccessLogConfig, AccessLogTarget};
pub use api::{AppStats, EdgeInfo, RouteInfo, RouteSpec, UpstreamStats};
pub use client::ProxyClient;
pub use config::{AcmeChallenge, AcmeConfig, Cidr, EdgeConfig, Limits, ProxyConfig};
pub use drain::DrainReport;
pub use error::ProxyError;
pub use metrics::{LatencySummary, StatusCounts};
pub use slipway_proto::Protocol;
pub use upstream::Upstream;

/// Runs the proxy until `shutdown` resolves, then stops accepting, lets open connections
/// finish (up to [`defaults::SHUTDOWN_GRACE`]) and returns.
pub async fn serve(cfg: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    // Refuse early if another proxy serves this socket, before touching its ports.
    control::check_not_running(&cfg.control_socket)?;
    let workers = workers::Workers::start(cfg.http_workers)?;
    let access_log = match &cfg.edge.access_log {
        Some(c) => Some(access_log::AccessLog::start(c.clone())?),
        None => None,
    };
    let sighup = access_log.clone().map(|log| {
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                info!("SIGHUP: reopening the access log");
                log.reopen();
            }
        })
    });
    let router = Arc::new(router::Router::new(
        cfg.bind,
        cfg.state_file.clone(),
        workers,
        cfg.edge.clone(),
        access_log,
    ));
    match table::load(&cfg.state_file)? {
        table::Loaded::Missing => {
            info!(state = %cfg.state_file.display(), "no routing table yet; starting with no routes")
        }
        table::Loaded::Table(t) => {
            info!(state = %cfg.state_file.display(), routes = t.routes.len(), "routing table restored");
            router.restore(t);
        }
        table::Loaded::Corrupt { reason, moved_to } => error!(
            state = %cfg.state_file.display(), moved_to = %moved_to.display(), %reason,
            "ROUTING TABLE CORRUPT: kept aside, starting with NO ROUTES; \
             the agent must set every app's upstream again"
        ),
    }
    let cert_watch = tokio::spawn(router.certs().watch());
    let acme_renew = router.acme().map(|a| tokio::spawn(a.renew_loop()));
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
    cert_watch.abort();
    if let Some(t) = sighup {
        t.abort();
    }
    if let Some(t) = acme_renew {
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
